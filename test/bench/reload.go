package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// benchReload measures zero-downtime operations under load: wrk -c100 on
// the demo's / with 4 instances, a steady run, then one run each during
// corral reload app, during corral apply after a change to app's pool
// file, and (with nextDeb) during apt-get install of a higher version.
// Failed requests, p99 against the steady run, and the reload's own time.
func benchReload(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error), conns int, dur time.Duration, nextDeb string) error {
	for _, c := range [][]string{{"corral", "scale", "app", "4"}, {"systemctl", "start", "app.target"}} {
		if _, err := sh(c...); err != nil {
			return err
		}
	}
	url := "http://127.0.0.1:8080/"
	if err := waitHTTP(ctx, url); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if _, err := wrk(ctx, url, conns, 2*time.Second); err != nil {
		return err
	}
	steady, err := wrk(ctx, url, conns, dur)
	if err != nil {
		return err
	}
	l := loadRun{ctx: ctx, url: url, conns: conns, dur: dur}
	var rows []reloadRow
	rel, relText, relTook, err := l.during(func() (string, error) { return sh("corral", "reload", "app") })
	if err != nil {
		return err
	}
	rows = append(rows, reloadRow{"corral reload app", rel, relTook})
	app, err := applyDuring(l, box, sh)
	if err != nil {
		return err
	}
	rows = append(rows, app)
	if nextDeb != "" {
		up, err := upgradeDuring(l, box, sh, nextDeb)
		if err != nil {
			return err
		}
		rows = append(rows, up)
	}

	// Per instance: restart to ready, as corral reload reports it.
	var each []time.Duration
	for _, m := range regexp.MustCompile(`ready in ([0-9.]+m?s)`).FindAllStringSubmatch(relText, -1) {
		if v, err := time.ParseDuration(m[1]); err == nil {
			each = append(each, v)
		}
	}
	fmt.Printf("zero downtime, 4 demo instances, GET / under wrk -t1 -c%d -d%s (keep-alive), %s\n\n", conns, dur, time.Now().Format("2006-01-02"))
	fmt.Printf("| run | req/s | p50 | p99 | p99 / steady (bar ≤ 3x) | failed (socket errors + non-2xx) | operation took |\n|---|---|---|---|---|---|---|\n")
	fmt.Printf("| steady | %.0f | %v | %v | | %d | |\n", steady.rps, steady.p50, steady.p99, steady.errors)
	for _, r := range rows {
		fmt.Printf("| during %s | %.0f | %v | %v | %.2fx | %d | %v |\n", r.name, r.r.rps, r.r.p50, r.r.p99,
			float64(r.r.p99)/float64(max(steady.p99, time.Microsecond)), r.r.errors, r.took.Round(time.Millisecond))
	}
	fmt.Printf("\ncorral reload, each instance from restart to ready: %v\n\n", each)
	_, err = sh("corral", "stop", "app")
	return err
}

// loadRun is wrk's load on url, as benchReload runs it.
type loadRun struct {
	ctx   context.Context
	url   string
	conns int
	dur   time.Duration
}

// reloadRow is one run under load with an operation in it.
type reloadRow struct {
	name string
	r    result
	took time.Duration
}

// during runs wrk for dur, and op a quarter of the way in; it returns
// wrk's figures, what op printed and how long it took.
func (l loadRun) during(op func() (string, error)) (result, string, time.Duration, error) {
	type out struct {
		r   result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		r, err := wrk(l.ctx, l.url, l.conns, l.dur)
		ch <- out{r, err}
	}()
	time.Sleep(l.dur / 4)
	t0 := time.Now()
	text, err := op()
	took := time.Since(t0)
	o := <-ch
	if err != nil {
		return result{}, text, took, fmt.Errorf("%w\n%s", err, text)
	}
	return o.r, text, took, o.err
}

// applyDuring changes app's pool file (a new environment variable: the
// worker unit changes) and runs corral apply under load; apply must roll
// the pool.
func applyDuring(l loadRun, box *sdbox.Box, sh func(...string) (string, error)) (reloadRow, error) {
	pool, err := sh("cat", "/etc/corral/pools.d/app.toml")
	if err != nil {
		return reloadRow{}, err
	}
	if err := box.WriteFile("/etc/corral/pools.d/app.toml", []byte(strings.Replace(pool, "[sandbox]", "environment = { BENCH = \"apply\" }\n\n[sandbox]", 1)), 0o644); err != nil {
		return reloadRow{}, err
	}
	r, text, took, err := l.during(func() (string, error) { return sh("corral", "apply") })
	if err != nil {
		return reloadRow{}, err
	}
	if !strings.Contains(text, "app: reloaded") {
		return reloadRow{}, fmt.Errorf("corral apply did not reload app:\n%s", text)
	}
	return reloadRow{"corral apply (app's environment changed)", r, took}, nil
}

// upgradeDuring installs the next version's .deb under load.
func upgradeDuring(l loadRun, box *sdbox.Box, sh func(...string) (string, error), nextDeb string) (reloadRow, error) {
	data, err := os.ReadFile(nextDeb)
	if err != nil {
		return reloadRow{}, err
	}
	if err := box.WriteFile("/opt/corral-bench/next.deb", data, 0o644); err != nil {
		return reloadRow{}, err
	}
	r, _, took, err := l.during(func() (string, error) { return sh("apt-get", "install", "-y", "/opt/corral-bench/next.deb") })
	if err != nil {
		return reloadRow{}, err
	}
	return reloadRow{"apt-get install of the next version", r, took}, nil
}
