package wrk

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const sample = `Running 1s test @ http://127.0.0.1:18080/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   140.20us   80.11us   2.01ms   93.10%
  Latency Distribution
     50%  126.00us
     99%  500.00us
  70000 requests in 1.00s, 9.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  70000.00
Transfer/sec:      9.00MB
peers: pid 7 responses 69994 first 1700000000000.000
wrk-json: {"requests":70000,"duration_us":1000000,"bytes":9437184,"errors":{"connect":0,"read":2,"write":0,"status":3,"timeout":1},"p50_us":126,"p99_us":500,"mean_us":140.2,"max_us":2010}
`

func TestParse(t *testing.T) {
	r, err := parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Requests: 70000, RPS: 70000, P50: 126 * time.Microsecond, P99: 500 * time.Microsecond,
		Mean: 140200 * time.Nanosecond, Max: 2010 * time.Microsecond, Bytes: 9437184,
		Errors: Errors{Read: 2, Status: 3, Timeout: 1}, Duration: time.Second,
		Lines: []string{"peers: pid 7 responses 69994 first 1700000000000.000"}}
	if r.Requests != want.Requests || r.RPS != want.RPS || r.P50 != want.P50 || r.P99 != want.P99 || r.Mean != want.Mean ||
		r.Max != want.Max || r.Bytes != want.Bytes || r.Errors != want.Errors || r.Duration != want.Duration || !slices.Equal(r.Lines, want.Lines) {
		t.Errorf("parse:\n got %+v\nwant %+v", r, want)
	}
	if r.Errors.Failed() != 6 {
		t.Errorf("Failed() = %d, want 6", r.Errors.Failed())
	}
	for _, out := range []string{
		"unable to connect to 127.0.0.1:18080 Connection refused\n",
		strings.ReplaceAll(sample, "wrk-json: ", "json: "),
		"wrk-json: {\"requests\":\n",
	} {
		if _, err := parse(out); err == nil {
			t.Errorf("parse(%q): no error", out)
		}
	}
}

func TestArgs(t *testing.T) {
	got := Options{URL: "http://127.0.0.1:1/", Conns: 100, Duration: 2500 * time.Millisecond, Headers: []string{"Connection: close"}}.Args("r.lua")
	want := []string{"-t1", "-c100", "-d3s", "--timeout", "10s", "--latency", "-H", "Connection: close", "-s", "r.lua", "http://127.0.0.1:1/"}
	if !slices.Equal(got, want) {
		t.Errorf("Args:\n got %q\nwant %q", got, want)
	}
}

// TestRun runs the real wrk for a second against a server on 127.0.0.1,
// with and without a script of the caller's.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Fatal("wrk is not installed: apt-get install wrk (make deps installs it)")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) })}
	go srv.Serve(l)
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/"
	for _, extra := range []string{"", `function extra_done(summary) io.write("extra: " .. summary.requests .. "\n") end`} {
		r, err := Run(context.Background(), Options{URL: url, Conns: 4, Duration: time.Second, Extra: extra})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests == 0 || r.Errors.Failed() != 0 || r.P50 <= 0 || r.P99 < r.P50 || r.RPS <= 0 || r.CPU <= 0 {
			t.Errorf("with extra %q: %+v", extra, r)
		}
		if got := slices.ContainsFunc(r.Lines, func(l string) bool { return strings.HasPrefix(l, "extra: ") }); got != (extra != "") {
			t.Errorf("with extra %q: lines %q", extra, r.Lines)
		}
	}
}
