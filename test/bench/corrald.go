package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// benchCorrald measures issue 3's bars in a booted box with corral
// installed: corral list with 64 instances, corrald's memory with them,
// its wake-ups while nothing changes, and the time from an instance's
// crash to its replacement serving.
func benchCorrald(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) error {
	// A pool of 64 demo instances.
	if err := box.WriteFile("/etc/corral/pools.d/big.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18192\"]\ninstances = 64\nreadiness = \"notify\"\n"), 0o644); err != nil {
		return err
	}
	// Metrics on, for the cost of a scrape.
	if err := box.WriteFile("/etc/corral/corral.toml", []byte("[metrics]\nlisten = \"127.0.0.1:18194\"\n"), 0o644); err != nil {
		return err
	}
	for _, c := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "restart", "corral.service"}, {"systemctl", "start", "big.target"}} {
		if _, err := sh(c...); err != nil {
			return err
		}
	}
	if err := waitActive(sh, "big@*.service", 64, 2*time.Minute); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)

	// corral list, the whole command as a user runs it.
	var list []time.Duration
	for range 20 {
		d, err := timeInBox(sh, "corral list >/dev/null")
		if err != nil {
			return err
		}
		list = append(list, d)
	}

	pid, _ := sh("systemctl", "show", "-P", "MainPID", "corral.service")
	pid = strings.TrimSpace(pid)
	rss, err := vmRSS(sh, pid)
	if err != nil {
		return err
	}

	idle, quiet, err := idleSwitches(sh, pid)
	if err != nil {
		return err
	}
	sc, err := scrapeCost(sh, pid, "http://127.0.0.1:18194/metrics")
	if err != nil {
		return err
	}
	if _, err := sh("systemctl", "stop", "big.target", "big@*.service", "big@*.socket"); err != nil {
		return err
	}

	crash, err := crashToServing(ctx, box, sh)
	if err != nil {
		return err
	}

	fmt.Printf("corrald, %s\n\n", time.Now().Format("2006-01-02"))
	fmt.Printf("| measure | value | bar |\n|---|---|---|\n")
	fmt.Printf("| corral list, 64 instances: p50 / max of 20 | %v / %v | ≤ 100 ms |\n", pct(list, 50), pct(list, 100))
	fmt.Printf("| corrald memory with 64 instances | %d kB | ≤ 20 MB |\n", rss)
	fmt.Printf("| corrald context switches (all threads) per 10 s while idle, 90 s | %v: %d of 9 windows without any | the watchdog (every 30 s) and the accept-queue reading (every 2 s); idle CPU is in -suite scale |\n", idle, quiet)
	fmt.Printf("| crash to replacement serving: p50 / p99 of 20 | %v / %v | p50 ≤ 150 ms |\n", pct(crash, 50), pct(crash, 99))
	fmt.Printf("| a scrape of the metrics, 64 instances: corrald's CPU per scrape (%d scrapes, less its idle CPU) | %.2f ms | ≤ 5 ms |\n", sc.n, sc.cpuPerScrape)
	fmt.Printf("| a scrape: p50 / p99 of %d, its size, its series | %v / %v, %d bytes, %d series | |\n", sc.n, pct(sc.took, 50), pct(sc.took, 99), sc.bytes, sc.series)
	return nil
}

// ctxSwitches sums the voluntary and involuntary context switches of every
// thread of pid.
func ctxSwitches(sh func(...string) (string, error), pid string) (int, error) {
	out, err := sh("sh", "-c", "cat /proc/"+pid+"/task/*/status | grep ctxt_switches")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			v, _ := strconv.Atoi(f[1])
			n += v
		}
	}
	return n, nil
}

// pct returns the p-th percentile of ds (100 = max).
func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i].Round(100 * time.Microsecond)
}

