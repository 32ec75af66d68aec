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

// listJSON is `corral list --json`.
type listJSON struct {
	Pools []struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		Desired   int    `json:"desired"`
		Running   int    `json:"running"`
		Instances []struct {
			Index    int    `json:"index"`
			Phase    string `json:"phase"`
			PID      *int   `json:"pid"`
			Restarts int    `json:"restarts"`
		} `json:"instances"`
	} `json:"pools"`
}

func (b *box) list() listJSON {
	b.t.Helper()
	var l listJSON
	out := b.must("corral", "list", "--json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		b.t.Fatalf("corral list --json: %v\n%s", err, out)
	}
	return l
}

// activeInstances returns the numbers of the pool's active instances.
func (b *box) activeInstances(pool string) []string {
	out, _ := b.run("systemctl", "list-units", "--plain", "--no-legend", "--state=active", pool+"@*.service")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			got = append(got, strings.TrimSuffix(strings.TrimPrefix(f[0], pool+"@"), ".service"))
		}
	}
	return got
}

func (b *box) waitActive(pool string, want ...string) {
	b.t.Helper()
	waitFor(b.t, fmt.Sprintf("%s instances %v active", pool, want), 60*time.Second, func() error {
		got := b.activeInstances(pool)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("active: %v", got)
		}
		return nil
	})
}

// TestScale: corral scale 2 → 4 → 1 → auto starts and stops instances (and
// their sockets), and every instance left answers.
func TestScale(t *testing.T) {
	b := installed(t)
	if st := b.show("corral.service", "ActiveState"); st != "active" {
		t.Fatalf("corral.service after install: %s, want active", st)
	}
	b.must("systemctl", "start", "app.target")
	b.waitActive("app", "1", "2")

	// Clients hear of it: InstanceChanged signals on the bus.
	mon := make(chan string, 1)
	go func() {
		out, _ := b.run("timeout", "6", "busctl", "monitor", "--system", "--match",
			"type='signal',sender='org.corral.Corral1',interface='org.corral.Corral1.Manager'")
		mon <- out
	}()
	time.Sleep(time.Second)
	b.must("corral", "scale", "app", "4")
	b.waitActive("app", "1", "2", "3", "4")
	if out := <-mon; !strings.Contains(out, "Member=InstanceChanged") || !strings.Contains(out, `STRING "app"`) {
		t.Errorf("no InstanceChanged signal for app while scaling:\n%s", out)
	}
	if seen := instancesSeen(t, demoURL, 200); len(seen) != 4 {
		t.Errorf("after scale 4: instances answering %v", seen)
	}
	b.must("corral", "scale", "app", "-3")
	b.waitActive("app", "1")
	// Their sockets close too, or traffic would start them again.
	waitFor(t, "surplus sockets closed", 30*time.Second, func() error {
		for _, s := range []string{"app@2.socket", "app@3.socket", "app@4.socket"} {
			if st := b.show(s, "ActiveState"); st == "active" {
				return fmt.Errorf("%s still listening", s)
			}
		}
		return nil
	})
	if seen := instancesSeen(t, demoURL, 50); len(seen) != 1 {
		t.Errorf("after scale 1: instances answering %v", seen)
	}
	b.must("corral", "scale", "app", "auto")
	b.waitActive("app", "1", "2")
	l := b.list()
	if len(l.Pools) != 1 || l.Pools[0].Desired != 2 || l.Pools[0].Running != 2 || l.Pools[0].State != "running" {
		t.Errorf("corral list --json after scale auto: %+v", l)
	}

	// The target starts only the pool file's count; corrald the rest.
	b.must("corral", "scale", "app", "3")
	b.waitActive("app", "1", "2", "3")
	b.must("systemctl", "stop", "app.target")
	b.waitActive("app")
	b.must("systemctl", "start", "app.target")
	b.waitActive("app", "1", "2", "3")
	b.must("corral", "scale", "app", "auto")
	b.waitActive("app", "1", "2")

	// Bad input: a clear error, nothing changed.
	for _, args := range [][]string{{"scale", "app", "0"}, {"scale", "app", "many"}, {"scale", "nope", "2"}, {"start", "app@x"}} {
		out, err := b.run(append([]string{"corral"}, args...)...)
		if err == nil || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("corral %v: err=%v, want one line of error:\n%s", args, err, out)
		}
	}
	b.waitActive("app", "1", "2")
}

