package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// scalePoint is what one pool size costs.
type scalePoint struct {
	n          int
	ready      time.Duration // corral start to every instance active (READY=1)
	alone      time.Duration // the same with systemctl start while corrald is stopped
	rssKB      int           // corrald's VmRSS with the pool running
	list       time.Duration // corral list, p50 of 10
	reconcile  time.Duration // corrald's CPU per reconcile of the pool
	reconciles int
	idle       float64 // corrald's CPU while nothing happens, in % of a core
}

// idleFor is how long corrald's idle CPU is measured at each size.
const idleFor = 20 * time.Second

// idleGoal is the most corrald may use of a core at idleGoalAt instances,
// reading every socket's queue each second (issue 14).
const (
	idleGoal   = 0.1
	idleGoalAt = 64
)

// scaleSizes are the pool sizes the curve is measured at.
var scaleSizes = []int{1, 16, 64, 256}

// benchScale measures how corrald's costs grow with a pool's size: for a
// pool of N demo instances, the time from `corral start` to all ready,
// corrald's memory, `corral list`, and corrald's CPU per reconcile. It
// prints a table and each cost's growth from 64 to 256 instances.
func benchScale(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) error {
	var points []scalePoint
	for _, n := range scaleSizes {
		p, err := scaleOnce(ctx, box, sh, n)
		if err != nil {
			return fmt.Errorf("%d instances: %w", n, err)
		}
		points = append(points, p)
	}
	fmt.Printf("corrald by pool size, %s\n\n", time.Now().Format("2006-01-02"))
	fmt.Printf("| instances | corral start to all ready | systemctl start, corrald stopped | corrald VmRSS | corral list, p50 of 10 | corrald CPU per reconcile | corrald idle CPU (%v) |\n|---|---|---|---|---|---|---|\n", idleFor)
	for _, p := range points {
		fmt.Printf("| %d | %v | %v | %d kB | %v | %v | %.3f%% |\n", p.n, p.ready.Round(time.Millisecond), p.alone.Round(time.Millisecond), p.rssKB, p.list, p.reconcile, p.idle)
	}
	for _, p := range points {
		if p.n == idleGoalAt {
			verdict := "met"
			if p.idle > idleGoal {
				verdict = "NOT met"
			}
			fmt.Printf("\nGoal: corrald idle at %d instances ≤ %.1f%% of a core: %.3f%%, %s\n", p.n, idleGoal, p.idle, verdict)
		}
	}
	a, b := points[len(points)-2], points[len(points)-1]
	x := float64(b.n) / float64(a.n)
	fmt.Printf("\nFrom %d to %d instances (×%.0f), each cost grew ×g = ×%.0f^k (k = 1: linear):\n", a.n, b.n, x, x)
	for _, g := range []struct {
		what string
		g    float64
	}{
		{"corral start to all ready", ratio(b.ready, a.ready)},
		{"systemctl start, corrald stopped", ratio(b.alone, a.alone)},
		{"corrald VmRSS", float64(b.rssKB) / float64(a.rssKB)},
		{"corral list", ratio(b.list, a.list)},
		{"corrald CPU per reconcile", ratio(b.reconcile, a.reconcile)},
	} {
		fmt.Printf("- %s: g %.2f, k %.2f\n", g.what, g.g, exponent(g.g, x))
	}
	return nil
}

func ratio(b, a time.Duration) float64 { return float64(b) / float64(max(a, 1)) }

// exponent is k in growth = x^k.
func exponent(growth, x float64) float64 { return math.Log(growth) / math.Log(x) }

