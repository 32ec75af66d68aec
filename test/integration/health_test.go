//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestShortLivedCrashLoop: a worker that exits 1 after 3s of life never
// trips systemd's start limit (5 starts in 10s): systemd restarts it for
// ever and the unit is never "failed". corrald counts systemd's restarts:
// within the 6th the instance is crash-loop in corral list, with the last
// exit's cause, and corrald stops it and backs it off instead of letting it
// burn CPU.
func TestShortLivedCrashLoop(t *testing.T) {
	b := installed(t)
	b.writePool("flaky", "exec = [\"/bin/sh\", \"-c\", \"sleep 3; exit 1\"]\nlisten = [\"127.0.0.1:18120\"]\ninstances = 1\n")
	b.must("corral", "start", "flaky")
	nrestarts := func() int {
		n, _ := strconv.Atoi(b.show("flaky@1.service", "NRestarts"))
		return n
	}
	var list string
	waitFor(t, "flaky@1 in crash-loop", 60*time.Second, func() error {
		list = b.must("corral", "list")
		if !containsFields(list, "flaky@1", "crash-loop") {
			return fmt.Errorf("systemd restarted it %d times; corral list:\n%s", nrestarts(), list)
		}
		return nil
	})
	restarts := nrestarts()
	t.Logf("crash-loop after systemd's restart %d:\n%s", restarts, list)
	if restarts > 6 {
		t.Errorf("crash-loop reported after %d restarts, want within the 6th", restarts)
	}
	status := b.must("corral", "status", "flaky")
	if !strings.Contains(status, "crash loop: failed") || !strings.Contains(status, "(last: exited with status 1)") {
		t.Errorf("corral status does not give the last exit's cause, exited with status 1 (from the exit record):\n%s", status)
	}
	// Backed off: stopped by corrald, and no more restarts meanwhile.
	waitFor(t, "flaky@1 stopped", 30*time.Second, func() error {
		if st := b.show("flaky@1.service", "ActiveState"); st != "inactive" {
			return fmt.Errorf("ActiveState=%s", st)
		}
		return nil
	})
	pid := b.show("flaky@1.service", "InvocationID")
	time.Sleep(8 * time.Second)
	if st, now := b.show("flaky@1.service", "ActiveState"), b.show("flaky@1.service", "InvocationID"); st != "inactive" || now != pid {
		t.Errorf("flaky@1 during its backoff: ActiveState=%s, invocation %s (was %s): want it stopped", st, now, pid)
	}
	if !strings.Contains(b.must("corral", "status", "flaky"), "stopped by corrald, next try in") {
		t.Errorf("corral status does not say when it is tried again:\n%s", b.must("corral", "status", "flaky"))
	}
}

