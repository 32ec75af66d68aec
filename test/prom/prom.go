// Package prom runs Debian's Prometheus (2.42 on Debian 12) and its
// promtool for a test: promtool lints a metrics exposition as Prometheus's
// own tools read it, and a real Prometheus server, a plain child process of
// the test, scrapes targets and answers PromQL, so that a test sees
// corrald's metrics as a monitoring system will.
package prom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/child"
)

// Debian's binaries.
const (
	Bin      = "/usr/bin/prometheus"
	Promtool = "/usr/bin/promtool"
)

const (
	// StartTimeout bounds Start when its context has no sooner deadline.
	StartTimeout = 30 * time.Second
	// StopTimeout is how long Close lets Prometheus shut down after
	// SIGTERM before SIGKILL.
	StopTimeout = 10 * time.Second
	// RequestTimeout bounds one HTTP API request or promtool run when its
	// context has no sooner deadline.
	RequestTimeout = 10 * time.Second
	// WaitTimeout bounds WaitFor when its context has no sooner deadline.
	WaitTimeout = 60 * time.Second
)

var errNoPromtool = errors.New("promtool not found: run make deps (apt-get install prometheus)")

// CheckMetrics runs `promtool check metrics` on text, a metrics exposition
// in Prometheus's text format, and returns what it reported. promtool
// exits 3 on lint problems (such as `x_seconds_count counter metrics
// should have "_total" suffix`) and 1 when it cannot parse the text; then
// the error carries its report too.
func CheckMetrics(ctx context.Context, text []byte) (problems string, err error) {
	if _, err := os.Stat(Promtool); err != nil {
		return "", errNoPromtool
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	problems = strings.TrimSpace(string(out))
	if err != nil {
		return problems, fmt.Errorf("promtool check metrics: %w: %s", err, problems)
	}
	return problems, nil
}

// Config is what Prometheus scrapes.
type Config struct {
	Targets     []string      // host:port, scraped over HTTP
	Interval    time.Duration // scrape interval, also the scrape timeout; 1 s when zero
	MetricsPath string        // /metrics when empty
	Job         string        // the job label; "test" when empty
}

// Server is a running Prometheus.
type Server struct {
	Dir  string // its temporary directory: prometheus.yml and data/
	URL  string // http://127.0.0.1:PORT, its web and API address
	PID  int
	Conf string // its prometheus.yml

	proc   *child.Process
	once   sync.Once
	err    error // Close's result
	client http.Client
}

// Start writes a prometheus.yml for cfg, runs Prometheus on it with its
// data in a temporary directory and its web address on a free port of
// 127.0.0.1, and waits until /-/ready answers. ctx bounds the start only:
// Prometheus runs until Close.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if _, err := os.Stat(Bin); err != nil {
		return nil, errors.New("prometheus not found: run make deps (apt-get install prometheus)")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MetricsPath == "" {
		cfg.MetricsPath = "/metrics"
	}
	if cfg.Job == "" {
		cfg.Job = "test"
	}
	port, err := child.FreePort()
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	dir, err := os.MkdirTemp("", "prometheus")
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	s := &Server{Dir: dir, URL: fmt.Sprintf("http://127.0.0.1:%d", port), Conf: yaml(cfg)}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(s.Conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	proc, err := child.Start("prometheus", dir, Bin,
		"--config.file="+file,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=1h",
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
	)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.proc, s.PID = proc, proc.PID
	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// yaml is cfg's prometheus.yml. Durations are written in milliseconds,
// which Prometheus reads whatever the value.
func yaml(cfg Config) string {
	q := func(s string) string { return strconv.Quote(s) } // a JSON string is a YAML one
	ms := fmt.Sprintf("%dms", max(cfg.Interval.Milliseconds(), 1))
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n", ms, ms)
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %s\n    metrics_path: %s\n    static_configs:\n      - targets: [", q(cfg.Job), q(cfg.MetricsPath))
	for i, t := range cfg.Targets {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q(t))
	}
	b.WriteString("]\n")
	return b.String()
}

// StartT is Start for a test: it fails t with Prometheus's output if it
// does not start, and closes it in t.Cleanup, after writing its targets'
// health and its output to t.Log if the test failed.
func StartT(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- prometheus %d's targets: %s", s.PID, s.targetsLine(context.Background()))
			t.Logf("--- prometheus %d's output\n%s", s.PID, s.Output())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// waitReady polls /-/ready until it answers 200, Prometheus exits, or
// time runs out.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	var last error
	for {
		last = s.ready(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-s.proc.Exited:
			return fmt.Errorf("prometheus exited at start (%s), check its flags and prometheus.yml:\n%s\n%s", s.proc.State(), s.Conf, s.Output())
		case <-ctx.Done():
			return fmt.Errorf("prometheus: %s/-/ready did not answer within %v (last: %v): %s", s.URL, StartTimeout, last, s.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := s.get(ctx, "/-/ready")
	return err
}

// Output is what Prometheus has logged (its last 64 KiB).
func (s *Server) Output() string { return s.proc.Out.String() }

// Close stops Prometheus by its PID: SIGTERM, then SIGKILL if it has not
// exited within StopTimeout; and removes its directory. It returns an error
// if Prometheus had exited before Close. It can be called again.
func (s *Server) Close() error {
	s.once.Do(func() {
		defer os.RemoveAll(s.Dir)
		s.err = s.proc.Stop(syscall.SIGTERM, StopTimeout)
	})
	return s.err
}

// get GETs path and returns the body if the answer's status is 200 or
// one of also (the API answers a bad query with 400 and a JSON body that
// says why).
func (s *Server) get(ctx context.Context, path string, also ...int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("prometheus: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK && !slices.Contains(also, resp.StatusCode) {
		return body, fmt.Errorf("prometheus: GET %s: %s: %.300s", path, resp.Status, body)
	}
	return body, nil
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string // the metric name is __name__
	Value  float64
}

// Query evaluates promql now, with /api/v1/query, and returns its
// instant vector; a scalar comes back as one sample without labels.
func (s *Server) Query(ctx context.Context, promql string) ([]Sample, error) {
	body, err := s.get(ctx, "/api/v1/query?query="+url.QueryEscape(promql), http.StatusBadRequest, http.StatusUnprocessableEntity)
	if err != nil {
		return nil, err
	}
	return parseQuery(promql, body)
}

// result reads the envelope of an answer of the HTTP API, which is JSON
// for errors (400, 422) too, and returns its result's type and JSON.
func result(what, promql string, body []byte) (string, json.RawMessage, error) {
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", nil, fmt.Errorf("prometheus: %s %q: %w: %.300s", what, promql, err, body)
	}
	if r.Status != "success" {
		return "", nil, fmt.Errorf("prometheus: %s %q: %s: %s", what, promql, r.ErrorType, r.Error)
	}
	return r.Data.ResultType, r.Data.Result, nil
}

// parseQuery reads /api/v1/query's answer.
func parseQuery(promql string, body []byte) ([]Sample, error) {
	typ, res, err := result("query", promql, body)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "vector":
		var v []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(res, &v); err != nil {
			return nil, fmt.Errorf("prometheus: query %q: %w", promql, err)
		}
		out := make([]Sample, 0, len(v))
		for _, e := range v {
			f, err := value(e.Value)
			if err != nil {
				return nil, fmt.Errorf("prometheus: query %q: %w", promql, err)
			}
			out = append(out, Sample{Labels: e.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(res, &v); err != nil {
			return nil, fmt.Errorf("prometheus: query %q: %w", promql, err)
		}
		f, err := value(v)
		if err != nil {
			return nil, fmt.Errorf("prometheus: query %q: %w", promql, err)
		}
		return []Sample{{Labels: map[string]string{}, Value: f}}, nil
	default:
		return nil, fmt.Errorf("prometheus: query %q: a %s, not an instant vector: use an instant query without a range", promql, typ)
	}
}

// Series is one series of a range query: its labels and its points, [unix
// seconds, value], without NaN or infinite values.
type Series struct {
	Labels map[string]string `json:"labels"`
	Points [][2]float64      `json:"points"`
}

// QueryRange evaluates promql over [start, end] every step, with
// /api/v1/query_range, and returns its matrix.
func (s *Server) QueryRange(ctx context.Context, promql string, start, end time.Time, step time.Duration) ([]Series, error) {
	q := url.Values{
		"query": {promql},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	body, err := s.get(ctx, "/api/v1/query_range?"+q.Encode(), http.StatusBadRequest, http.StatusUnprocessableEntity)
	if err != nil {
		return nil, err
	}
	return parseMatrix(promql, body)
}

// parseMatrix reads /api/v1/query_range's answer.
func parseMatrix(promql string, body []byte) ([]Series, error) {
	typ, res, err := result("query_range", promql, body)
	if err != nil {
		return nil, err
	}
	if typ != "matrix" {
		return nil, fmt.Errorf("prometheus: query_range %q: a %s, not a matrix", promql, typ)
	}
	var m []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	if err := json.Unmarshal(res, &m); err != nil {
		return nil, fmt.Errorf("prometheus: query_range %q: %w", promql, err)
	}
	out := []Series{}
	for _, e := range m {
		sr := Series{Labels: e.Metric, Points: [][2]float64{}}
		if sr.Labels == nil {
			sr.Labels = map[string]string{}
		}
		for _, v := range e.Values {
			t, ok := v[0].(float64)
			f, err := value(v)
			if !ok || err != nil {
				return nil, fmt.Errorf("prometheus: query_range %q: bad value %v", promql, v)
			}
			if !math.IsNaN(f) && !math.IsInf(f, 0) {
				sr.Points = append(sr.Points, [2]float64{t, f})
			}
		}
		out = append(out, sr)
	}
	return out, nil
}

// value is the number in a [time, "value"] pair; the value may be "NaN"
// or "+Inf".
func value(v [2]any) (float64, error) {
	s, ok := v[1].(string)
	if !ok {
		return 0, fmt.Errorf("value %v is not a string", v[1])
	}
	return strconv.ParseFloat(s, 64)
}

// WaitFor evaluates promql every 200 ms until ok holds for its samples,
// and returns them; or fails when ctx ends or WaitTimeout passes, with the
// last samples and the targets' health in the error.
func (s *Server) WaitFor(ctx context.Context, promql string, ok func([]Sample) bool) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, WaitTimeout)
	defer cancel()
	var last []Sample
	var err error
	for {
		last, err = s.Query(ctx, promql)
		if err == nil && ok(last) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			c, cancel := context.WithTimeout(context.Background(), RequestTimeout)
			defer cancel()
			return last, fmt.Errorf("prometheus: %q: not as wanted in time (%v): last %v (query error: %v); targets: %s",
				promql, context.Cause(ctx), last, err, s.targetsLine(c))
		case <-s.proc.Exited:
			return last, fmt.Errorf("prometheus: %q: prometheus exited (%s): %s", promql, s.proc.State(), s.Output())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Target is one scrape target's state.
type Target struct {
	ScrapeURL  string
	Health     string // "up", "down" or "unknown" (not scraped yet)
	LastError  string // why the last scrape failed, such as "connection refused"
	LastScrape time.Time
	Labels     map[string]string // job, instance
}

// Targets is the active targets' state, from /api/v1/targets: why a
// target is not scraped, for a failing test's message.
func (s *Server) Targets(ctx context.Context) ([]Target, error) {
	body, err := s.get(ctx, "/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ActiveTargets []struct {
				ScrapeURL  string            `json:"scrapeUrl"`
				Health     string            `json:"health"`
				LastError  string            `json:"lastError"`
				LastScrape time.Time         `json:"lastScrape"`
				Labels     map[string]string `json:"labels"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("prometheus: targets: %w: %.300s", err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus: targets: %s", r.Error)
	}
	var ts []Target
	for _, t := range r.Data.ActiveTargets {
		ts = append(ts, Target{ScrapeURL: t.ScrapeURL, Health: t.Health, LastError: t.LastError, LastScrape: t.LastScrape, Labels: t.Labels})
	}
	return ts, nil
}

// targetsLine is the targets' health in one line, for a message.
func (s *Server) targetsLine(ctx context.Context) string {
	ts, err := s.Targets(ctx)
	if err != nil {
		return err.Error()
	}
	if len(ts) == 0 {
		return "none"
	}
	var parts []string
	for _, t := range ts {
		p := t.ScrapeURL + " " + t.Health
		if t.LastError != "" {
			p += " (" + t.LastError + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}
