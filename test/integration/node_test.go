//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/npmci"
)

// nodeApp is one app of nodeapps/, written as its framework's users write
// it, with the port it listens on in its own code.
type nodeApp struct {
	name string // pool, file nodeapps/NAME.js, and what / says: "hello from NAME, pid P"
	port int
}

var nodeApps = []nodeApp{{"express", 5555}, {"fastify", 5556}, {"koa", 5557}, {"http", 5558}}

// TestNodeAppsUnchanged: express, fastify, koa and plain http apps that
// call listen(PORT), with no line changed and a three-line pool file, are
// served by every instance through the Node preload; an Express app that
// only knows process.on('message')/process.send answers corral broadcast;
// and corral reload under load (new connections and keep-alive ones) fails
// no request, each old process draining on SIGTERM.
func TestNodeAppsUnchanged(t *testing.T) {
	b := installed(t)
	installNodeApps(t, b)
	for _, a := range nodeApps {
		b.writePool(a.name, fmt.Sprintf("exec      = [\"/usr/bin/node\", \"/srv/nodeapps/%s.js\"]\nlisten    = [\"127.0.0.1:%d\"]\ninstances = 2\n", a.name, a.port))
	}
	out := b.must("corral", "validate")
	for _, a := range nodeApps {
		if !strings.Contains(out, a.name+": ok") || !strings.Contains(out, fmt.Sprintf("preload on: the app's listen() of %d", a.port)) {
			t.Errorf("corral validate says nothing of %s's preload:\n%s", a.name, out)
		}
	}
	for _, a := range nodeApps {
		b.must("corral", "start", a.name)
	}
	for _, a := range nodeApps {
		url := fmt.Sprintf("http://127.0.0.1:%d/", a.port)
		waitFor(t, a.name+" answers", 30*time.Second, func() error {
			_, err := get(url)
			return err
		})
		if pids := pidsSeen(t, url, a.name, 40); len(pids) < 2 {
			t.Errorf("%s: answers named pids %v, want both instances'", a.name, pids)
		}
		logs := b.must("journalctl", "-u", a.name+"@1.service", "--no-pager", "-o", "cat")
		if want := fmt.Sprintf("corral: listen(%d) is served on systemd's socket 127.0.0.1:%d (fd 3)", a.port, a.port); !strings.Contains(logs, want) {
			t.Errorf("%s@1's journal lacks %q:\n%s", a.name, want, logs)
		}
	}

	// Messages: one reply per instance, from process.on('message').
	waitFor(t, "express answers messages", 30*time.Second, func() error {
		out, err := b.run("corral", "broadcast", "express", "x", "--wait")
		if err == nil && strings.Count(out, `got "x"`) != 2 {
			err = fmt.Errorf("want 2 replies")
		}
		if err != nil {
			return fmt.Errorf("%v:\n%s", err, out)
		}
		return nil
	})

	for _, a := range nodeApps {
		reloadUnderLoad(t, b, a.name, a.port, "corral: drained in")
	}
	if t.Failed() {
		logs, _ := b.run("journalctl", "-u", "express@*", "-u", "fastify@*", "-u", "koa@*", "-u", "http@*", "--no-pager", "-o", "short-precise")
		t.Logf("journal:\n%s", logs)
	}
}

