package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/corral-pool/corral/test/child"
	"github.com/corral-pool/corral/test/prom"
	"github.com/corral-pool/corral/test/sdbox"
	"github.com/corral-pool/corral/test/wrk"
)

const (
	// step is the range queries' resolution; Prometheus scrapes every
	// second.
	step = 2 * time.Second
	// baseLength is the scenario length that steps' times are given for.
	baseLength = 4 * time.Minute
	// warmup is the load before the scenario, so that the dashboard's
	// [1m] rates start steady.
	warmup = time.Minute
)

// steps is the scenario: what an operator and bad luck do to the pools,
// at times for a scenario of baseLength, scaled to -d.
var steps = []struct {
	at   time.Duration
	what string
	cmd  []string
}{
	{30 * time.Second, "kill -KILL shop@1", killMain("KILL", "shop@1")},
	{55 * time.Second, "kill -SEGV shop@2", killMain("SEGV", "shop@2")},
	{80 * time.Second, "corral reload shop", []string{"corral", "reload", "shop"}},
	{110 * time.Second, "corral scale shop 2", []string{"corral", "scale", "shop", "2"}},
	{130 * time.Second, "corral scale shop 4", []string{"corral", "scale", "shop", "4"}},
	{150 * time.Second, "corral drain shop --timeout 5s", []string{"corral", "drain", "shop", "--timeout", "5s"}},
	{165 * time.Second, "corral undrain shop", []string{"corral", "undrain", "shop"}},
	{180 * time.Second, "corral broadcast shop hello --wait", []string{"corral", "broadcast", "shop", "hello", "--wait"}},
	{195 * time.Second, "corral stop api@2", []string{"corral", "stop", "api@2"}},
	{215 * time.Second, "corral start api@2", []string{"corral", "start", "api@2"}},
}

// killMain is a command that sends sig to unit's main process.
func killMain(sig, instance string) []string {
	return []string{"sh", "-c", fmt.Sprintf(`pid=$(systemctl show -P MainPID %[1]s.service); `+
		`if [ "${pid:-0}" -le 0 ]; then echo "%[1]s has no main process" >&2; exit 1; fi; kill -%[2]s "$pid"`, instance, sig)}
}

// The load: wrk on each pool, a request per connection every delay ms at
// most, so that the machine's two cores keep time for corrald and
// Prometheus.
var loads = []struct {
	pool    string
	conns   int
	delayMS int
	headers []string
}{
	{"shop", 8, 40, []string{"Connection: close"}}, // a new connection each time: the accept queues have work
	{"api", 4, 100, nil},                           // keep-alive: 4 connections, so that both instances likely get some
}

