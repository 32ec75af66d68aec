package main

import (
	"testing"
	"time"

	wrkpkg "github.com/corral-pool/corral/test/wrk"
)

// TestToResult: the bench reports wrk's figures, latencies to 100 µs, and
// counts every socket error and non-2xx answer as an error.
func TestToResult(t *testing.T) {
	r := toResult(wrkpkg.Result{Requests: 3921, RPS: 391.72, P50: 254120 * time.Microsecond, P99: 1020 * time.Millisecond,
		Errors: wrkpkg.Errors{Read: 2, Timeout: 1, Status: 3}})
	if r.rps != 391.72 || r.p50 != 254100*time.Microsecond || r.p99 != 1020*time.Millisecond || r.errors != 6 || r.total != 3921 {
		t.Errorf("toResult = %+v", r)
	}
}
