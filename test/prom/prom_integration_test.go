//go:build integration

package prom

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const good = `# HELP demo_up Whether the demo is up.
# TYPE demo_up gauge
demo_up 1
# HELP demo_requests_total Requests served.
# TYPE demo_requests_total counter
demo_requests_total{code="200"} 7
`

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/demo/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, good)
	}))
	t.Cleanup(srv.Close)
	p := StartT(t, Config{Targets: []string{srv.Listener.Addr().String()}, Interval: time.Second, MetricsPath: "/demo/metrics", Job: "demo"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ss, err := p.WaitFor(ctx, "demo_up", func(ss []Sample) bool { return len(ss) == 1 && ss[0].Value == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if l := ss[0].Labels; l["__name__"] != "demo_up" || l["job"] != "demo" || l["instance"] != srv.Listener.Addr().String() {
		t.Errorf("demo_up's labels: %v", l)
	}
	ss, err = p.Query(ctx, `sum by (code) (demo_requests_total)`)
	if err != nil || len(ss) != 1 || ss[0].Value != 7 || ss[0].Labels["code"] != "200" {
		t.Errorf("sum by (code) (demo_requests_total): %v, %v; want one sample code=200 of 7", ss, err)
	}
	ss, err = p.Query(ctx, `scalar(demo_up) * 2`)
	if err != nil || len(ss) != 1 || ss[0].Value != 2 {
		t.Errorf("scalar(demo_up) * 2: %v, %v; want 2", ss, err)
	}
	if _, err := p.Query(ctx, `demo_up{`); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Errorf("a bad query: %v, want the API's bad_data error", err)
	}
	ts, err := p.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Health != "up" || ts[0].ScrapeURL != srv.URL+"/demo/metrics" || ts[0].LastScrape.IsZero() {
		t.Errorf("targets: %+v, want one, up, at %s/demo/metrics", ts, srv.URL)
	}
	t.Logf("targets: %+v", ts)
}

func TestTargetDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there now
	p := StartT(t, Config{Targets: []string{addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ss, err := p.WaitFor(ctx, "up", func(ss []Sample) bool { return len(ss) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if ss[0].Value != 0 {
		t.Errorf("up for a closed port: %v, want 0", ss)
	}
	ts, err := p.Targets(ctx)
	if err != nil || len(ts) != 1 || ts[0].Health != "down" || !strings.Contains(ts[0].LastError, "connection refused") {
		t.Errorf("targets: %+v, %v; want one down with connection refused", ts, err)
	}
	t.Logf("targets: %+v", ts)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = p.WaitFor(short, "up == 1", func(ss []Sample) bool { return len(ss) > 0 })
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("WaitFor that times out: %v, want the targets' connection refused in the error", err)
	}
	t.Logf("WaitFor's error: %v", err)
}

func TestCheckMetrics(t *testing.T) {
	ctx := context.Background()
	if out, err := CheckMetrics(ctx, []byte(good)); err != nil {
		t.Errorf("good text: %v", err)
	} else if out != "" {
		t.Errorf("good text: promtool said %q", out)
	}
	bad := "# HELP demo_requests Requests served.\n# TYPE demo_requests counter\ndemo_requests 7\n"
	out, err := CheckMetrics(ctx, []byte(bad))
	if err == nil || !strings.Contains(out, `demo_requests counter metrics should have "_total" suffix`) || !strings.Contains(err.Error(), "_total") {
		t.Errorf("counter without _total: %q, %v; want promtool's _total complaint", out, err)
	}
	t.Logf("counter without _total: %v", err)
	out, err = CheckMetrics(ctx, []byte("demo_up{ 1\n"))
	if err == nil || !strings.Contains(out, "parsing error") {
		t.Errorf("unparsable text: %q, %v; want a parsing error", out, err)
	}
	t.Logf("unparsable text: %v", err)
}