// runScenario boots a box with deb, runs the pools, Prometheus, the load
// and the scenario, and returns what d's queries returned over it.
func runScenario(ctx context.Context, deb string, dur time.Duration, d *dashboard) (*record, error) {
	for _, bin := range []string{"wrk", prom.Bin, "gnuplot"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: run 'make deps'", bin)
		}
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		return nil, fmt.Errorf("%w: build it with 'make deb'", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	shopPort, apiPort, metricsPort := ports[0], ports[1], ports[2]

	fmt.Fprintln(os.Stderr, "booting a box and installing", deb)
	bootCtx, cancel := context.WithTimeout(ctx, time.Minute)
	box, err := sdbox.Boot(bootCtx, sdbox.Options{})
	cancel()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := box.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "dashboard-picture: closing the box:", err)
		}
	}()
	sh := func(args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, _, err := box.Exec(c, args...)
		return out, err
	}
	// The configuration after the install: a corral.toml there before
	// it would be a conffile that dpkg asks about.
	if err := box.WriteFile("/opt/corral-picture/corral.deb", data, 0o644); err != nil {
		return nil, err
	}
	if _, err := sh("apt-get", "install", "-y", "/opt/corral-picture/corral.deb"); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, text string }{
		{"/etc/corral/pools.d/shop.toml", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 4\nreadiness = \"notify\"\n", shopPort)},
		{"/etc/corral/pools.d/api.toml", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 2\nreadiness = \"notify\"\n", apiPort)},
		{"/etc/corral/corral.toml", fmt.Sprintf("[metrics]\nlisten = \"127.0.0.1:%d\"\n", metricsPort)},
	} {
		if err := box.WriteFile(f.name, []byte(f.text), 0o644); err != nil {
			return nil, err
		}
	}
	for _, c := range [][]string{
		// The package's demo pool (stopped, start_on_boot = false) would
		// be a third pool in every panel.
		{"rm", "/etc/corral/pools.d/app.toml"},
		{"systemctl", "daemon-reload"},
		{"systemctl", "restart", "corral.service"},
		{"corral", "start", "shop"},
		{"corral", "start", "api"},
	} {
		if _, err := sh(c...); err != nil {
			return nil, err
		}
	}
	version, err := sh("corral", "version")
	if err != nil {
		return nil, err
	}

	p, err := prom.Start(ctx, prom.Config{Targets: []string{fmt.Sprintf("127.0.0.1:%d", metricsPort)}, Interval: time.Second, Job: "corral"})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := p.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "dashboard-picture:", err)
		}
	}()
	if _, err := p.WaitFor(ctx, `sum(corral_pool_running_instances)`, func(s []prom.Sample) bool { return len(s) == 1 && s[0].Value == 6 }); err != nil {
		return nil, fmt.Errorf("shop's 4 and api's 2 instances did not all run: %w", err)
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	results := make([]string, len(loads))
	defer func() { stopLoad(); wg.Wait() }()
	for i, l := range loads {
		port := shopPort
		if l.pool == "api" {
			port = apiPort
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := wrk.Run(loadCtx, wrk.Options{URL: fmt.Sprintf("http://127.0.0.1:%d/", port), Conns: l.conns, Duration: warmup + dur,
				Headers: l.headers, Extra: fmt.Sprintf("function delay() return %d end", l.delayMS)})
			if err != nil {
				results[i] = fmt.Sprintf("%s: wrk failed", l.pool)
				if loadCtx.Err() == nil {
					fmt.Fprintln(os.Stderr, "dashboard-picture: load:", err)
				}
				return
			}
			results[i] = fmt.Sprintf("%s %.0f req/s, %d failed", l.pool, r.RPS, r.Errors.Failed())
		}()
	}
	fmt.Fprintf(os.Stderr, "load on, %v before the scenario\n", warmup)
	if err := sleepUntil(ctx, time.Now().Add(warmup)); err != nil {
		return nil, err
	}

	rec := &record{Start: time.Now().Truncate(time.Second), Step: step, Results: map[string][]series{}, Errors: map[string]string{}}
	rec.End = rec.Start.Add(dur)
	fmt.Fprintf(os.Stderr, "scenario: %v from %s UTC\n", dur, rec.Start.UTC().Format(time.TimeOnly))

	for _, s := range steps {
		at := time.Duration(float64(s.at) * float64(dur) / float64(baseLength)).Round(time.Second)
		if err := sleepUntil(ctx, rec.Start.Add(at)); err != nil {
			return nil, err
		}
		ev := event{At: time.Since(rec.Start).Round(100 * time.Millisecond), What: s.what}
		out, err := sh(s.cmd...)
		if err != nil {
			return nil, fmt.Errorf("the scenario's step %q: %w", s.what, err)
		}
		fmt.Fprintf(os.Stderr, "%6s  %s  %s\n", ev.At, s.what, strings.TrimSpace(out))
		rec.Events = append(rec.Events, ev)
	}
	// The last scrape of the range, then the queries.
	if err := sleepUntil(ctx, rec.End.Add(2*time.Second)); err != nil {
		return nil, err
	}
	for _, pn := range d.Panels {
		for _, t := range pn.Targets {
			expr, _ := expand(t.Expr, step, dur) // readDashboard checked it
			if _, done := rec.Results[expr]; done || t.Hide {
				continue
			}
			s, err := p.QueryRange(ctx, expr, rec.Start, rec.End, step)
			if err != nil {
				rec.Errors[expr] = err.Error()
				fmt.Fprintf(os.Stderr, "dashboard-picture: panel %q, target %s: %v\n", pn.Title, t.RefID, err)
				continue
			}
			rec.Results[expr] = s
		}
	}
	stopLoad()
	wg.Wait()
	promVersion := "Prometheus"
	if out, err := exec.CommandContext(ctx, prom.Bin, "--version").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) >= 3 {
			promVersion = "Prometheus " + f[2]
		}
	}
	rec.About = fmt.Sprintf("%s in a throwaway systemd (systemd-nspawn) · %s scraping corrald every 1 s · wrk from %.0f min before 0:00: %s",
		strings.TrimSpace(version), promVersion, warmup.Minutes(), strings.Join(results, "; "))
	return rec, nil
}

// freePorts is n distinct free ports of 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		p, err := child.FreePort()
		if err != nil {
			return nil, err
		}
		dup := false
		for _, q := range ports {
			dup = dup || q == p
		}
		if !dup {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// sleepUntil waits until t or the end of ctx.
func sleepUntil(ctx context.Context, t time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(t)):
		return nil
	}
}
