//go:build vmguest

package guest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/vmbox"
	"github.com/corral-pool/corral/test/wrk"
)

const demo = "/usr/libexec/corral/corral-demo"

// TestGoWatchdog: a Go worker whose handlers deadlock stops feeding the watchdog, and PID 1
// kills it (SIGABRT: Go prints every goroutine) and restarts it, with corrald stopped;
// with corrald running, corral status names the cause.
func TestGoWatchdog(t *testing.T) {
	const watchdog = 4 * time.Second
	writePool(t, "stuck", fmt.Sprintf(`exec = [%q]
listen = ["127.0.0.1:18303"]
instances = 1
readiness = "notify"
watchdog = "%s"
environment = { DEMO_FAULTS = "1" }
`, demo, watchdog))
	unit := "stuck@1.service"
	url := "http://127.0.0.1:18303/"
	waitFor(t, "stuck@1 answers", time.Minute, func() error { return get(url, 5*time.Second) })
	if w := show(unit, "WatchdogUSec"); w != "4s" {
		t.Fatalf("WatchdogUSec=%s, want 4s", w)
	}

	hang := func() (killed, answered time.Duration) {
		t.Helper()
		pid := show(unit, "MainPID")
		t0 := time.Now()
		go get(url+"hang", 2*time.Second)
		time.Sleep(500 * time.Millisecond)
		if err := get(url, time.Second); err == nil {
			t.Fatal("the demo still answers after GET /hang: it did not deadlock")
		}
		waitFor(t, "stuck@1 restarted by PID 1", 3*watchdog+30*time.Second, func() error {
			if now := show(unit, "MainPID"); now == pid || now == "0" {
				return fmt.Errorf("MainPID=%s (was %s), ActiveState=%s", now, pid, show(unit, "ActiveState"))
			}
			return nil
		})
		killed = time.Since(t0)
		waitFor(t, "stuck@1 answers again", time.Minute, func() error { return get(url, 2*time.Second) })
		return killed, time.Since(t0)
	}

	// corrald stopped: PID 1 alone enforces it.
	must(t, "systemctl", "stop", "corral.service")
	killed, answered := hang()
	must(t, "systemctl", "start", "corral.service")
	t.Logf("corrald stopped: deadlocked at 0s, a new process at %v, answering at %v (watchdog = %v; goal: within watchdog + 2s)",
		killed.Round(100*time.Millisecond), answered.Round(100*time.Millisecond), watchdog)
	logs, _ := command(time.Minute, "journalctl", "-u", unit, "--no-pager", "-o", "cat")
	for _, want := range []string{"Watchdog timeout", "SIGABRT", "goroutine "} {
		if !strings.Contains(logs, want) {
			t.Errorf("the journal of %s lacks %q (the watchdog's kill and Go's goroutine dump):\n%s", unit, want, vmbox.LastLines(logs, 40))
		}
	}

	// corrald running: the cause reaches corral status.
	killed, _ = hang()
	t.Logf("corrald running: a new process at %v", killed.Round(100*time.Millisecond))
	waitFor(t, "corral status names the hang", 30*time.Second, func() error {
		if st := must(t, "corral", "status", "stuck"); !strings.Contains(st, `hung: no answer for 4s (watchdog = "4s")`) {
			return fmt.Errorf("corral status:\n%s", st)
		}
		return nil
	})
}