// containsFields reports whether a line of out starts with the given
// whitespace-separated fields.
func containsFields(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= len(fields) && strings.Join(f[:len(fields)], " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

// TestRecycleAfter: recycle_after restarts each instance when it reaches that age, one at
// a time through the path of a rolling reload (the worker drains on SIGTERM, the next
// waits until the new one is ready), never the last one running, and a load of 16 clients
// on new connections fails no request.
func TestRecycleAfter(t *testing.T) {
	b := installed(t)
	b.writePool("aged", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18121\"]\ninstances = 2\n"+
		"readiness = \"notify\"\nrecycle_after = \"10s\"\nrecycle_jitter = \"2s\"\n")
	b.must("corral", "start", "aged")
	url := "http://127.0.0.1:18121/"
	waitFor(t, "aged answers", 30*time.Second, func() error { _, err := get(url); return err })
	units := []string{"aged@1.service", "aged@2.service"}
	first := map[string]string{}
	for _, u := range units {
		first[u] = b.show(u, "MainPID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
	defer cancel()
	res := make(chan loadResult, 1)
	go func() { res <- load(ctx, url, 16) }()
	minUp, samples := len(units), 0
	for ctx.Err() == nil {
		n := 0
		for _, u := range units {
			if b.show(u, "ActiveState") == "active" {
				n++
			}
		}
		minUp, samples = min(minUp, n), samples+1
		time.Sleep(200 * time.Millisecond)
	}
	r := <-res
	t.Logf("load (16 clients, 35s, new connections): %s; fewest instances active at once: %d in %d samples", r, minUp, samples)
	if r.failed > 0 || r.refused > 0 || r.ok == 0 {
		t.Errorf("the load failed: %s %v", r, r.samples)
	}
	if minUp < 1 {
		t.Errorf("both instances were down at once: recycling must leave one running")
	}
	for _, u := range units {
		if now := b.show(u, "MainPID"); now == first[u] {
			t.Errorf("%s was not recycled in 35s (recycle_after = 10s): MainPID still %s", u, now)
		}
	}
	logs := b.must("journalctl", "-u", "corral.service", "--no-pager", "-o", "cat")
	if n := strings.Count(logs, "past recycle_after = 10s"); n < 2 {
		t.Errorf("corrald's journal says why it recycled %d times, want at least 2:\n%s", n, logs)
	}
}

// TestNodeWatchdog: a Node worker whose event loop blocks stops answering corrald's
// pings (corral's preload answers them from the loop); corrald kills it once a whole
// watchdog passed without an answer, systemd restarts it, and corral status names the
// cause.
func TestNodeWatchdog(t *testing.T) {
	b := installed(t)
	const watchdog = 3 * time.Second
	app := "require('http').createServer((req, res) => {\n" +
		"  if (req.url === '/block') for (;;) {}\n" +
		"  res.end('pid ' + process.pid + '\\n');\n" +
		"}).listen(18122);\n"
	if err := b.WriteFile("/srv/nodehang/app.js", []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	b.writePool("nodehang", "exec = [\"/usr/bin/node\", \"/srv/nodehang/app.js\"]\nlisten = [\"127.0.0.1:18122\"]\ninstances = 1\nwatchdog = \"3s\"\n")
	b.must("corral", "start", "nodehang")
	url := "http://127.0.0.1:18122/"
	waitFor(t, "nodehang answers", 30*time.Second, func() error { _, err := get(url); return err })
	waitFor(t, "its worker connected for pings", 30*time.Second, func() error {
		var doc struct {
			Pools []struct {
				Name      string
				Instances []struct{ Messages bool }
			}
		}
		l := b.must("corral", "list", "--json")
		if err := json.Unmarshal([]byte(l), &doc); err != nil {
			return err
		}
		for _, p := range doc.Pools {
			if p.Name == "nodehang" && len(p.Instances) == 1 && p.Instances[0].Messages {
				return nil
			}
		}
		return fmt.Errorf("corral list --json: %s", l)
	})
	pid := b.show("nodehang@1.service", "MainPID")
	t0 := time.Now()
	go get(url + "block")
	took := b.waitNewPID("nodehang@1.service", pid, t0, 3*watchdog+20*time.Second)
	t.Logf("event loop blocked at 0s; a new process at %v (watchdog = %v; goal: within watchdog + 2s)", took.Round(100*time.Millisecond), watchdog)
	b.waitStatus("nodehang", `hung: no answer for 3s (watchdog = "3s")`)
	if logs := b.must("journalctl", "-u", "corral.service", "--no-pager", "-o", "cat"); !strings.Contains(logs, "killing a hung instance") {
		t.Errorf("corrald's journal does not say it killed the hung instance:\n%s", logs)
	}
	waitFor(t, "nodehang answers again", 30*time.Second, func() error { _, err := get(url); return err })
}

// pyWorker is a Python worker that answers corral's messages as docs/messages.md shows,
// from a thread, and otherwise sleeps.
const pyWorker = `import json, os, socket, threading, time
def messages(handle):
    delay = 0.1
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(os.environ["CORRAL_MESSAGES"])
                delay = 0.1
                for line in s.makefile("rb"):
                    if not line.endswith(b"\n"):
                        break
                    m = json.loads(line)
                    s.sendall((json.dumps({"id": m["id"], "reply": handle(m["message"])}) + "\n").encode())
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(delay)
        delay = min(delay * 2, 5)
threading.Thread(target=messages, args=(lambda text: "got " + text,), daemon=True).start()
while True:
    time.sleep(3600)
`

// TestPythonWatchdog: a Python worker that reads messages (docs/messages.md) answers
// corrald's pings as messages; frozen (SIGSTOP), it answers none, and corrald kills it:
// SIGABRT stays pending on a stopped process, so SIGKILL follows after stop_timeout, as
// PID 1's watchdog would do. systemd restarts it and corral status names the hang.
func TestPythonWatchdog(t *testing.T) {
	b := installed(t)
	if err := b.WriteFile("/srv/pyhang/worker.py", []byte(pyWorker), 0o644); err != nil {
		t.Fatal(err)
	}
	b.writePool("pyhang", "exec = [\"/usr/bin/python3\", \"/srv/pyhang/worker.py\"]\nlisten = [\"127.0.0.1:18123\"]\ninstances = 1\n"+
		"watchdog = \"3s\"\nstop_timeout = \"2s\"\n")
	b.must("corral", "start", "pyhang")
	waitFor(t, "its worker answers messages", 30*time.Second, func() error {
		if out, err := b.run("corral", "send", "pyhang@1", "hello", "--wait"); err != nil || !strings.Contains(out, "got hello") {
			return fmt.Errorf("corral send: %v %s", err, out)
		}
		return nil
	})
	pid := b.show("pyhang@1.service", "MainPID")
	b.must("kill", "-STOP", pid)
	t0 := time.Now()
	took := b.waitNewPID("pyhang@1.service", pid, t0, 60*time.Second)
	t.Logf("frozen at 0s; a new process at %v (watchdog 3s, then SIGABRT, pending on a stopped process, and SIGKILL after stop_timeout 2s)", took.Round(100*time.Millisecond))
	b.waitStatus("pyhang", `hung: no answer for 3s (watchdog = "3s")`)
	if logs := b.must("journalctl", "-u", "corral.service", "--no-pager", "-o", "cat"); !strings.Contains(logs, "outlived stop_timeout: SIGKILL") {
		t.Errorf("corrald's journal does not say it escalated to SIGKILL:\n%s", logs)
	}
}

// waitNewPID waits until unit has a main process other than pid, and
// returns how long after t0 it had.
func (b *box) waitNewPID(unit, pid string, t0 time.Time, timeout time.Duration) time.Duration {
	b.t.Helper()
	var took time.Duration
	waitFor(b.t, unit+" killed and restarted", timeout, func() error {
		if now := b.show(unit, "MainPID"); now == pid || now == "0" {
			return fmt.Errorf("MainPID %s (was %s)", now, pid)
		}
		took = time.Since(t0)
		return nil
	})
	return took
}

// waitStatus waits until corral status of pool says want.
func (b *box) waitStatus(pool, want string) {
	b.t.Helper()
	waitFor(b.t, "corral status "+pool+" says "+want, 30*time.Second, func() error {
		if st := b.must("corral", "status", pool); !strings.Contains(st, want) {
			return fmt.Errorf("corral status:\n%s", st)
		}
		return nil
	})
}
