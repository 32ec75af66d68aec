// Command bench measures the demo pool's /cpu route under wrk: one instance
// against one instance per core, in a throwaway real systemd with the .deb
// installed. `make bench` runs it; docs/benchmarks.md has its results.
// -suite picks one part; -suite steer (steer.go) measures steering in the
// kernel against the kernel's plain hash with its own load generator
// (loadgen.go), in a box booted with sdbox.KernelSteering.
//
//	go run ./test/bench -deb dist/corral_0.1.0_amd64.deb [-d 10s] [-c 100] [-ms 5] [-suite steer]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
	wrkpkg "github.com/corral-pool/corral/test/wrk"
)

func main() {
	deb := flag.String("deb", "", "the corral .deb to install (required)")
	next := flag.String("deb-next", "", "a .deb of a higher version, for the upgrade run of the reload suite (optional)")
	dur := flag.Duration("d", 10*time.Second, "duration of each wrk run")
	conns := flag.Int("c", 100, "wrk connections")
	ms := flag.Int("ms", 5, "milliseconds of CPU per request (/cpu?ms=N)")
	suite := flag.String("suite", "all", `what to measure: "cluster" (one instance vs one per core), "corrald", "scale" (corrald's costs by pool size), "reload", "messages", "steer" (steering in the kernel, in a box where corrald may load BPF), or "all"`)
	flag.StringVar(&steerParts, "steer-parts", steerParts, "the parts of the steer suite to run, comma-separated")
	flag.IntVar(&steerRounds, "steer-rounds", steerRounds, "kills of each kind, and reloads of each kind, in the steer suite (at least 1)")
	flag.IntVar(&steerProcs, "steer-gomaxprocs", 0, "GOMAXPROCS of the steer suite's demo instances; 0: the demo's default, 1")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *suite, *deb, *next, *dur, *conns, *ms); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	rps           float64
	p50, p99      time.Duration
	errors, total int
}

func run(ctx context.Context, suite, deb, next string, dur time.Duration, conns, ms int) error {
	if suite != "all" && suite != "cluster" && suite != "corrald" && suite != "scale" && suite != "reload" && suite != "messages" && suite != "steer" {
		return fmt.Errorf(`-suite %q: want "cluster", "corrald", "scale", "reload", "messages", "steer" or "all"`, suite)
	}
	if steerRounds < 1 {
		return fmt.Errorf("-steer-rounds %d: want at least 1", steerRounds)
	}
	if suite == "steer" {
		return runSteer(ctx, deb)
	}
	box, shOut, err := boot(ctx, deb, sdbox.Options{})
	if err != nil {
		return err
	}
	defer box.Close()
	switch suite {
	case "corrald":
		return benchCorrald(ctx, box, shOut)
	case "scale":
		return benchScale(ctx, box, shOut)
	case "reload":
		return benchReload(ctx, box, shOut, conns, dur, next)
	case "messages":
		return benchMessages(ctx, box, shOut)
	}
	if err := benchCluster(ctx, shOut, dur, conns, ms); err != nil {
		return err
	}
	if suite == "all" {
		if err := benchReload(ctx, box, shOut, conns, dur, next); err != nil {
			return err
		}
		if err := benchMessages(ctx, box, shOut); err != nil {
			return err
		}
		if err := benchCorrald(ctx, box, shOut); err != nil {
			return err
		}
		fmt.Println()
		if err := benchScale(ctx, box, shOut); err != nil {
			return err
		}
		// Steering runs in a box of its own, with the capabilities BPF
		// needs: the others measure as before. Its ports are app's.
		if err := box.Close(); err != nil {
			return err
		}
		fmt.Println()
		return runSteer(ctx, deb)
	}
	return nil
}

// runSteer boots a box where corrald can steer in the kernel and runs the
// steer suite in it.
func runSteer(ctx context.Context, deb string) error {
	box, shOut, err := boot(ctx, deb, sdbox.KernelSteering(sdbox.Options{}))
	if err != nil {
		return err
	}
	defer box.Close()
	return benchSteer(ctx, box, shOut)
}