// TestMemoryHighRecycle: an instance pushed past memory_high is recycled by corrald, one
// at a time, through the path of a rolling reload, and a light load fails no request.
func TestMemoryHighRecycle(t *testing.T) {
	writePool(t, "fat", fmt.Sprintf(`exec = [%q]
listen = ["127.0.0.1:18304"]
instances = 2
readiness = "notify"
memory_high = "64M"
memory_max = "256M"
environment = { DEMO_FAULTS = "1" }
`, demo))
	url := "http://127.0.0.1:18304/"
	waitFor(t, "fat answers", time.Minute, func() error { return get(url, 5*time.Second) })
	pids := map[string]string{"fat@1.service": show("fat@1.service", "MainPID"), "fat@2.service": show("fat@2.service", "MainPID")}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type loadRes struct {
		r   wrk.Result
		err error
	}
	done := make(chan loadRes, 1)
	go func() {
		r, err := wrk.Run(ctx, wrk.Options{URL: url, Conns: 16, Duration: 45 * time.Second})
		done <- loadRes{r, err}
	}()
	time.Sleep(3 * time.Second)
	if err := get(url+"alloc?mb=64", time.Minute); err != nil {
		t.Errorf("GET /alloc?mb=64: %v", err)
	}
	var recycled string
	waitFor(t, "an instance recycled", 40*time.Second, func() error {
		for u, pid := range pids {
			if now := show(u, "MainPID"); now != pid && now != "0" {
				recycled = u
				return nil
			}
		}
		return fmt.Errorf("no new MainPID (memory: fat@1 %s, fat@2 %s)", show("fat@1.service", "MemoryCurrent"), show("fat@2.service", "MemoryCurrent"))
	})
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	t.Logf("%s recycled; load (16 connections, 45s): %d requests, %+v", recycled, res.r.Requests, res.r.Errors)
	if res.r.Errors.Failed() > 0 || res.r.Requests == 0 {
		t.Errorf("the load failed %d requests (%+v) of %d, want 0", res.r.Errors.Failed(), res.r.Errors, res.r.Requests)
	}
	if t.Failed() {
		logs, _ := command(time.Minute, "journalctl", "-u", "fat@*", "-u", "corral.service", "--no-pager", "-o", "short-monotonic", "-n", "60")
		t.Logf("journal:\n%s", logs)
	}
	logs, _ := command(time.Minute, "journalctl", "-u", "corral.service", "--no-pager", "-o", "cat")
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "recycle") {
			t.Log(l)
		}
	}
	if !strings.Contains(logs, "memory_high = 64M") {
		t.Errorf("corrald's journal does not say why it recycled:\n%s", vmbox.LastLines(logs, 30))
	}
}

// TestMemoryStallRecycle: with memory_high as a share of RAM, whose bytes corrald does not
// compare, an instance that the kernel throttles there stalls on memory, its cgroup's
// memory.pressure says so, and corrald recycles it for that.
func TestMemoryStallRecycle(t *testing.T) {
	writePool(t, "thin", fmt.Sprintf(`exec = [%q]
listen = ["127.0.0.1:18305"]
instances = 2
readiness = "notify"
memory_high = "3%%"
memory_max = "256M"
environment = { DEMO_FAULTS = "1" }
`, demo))
	url := "http://127.0.0.1:18305/"
	waitFor(t, "thin answers", time.Minute, func() error { return get(url, 5*time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan wrk.Result, 1)
	go func() {
		r, _ := wrk.Run(ctx, wrk.Options{URL: url, Conns: 4, Duration: 30 * time.Second})
		done <- r
	}()
	time.Sleep(2 * time.Second)
	get(url+"alloc?mb=64", time.Minute)
	var line string
	waitFor(t, "corrald recycles the stalled instance", 60*time.Second, func() error {
		logs, _ := command(time.Minute, "journalctl", "-u", "corral.service", "--no-pager", "-o", "cat")
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "msg=recycle pool=thin") {
				line = l
				return nil
			}
		}
		return fmt.Errorf("no recycle of thin in corrald's journal (memory: thin@1 %s, thin@2 %s)", show("thin@1.service", "MemoryCurrent"), show("thin@2.service", "MemoryCurrent"))
	})
	t.Log(line)
	if !strings.Contains(line, "stalled on memory") || !strings.Contains(line, "(memory.pressure)") {
		t.Errorf("recycled, but not for its memory stalls: %s", line)
	}
	r := <-done
	t.Logf("load (4 connections, 30s): %d requests, %+v", r.Requests, r.Errors)
}
