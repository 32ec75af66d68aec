//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestReloadUnderLoad: corral reload of 4 instances under load restarts
// every instance onto a new process, one at a time, each ready before the
// next, and no request fails.
func TestReloadUnderLoad(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.must("corral", "scale", "app", "4")
	b.waitActive("app", "1", "2", "3", "4")
	pids := map[string]string{}
	for _, i := range []string{"1", "2", "3", "4"} {
		pids[i] = b.show("app@"+i+".service", "MainPID")
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan loadResult, 1)
	go func() { res <- load(ctx, demoURL, 32) }()
	time.Sleep(time.Second)
	out := b.must("corral", "reload", "app")
	time.Sleep(time.Second)
	cancel()
	r := <-res
	t.Logf("corral reload app (4 instances) under 32 clients: %v\n%s", r, out)
	if r.refused != 0 || r.failed != 0 || r.ok < 100 {
		t.Errorf("requests during the reload: %v, want none failed", r)
	}
	for _, i := range []string{"1", "2", "3", "4"} {
		if p := b.show("app@"+i+".service", "MainPID"); p == pids[i] || p == "0" {
			t.Errorf("app@%s not restarted: MainPID %s → %s", i, pids[i], p)
		}
		if !strings.Contains(out, "app@"+i+" ready in") {
			t.Errorf("no progress line for app@%s:\n%s", i, out)
		}
	}
	if !strings.Contains(out, "app: reloaded 4 instance(s)") {
		t.Errorf("corral reload output:\n%s", out)
	}
}

// TestReloadStopsAtFailure: when the new version does not start, the reload
// stops at the first instance, says which and where its log is, exits
// non-zero, and the instances not reached keep serving.
func TestReloadStopsAtFailure(t *testing.T) {
	b := installed(t)
	if _, err := b.run("test", "-f", "/usr/lib/sysctl.d/50-corral.conf"); err != nil {
		t.Fatal("the package did not install /usr/lib/sysctl.d/50-corral.conf")
	}
	// The package sets net.ipv4.tcp_migrate_req = 1 on a host; inside the
	// container /proc/sys is read-only and the network namespace is the
	// host's, so the test sets it there for its duration.
	migrateReq(t, "1")
	for _, balance := range []string{"shared", "reuseport"} {
		t.Run(balance, func(t *testing.T) {
			pool := "flaky" + balance[:1]
			port := map[string]string{"shared": "18096", "reuseport": "18097"}[balance]
			url := "http://127.0.0.1:" + port + "/"
			b.writePool(pool, fmt.Sprintf(`exec = ["/bin/sh", "-c", "test ! -e /srv/%[1]s.broken && exec /usr/libexec/corral/corral-demo; echo new version broken >&2; exit 1"]
listen = ["127.0.0.1:%[2]s"]
instances = 3
balance = "%[3]s"
readiness = "notify"
`, pool, port, balance))
			b.must("systemctl", "restart", "corral.service")
			b.must("systemctl", "start", pool+".target")
			b.waitActive(pool, "1", "2", "3")
			pid2, pid3 := b.show(pool+"@2.service", "MainPID"), b.show(pool+"@3.service", "MainPID")
			if err := b.WriteFile("/srv/"+pool+".broken", nil, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			res := make(chan loadResult, 1)
			go func() { res <- load(ctx, url, 16) }()
			time.Sleep(time.Second)
			out, err := b.run("corral", "reload", pool)
			time.Sleep(2 * time.Second)
			cancel()
			r := <-res
			t.Logf("corral reload %s with a broken new version, under 16 clients: %v\n%s", pool, r, out)
			if err == nil || !strings.Contains(err.Error(), "exit status 1") {
				t.Errorf("corral reload with a broken version: err=%v, want exit status 1", err)
			}
			if !strings.Contains(out, pool+"@1 did not come back") || !strings.Contains(out, "journalctl -u "+pool+"@1.service") {
				t.Errorf("corral reload output does not name the instance and its log:\n%s", out)
			}
			if p := b.show(pool+"@2.service", "MainPID"); p != pid2 {
				t.Errorf("%s@2 was touched after %s@1 failed: %s → %s", pool, pool, pid2, p)
			}
			if p := b.show(pool+"@3.service", "MainPID"); p != pid3 {
				t.Errorf("%s@3 was touched: %s → %s", pool, pid3, p)
			}
			if r.refused != 0 || r.failed != 0 {
				t.Errorf("requests failed because of the broken instance: %v", r)
			}
		})
	}
}

// migrateReq sets net.ipv4.tcp_migrate_req on this host (the boxes share
// its network namespace) and restores it when the test ends.
func migrateReq(t *testing.T, v string) {
	t.Helper()
	const f = "/proc/sys/net/ipv4/tcp_migrate_req"
	old, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("%v (a kernel older than 5.14?)", err)
	}
	if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(f, old, 0o644) })
}
