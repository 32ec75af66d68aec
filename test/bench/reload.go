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
	// during runs wrk for dur and op a quarter of the way in.
	during := func(op func() (string, error)) (result, string, time.Duration, error) {
		type out struct {
			r   result
			err error
		}
		ch := make(chan out, 1)
		go func() {
			r, err := wrk(ctx, url, conns, dur)
			ch <- out{r, err}
		}()
		time.Sleep(dur / 4)
		t0 := time.Now()
		text, err := op()
		took := time.Since(t0)
		o := <-ch
		if err != nil {
			return result{}, text, took, fmt.Errorf("%w\n%s", err, text)
		}
		return o.r, text, took, o.err
	}
	type row struct {
		name string
		r    result
		took time.Duration
	}
	var rows []row

	rel, relText, relTook, err := during(func() (string, error) { return sh("corral", "reload", "app") })
	if err != nil {
		return err
	}
	rows = append(rows, row{"corral reload app", rel, relTook})

	pool, err := sh("cat", "/etc/corral/pools.d/app.toml")
	if err != nil {
		return err
	}
	if err := box.WriteFile("/etc/corral/pools.d/app.toml", []byte(strings.Replace(pool, "[sandbox]", "environment = { BENCH = \"apply\" }\n\n[sandbox]", 1)), 0o644); err != nil {
		return err
	}
	app, appText, appTook, err := during(func() (string, error) { return sh("corral", "apply") })
	if err != nil {
		return err
	}
	if !strings.Contains(appText, "app: reloaded") {
		return fmt.Errorf("corral apply did not reload app:\n%s", appText)
	}
	rows = append(rows, row{"corral apply (app's environment changed)", app, appTook})

	if nextDeb != "" {
		data, err := os.ReadFile(nextDeb)
		if err != nil {
			return err
		}
		if err := box.WriteFile("/opt/corral-bench/next.deb", data, 0o644); err != nil {
			return err
		}
		up, _, upTook, err := during(func() (string, error) { return sh("apt-get", "install", "-y", "/opt/corral-bench/next.deb") })
		if err != nil {
			return err
		}
		rows = append(rows, row{"apt-get install of the next version", up, upTook})
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
