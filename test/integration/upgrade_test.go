//go:build integration

package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUpgrade: installing a higher version over a running pool restarts
// every worker onto the new binaries, one at a time, and never restarts a
// listening socket: no connection is refused meanwhile.
func TestUpgrade(t *testing.T) {
	next := os.Getenv("CORRAL_DEB_NEXT")
	if next == "" {
		t.Fatal("CORRAL_DEB_NEXT is not set: run 'make integration', which builds a second .deb")
	}
	data, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	b := installed(t)
	if err := b.WriteFile("/opt/corral-test/next.deb", data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := strings.TrimSpace(b.must("dpkg-query", "-W", "-f=${Version}", "corral"))
	b.must("systemctl", "start", "app.target")
	waitFor(t, "demo answers", 30*time.Second, func() error { _, err := get(demoURL); return err })

	units := []string{"app@1", "app@2"}
	socketSince := map[string]string{}
	pids := map[string]string{}
	for _, u := range units {
		socketSince[u] = b.show(u+".socket", "ActiveEnterTimestampMonotonic")
		pids[u] = b.show(u+".service", "MainPID")
	}

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan loadResult, 1)
	go func() { res <- load(ctx, demoURL, 32) }()
	time.Sleep(time.Second)
	out := b.must("apt-get", "install", "-y", "/opt/corral-test/next.deb")
	time.Sleep(time.Second)
	cancel()
	r := <-res
	t.Logf("apt-get install of the next version under 32 clients: %v", r)

	if !strings.Contains(out, "corral: reloaded the workers of pool app") {
		t.Errorf("the upgrade did not roll the pool with corral reload:\n%s", out)
	}
	after := strings.TrimSpace(b.must("dpkg-query", "-W", "-f=${Version}", "corral"))
	if after == before {
		t.Fatalf("version still %s after the upgrade:\n%s", after, out)
	}
	for _, u := range units {
		if s := b.show(u+".socket", "ActiveEnterTimestampMonotonic"); s != socketSince[u] {
			t.Errorf("%s.socket was restarted by the upgrade (%s → %s)", u, socketSince[u], s)
		}
		if p := b.show(u+".service", "MainPID"); p == pids[u] || p == "0" {
			t.Errorf("%s.service not restarted onto the new binaries: MainPID %s → %s", u, pids[u], p)
		}
	}
	if r.refused != 0 {
		t.Errorf("%d connections refused during the upgrade, want 0", r.refused)
	}
	if r.failed != 0 {
		t.Errorf("%d requests failed during the upgrade, want 0", r.failed)
	}
	if r.ok < 100 {
		t.Errorf("only %d requests succeeded during the upgrade", r.ok)
	}
}