// scaleOnce runs a pool of n instances with a fresh corrald and measures
// it, then stops the pool.
func scaleOnce(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error), n int) (scalePoint, error) {
	p := scalePoint{n: n}
	file := fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18300\"]\ninstances = %d\nreadiness = \"notify\"\nstart_on_boot = false\n", n)
	if err := box.WriteFile("/etc/corral/pools.d/scale.toml", []byte(file), 0o644); err != nil {
		return p, err
	}
	for _, c := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "restart", "corral.service"}, {"corral", "list"}} {
		if _, err := sh(c...); err != nil {
			return p, err
		}
	}
	defer sh("systemctl", "stop", "scale.target", "scale@*.service", "scale@*.socket")

	t0 := time.Now()
	if _, err := sh("corral", "start", "scale"); err != nil {
		return p, err
	}
	if err := waitActive(sh, "scale@*.service", n, 5*time.Minute); err != nil {
		return p, err
	}
	p.ready = time.Since(t0)
	time.Sleep(2 * time.Second) // the signals of the start settle

	var list []time.Duration
	for range 10 {
		us, err := timeInBox(sh, "corral list >/dev/null")
		if err != nil {
			return p, err
		}
		list = append(list, us)
	}
	p.list = pct(list, 50)

	pid, err := sh("systemctl", "show", "-P", "MainPID", "corral.service")
	if err != nil {
		return p, err
	}
	pid = strings.TrimSpace(pid)
	if p.rssKB, err = vmRSS(sh, pid); err != nil {
		return p, err
	}
	// Idle: nothing asked, nothing changing; corrald reads the sockets'
	// queues every second and answers the watchdog.
	before, err := cpuTime(sh, pid)
	if err != nil {
		return p, err
	}
	time.Sleep(idleFor)
	after, err := cpuTime(sh, pid)
	if err != nil {
		return p, err
	}
	p.idle = 100 * float64(after-before) / float64(idleFor)

	// Reconciles on demand: each `corral scale` to the same count marks
	// the pool, and corrald reconciles it once. corrald's CPU over them,
	// less what as many of the same calls for a pool that does not exist
	// cost (refused before anything is marked), is the reconciles'.
	p.reconciles = 30
	withReconcile, err := cpuOver(sh, pid, p.reconciles, fmt.Sprintf("corral scale scale %d >/dev/null", n))
	if err != nil {
		return p, err
	}
	callsOnly, err := cpuOver(sh, pid, p.reconciles, fmt.Sprintf("corral scale nosuchpool %d >/dev/null 2>&1 || true", n))
	if err != nil {
		return p, err
	}
	p.reconcile = max(withReconcile-callsOnly, 0) / time.Duration(p.reconciles)

	// The same start by systemd alone, to tell corrald's share.
	for _, c := range [][]string{{"systemctl", "stop", "corral.service"}, {"systemctl", "stop", "scale.target", "scale@*.service"}} {
		if _, err := sh(c...); err != nil {
			return p, err
		}
	}
	if err := waitActive(sh, "scale@*.service", -n, time.Minute); err != nil {
		return p, err
	}
	t0 = time.Now()
	if _, err := sh("systemctl", "start", "scale.target"); err != nil {
		return p, err
	}
	if err := waitActive(sh, "scale@*.service", n, 5*time.Minute); err != nil {
		return p, err
	}
	p.alone = time.Since(t0)
	_, err = sh("systemctl", "start", "corral.service")
	return p, err
}

// waitActive waits until n units of pattern are active, or, for n ≤ 0,
// until none is.
func waitActive(sh func(...string) (string, error), pattern string, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, _ := sh("systemctl", "list-units", "--plain", "--no-legend", "--state=active", pattern)
		if k := strings.Count(out, "\n"); n > 0 && k >= n || n <= 0 && k == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %s not active after %v", n, pattern, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timeInBox is how long a shell command takes inside the box.
func timeInBox(sh func(...string) (string, error), cmd string) (time.Duration, error) {
	out, err := sh("sh", "-c", "s=$(date +%s%N); "+cmd+"; e=$(date +%s%N); echo $(( (e - s) / 1000 ))")
	if err != nil {
		return 0, err
	}
	us, err := strconv.Atoi(strings.TrimSpace(out))
	return time.Duration(us) * time.Microsecond, err
}

// vmRSS is the VmRSS of pid, in kB.
func vmRSS(sh func(...string) (string, error), pid string) (int, error) {
	out, err := sh("sh", "-c", "grep VmRSS /proc/"+pid+"/status")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return 0, fmt.Errorf("no VmRSS for %s: %q", pid, out)
	}
	return strconv.Atoi(f[1])
}

// cpuOver is the CPU time pid takes while the shell command cmd runs n
// times, one after the other, each given 200 ms to be acted on.
func cpuOver(sh func(...string) (string, error), pid string, n int, cmd string) (time.Duration, error) {
	before, err := cpuTime(sh, pid)
	if err != nil {
		return 0, err
	}
	for range n {
		if _, err := sh("sh", "-c", cmd); err != nil {
			return 0, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	after, err := cpuTime(sh, pid)
	return after - before, err
}

// cpuTime is the time every thread of pid has run on a CPU, in
// nanoseconds (the first field of /proc/PID/task/*/schedstat).
func cpuTime(sh func(...string) (string, error), pid string) (time.Duration, error) {
	out, err := sh("sh", "-c", "cat /proc/"+pid+"/task/*/schedstat")
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 1 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%s/task/*/schedstat: %q", pid, l)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}
