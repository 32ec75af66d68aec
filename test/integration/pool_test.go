//go:build integration

package integration

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const demoURL = "http://127.0.0.1:8080/"

// TestDemoPool: the package installs, the demo pool is not started by the
// install, `systemctl start app.target` starts one instance per core, each
// instance answers and logs under its own tag, instances 1..4 started by
// name all answer, and the sandbox rates 1.0 or lower.
func TestDemoPool(t *testing.T) {
	b := installed(t)

	if st := b.show("app.target", "ActiveState"); st != "inactive" {
		t.Errorf("app.target after install: %s, want inactive (the demo is disabled until started)", st)
	}
	if out := b.must("corral", "validate"); !strings.Contains(out, "app: ok") {
		t.Errorf("corral validate:\n%s", out)
	}

	b.must("systemctl", "start", "app.target")
	cores := strings.TrimSpace(b.must("nproc"))
	n, _ := strconv.Atoi(cores)
	for i := 1; i <= n; i++ {
		if st := b.show(fmt.Sprintf("app@%d.service", i), "ActiveState"); st != "active" {
			t.Errorf("app@%d after start app.target: %s", i, st)
		}
	}
	seen := instancesSeen(t, demoURL, 200)
	if len(seen) != n {
		t.Errorf("app.target (%d cores): instances answering %v, want %d of them", n, seen, n)
	}

	// pm2-style: start instances 1..4 by name.
	b.must("systemctl", "start", "app@1", "app@2", "app@3", "app@4")
	seen = instancesSeen(t, demoURL, 400)
	for i := 1; i <= 4; i++ {
		if seen[strconv.Itoa(i)] == 0 {
			t.Errorf("instance %d never answered in 400 requests: %v", i, seen)
		}
	}
	t.Logf("requests per instance (reuseport, 400 new connections): %v", seen)
	// corrald adopts instances started by hand: the count follows.
	waitFor(t, "corrald adopts app@3 and app@4", 30*time.Second, func() error {
		if l := b.list(); l.Pools[0].Desired != 4 {
			return fmt.Errorf("%+v", l.Pools[0])
		}
		return nil
	})

	// The demo burns CPU on /cpu.
	if body, err := get("http://127.0.0.1:8080/cpu?ms=20"); err != nil || !strings.Contains(body, "burned 20 ms") {
		t.Errorf("/cpu?ms=20: %q %v", body, err)
	}
	if body, err := get("http://127.0.0.1:8080/health"); err != nil || strings.TrimSpace(body) != "ok" {
		t.Errorf("/health: %q %v", body, err)
	}

	// Each instance's log is tagged with its instance number.
	logs := b.must("journalctl", "-u", "app@*", "--no-pager", "-o", "short")
	for i := 1; i <= 4; i++ {
		if !strings.Contains(logs, fmt.Sprintf("app@%d[", i)) {
			t.Errorf("journal has no line tagged app@%d[:\n%s", i, logs)
		}
	}

	// Readiness: the demo is Type=notify and got to READY=1.
	if typ := b.show("app@1.service", "Type"); typ != "notify" {
		t.Errorf("app@1 Type=%s, want notify", typ)
	}

	// Hardening bar, in the real systemd.
	out, _ := b.run("systemd-analyze", "security", "--no-pager", "app@1.service")
	m := regexp.MustCompile(`Overall exposure level for app@1.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security app@1.service:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > 1.0 {
		t.Errorf("app@1.service exposure %.1f, want <= 1.0", score)
	}
	t.Logf("systemd-analyze security app@1.service: %s", m[1])

	// The rendered units are clean for systemd-analyze verify: no output.
	gen := "/run/systemd/generator/"
	if out, err := b.run("systemd-analyze", "verify", "--man=no", gen+"app.target", gen+"app@1.service", gen+"app@1.socket"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// killUnderLoad SIGKILLs instance 1 of a pool under load and checks that no
// connection is refused and the instance comes back.
func killUnderLoad(t *testing.T, b *box, pool, url string) {
	t.Helper()
	unit := pool + "@1.service"
	before, _ := strconv.Atoi(b.show(unit, "NRestarts"))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	res := make(chan loadResult, 1)
	go func() { res <- load(ctx, url, 32) }()
	time.Sleep(2 * time.Second)
	pid := b.show(unit, "MainPID")
	b.must("systemctl", "kill", "-s", "KILL", unit)
	r := <-res
	t.Logf("%s: SIGKILL to %s (pid %s) under 32 clients for 6s: %v", pool, unit, pid, r)
	if r.refused != 0 {
		t.Errorf("%s: %d connections refused while an instance was killed, want 0", pool, r.refused)
	}
	// Requests in flight on the killed process may fail; no more than the
	// clients there are.
	if r.failed > 32 {
		t.Errorf("%s: %d requests failed, more than the 32 that can be in flight", pool, r.failed)
	}
	if r.ok < 100 {
		t.Errorf("%s: only %d requests succeeded", pool, r.ok)
	}
	waitFor(t, unit+" back", 30*time.Second, func() error {
		if st := b.show(unit, "ActiveState"); st != "active" {
			return fmt.Errorf("ActiveState=%s", st)
		}
		if n, _ := strconv.Atoi(b.show(unit, "NRestarts")); n <= before {
			return fmt.Errorf("NRestarts=%d, was %d", n, before)
		}
		if p := b.show(unit, "MainPID"); p == pid {
			return fmt.Errorf("same MainPID %s", p)
		}
		return nil
	})
}

// TestKillUnderLoad: SIGKILL of an instance under load refuses no
// connection, in both balance modes, and the instance is back.
func TestKillUnderLoad(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	waitFor(t, "demo answers", 30*time.Second, func() error { _, err := get(demoURL); return err })
	killUnderLoad(t, b, "app", demoURL)

	b.writePool("shared", `exec = ["/usr/libexec/corral/corral-demo"]
listen = ["127.0.0.1:18081"]
instances = 2
balance = "shared"
readiness = "notify"
`)
	b.must("systemctl", "start", "shared.target")
	seen := instancesSeen(t, "http://127.0.0.1:18081/", 50)
	t.Logf("shared: requests per instance: %v", seen)
	killUnderLoad(t, b, "shared", "http://127.0.0.1:18081/")
}

// TestBrokenPoolBesideGoodOnes: a broken pool file gets no units and a
// file:line:col error from corral validate; the running demo pool and a new
// good pool are untouched by it.
func TestBrokenPoolBesideGoodOnes(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	waitFor(t, "demo answers", 30*time.Second, func() error { _, err := get(demoURL); return err })
	pid := b.show("app@1.service", "MainPID")

	if err := b.WriteFile("/etc/corral/pools.d/broken.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18083\"]\ninstances = \"many\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.writePool("good", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18082\"]\ninstances = 2\nreadiness = \"notify\"\n")

	if st := b.show("broken.target", "LoadState"); st != "not-found" {
		t.Errorf("broken.target LoadState=%s, want not-found (no units for a broken pool)", st)
	}
	b.must("systemctl", "start", "good.target")
	if seen := instancesSeen(t, "http://127.0.0.1:18082/", 100); len(seen) != 2 {
		t.Errorf("good pool: instances answering %v, want 2", seen)
	}
	if _, err := get(demoURL); err != nil {
		t.Errorf("demo pool after a broken pool and daemon-reload: %v", err)
	}
	if p := b.show("app@1.service", "MainPID"); p != pid {
		t.Errorf("app@1 was restarted by daemon-reload: pid %s → %s", pid, p)
	}
	out, err := b.run("corral", "validate")
	if err == nil || !strings.Contains(out, "/etc/corral/pools.d/broken.toml:3:13: instances must be") {
		t.Errorf("corral validate with a broken pool: err=%v\n%s", err, out)
	}

	// A pool named after a unit of the system shadows nothing: dbus keeps
	// working and validate says why the pool was refused.
	b.writePool("dbus", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18089\"]\n")
	if st := b.show("dbus.target", "LoadState"); st != "not-found" {
		t.Errorf("dbus.target LoadState=%s, want not-found", st)
	}
	if frag := b.show("dbus.socket", "FragmentPath"); frag != "/lib/systemd/system/dbus.socket" {
		t.Errorf("dbus.socket comes from %q after a pool named dbus", frag)
	}
	b.must("busctl", "list", "--no-pager")
	out, err = b.run("corral", "validate", "/etc/corral/pools.d/dbus.toml")
	if err == nil || !strings.Contains(out, `pool "dbus" would shadow /lib/systemd/system/dbus.socket`) {
		t.Errorf("corral validate dbus.toml: err=%v\n%s", err, out)
	}
}

// TestUnixSocketPool: a pool listening on a unix socket path serves on it.
func TestUnixSocketPool(t *testing.T) {
	b := installed(t)
	b.writePool("sock", `exec = ["/usr/libexec/corral/corral-demo"]
listen = ["/run/corral-sock/http.sock"]
instances = 2
readiness = "notify"
`)
	if bal := b.show("sock.socket", "LoadState"); bal != "loaded" {
		t.Fatalf("sock.socket LoadState=%s (a unix socket pool is balance shared)", bal)
	}
	b.must("systemctl", "start", "sock.target")
	seen := map[string]bool{}
	for i := 0; i < 40; i++ {
		out := b.must("curl", "-sS", "--max-time", "5", "--unix-socket", "/run/corral-sock/http.sock", "http://localhost/")
		m := instanceRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("answer over the unix socket: %q", out)
		}
		seen[m[1]] = true
	}
	t.Logf("unix socket pool: instances answering %v", seen)
}

// TestNodeAndPythonWorkers: ordinary Node and Python servers, listening on
// fd 3, run unchanged under the default sandbox; with W^X memory forced on,
// Node's JIT dies and the journal names the setting to change.
func TestNodeAndPythonWorkers(t *testing.T) {
	b := installed(t)
	node := `const http = require('http');
const inst = process.env.CORRAL_INSTANCE;
http.createServer((req, res) => res.end('node instance ' + inst + '\n')).listen({ fd: 3 });
process.on('SIGTERM', () => process.exit(0));
`
	python := `import http.server, os, socket, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("python instance %s\n" % os.environ["CORRAL_INSTANCE"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    pass
srv = S(("", 0), H, bind_and_activate=False)
srv.socket = socket.socket(fileno=3)
srv.serve_forever()
`
	for path, src := range map[string]string{"/srv/apps/server.js": node, "/srv/apps/server.py": python} {
		if err := b.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.writePool("nodeapp", "exec = [\"/usr/bin/node\", \"/srv/apps/server.js\"]\nlisten = [\"127.0.0.1:18084\"]\ninstances = 2\n")
	b.writePool("pyapp", "exec = [\"/usr/bin/python3\", \"/srv/apps/server.py\"]\nlisten = [\"127.0.0.1:18085\"]\ninstances = 2\n")
	b.must("systemctl", "start", "nodeapp.target", "pyapp.target")
	for url, want := range map[string]string{"http://127.0.0.1:18084/": "node instance", "http://127.0.0.1:18085/": "python instance"} {
		waitFor(t, url, 30*time.Second, func() error {
			body, err := get(url)
			if err == nil && !strings.Contains(body, want) {
				err = fmt.Errorf("answer %q", body)
			}
			return err
		})
		if seen := instancesSeen(t, url, 60); len(seen) != 2 {
			t.Errorf("%s: instances answering %v, want 2", url, seen)
		}
	}

	// The same Node server with W^X memory enforced: V8 dies, and the
	// journal says which setting to change.
	b.writePool("nodewx", "exec = [\"/usr/bin/node\", \"/srv/apps/server.js\"]\nlisten = [\"127.0.0.1:18086\"]\ninstances = 1\n[restart]\npolicy = \"no\"\n[sandbox]\nwrite_execute_memory = false\n")
	b.run("systemctl", "start", "nodewx@1.service")
	b.waitJournal("nodewx@1.service", "sandbox.write_execute_memory = false")
}

// TestMissingBinary: a pool whose exec[0] does not exist still gets units
// (its disk may not be mounted at boot), corral validate names the problem,
// and a start fails with a journal line saying what to check.
func TestMissingBinary(t *testing.T) {
	b := installed(t)
	b.writePool("ghost", "exec = [\"/opt/ghost/bin/server\"]\nlisten = [\"127.0.0.1:18087\"]\ninstances = 1\n[restart]\npolicy = \"no\"\n")
	out, err := b.run("corral", "validate", "/etc/corral/pools.d/ghost.toml")
	if err == nil || !strings.Contains(out, "exec[0] /opt/ghost/bin/server does not exist") {
		t.Errorf("corral validate ghost.toml: err=%v\n%s", err, out)
	}
	if _, err := b.run("systemctl", "start", "ghost@1.service"); err == nil {
		t.Errorf("starting a pool with a missing binary succeeded")
	}
	b.waitJournal("ghost@1.service", "exec[0] could not be executed")
}

// TestPurge: purge stops the demo pool, removes the package's files and
// units, and leaves an operator's own pool file alone.
func TestPurge(t *testing.T) {
	b := installed(t)
	b.writePool("mine", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18088\"]\ninstances = 1\n")
	b.must("systemctl", "start", "app.target")
	waitFor(t, "demo answers", 30*time.Second, func() error { _, err := get(demoURL); return err })

	b.must("corral", "scale", "app", "3") // corrald's state.json holds it
	if _, err := b.run("test", "-s", "/var/lib/corral/state.json"); err != nil {
		t.Fatalf("no state.json after corral scale: %v", err)
	}
	purge := b.must("sh", "-c", "apt-get purge -y corral 2>&1")
	if !strings.Contains(purge, "kept your pool files in /etc/corral/pools.d (not part of the package); removed corrald's state") {
		t.Errorf("apt-get purge does not say what it kept and removed:\n%s", purge)
	}
	if _, err := b.run("test", "-e", "/var/lib/corral/state.json"); err == nil {
		t.Errorf("state.json still exists after purge")
	}

	for _, f := range []string{"/usr/bin/corral", "/lib/systemd/system-generators/corral-generator", "/usr/libexec/corral/corral-demo", "/etc/corral/pools.d/app.toml", "/usr/share/doc/corral"} {
		if _, err := b.run("test", "-e", f); err == nil {
			t.Errorf("%s still exists after purge", f)
		}
	}
	if _, err := b.run("test", "-e", "/etc/corral/pools.d/mine.toml"); err != nil {
		t.Errorf("purge removed the operator's own pool file")
	}
	for _, u := range []string{"app.target", "app@1.service", "app@1.socket"} {
		if st := b.show(u, "ActiveState"); st == "active" {
			t.Errorf("%s still active after purge", u)
		}
	}
	if st := b.show("app.target", "LoadState"); st != "not-found" {
		t.Errorf("app.target LoadState=%s after purge, want not-found", st)
	}
	if _, err := get(demoURL); err == nil {
		t.Errorf("the demo still answers on 8080 after purge")
	}
}

// TestAbortRemove: when a removal fails after prerm stopped the pools, dpkg
// runs postinst abort-remove, which starts them again (they stayed stopped).
// The maintainer scripts are run as dpkg runs them.
func TestAbortRemove(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	waitFor(t, "demo answers", 30*time.Second, func() error { _, err := get(demoURL); return err })

	b.must("/var/lib/dpkg/info/corral.prerm", "remove")
	if st := b.show("app.target", "ActiveState"); st == "active" {
		t.Fatalf("prerm remove left app.target %s", st)
	}
	out := b.must("/var/lib/dpkg/info/corral.postinst", "abort-remove")
	if !strings.Contains(out, "started app.target again") {
		t.Errorf("postinst abort-remove: %q, want it to start app.target again", out)
	}
	waitFor(t, "demo answers again", 30*time.Second, func() error { _, err := get(demoURL); return err })
	if st := b.show("corral.service", "ActiveState"); st != "active" {
		t.Errorf("corral.service is %s after abort-remove, want active", st)
	}
	if _, err := b.run("test", "-e", "/run/corral-stopped-by-prerm"); err == nil {
		t.Errorf("abort-remove left its list of stopped pools behind")
	}
}
