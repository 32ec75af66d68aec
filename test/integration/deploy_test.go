//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

const deployPort = 18340

// deployBox is a box with the pool shop of 4 demo instances whose exec goes
// through the release link /srv/shop/current, on release v1, and these
// releases beside it: v1, v2 and v3, good; exits, which fails at start;
// never, which never sends READY=1; sick, whose /health answers 500; and
// crash3, which serves on instances 1 and 2 and exits at start on 3. (A
// crash of an instance that serves fails the requests it has in flight,
// as any crash does: docs/benchmarks.md measures those of a SIGKILL; the
// deploy's handling of one is TestDeployRollsBack's.) Each release
// that starts the demo exports RELEASE, so that a process shows which it
// started from.
func deployBox(t *testing.T) *box {
	t.Helper()
	b := installedWith(t, sdbox.KernelSteering(sdbox.Options{}))
	for _, r := range []string{"v1", "v2", "v3"} {
		script := fmt.Sprintf("#!/bin/sh\nexport RELEASE=%s\nexec /usr/libexec/corral/corral-demo \"$@\"\n", r)
		if err := b.WriteFile("/srv/shop/releases/"+r+"/run", []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for r, script := range map[string]string{
		"exits":  "#!/bin/sh\necho this release is broken >&2\nexit 1\n",
		"never":  "#!/bin/sh\nexec sleep infinity\n",
		"sick":   "#!/bin/sh\nexport RELEASE=sick DEMO_FAULTS=1 DEMO_SICK=1\nexec /usr/libexec/corral/corral-demo \"$@\"\n",
		"crash3": "#!/bin/sh\nexport RELEASE=crash3\nif [ \"$CORRAL_INSTANCE\" = 3 ]; then echo instance 3 cannot start on this release >&2; exit 3; fi\nexec /usr/libexec/corral/corral-demo \"$@\"\n",
	} {
		if err := b.WriteFile("/srv/shop/releases/"+r+"/run", []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b.must("ln", "-s", "/srv/shop/releases/v1", "/srv/shop/current")
	b.writePool("shop", fmt.Sprintf(`exec = ["/srv/shop/current/run"]
listen = ["127.0.0.1:%d"]
instances = 4
readiness = "notify"
release = "/srv/shop/current"
canary = "2s"
health = "GET /health"
start_timeout = "5s"
keep_releases = 2
`, deployPort))
	b.must("corral", "start", "shop")
	b.waitActive("shop", "1", "2", "3", "4")
	return b
}

// releases returns the release each instance of shop runs, by its
// process's RELEASE.
func (b *box) releases() []string {
	var out []string
	for i := 1; i <= 4; i++ {
		pid := b.show(fmt.Sprintf("shop@%d.service", i), "MainPID")
		env, _ := b.run("sh", "-c", "tr '\\0' '\\n' < /proc/"+pid+"/environ | sed -n 's/^RELEASE=//p'")
		out = append(out, strings.TrimSpace(env))
	}
	return out
}

// TestDeployUnderLoad: under 50 clients with a new connection per request
// and 50 keep-alive ones, a good release deploys to 4 instances; one that
// exits at start, one that never becomes ready, one whose /health answers
// 500 and one that fails on instance 3 after the canary are each rolled
// back by themselves; corral rollback returns to the release before; and
// with keep_releases = 2 the next deploy removes the release beyond them.
// Not one request fails.
func TestDeployUnderLoad(t *testing.T) {
	b := deployBox(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", deployPort)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fresh, kept := make(chan loadResult, 1), make(chan loadResult, 1)
	go func() { fresh <- load(ctx, url, 50) }()
	go func() { kept <- loadKeepAlive(ctx, url, 50) }()
	time.Sleep(time.Second)

	link := func() string { return strings.TrimSpace(b.must("readlink", "/srv/shop/current")) }
	same := func(want string) error {
		for i, r := range b.releases() {
			if r != want {
				return fmt.Errorf("shop@%d runs %q, want %s", i+1, r, want)
			}
		}
		return nil
	}

	// A good release: the canary, then the rest.
	t0 := time.Now()
	out := b.must("corral", "deploy", "shop", "/srv/shop/releases/v2")
	t.Logf("corral deploy shop v2 (%v):\n%s", time.Since(t0).Round(time.Millisecond), out)
	for _, want := range []string{"shop: release link on /srv/shop/releases/v2", "shop@1 is the canary: watched alone for 2s", "shop@4 answered the health request", "shop: 4 instance(s) on /srv/shop/releases/v2"} {
		if !strings.Contains(out, want) {
			t.Errorf("corral deploy output lacks %q", want)
		}
	}
	if l := link(); l != "/srv/shop/releases/v2" {
		t.Errorf("the link points at %s after the deploy", l)
	}
	if err := same("v2"); err != nil {
		t.Error(err)
	}
	if st := b.must("corral", "status", "shop"); !strings.Contains(st, "release    /srv/shop/releases/v2 (4 instance(s))") {
		t.Errorf("corral status shop after the deploy:\n%s", st)
	}

	// Bad releases, each rolled back by itself: every instance runs v2
	// again and the link points at it.
	for _, c := range []struct {
		release string
		want    []string // in corral deploy's output
	}{
		{"exits", []string{"deploy rolled back: shop@1: did not become ready: exited with status 1", "journalctl -u shop@1.service"}},
		{"never", []string{"deploy rolled back: shop@1: did not become ready: no READY=1 within start_timeout (5s)"}},
		{"sick", []string{"deploy rolled back: shop@1: health: GET /health answered 500"}},
		// It passes the canary, then fails on instance 3: 1 to 3 go back.
		{"crash3", []string{"deploy rolled back: shop@3: did not become ready: exited with status 3", "shop@1 is the canary",
			"shop@1 restarting on /srv/shop/releases/v2", "shop@2 restarting on /srv/shop/releases/v2", "shop@3 restarting on /srv/shop/releases/v2"}},
	} {
		t0 := time.Now()
		out, err := b.run("corral", "deploy", "shop", "/srv/shop/releases/"+c.release)
		t.Logf("corral deploy shop %s (%v): %v\n%s", c.release, time.Since(t0).Round(time.Millisecond), err, out)
		want := append(c.want, "the pool runs /srv/shop/releases/v2 again")
		for _, w := range want {
			if err == nil || !strings.Contains(out, w) {
				t.Errorf("deploy of %s: exit %v, output lacks %q", c.release, err, w)
			}
		}
		if l := link(); l != "/srv/shop/releases/v2" {
			t.Errorf("the link points at %s after the rollback of %s", l, c.release)
		}
		b.waitActive("shop", "1", "2", "3", "4")
		if err := same("v2"); err != nil {
			t.Errorf("after the rollback of %s: %v", c.release, err)
		}
	}

	// corral rollback: back to v1.
	out = b.must("corral", "rollback", "shop", "--json")
	if !strings.Contains(out, `"to": "/srv/shop/releases/v1"`) || !strings.Contains(out, `"ok": true`) {
		t.Errorf("corral rollback --json:\n%s", out)
	}
	if err := same("v1"); err != nil {
		t.Errorf("after corral rollback: %v", err)
	}

	// keep_releases = 2: v3 after v1 (and v2 before it) removes v2.
	out = b.must("corral", "deploy", "shop", "/srv/shop/releases/v3")
	if !strings.Contains(out, "shop: removed old release /srv/shop/releases/v2 (beyond keep_releases)") {
		t.Errorf("corral deploy shop v3:\n%s", out)
	}
	if _, err := b.run("test", "-e", "/srv/shop/releases/v2"); err == nil {
		t.Errorf("/srv/shop/releases/v2 is still there")
	}
	if _, err := b.run("test", "-d", "/srv/shop/releases/v1"); err != nil {
		t.Errorf("/srv/shop/releases/v1 is gone")
	}
	if err := same("v3"); err != nil {
		t.Errorf("after the deploy of v3: %v", err)
	}

	time.Sleep(500 * time.Millisecond)
	cancel()
	rf, rk := <-fresh, <-kept
	t.Logf("load through the deploys: new connections %v; keep-alive %v", rf, rk)
	if rf.failed+rf.refused+rk.failed+rk.refused != 0 || rf.ok < 100 || rk.ok < 100 {
		t.Errorf("requests failed during the deploys: %v %v; first: %v %v", rf, rk, rf.samples, rk.samples)
	}

	// A deploy of a pool without a release link says what to set.
	if out, err := b.run("corral", "deploy", "app", "/srv/shop/releases/v2"); err == nil || !strings.Contains(out, "has no release link: set release = ") {
		t.Errorf("deploy of app: %v\n%s", err, out)
	}
}
