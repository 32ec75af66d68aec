package main

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

// benchReload measures a rolling reload under load: wrk -c100 on the demo's
// / with 4 instances, a steady run, then a run during which corral reload
// app restarts every instance; failed requests, p99 of both runs, and the
// reload's own time.
func benchReload(ctx context.Context, sh func(...string) (string, error), conns int, dur time.Duration) error {
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
	type out struct {
		r   result
		err error
	}
	during := make(chan out, 1)
	go func() {
		r, err := wrk(ctx, url, conns, dur)
		during <- out{r, err}
	}()
	time.Sleep(dur / 4)
	t0 := time.Now()
	rel, err := sh("corral", "reload", "app")
	took := time.Since(t0)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, rel)
	}
	d := <-during
	if d.err != nil {
		return d.err
	}
	// Per instance: restart to ready, as corral reload reports it.
	var each []time.Duration
	for _, m := range regexp.MustCompile(`ready in ([0-9.]+m?s)`).FindAllStringSubmatch(rel, -1) {
		if v, err := time.ParseDuration(m[1]); err == nil {
			each = append(each, v)
		}
	}
	fmt.Printf("rolling reload, 4 demo instances, GET / under wrk -t1 -c%d -d%s, %s\n\n", conns, dur, time.Now().Format("2006-01-02"))
	fmt.Printf("| run | req/s | p50 | p99 | failed (socket errors + non-2xx) |\n|---|---|---|---|---|\n")
	fmt.Printf("| steady | %.0f | %v | %v | %d |\n", steady.rps, steady.p50, steady.p99, steady.errors)
	fmt.Printf("| during corral reload app | %.0f | %v | %v | %d |\n", d.r.rps, d.r.p50, d.r.p99, d.r.errors)
	fmt.Printf("\np99 during / steady: %.2fx (bar: ≤ 3x); reload of 4 instances: %v wall, each restart to ready: %v\n\n",
		float64(d.r.p99)/float64(max(steady.p99, time.Microsecond)), took.Round(time.Millisecond), each)
	_, err = sh("corral", "stop", "app")
	return err
}
