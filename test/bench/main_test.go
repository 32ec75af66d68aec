package main

import (
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/cpu?ms=5
  1 threads and 100 connections
  Latency Distribution
     50%  254.12ms
     75%  260.00ms
     90%  270.00ms
     99%    1.02s
  3921 requests in 10.01s, 500.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:    391.72
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 391.72 || r.p50 != 254100*time.Microsecond || r.p99 != 1020*time.Millisecond || r.errors != 6 || r.total != 3921 {
		t.Errorf("parseWrk = %+v", r)
	}
}
