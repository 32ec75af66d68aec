package pool

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// reloadingSystemd is fakeSystemd that can daemon-reload.
type reloadingSystemd struct{ *fakeSystemd }

func (reloadingSystemd) DaemonReload(context.Context) error { return nil }

// TestActsOnFilesInEffect: a pool file edited but not applied changes
// nothing corrald does, however many resyncs pass; corral apply, or
// systemd's own reload, puts it in effect.
func TestActsOnFilesInEffect(t *testing.T) {
	for _, how := range []string{"apply", "systemd reload"} {
		t.Run(how, func(t *testing.T) {
			up := func(n string) Unit {
				return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
			}
			sd := reloadingSystemd{&fakeSystemd{obs: Observed{Target: up("app.target"),
				Instances: map[int]Unit{1: up("app@1.service"), 2: up("app@2.service")}}}}
			dir := t.TempDir()
			pools := filepath.Join(dir, "pools.d")
			os.MkdirAll(pools, 0o755)
			file := filepath.Join(pools, "app.toml")
			os.WriteFile(file, []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 2\n[restart]\nbackoff = \"1s\"\n"), 0o644)
			co := New(Config{PoolDir: pools, Store: Store{Path: filepath.Join(dir, "state.json")}, CPUs: 2,
				Debounce: time.Millisecond, Resync: 5 * time.Millisecond, Rand: func() float64 { return 0.5 }}, sd)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go co.Run(ctx)
			c := assemble(co, nil, nil)
			inEffect := func() (count int, backoff time.Duration) {
				co.do(ctx, func(ps poolSet) {
					if p := ps["app"]; p != nil {
						count, backoff = p.desired.Count, p.cfg.Restart.Backoff
					}
				})
				return count, backoff
			}
			if n, b := inEffect(); n != 2 || b != time.Second {
				t.Fatalf("at start: %d instances, backoff %v", n, b)
			}

			os.WriteFile(file, []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 3\n[restart]\nbackoff = \"7s\"\n"), 0o644)
			// Resyncs are the only hint here: wait for 10 reconciles.
			deadline := time.Now().Add(5 * time.Second)
			for start := sd.observed(); sd.observed() < start+10; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no resync within 5s")
				}
			}
			settle(t, c, sd.fakeSystemd, "app", 1)
			if n, b := inEffect(); n != 2 || b != time.Second {
				t.Errorf("after resyncs of an edited file: %d instances, backoff %v; want the file in effect, 2 and 1s", n, b)
			}
			for _, j := range sd.Jobs() {
				t.Errorf("after resyncs of an edited file, corrald asked: %s", j)
			}

			switch how {
			case "apply":
				if _, err := c.ApplyIn(ctx, t.TempDir()); err != nil {
					t.Fatal(err)
				}
			case "systemd reload":
				c.Changed("")
			}
			deadline = time.Now().Add(5 * time.Second)
			for n, b := inEffect(); n != 3 || b != 7*time.Second; n, b = inEffect() {
				if time.Now().After(deadline) {
					t.Fatalf("after %s: %d instances, backoff %v; want 3 and 7s", how, n, b)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestApplySpares: corral apply says when a pool's spares changed, which
// changes no unit.
func TestApplySpares(t *testing.T) {
	up := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	}
	sd := reloadingSystemd{&fakeSystemd{obs: Observed{Target: up("app.target"),
		Instances: map[int]Unit{1: up("app@1.service"), 2: up("app@2.service"), 3: up("app@3.service")}}}}
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.d")
	os.MkdirAll(pools, 0o755)
	file := filepath.Join(pools, "app.toml")
	os.WriteFile(file, []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 3\n"), 0o644)
	gen := t.TempDir()
	os.WriteFile(filepath.Join(gen, "app.target"), []byte("[Unit]\n"), 0o644)
	co := New(Config{PoolDir: pools, Store: Store{Path: filepath.Join(dir, "state.json")}, CPUs: 2,
		Debounce: time.Millisecond, Resync: time.Hour, Rand: func() float64 { return 0.5 }}, sd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go co.Run(ctx)
	c := assemble(co, nil, nil)
	if ch, err := c.ApplyIn(ctx, gen); err != nil || len(ch) != 1 || ch[0].Action != "unchanged" {
		t.Fatalf("apply of the same file: %+v, %v", ch, err)
	}
	os.WriteFile(file, []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 3\nspares = 1\n"), 0o644)
	ch, err := c.ApplyIn(ctx, gen)
	if err != nil || len(ch) != 1 || ch[0].Action != "spares" || ch[0].Detail != "1 of its instances out of rotation, ready to take the place of one that leaves it (was 0)" {
		t.Errorf("apply of spares = 1: %+v, %v", ch, err)
	}
}
