// Command peers benchmarks corral against what Node users run today: the
// same Node app (docs/examples/node/server.js) as one process, under Node's
// cluster module, under pm2 in cluster mode, and as a corral pool in both
// balance modes; and corral's Go demo worker as a pool against one Go
// process. Everything runs on 127.0.0.1, one system at a time, in rounds
// (each round runs every system once, in an order that rotates), and the
// report gives medians over the rounds. corral runs in a throwaway real
// systemd (test/sdbox) with the .deb installed, as in production.
//
// `make bench-peers` runs it; docs/benchmarks.md has the results.
//
//	go run ./test/bench/peers -deb dist/corral_0.1.0_amd64.deb [-rounds 3] [-d 10s] [-systems node,cluster,...]
//
// Load: wrk -t1 -c100, with keep-alive and with `Connection: close` (a new
// connection per request), on GET / and GET /cpu?ms=5. Per system and
// load: req/s, p50, p99, failed requests (socket errors + non-2xx), the CPU
// wrk took, the CPU other work on the machine took meanwhile, and each
// instance's share of the requests with Jain's fairness index: wrk's
// count.lua counts the answers by the pid each app names in its body (on
// GET /, in a run of its own: see countInline). Then, for the systems that replace a dead worker (Node's
// cluster module, pm2, corral), one worker is SIGKILLed under load: refused
// connections, failed requests, the killed worker's open connections and
// the time until a replacement answers.
//
// It writes the results (markdown) and a chart (gnuplot PNG) to -out, prints
// the results, and with -doc replaces the part of that file between the
// bench-peers markers with them. Needs root (the box), wrk, node, npm (pm2
// is installed with `npm ci` from this directory's package-lock.json into
// a cache directory), gnuplot, ss and dpkg-deb: `make deps`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.deb, "deb", "", "the corral .deb to install in the box (required)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds: each runs every system once")
	flag.DurationVar(&cfg.dur, "d", 10*time.Second, "length of each wrk run")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "wrk warm-up on each route after a system starts")
	flag.DurationVar(&cfg.killDur, "kill-d", 6*time.Second, "length of each SIGKILL run (the kill comes a third of the way in); 0: no SIGKILL runs")
	flag.IntVar(&cfg.conns, "c", 100, "wrk connections")
	flag.IntVar(&cfg.ms, "ms", 5, "ms of CPU per request on the CPU route (/cpu?ms=N)")
	flag.IntVar(&cfg.instances, "n", runtime.NumCPU(), "instances of each pool, workers of the cluster module and pm2, GOMAXPROCS of the one Go process")
	flag.IntVar(&cfg.port, "port", 18080, "the first port: the systems listen on 127.0.0.1, on this port and the next 8, one system at a time")
	flag.StringVar(&cfg.systems, "systems", "all", "comma-separated systems to run: "+strings.Join(specIDs(), ","))
	flag.StringVar(&cfg.app, "app", "docs/examples/node/server.js", "the Node app")
	flag.StringVar(&cfg.out, "out", "docs", "directory for bench-peers.md (results) and bench-peers.png (chart)")
	flag.StringVar(&cfg.doc, "doc", "", "a markdown file whose bench-peers section (between its markers) gets the results, such as docs/benchmarks.md")
	flag.StringVar(&cfg.cache, "cache", "", "where npm ci installs pm2 (default: the user cache directory, corral-bench-peers/)")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Hour, "the whole run's time limit")
	flag.BoolVar(&cfg.provisional, "provisional", false, "mark the results provisional (they are anyway when the machine was busy before or after the run)")
	flag.Parse()
	cfg.command = commandLine(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
}

// config is what the command line sets.
type config struct {
	deb                    string
	rounds                 int
	dur, warmup, killDur   time.Duration
	conns, ms, instances   int
	port                   int
	systems, app, out, doc string
	cache                  string
	provisional            bool
	command                string // for the report
	timeout                time.Duration
}

// commandLine is how the report shows the command that ran: absolute paths
// under the working directory become relative ones, others their base name
// (the report names no path of the machine it ran on).
func commandLine(args []string) string {
	wd, _ := os.Getwd()
	out := make([]string, len(args))
	for i, a := range args {
		name, val, hasVal := strings.Cut(a, "=")
		if !hasVal {
			name, val = "", a
		}
		if filepath.IsAbs(val) {
			if rel, err := filepath.Rel(wd, val); err == nil && wd != "" && !strings.HasPrefix(rel, "..") {
				val = rel
			} else {
				val = filepath.Base(val)
			}
		}
		if hasVal {
			val = name + "=" + val
		}
		out[i] = val
	}
	return strings.TrimSpace("go run ./test/bench/peers " + strings.Join(out, " "))
}

func specIDs() []string {
	var ids []string
	for _, s := range specs(2) {
		ids = append(ids, s.id)
	}
	return ids
}

// selected returns the specs -systems names, in report order.
func selected(list string, n int) ([]spec, error) {
	all := specs(n)
	if list == "all" {
		var out []spec
		for _, s := range all {
			if !s.extra {
				out = append(out, s)
			}
		}
		return out, nil
	}
	want := map[string]bool{}
	for _, id := range strings.Split(list, ",") {
		want[strings.TrimSpace(id)] = true
	}
	var out []spec
	for _, s := range all {
		if want[s.id] {
			out = append(out, s)
			delete(want, s.id)
		}
	}
	for id := range want {
		return nil, fmt.Errorf("-systems: unknown system %q; want some of %s", id, strings.Join(specIDs(), ","))
	}
	if len(out) == 0 {
		return nil, errors.New("-systems: none selected")
	}
	return out, nil
}

func run(ctx context.Context, cfg config) error {
	switch {
	case cfg.deb == "":
		return errors.New("-deb is required: run 'make bench-peers'")
	case cfg.rounds < 1 || cfg.dur < time.Second || cfg.conns < 1 || cfg.ms < 0 || cfg.instances < 2:
		return errors.New("want -rounds ≥ 1, -d ≥ 1s, -c ≥ 1, -ms ≥ 0 and -n ≥ 2")
	case cfg.port < 1024 || cfg.port > 65535-len(specs(2)):
		return fmt.Errorf("-port %d: want an unprivileged port", cfg.port)
	}
	sel, err := selected(cfg.systems, cfg.instances)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	b, err := setup(ctx, cfg, sel)
	if err != nil {
		return errors.Join(err, b.close())
	}
	res, runErr := b.runRounds(ctx, sel)
	res.notes = b.notes
	closeErr := b.close()
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), closeErr)
	}
	b.machine.busyAfter = busy(ctx, 2*time.Second)
	rep := newReport(cfg, b.machine, sel, res)
	if err := rep.write(ctx); err != nil {
		return errors.Join(runErr, closeErr, err)
	}
	return errors.Join(runErr, closeErr)
}
