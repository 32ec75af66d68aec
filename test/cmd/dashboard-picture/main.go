// Command dashboard-picture draws the Grafana dashboard docs/grafana/corral.json
// from a real run, for the docs: Grafana is not packaged for Debian, so it
// runs the dashboard's own PromQL against a real Prometheus and draws every
// panel with gnuplot, laid out as the dashboard's gridPos lays it out.
//
// The run: a throwaway real systemd (test/sdbox) with the .deb installed,
// two pools of the demo worker (shop, 4 instances, and api, 2), corrald's
// metrics on, Debian's Prometheus scraping them every second (test/prom),
// wrk loading both pools from a minute before a scripted scenario of 4
// minutes (-d) to its end (about 6½ minutes in all, with the boot):
// a SIGKILL and a SIGSEGV of shop's instances, corral reload, scale down
// and up, drain and undrain, broadcast, and corral stop and start of one
// of api's instances. Then every target of every panel, with $pool and
// $host set to .*, is a range query over the scenario (step 2 s), and the
// panels are drawn into one PNG. A panel whose queries return nothing says
// so. `make dashboard-picture` runs it; docs/grafana/README.md tells how
// the picture in the docs was made.
//
//	go run ./test/cmd/dashboard-picture -deb dist/corral_0.1.0_amd64.deb [-out docs/grafana/corral.png] [-d 4m]
//
// -save FILE keeps the queried series; -replay FILE draws them again, with
// the dashboard's current layout, titles, legends and units, without a run
// (a changed query needs a new run). Needs root (the box), wrk, prometheus
// and gnuplot: `make deps`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.deb, "deb", "", "the corral .deb to install in the box (required, unless -replay)")
	flag.StringVar(&cfg.out, "out", "docs/grafana/corral.png", "the PNG to write")
	flag.StringVar(&cfg.dashboard, "dashboard", "docs/grafana/corral.json", "the Grafana dashboard to draw")
	flag.DurationVar(&cfg.dur, "d", 4*time.Minute, "the scenario's length; its steps keep their places in it")
	flag.StringVar(&cfg.save, "save", "", "also write the queried series to this JSON file")
	flag.StringVar(&cfg.replay, "replay", "", "draw from a file that -save wrote instead of running")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (the box, Prometheus and wrk are stopped): %w", err)
		}
		fmt.Fprintln(os.Stderr, "dashboard-picture:", err)
		os.Exit(1)
	}
}

// config is what the command line sets.
type config struct {
	deb, out, dashboard string
	dur                 time.Duration
	save, replay        string
}

func run(ctx context.Context, cfg config) error {
	d, err := readDashboard(cfg.dashboard)
	if err != nil {
		return err
	}
	var rec *record
	switch {
	case cfg.replay != "":
		if rec, err = loadRecord(cfg.replay); err != nil {
			return err
		}
	case cfg.deb == "":
		return errors.New("-deb is required: run 'make dashboard-picture', or give -replay FILE")
	case cfg.dur < time.Minute:
		return fmt.Errorf("-d %v: give at least 1m, for the scenario's steps and the dashboard's [1m] rates", cfg.dur)
	default:
		if rec, err = runScenario(ctx, cfg.deb, cfg.dur, d); err != nil {
			return err
		}
	}
	if cfg.save != "" {
		if err := rec.save(cfg.save); err != nil {
			return err
		}
	}
	if err := draw(ctx, d, rec, cfg.dashboard, cfg.out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", cfg.out)
	return nil
}
