// Package wrk runs the wrk HTTP load generator for corral's benchmarks and
// tests and reads its figures from a line of JSON that its Lua done()
// writes, not from its text report.
package wrk

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed report.lua
var report string

// Options is one wrk run.
type Options struct {
	URL      string
	Conns    int           // connections
	Duration time.Duration // rounded up to whole seconds, at least 1 s
	Threads  int           // 1 when zero
	Timeout  time.Duration // a request with no answer within it is an error: 10 s when zero
	Headers  []string      // such as "Connection: close"
	// Extra is Lua run with the report: it may define wrk's request or
	// response functions, and extra_done, called before the report with
	// done's arguments. What it writes comes back in Result.Lines.
	Extra string
}

// Errors are wrk's failures: socket errors, and answers with a status of
// 400 or more (Status).
type Errors struct {
	Connect int `json:"connect"`
	Read    int `json:"read"`
	Write   int `json:"write"`
	Status  int `json:"status"`
	Timeout int `json:"timeout"`
}

// Failed is every request that got no answer below 400.
func (e Errors) Failed() int { return e.Connect + e.Read + e.Write + e.Status + e.Timeout }

// Result is what one run measured.
type Result struct {
	Requests int     // completed responses
	RPS      float64 // Requests over Duration
	P50, P99 time.Duration
	Mean     time.Duration
	Max      time.Duration
	Bytes    int64
	Errors   Errors
	Duration time.Duration // as wrk measured the run
	CPU      time.Duration // wrk's user and system time
	Lines    []string      // what else wrk wrote, such as Extra's lines
}

// Seconds is d as wrk's -d takes it: whole seconds, at least 1.
func Seconds(d time.Duration) int { return max(int(math.Ceil(d.Seconds())), 1) }

// Args is wrk's command line for o with the script at script.
func (o Options) Args(script string) []string {
	threads := max(o.Threads, 1)
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	args := []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(o.Conns), "-d" + strconv.Itoa(Seconds(o.Duration)) + "s",
		"--timeout", strconv.Itoa(Seconds(timeout)) + "s", "--latency"}
	for _, h := range o.Headers {
		args = append(args, "-H", h)
	}
	return append(args, "-s", script, o.URL)
}

// Run runs wrk as o says and returns its figures.
func Run(ctx context.Context, o Options) (Result, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return Result{}, errors.New("wrk not found: apt-get install wrk")
	}
	dir, err := os.MkdirTemp("", "wrk")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "report.lua")
	if err := os.WriteFile(script, []byte(o.Extra+"\n"+report), 0o644); err != nil {
		return Result{}, err
	}
	c, cancel := context.WithTimeout(ctx, time.Duration(Seconds(o.Duration))*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, "wrk", o.Args(script)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Result{}, fmt.Errorf("wrk %s: %w: %s", o.URL, err, out)
	}
	r, err := parse(string(out))
	if err != nil {
		return Result{}, fmt.Errorf("wrk %s: %w", o.URL, err)
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

const marker = "wrk-json: "

// parse reads the report's JSON line from wrk's output; the other lines
// the scripts wrote are kept, wrk's own text is not.
func parse(out string) (Result, error) {
	var r Result
	found := false
	for _, l := range strings.Split(out, "\n") {
		j, ok := strings.CutPrefix(l, marker)
		if !ok {
			if l != "" && !wrkText(l) {
				r.Lines = append(r.Lines, l)
			}
			continue
		}
		var v struct {
			Requests   int     `json:"requests"`
			DurationUS int64   `json:"duration_us"`
			Bytes      int64   `json:"bytes"`
			Errors     Errors  `json:"errors"`
			P50US      int64   `json:"p50_us"`
			P99US      int64   `json:"p99_us"`
			MeanUS     float64 `json:"mean_us"`
			MaxUS      int64   `json:"max_us"`
		}
		if err := json.Unmarshal([]byte(j), &v); err != nil {
			return r, fmt.Errorf("its report %q: %w", j, err)
		}
		found = true
		us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
		r.Requests, r.Bytes, r.Errors = v.Requests, v.Bytes, v.Errors
		r.Duration, r.P50, r.P99, r.Max = us(v.DurationUS), us(v.P50US), us(v.P99US), us(v.MaxUS)
		r.Mean = time.Duration(v.MeanUS * float64(time.Microsecond))
		if r.Duration > 0 {
			r.RPS = float64(r.Requests) / r.Duration.Seconds()
		}
	}
	if !found {
		return r, fmt.Errorf("no report in its output (did it run its script?):\n%s", out)
	}
	return r, nil
}

// wrkText reports whether l is a line of wrk's own text report, which
// starts with these words or with two spaces.
func wrkText(l string) bool {
	for _, p := range []string{"Running ", "  ", "Requests/sec:", "Transfer/sec:"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}
