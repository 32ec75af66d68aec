//go:build integration

package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestApply: corral apply starts a new pool, rolls a changed one with no
// failed request while leaving the others alone, takes up a new count,
// refuses a broken file without changing anything, and stops a removed pool.
func TestApply(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.waitActive("app", "1", "2")
	appPID := b.show("app@1.service", "MainPID")
	const base = "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18099\"]\nreadiness = \"notify\"\n"
	put := func(src string) {
		if err := b.WriteFile("/etc/corral/pools.d/shop.toml", []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	apply := func() (string, error) { return b.run("corral", "apply") }

	put(base + "instances = 2\n")
	out, err := apply()
	if err != nil || !strings.Contains(out, "shop: added (started)") || !strings.Contains(out, "app: unchanged") {
		t.Fatalf("corral apply with a new pool: %v\n%s", err, out)
	}
	b.waitActive("shop", "1", "2")

	// A changed worker unit: a rolling reload under load.
	pids := []string{b.show("shop@1.service", "MainPID"), b.show("shop@2.service", "MainPID")}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan loadResult, 1)
	go func() { res <- load(ctx, "http://127.0.0.1:18099/", 16) }()
	time.Sleep(time.Second)
	put(base + "instances = 2\nenvironment = { FEATURE = \"on\" }\n")
	out, err = apply()
	time.Sleep(time.Second)
	cancel()
	r := <-res
	t.Logf("corral apply of a changed pool under 16 clients: %v\n%s", r, out)
	if err != nil || !strings.Contains(out, "shop: reloaded") || !strings.Contains(out, "app: unchanged") {
		t.Errorf("corral apply with a changed pool: %v\n%s", err, out)
	}
	if r.refused != 0 || r.failed != 0 || r.ok < 100 {
		t.Errorf("requests during corral apply: %v, want none failed", r)
	}
	for i, p := range pids {
		if now := b.show("shop@"+string(rune('1'+i))+".service", "MainPID"); now == p {
			t.Errorf("shop@%d not reloaded", i+1)
		}
	}
	if env := b.show("shop@1.service", "Environment"); !strings.Contains(env, "FEATURE=on") {
		t.Errorf("shop@1 Environment after apply: %s", env)
	}
	if p := b.show("app@1.service", "MainPID"); p != appPID {
		t.Errorf("the unchanged app pool was restarted: %s → %s", appPID, p)
	}

	// A new count.
	put(base + "instances = 3\nenvironment = { FEATURE = \"on\" }\n")
	if out, err := apply(); err != nil || !strings.Contains(out, "shop: scaled (3 instances)") {
		t.Errorf("corral apply with a new count: %v\n%s", err, out)
	}
	b.waitActive("shop", "1", "2", "3")

	// A broken file changes nothing.
	pid3 := b.show("shop@3.service", "MainPID")
	put(base + "instances = \"lots\"\n")
	out, err = apply()
	if err == nil || !strings.Contains(out, "/etc/corral/pools.d/shop.toml:4:13:") || !strings.Contains(out, "nothing was changed") {
		t.Errorf("corral apply with a broken file: err=%v\n%s", err, out)
	}
	if p := b.show("shop@3.service", "MainPID"); p != pid3 {
		t.Errorf("a broken file changed shop@3: %s → %s", pid3, p)
	}
	b.waitActive("shop", "1", "2", "3")

	// A removed pool is stopped.
	if err := os.Remove(b.Root() + "/etc/corral/pools.d/shop.toml"); err != nil {
		t.Fatal(err)
	}
	if out, err := apply(); err != nil || !strings.Contains(out, "shop: removed") {
		t.Errorf("corral apply after removing a pool: %v\n%s", err, out)
	}
	b.waitActive("shop")
	if _, err := get("http://127.0.0.1:18099/"); err == nil {
		t.Errorf("the removed pool still answers")
	}
}