// TestOperatorStopIsHeld: an instance stopped on purpose stays stopped
// until started again.
func TestOperatorStopIsHeld(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.waitActive("app", "1", "2")
	b.must("systemctl", "stop", "app@2.service")
	time.Sleep(3 * time.Second) // corrald has had every chance to act
	if got := b.activeInstances("app"); strings.Join(got, " ") != "1" {
		t.Errorf("after systemctl stop app@2: active %v, want only 1 (corrald must not fight the operator)", got)
	}
	l := b.list()
	for _, in := range l.Pools[0].Instances {
		if in.Index == 2 && in.Phase != "held" {
			t.Errorf("app@2 phase %q, want held", in.Phase)
		}
	}
	b.must("corral", "start", "app@2")
	b.waitActive("app", "1", "2")
	b.must("corral", "stop", "app")
	time.Sleep(2 * time.Second)
	if got := b.activeInstances("app"); len(got) != 0 {
		t.Errorf("after corral stop app: active %v", got)
	}
	if _, err := get(demoURL); err == nil {
		t.Errorf("the demo still answers after corral stop app")
	}
	// A count set while the pool is stopped waits for its start, and
	// corral scale says so.
	if out := b.must("corral", "scale", "app", "2"); !strings.Contains(out, "the pool is stopped, so none runs: 'corral start app' starts them") {
		t.Errorf("corral scale app 2 on a stopped pool printed %q, want it to say the pool is stopped", out)
	}
	time.Sleep(time.Second)
	if got := b.activeInstances("app"); len(got) != 0 {
		t.Errorf("corral scale started instances of a stopped pool: %v", got)
	}
	b.must("corral", "start", "app")
	b.waitActive("app", "1", "2")
}

// TestCrashLoop: a worker that exits 1 at once is restarted with backoff,
// shown in crash-loop, while a healthy pool beside it keeps serving.
func TestCrashLoop(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.writePool("crashy", `exec = ["/bin/false"]
listen = ["127.0.0.1:18091"]
instances = 1
[restart]
backoff = "200ms"
backoff_max = "1s"
crash_loop_failures = 3
crash_loop_window = "1m"
`)
	b.must("systemctl", "reload-or-restart", "corral.service") // or wait for its resync
	b.run("systemctl", "start", "crashy.target")
	waitFor(t, "crashy in crash-loop", 90*time.Second, func() error {
		l := b.list()
		for _, p := range l.Pools {
			if p.Name == "crashy" && p.State == "crash-loop" {
				return nil
			}
		}
		return fmt.Errorf("%+v", l)
	})
	// corrald restarts it after a backoff: reset-failed+start once systemd
	// gave up on it, or stop and start again when it counted systemd's own
	// restarts first (whichever comes first depends on timing).
	waitFor(t, "a crash loop and a restart after the backoff in corrald's journal", 30*time.Second, func() error {
		logs := b.must("journalctl", "-u", "corral.service", "--no-pager")
		restarted := strings.Contains(logs, "reset-failed+start unit=crashy@1.service") ||
			strings.Contains(logs, "action=start unit=crashy@1.service reason=\"crash loop")
		if !restarted || !strings.Contains(logs, `msg="crash loop" pool=crashy`) {
			return fmt.Errorf("corrald's journal:\n%s", logs)
		}
		return nil
	})
	if out := b.must("corral", "list"); !strings.Contains(out, "crash-loop") {
		t.Errorf("corral list:\n%s", out)
	}
	if seen := instancesSeen(t, demoURL, 50); len(seen) != 2 {
		t.Errorf("the healthy app pool beside a crash loop: instances answering %v", seen)
	}
	t.Logf("corral status crashy:\n%s", b.must("corral", "status", "crashy"))

	// The other read commands against the real journal and corrald.
	if out := b.must("corral", "logs", "app", "-n", "20"); !strings.Contains(out, "app@1 | serving on tcp 127.0.0.1:8080") {
		t.Errorf("corral logs app:\n%s", out)
	}
	if out := b.must("corral", "logs", "crashy", "-n", "50"); !strings.Contains(out, "crashy@1 |") {
		t.Errorf("corral logs crashy:\n%s", out)
	}
	out := b.must("corral", "monit", "--count", "2", "--interval", "1s")
	if strings.Count(out, "app@1") < 2 || strings.Contains(out, "\x1b[") {
		t.Errorf("corral monit --count 2 (not a terminal: two plain blocks):\n%s", out)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(b.must("corral", "status", "crashy", "--json")), &st); err != nil || st["state"] != "crash-loop" {
		t.Errorf("corral status crashy --json: %v %v", st, err)
	}
}