// reloadUnderLoad runs corral reload on a pool of 2 instances serving
// GET /slow?ms=20 on port while 16 clients send requests on new
// connections and 4 on keep-alive ones: none may fail, each instance has a
// new process, and each old one stopped on its own: its journal has
// cleanStop and no timeout or SIGKILL.
func reloadUnderLoad(t *testing.T, b *box, pool string, port int, cleanStop string) {
	t.Helper()
	units := []string{pool + "@1.service", pool + "@2.service"}
	pids := make([]string, len(units))
	for i, u := range units {
		pids[i] = b.show(u, "MainPID")
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/slow?ms=20", port)
	ctx, cancel := context.WithCancel(context.Background())
	fresh := make(chan loadResult, 1)
	kept := make(chan loadResult, 1)
	go func() { fresh <- load(ctx, url, 16) }()
	go func() { kept <- loadKeepAlive(ctx, url, 4) }()
	time.Sleep(time.Second)
	t0 := time.Now()
	out, err := b.run("corral", "reload", pool)
	took := time.Since(t0)
	time.Sleep(time.Second)
	cancel()
	rf, rk := <-fresh, <-kept
	t.Logf("%s: corral reload took %v; under 16 clients on new connections: %v; 4 on keep-alive: %v", pool, took.Round(time.Millisecond), rf, rk)
	if err != nil || !strings.Contains(out, pool+": reloaded 2 instance(s)") {
		t.Errorf("corral reload %s: %v\n%s", pool, err, out)
	}
	for what, r := range map[string]loadResult{"new connections": rf, "keep-alive connections": rk} {
		if r.refused != 0 || r.failed != 0 || r.ok < 50 {
			t.Errorf("%s, %s: %v during corral reload, want none failed (first failures: %q)", pool, what, r, r.samples)
		}
	}
	for i, u := range units {
		if p := b.show(u, "MainPID"); p == pids[i] || p == "0" {
			t.Errorf("%s: MainPID %s after reload, was %s", u, p, pids[i])
		}
		logs := b.must("journalctl", "-u", u, "--no-pager", "-o", "cat")
		if !strings.Contains(logs, cleanStop) || strings.Contains(logs, "timed out") || strings.Contains(logs, "SIGKILL") {
			t.Errorf("%s: no clean stop (%q) in its journal:\n%s", u, cleanStop, logs)
		}
	}
}

var pidRE = regexp.MustCompile(`hello from (\w+), pid (\d+)`)

// pidsSeen makes n requests on fresh connections and returns the pids
// that answered.
func pidsSeen(t *testing.T, url, app string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		body, err := get(url)
		if err != nil {
			t.Fatalf("%s request %d: %v", app, i, err)
		}
		m := pidRE.FindStringSubmatch(body)
		if m == nil || m[1] != app {
			t.Fatalf("%s answered %q", app, body)
		}
		seen[m[2]]++
	}
	return seen
}

// installNodeApps installs nodeapps/ with its npm packages, as pinned in
// its package-lock.json, at /srv/nodeapps in the box. npm ci runs once per
// lock file, into the user's cache directory.
func installNodeApps(t *testing.T, b *box) {
	t.Helper()
	src := "nodeapps"
	var pkg [2][]byte
	for k, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		pkg[k] = data
	}
	cache, err := npmci.CacheDir("corral-test-nodeapps")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := npmci.Install(context.Background(), cache, "express, fastify, koa", pkg[0], pkg[1])
	if err != nil {
		t.Fatal(err)
	}
	apps, err := filepath.Glob(filepath.Join(src, "*.js"))
	if err != nil || len(apps) == 0 {
		t.Fatalf("no apps in %s: %v", src, err)
	}
	for _, app := range apps {
		data, err := os.ReadFile(app)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteFile("/srv/nodeapps/"+filepath.Base(app), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "node_modules"), filepath.Join(b.Root(), "srv", "nodeapps")).CombinedOutput(); err != nil {
		t.Fatalf("copy node_modules into the box: %v\n%s", err, out)
	}
}

// TestCreateAndDelete: as pm2 start and pm2 delete, from the app's
// directory: `corral start NAME … -- node express.js` writes the pool
// file, makes its units and serves the app on every instance; it refuses
// to overwrite; `corral delete` leaves the units, the pool directory and
// corrald's state as they were before, also for a pool whose instances
// failed, and a second delete is not an error.
func TestCreateAndDelete(t *testing.T) {
	b := installed(t)
	installNodeApps(t, b)
	unitsOf := func(pattern string) string {
		return b.must("systemctl", "list-units", "--all", "--plain", "--no-legend", pattern)
	}
	poolDir := func() string { return b.must("ls", "-la", "--time-style=+", "/etc/corral/pools.d") }
	beforeUnits, beforeDir := unitsOf("shop*")+unitsOf("bad*"), poolDir()

	out := b.must("sh", "-c", "cd /srv/nodeapps && corral start shop -i 2 --listen 127.0.0.1:5555 -e NODE_ENV=production -- node express.js")
	for _, want := range []string{"shop: created /etc/corral/pools.d/shop.toml", "shop: started 2 instance(s) on 127.0.0.1:5555"} {
		if !strings.Contains(out, want) {
			t.Errorf("corral start shop … -- node express.js: no %q:\n%s", want, out)
		}
	}
	t.Logf("the pool file it made:\n%s", b.must("cat", "/etc/corral/pools.d/shop.toml"))
	waitFor(t, "shop answers", 30*time.Second, func() error {
		_, err := get("http://127.0.0.1:5555/")
		return err
	})
	if pids := pidsSeen(t, "http://127.0.0.1:5555/", "express", 40); len(pids) < 2 {
		t.Errorf("shop: answers named pids %v, want both instances'", pids)
	}
	if out, err := b.run("corral", "start", "shop", "--listen", "127.0.0.1:5556", "--", "/usr/bin/node", "/srv/nodeapps/koa.js"); err == nil || !strings.Contains(out, "shop.toml exists") {
		t.Errorf("a second corral start shop … -- CMD: %v\n%s", err, out)
	}

	// A pool whose instance failed: delete leaves no failed unit behind.
	b.must("corral", "start", "bad", "-i", "1", "--listen", "127.0.0.1:5560", "--", "/bin/false")
	waitFor(t, "bad@1 fails", 60*time.Second, func() error {
		if st := b.show("bad@1.service", "ActiveState"); st != "failed" {
			return fmt.Errorf("ActiveState=%s", st)
		}
		return nil
	})

	for _, pool := range []string{"shop", "bad"} {
		if out := b.must("corral", "delete", pool); !strings.Contains(out, pool+": deleted") {
			t.Errorf("corral delete %s:\n%s", pool, out)
		}
	}
	if after := unitsOf("shop*") + unitsOf("bad*"); after != beforeUnits {
		t.Errorf("units after delete:\n%s\nbefore:\n%s", after, beforeUnits)
	}
	if after := poolDir(); after != beforeDir {
		t.Errorf("pool directory after delete:\n%s\nbefore:\n%s", after, beforeDir)
	}
	if state, _ := b.run("cat", "/var/lib/corral/state.json"); strings.Contains(state, "shop") || strings.Contains(state, "bad") {
		t.Errorf("corrald's state still has the pools:\n%s", state)
	}
	if _, err := get("http://127.0.0.1:5555/"); err == nil {
		t.Errorf("127.0.0.1:5555 still answers after delete")
	}
	if out := b.must("corral", "delete", "shop"); !strings.Contains(out, "shop: no such pool; nothing to delete") {
		t.Errorf("corral delete shop again:\n%s", out)
	}
	if t.Failed() {
		logs, _ := b.run("journalctl", "-u", "corral", "-u", "bad*", "--no-pager", "-o", "short-precise")
		t.Logf("journal of corral and bad:\n%s", logs)
	}
}