// idleSwitches counts corrald's wake-ups while idle: the context switches
// of every thread of pid in 10 s windows, after the calls before have
// settled, and how many windows had none. The watchdog is fed every 30 s
// (WatchdogSec=60s); nothing else should wake it.
func idleSwitches(sh func(...string) (string, error), pid string) ([]int, int, error) {
	time.Sleep(5 * time.Second)
	var idle []int
	prev, err := ctxSwitches(sh, pid)
	if err != nil {
		return nil, 0, err
	}
	for range 9 {
		time.Sleep(10 * time.Second)
		n, err := ctxSwitches(sh, pid)
		if err != nil {
			return nil, 0, err
		}
		idle = append(idle, n-prev)
		prev = n
	}
	quiet := 0
	for _, n := range idle {
		if n == 0 {
			quiet++
		}
	}
	return idle, quiet, nil
}

// scrapeResult is what scrapeCost measured.
type scrapeResult struct {
	n            int
	cpuPerScrape float64 // ms of corrald's CPU
	took         []time.Duration
	bytes        int
	series       int
}

// cpuTicks returns the user and system CPU time of pid in clock ticks
// (1/100 s), from /proc/PID/stat.
func cpuTicks(sh func(...string) (string, error), pid string) (int, error) {
	out, err := sh("cat", "/proc/"+pid+"/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out[strings.LastIndexByte(out, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: %q", pid, out)
	}
	u, err1 := strconv.Atoi(f[11])
	s, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: %q", pid, out)
	}
	return u + s, nil
}

// scrapeCost measures corrald's CPU per scrape of url: its CPU over 300
// scrapes one after the other, less its CPU over as long idle.
func scrapeCost(sh func(...string) (string, error), pid, url string) (scrapeResult, error) {
	const n = 300
	c := &http.Client{Timeout: 10 * time.Second}
	get := func() (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return string(b), err
	}
	body, err := get() // warm: the first reads the cgroup paths
	if err != nil {
		return scrapeResult{}, err
	}
	r := scrapeResult{n: n, bytes: len(body)}
	for _, l := range strings.Split(body, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			r.series++
		}
	}
	t0, err := cpuTicks(sh, pid)
	if err != nil {
		return r, err
	}
	start := time.Now()
	for range n {
		s := time.Now()
		if _, err := get(); err != nil {
			return r, err
		}
		r.took = append(r.took, time.Since(s))
	}
	busy := time.Since(start)
	t1, err := cpuTicks(sh, pid)
	if err != nil {
		return r, err
	}
	time.Sleep(busy)
	t2, err := cpuTicks(sh, pid)
	if err != nil {
		return r, err
	}
	r.cpuPerScrape = float64((t1-t0)-(t2-t1)) * 10 / n
	return r, nil
}

// crashToServing times, for a one-instance pool, a SIGKILL of its worker to
// the answer of a request that waits in the socket's queue until the new
// worker answers it; 20 times.
func crashToServing(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) ([]time.Duration, error) {
	if err := box.WriteFile("/etc/corral/pools.d/one.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18193\"]\ninstances = 1\nreadiness = \"notify\"\n[restart]\nburst = 1000\ncrash_loop_failures = 1000\n"), 0o644); err != nil {
		return nil, err
	}
	for _, c := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "start", "one.target"}} {
		if _, err := sh(c...); err != nil {
			return nil, err
		}
	}
	if err := waitHTTP(ctx, "http://127.0.0.1:18193/"); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	pidRE := regexp.MustCompile(`pid (\d+)`)
	var crash []time.Duration
	for i := 0; i < 20; i++ {
		old, _ := sh("systemctl", "show", "-P", "MainPID", "one@1.service")
		old = strings.TrimSpace(old)
		t0 := time.Now()
		if _, err := sh("kill", "-KILL", old); err != nil {
			return nil, err
		}
		for {
			resp, err := client.Get("http://127.0.0.1:18193/")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if m := pidRE.FindSubmatch(body); m != nil && string(m[1]) != old {
					crash = append(crash, time.Since(t0))
					break
				}
			}
			if time.Since(t0) > 30*time.Second {
				return nil, fmt.Errorf("no replacement of one@1 after 30s")
			}
		}
		time.Sleep(500 * time.Millisecond)
	}

	return crash, nil
}