// boot boots a box (with opts) with deb installed by apt, and returns it with a
// function that runs a command in it.
func boot(ctx context.Context, deb string, opts sdbox.Options) (*sdbox.Box, func(...string) (string, error), error) {
	if deb == "" {
		return nil, nil, errors.New("-deb is required: run 'make bench'")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, nil, errors.New("wrk not found: apt-get install wrk")
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		return nil, nil, err
	}
	bootCtx, cancel := context.WithTimeout(ctx, time.Minute)
	box, err := sdbox.Boot(bootCtx, opts)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	shOut := func(args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, stderr, err := box.Exec(c, args...)
		if err != nil {
			return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr)
		}
		return out, nil
	}
	err = box.WriteFile("/opt/corral-bench/corral.deb", data, 0o644)
	if err == nil {
		_, err = shOut("apt-get", "install", "-y", "/opt/corral-bench/corral.deb")
	}
	if err != nil {
		box.Close()
		return nil, nil, err
	}
	return box, shOut, nil
}

// benchCluster measures the demo's CPU-bound route with one instance, then
// one per core.
func benchCluster(ctx context.Context, sh func(...string) (string, error), dur time.Duration, conns, ms int) error {
	url := fmt.Sprintf("http://127.0.0.1:8080/cpu?ms=%d", ms)
	cores := runtime.NumCPU()
	one, err := clusterRun(ctx, sh, url, "1", 1, conns, dur)
	if err != nil {
		return err
	}
	many, err := clusterRun(ctx, sh, url, "auto", cores, conns, dur)
	if err != nil {
		return err
	}
	if _, err := sh("corral", "stop", "app"); err != nil {
		return err
	}
	fmt.Printf("corral demo pool, GET /cpu?ms=%d, wrk -t1 -c%d -d%s --latency on 127.0.0.1, %d cores, %s\n\n", ms, conns, dur, cores, time.Now().Format("2006-01-02"))
	fmt.Printf("| instances | req/s | p50 | p99 | errors |\n|---|---|---|---|---|\n")
	fmt.Printf("| 1 | %.0f | %v | %v | %d |\n", one.rps, one.p50, one.p99, one.errors)
	fmt.Printf("| %d (one per core) | %.0f | %v | %v | %d |\n", cores, many.rps, many.p50, many.p99, many.errors)
	fmt.Printf("\nratio %d instances / 1 instance: %.2fx\n\n", cores, many.rps/one.rps)
	return nil
}

// clusterRun sets the demo pool's count as an operator does (corral
// scale, count), starts it, waits for want instances, warms up and
// measures.
func clusterRun(ctx context.Context, sh func(...string) (string, error), url, count string, want, conns int, dur time.Duration) (result, error) {
	for _, c := range [][]string{{"corral", "scale", "app", count}, {"systemctl", "start", "app.target"}} {
		if _, err := sh(c...); err != nil {
			return result{}, err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := sh("systemctl", "list-units", "--plain", "--no-legend", "--state=active", "app@*.service")
		if strings.Count(out, ".service") == want {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("app: %d instances not active after 1m", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := waitHTTP(ctx, url); err != nil {
		return result{}, err
	}
	// Warm up, then measure.
	if _, err := wrk(ctx, url, conns, 2*time.Second); err != nil {
		return result{}, err
	}
	return wrk(ctx, url, conns, dur)
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s does not answer", url)
}

// wrk runs wrk against url, keep-alive, and returns its figures, p50 and
// p99 to 100 µs.
func wrk(ctx context.Context, url string, conns int, dur time.Duration) (result, error) {
	r, err := wrkpkg.Run(ctx, wrkpkg.Options{URL: url, Conns: conns, Duration: dur})
	if err != nil {
		return result{}, err
	}
	return toResult(r), nil
}

// toResult is what the bench reports of a wrk run.
func toResult(r wrkpkg.Result) result {
	return result{rps: r.RPS, p50: r.P50.Round(100 * time.Microsecond), p99: r.P99.Round(100 * time.Microsecond),
		errors: r.Errors.Failed(), total: r.Requests}
}