// TestKillCorraldUnderLoad: SIGKILL to corrald fails no request; it comes
// back with its state.
func TestKillCorraldUnderLoad(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.must("corral", "scale", "app", "3")
	b.waitActive("app", "1", "2", "3")
	pid := b.show("corral.service", "MainPID")

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan loadResult, 1)
	go func() { res <- load(ctx, demoURL, 32) }()
	time.Sleep(time.Second)
	b.must("systemctl", "kill", "-s", "KILL", "corral.service")
	waitFor(t, "corrald back", 30*time.Second, func() error {
		if p := b.show("corral.service", "MainPID"); p == pid || p == "0" || b.show("corral.service", "ActiveState") != "active" {
			return fmt.Errorf("MainPID %s", p)
		}
		return nil
	})
	time.Sleep(time.Second)
	cancel()
	r := <-res
	t.Logf("SIGKILL to corrald under 32 clients: %v", r)
	if r.refused != 0 || r.failed != 0 || r.ok < 100 {
		t.Errorf("requests while corrald was killed: %v, want all ok", r)
	}
	l := b.list()
	if l.Pools[0].Desired != 3 || l.Pools[0].Running != 3 {
		t.Errorf("after corrald's restart: %+v, want desired 3 running 3", l.Pools[0])
	}
	b.waitActive("app", "1", "2", "3")
}

// TestPermissions: anyone may list; only root and the corral group may
// change pools, through the CLI and through the bus.
func TestPermissions(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.must("useradd", "--no-create-home", "alice")
	b.must("useradd", "--no-create-home", "--groups", "corral", "bob")

	if out := b.must("runuser", "-u", "alice", "--", "corral", "list"); !strings.Contains(out, "app@1") {
		t.Errorf("corral list as alice:\n%s", out)
	}
	out, err := b.run("runuser", "-u", "alice", "--", "corral", "scale", "app", "3")
	if err == nil || !strings.Contains(out, "permission denied") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("corral scale as alice: err=%v\n%s", err, out)
	}
	out, err = b.run("runuser", "-u", "alice", "--", "busctl", "call", "org.corral.Corral1", "/org/corral/Corral1", "org.corral.Corral1.Manager", "Scale", "ss", "app", "3")
	if err == nil || !strings.Contains(out, "ccess denied") {
		t.Errorf("busctl call Scale as alice: err=%v\n%s", err, out)
	}
	if out, err := b.run("runuser", "-u", "alice", "--", "busctl", "call", "org.corral.Corral1", "/org/corral/Corral1", "org.corral.Corral1.Manager", "ListPools"); err != nil || !strings.Contains(out, `"app"`) {
		t.Errorf("busctl call ListPools as alice: err=%v\n%s", err, out)
	}
	// Drain and undrain change what balancers send the host, cordon and
	// uncordon what an instance gets, deploy and rollback the code a pool
	// runs: the same rule.
	for _, cmd := range [][]string{{"corral", "drain", "app", "--timeout", "1s"}, {"corral", "undrain", "app"},
		{"corral", "cordon", "app@1"}, {"corral", "uncordon", "app@1"},
		{"corral", "deploy", "app", "/srv/app/releases/2"}, {"corral", "rollback", "app"}} {
		out, err := b.run(append([]string{"runuser", "-u", "alice", "--"}, cmd...)...)
		if err == nil || !strings.Contains(out, "permission denied") || !strings.Contains(err.Error(), "exit status 3") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("%s as alice: err=%v, want one line saying permission denied\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	out, err = b.run("runuser", "-u", "alice", "--", "busctl", "call", "org.corral.Corral1", "/org/corral/Corral1", "org.corral.Corral1.Manager", "Drain", "st", "app", "0")
	if err == nil || !strings.Contains(out, "ccess denied") {
		t.Errorf("busctl call Drain as alice: err=%v\n%s", err, out)
	}
	if l := b.must("corral", "list", "--json"); strings.Contains(l, `"drained": true`) {
		t.Errorf("a refused drain drained the pool:\n%s", l)
	}
	for _, call := range [][]string{{"Deploy", "ss", "app", "/srv/app/releases/2"}, {"Rollback", "s", "app"}} {
		out, err = b.run(append([]string{"runuser", "-u", "alice", "--", "busctl", "call", "org.corral.Corral1", "/org/corral/Corral1", "org.corral.Corral1.Manager"}, call...)...)
		if err == nil || !strings.Contains(out, "ccess denied") {
			t.Errorf("busctl call %s as alice: err=%v\n%s", call[0], err, out)
		}
	}
	// The corral group gets past the check: app has no release link.
	out, err = b.run("runuser", "-u", "bob", "--", "corral", "rollback", "app")
	if err == nil || !strings.Contains(out, "has no release link") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("corral rollback app as bob: err=%v, want exit 1 saying app has no release link\n%s", err, out)
	}
	b.must("runuser", "-u", "bob", "--", "corral", "drain", "app", "--timeout", "1s")
	b.must("runuser", "-u", "bob", "--", "corral", "undrain", "app")
	b.must("runuser", "-u", "bob", "--", "corral", "scale", "app", "3")
	b.waitActive("app", "1", "2", "3")
}

