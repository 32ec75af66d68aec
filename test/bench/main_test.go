package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestLoad: the load generator records each request's instance and pid
// from the demo's answer, on kept and on new connections, and counts a
// refused port as refused.
func TestLoad(t *testing.T) {
	if i, p := parseAnswer([]byte("burned 5 ms on instance 12, pid 345\n")); i != 12 || p != 345 {
		t.Errorf("parseAnswer = %d, %d", i, p)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from instance 3, pid 42\n")
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, ka := range []bool{true, false} {
		ss := load{addr: addr, path: "/", conns: 4, keepAlive: ka, perClient: 50, src: loadSrc}.run(context.Background(), time.Now(), 10*time.Second)
		newConns := 0
		for _, s := range ss {
			if s.out != okay || s.inst != 3 || s.pid != 42 {
				t.Fatalf("keep-alive %v: %+v", ka, s)
			}
			if s.newConn {
				newConns++
			}
		}
		if want := map[bool]int{true: 4, false: 200}[ka]; len(ss) != 200 || newConns != want {
			t.Errorf("keep-alive %v: %d requests, %d new connections, want 200, %d", ka, len(ss), newConns, want)
		}
	}
	srv.Close()
	ss := load{addr: addr, path: "/", conns: 1, perClient: 3}.run(context.Background(), time.Now(), 10*time.Second)
	if st := statsOf(ss, 0); st.refused != 3 {
		t.Errorf("closed port: %+v", st)
	}
}

// TestMedian: the upper median of an even count, the input left as it was.
func TestMedian(t *testing.T) {
	ds := []time.Duration{4, 1, 3, 2}
	if m := median(ds); m != 3 || ds[0] != 4 {
		t.Errorf("median = %v, input %v", m, ds)
	}
	if m := median([]time.Duration{7}); m != 7 {
		t.Errorf("median of one = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median of none = %v", m)
	}
}
