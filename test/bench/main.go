// Command bench measures the demo pool's /cpu route under wrk: one instance
// against one instance per core, in a throwaway real systemd with the .deb
// installed. `make bench` runs it; docs/benchmarks.md has its results.
//
//	go run ./test/bench -deb dist/corral_0.1.0_amd64.deb [-d 10s] [-c 100] [-ms 5]
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
	"strconv"
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
	suite := flag.String("suite", "all", `what to measure: "cluster" (one instance vs one per core), "corrald", "scale" (corrald's costs by pool size), "reload", "messages", or "all"`)
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
	if suite != "all" && suite != "cluster" && suite != "corrald" && suite != "scale" && suite != "reload" && suite != "messages" {
		return fmt.Errorf(`-suite %q: want "cluster", "corrald", "scale", "reload", "messages" or "all"`, suite)
	}
	if deb == "" {
		return errors.New("-deb is required: run 'make bench'")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: apt-get install wrk")
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		return err
	}
	bootCtx, cancel := context.WithTimeout(ctx, time.Minute)
	box, err := sdbox.Boot(bootCtx, sdbox.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer box.Close()
	shOut := func(args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, stderr, err := box.Exec(c, args...)
		if err != nil {
			return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr)
		}
		return out, nil
	}
	sh := func(args ...string) error {
		_, err := shOut(args...)
		return err
	}
	if err := box.WriteFile("/opt/corral-bench/corral.deb", data, 0o644); err != nil {
		return err
	}
	if err := sh("apt-get", "install", "-y", "/opt/corral-bench/corral.deb"); err != nil {
		return err
	}
	if suite == "corrald" {
		return benchCorrald(ctx, box, shOut)
	}
	if suite == "scale" {
		return benchScale(ctx, box, shOut)
	}
	if suite == "reload" {
		return benchReload(ctx, box, shOut, conns, dur, next)
	}
	if suite == "messages" {
		return benchMessages(ctx, box, shOut)
	}
	url := fmt.Sprintf("http://127.0.0.1:8080/cpu?ms=%d", ms)
	cores := runtime.NumCPU()

	// The count is corrald's: ask for it as an operator does, then start
	// the pool.
	measure := func(count string) (result, error) {
		if err := sh("corral", "scale", "app", count); err != nil {
			return result{}, err
		}
		if err := sh("systemctl", "start", "app.target"); err != nil {
			return result{}, err
		}
		want := "1"
		if count != "1" {
			want = strconv.Itoa(cores)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			out, _ := shOut("systemctl", "list-units", "--plain", "--no-legend", "--state=active", "app@*.service")
			if n := strings.Count(out, ".service"); strconv.Itoa(n) == want {
				break
			}
			if time.Now().After(deadline) {
				return result{}, fmt.Errorf("app: %s instances not active after 1m", want)
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
	one, err := measure("1")
	if err != nil {
		return err
	}
	many, err := measure("auto")
	if err != nil {
		return err
	}
	if err := sh("corral", "stop", "app"); err != nil {
		return err
	}
	fmt.Printf("corral demo pool, GET /cpu?ms=%d, wrk -t1 -c%d -d%s --latency on 127.0.0.1, %d cores, %s\n\n", ms, conns, dur, cores, time.Now().Format("2006-01-02"))
	fmt.Printf("| instances | req/s | p50 | p99 | errors |\n|---|---|---|---|---|\n")
	fmt.Printf("| 1 | %.0f | %v | %v | %d |\n", one.rps, one.p50, one.p99, one.errors)
	fmt.Printf("| %d (one per core) | %.0f | %v | %v | %d |\n", cores, many.rps, many.p50, many.p99, many.errors)
	fmt.Printf("\nratio %d instances / 1 instance: %.2fx\n\n", cores, many.rps/one.rps)
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
		return benchScale(ctx, box, shOut)
	}
	return nil
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