// TestListManyInstances: corral list with a pool of 64 instances.
func TestListManyInstances(t *testing.T) {
	b := installed(t)
	b.writePool("big", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18092\"]\ninstances = 64\nreadiness = \"notify\"\n")
	b.must("systemctl", "restart", "corral.service")
	b.must("systemctl", "start", "big.target")
	waitFor(t, "64 instances running", 120*time.Second, func() error {
		for _, p := range b.list().Pools {
			if p.Name == "big" && p.Running == 64 && len(p.Instances) == 64 {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	var best time.Duration
	for i := 0; i < 5; i++ {
		out := b.must("sh", "-c", "s=$(date +%s%N); corral list >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 ))")
		us, _ := strconv.Atoi(strings.TrimSpace(out))
		if d := time.Duration(us) * time.Microsecond; best == 0 || d < best {
			best = d
		}
	}
	t.Logf("corral list with 64 instances: best of 5: %v", best)
	if best > 2*time.Second {
		t.Errorf("corral list with 64 instances took %v", best)
	}
}

// TestFailedSocketRecovered: connections while no instance can start trip
// the socket's trigger limit and systemd closes it; corrald says so and,
// once an instance can run again, opens it again.
func TestFailedSocketRecovered(t *testing.T) {
	b := installed(t)
	b.writePool("gate", `exec = ["/bin/sh", "-c", "test -e /srv/gate/open && exec /usr/libexec/corral/corral-demo; exit 1"]
listen = ["127.0.0.1:18093"]
instances = 1
balance = "shared"
readiness = "notify"
[restart]
backoff = "500ms"
backoff_max = "2s"
`)
	b.must("systemctl", "restart", "corral.service")
	b.run("systemctl", "start", "gate.target")
	// Hammer the socket until systemd gives up on it.
	waitFor(t, "gate.socket failed", 60*time.Second, func() error {
		for i := 0; i < 30; i++ {
			get("http://127.0.0.1:18093/")
		}
		if st := b.show("gate.socket", "ActiveState"); st != "failed" {
			return fmt.Errorf("gate.socket %s (%s)", st, b.show("gate.socket", "Result"))
		}
		return nil
	})
	t.Logf("gate.socket: %s, result %s", b.show("gate.socket", "ActiveState"), b.show("gate.socket", "Result"))
	// corrald says so (corral list shows socket-failed, or crash-loop
	// once the instance has failed often enough, which outranks it).
	b.waitJournal("corral.service", "socket failed")
	waitFor(t, "corral list says socket-failed or crash-loop", 30*time.Second, func() error {
		for _, p := range b.list().Pools {
			if p.Name == "gate" && (p.State == "socket-failed" || p.State == "crash-loop") {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})

	// The worker can start now: corrald's next try brings both back.
	if err := b.WriteFile("/srv/gate/open", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gate answers again", 60*time.Second, func() error {
		_, err := get("http://127.0.0.1:18093/")
		return err
	})
	if st := b.show("gate.socket", "ActiveState"); st != "active" {
		t.Errorf("gate.socket %s after recovery", st)
	}
	logs := b.must("journalctl", "-u", "corral.service", "--no-pager", "-o", "cat")
	var acts []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "pool=gate") {
			acts = append(acts, l)
		}
	}
	t.Logf("corrald on gate:\n%s", strings.Join(acts, "\n"))
}