// TestNotAcceptingReported: a worker that binds a port of its own (a Node
// app with the preload turned off) runs, and connections to the pool wait
// in its socket's queue: within 5s corral list and corral status say
// not-accepting with the queue, and corrald's journal says the likely
// cause and the fix, once.
func TestNotAcceptingReported(t *testing.T) {
	b := installed(t)
	installNodeApps(t, b)
	b.writePool("own", "exec = [\"/usr/bin/node\", \"/srv/nodeapps/http.js\"]\nlisten = [\"127.0.0.1:5558\"]\ninstances = 2\nnode_preload = false\n")
	b.must("corral", "start", "own")
	b.waitJournal("own@1.service", "Started own@1.service")
	time.Sleep(2 * time.Second) // node is up and listening on its own port

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 8 { // the kernel hashes them to both instances' sockets
		c, err := net.DialTimeout("tcp", "127.0.0.1:5558", 2*time.Second)
		if err != nil {
			t.Fatalf("connect: %v (the socket is systemd's: connecting works, accepting does not)", err)
		}
		conns = append(conns, c)
	}
	t0 := time.Now()
	var list string
	// corrald answers ListPools and ListInstances from snapshots up to
	// 0.5 s old, each taken on its own: the pool's line may say
	// not-accepting a moment before its instances' lines do. Wait for
	// an instance's line, with its queue.
	stuckLine := regexp.MustCompile(`own@\d\s+not-accepting, \d+ queued`)
	waitFor(t, "corral list says an instance is not-accepting", 10*time.Second, func() error {
		list = b.must("corral", "list")
		if !stuckLine.MatchString(list) {
			return fmt.Errorf("corral list:\n%s", list)
		}
		return nil
	})
	took := time.Since(t0)
	t.Logf("reported after %v:\n%s", took.Round(100*time.Millisecond), list)
	// corrald tells within Interval + After + Busy (4.5 s) of the first
	// connection, and ListInstances' snapshot may be 0.5 s older: 5 s by
	// design, measured 2.1–4.4 s in CI. The bound leaves room for a busy
	// machine; the figure is logged above.
	if took > 8*time.Second {
		t.Errorf("not-accepting reported after %v, want within 8s (5s by design)", took)
	}
	status := b.must("corral", "status", "own")
	if !strings.Contains(status, "it likely listens on a port of its own instead of fd 3") {
		t.Errorf("corral status gives no reason:\n%s", status)
	}
	b.waitJournal("corral.service", "accepts no connections")
	logs := b.must("journalctl", "-u", "corral.service", "--no-pager", "-o", "cat")
	if !strings.Contains(logs, "keep node_preload on") {
		t.Errorf("corrald's journal line has no fix:\n%s", logs)
	}
}
