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
