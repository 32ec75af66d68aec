package pool

import (
	"context"
	"errors"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

// fakeSystemd serves a fixed observation and records the jobs it is given.
type fakeSystemd struct {
	mu       sync.Mutex
	obs      Observed
	jobs     []string
	observes int // calls of Observe: one per reconcile, and per ListInstances
}

func (f *fakeSystemd) Observe(context.Context, string) (Observed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observes++
	return f.obs, nil
}

func (f *fakeSystemd) observed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.observes
}

// settle waits until the coordinator has reconciled pool n more times from
// now and has no job in flight: whatever it was going to do, it has done.
// A test asserts then that something did not happen, without sleeping.
func settle(t testing.TB, c *testCorrald, sd *fakeSystemd, pool string, n int) {
	t.Helper()
	ctx := context.Background()
	start := sd.observed()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		idle := true
		if err := c.do(ctx, func(ps poolSet) {
			for _, p := range ps {
				idle = idle && len(p.inflight) == 0
			}
		}); err != nil {
			t.Fatal(err)
		}
		if idle && sd.observed() >= start+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator did not reconcile %s %d times and settle within 5s", pool, n)
		}
		c.Dirty(pool)
	}
}

func (f *fakeSystemd) record(verb, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, verb+" "+unit)
	return nil
}

func (f *fakeSystemd) Start(_ context.Context, u string) error   { return f.record("start", u) }
func (f *fakeSystemd) Stop(_ context.Context, u string) error    { return f.record("stop", u) }
func (f *fakeSystemd) Restart(_ context.Context, u string) error { return f.record("restart", u) }
func (f *fakeSystemd) ResetFailed(_ context.Context, u string) error {
	return f.record("reset-failed", u)
}

func (f *fakeSystemd) Counters(context.Context, string) (uint64, uint64) {
	return api.Unknown, api.Unknown
}
func (f *fakeSystemd) IsActive(context.Context, string) (bool, error) { return true, nil }
func (f *fakeSystemd) Kill(_ context.Context, u string, sig syscall.Signal) error {
	return f.record("kill "+unix.SignalName(sig), u)
}
func (f *fakeSystemd) LiftMemoryHigh(_ context.Context, u string) error {
	return f.record("lift-memory-high", u)
}
func (f *fakeSystemd) MemoryStall(context.Context, string) (float64, error) { return 0, nil }

func (f *fakeSystemd) Jobs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.jobs)
}

// testCorrald is a coordinator with its components, as corrald assembles
// them, each method reached directly.
type testCorrald struct {
	*Coordinator
	*Status
	*Reloader
	*Applier
	*Router
	*Workers
}

func assemble(c *Coordinator, msgs Messenger, unitOf func(context.Context, uint32) (string, error)) *testCorrald {
	p := Assemble(c, NewWorkers(c, unitOf), msgs)
	return &testCorrald{p.Coordinator, p.Status, p.Reloader, p.Applier, p.Router, p.Workers}
}

// useMessenger carries messages through m, as corrald does with its relay.
func (t *testCorrald) useMessenger(m Messenger, unitOf func(context.Context, uint32) (string, error)) {
	*t = *assemble(t.Coordinator, m, unitOf)
}

// testConfig is the Config of a test coordinator whose one pool, app, has
// the pool file "exec, listen, instances = 2" and more.
func testConfig(t testing.TB, more string) Config {
	t.Helper()
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.d")
	os.MkdirAll(pools, 0o755)
	os.WriteFile(filepath.Join(pools, "app.toml"), []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 2\n"+more), 0o644)
	return Config{PoolDir: pools, Store: Store{Path: filepath.Join(dir, "state.json")}, CPUs: 2,
		Debounce: time.Millisecond, Rand: func() float64 { return 0.5 }}
}

func newTestCoordinator(t testing.TB, sd Systemd) (*testCorrald, context.CancelFunc) {
	t.Helper()
	c := New(testConfig(t, ""), sd)
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	return assemble(c, nil, nil), cancel
}

// TestOperatorStopDuringPoolStart: the first reconcile after a pool came up
// already sees an instance that an operator stopped since: it is held, not
// started again.
func TestOperatorStopDuringPoolStart(t *testing.T) {
	t0 := time.Now().Add(-time.Second)
	active := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: t0.Add(10 * time.Millisecond)}
	}
	stopped := active("app@2.service")
	stopped.ActiveState, stopped.SubState, stopped.Result = "inactive", "dead", "success"
	stopped.InactiveEnter = t0.Add(20 * time.Millisecond)
	sd := &fakeSystemd{obs: Observed{
		Target:    active("app.target"),
		Sockets:   map[int]Unit{1: active("app@1.socket"), 2: active("app@2.socket")},
		Instances: map[int]Unit{1: active("app@1.service"), 2: stopped},
	}}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	var is []api.InstanceInfo
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if is, err = c.ListInstances(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		if len(is) == 2 && is[1].Phase != "" && is[1].Phase != string(api.PhaseStopped) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(is) != 2 || is[1].Phase != string(api.PhaseHeld) {
		t.Fatalf("instances %+v, want app@2 held", is)
	}
	if jobs := sd.Jobs(); len(jobs) != 0 {
		t.Errorf("jobs %v, want none", jobs)
	}
}

// TestScaleAndStop: scale starts and stops through the plan; stop of a pool
// stops its target, instances and sockets; errors are the API's.
func TestScaleAndStop(t *testing.T) {
	running := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	}
	sd := &fakeSystemd{obs: Observed{
		Target:    running("app.target"),
		Sockets:   map[int]Unit{1: running("app@1.socket"), 2: running("app@2.socket")},
		Instances: map[int]Unit{1: running("app@1.service"), 2: running("app@2.service")},
	}}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	if _, err := c.Scale(ctx, "nope", "2"); err == nil || !errors.Is(err, api.ErrNoPool) {
		t.Errorf("Scale(nope) = %v, want ErrNoPool", err)
	}
	if _, err := c.Scale(ctx, "app", "0"); !errors.Is(err, api.ErrBadSpec) {
		t.Errorf("Scale(0) = %v, want ErrBadSpec", err)
	}
	n, err := c.Scale(ctx, "app", "+2")
	if err != nil || n != 4 {
		t.Fatalf("Scale(+2) = %d, %v", n, err)
	}
	waitJobs(t, sd, "start app@3.service", "start app@4.service")
	if err := c.Stop(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, sd, "stop app.target", "stop app@1.service", "stop app@2.service", "stop app@1.socket", "stop app@2.socket")
	ps, _ := c.ListPools(ctx)
	if len(ps) != 1 || ps[0].State != "stopped" || ps[0].Desired != 4 {
		t.Errorf("ListPools after stop: %+v", ps)
	}
}

func waitJobs(t *testing.T, sd *fakeSystemd, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		jobs := sd.Jobs()
		all := true
		for _, w := range want {
			if !slices.Contains(jobs, w) {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("jobs %v, want them to include %v", sd.Jobs(), want)
}

// TestAdoptInstancesStartedByHand: systemctl start app@3 beyond the count
// raises the count; it is not stopped as surplus.
func TestAdoptInstancesStartedByHand(t *testing.T) {
	running := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	}
	sd := &fakeSystemd{obs: Observed{
		Target:    running("app.target"),
		Sockets:   map[int]Unit{1: running("app@1.socket"), 2: running("app@2.socket"), 3: running("app@3.socket")},
		Instances: map[int]Unit{1: running("app@1.service"), 2: running("app@2.service"), 3: running("app@3.service")},
	}}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ps, _ := c.ListPools(ctx)
		if len(ps) == 1 && ps[0].Desired == 3 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ps, _ := c.ListPools(ctx); len(ps) != 1 || ps[0].Desired != 3 || ps[0].Running != 3 {
		t.Fatalf("pools %+v, want app adopted at 3", ps)
	}
	// Scaling down stops it, and the stop is not undone by adoption.
	if _, err := c.Scale(ctx, "app", "2"); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, sd, "stop app@3.service", "stop app@3.socket")
	settle(t, c, sd, "app", 3)
	if ps, _ := c.ListPools(ctx); ps[0].Desired != 2 {
		t.Errorf("after scale 2 with app@3 still active: desired %d, want 2", ps[0].Desired)
	}
	for _, j := range sd.Jobs() {
		if j == "start app@3.service" {
			t.Errorf("jobs %v: app@3 started again", sd.Jobs())
		}
	}
}

// TestReloadHintNotLostInABurst: a daemon-reload's hint ("" : re-read the pool
// files) that comes amid thousands of unit signals while the coordinator is
// busy is not dropped: the new pool is known as soon as the coordinator is
// free again, not at the next resync minutes later.
func TestReloadHintNotLostInABurst(t *testing.T) {
	sd := &fakeSystemd{}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	if _, err := c.ListPools(ctx); err != nil { // Run has loaded the pool files
		t.Fatal(err)
	}

	release := make(chan struct{})
	busy := make(chan struct{})
	go c.do(ctx, func(poolSet) { close(busy); <-release })
	<-busy
	for range 5000 {
		c.Changed("app@1.service")
	}
	if err := os.WriteFile(filepath.Join(c.cfg.PoolDir, "shop.toml"),
		[]byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:2\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Changed("") // the daemon-reload
	for range 5000 {
		c.Changed("app@2.service")
	}
	close(release)

	deadline := time.Now().Add(5 * time.Second)
	var ps []api.PoolInfo
	for time.Now().Before(deadline) {
		var err error
		if ps, err = c.ListPools(ctx); err != nil {
			t.Fatal(err)
		}
		if len(ps) == 2 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pools %+v, want app and shop", ps)
}

func TestHintsMergeAndClear(t *testing.T) {
	h := newHints()
	h.add("a")
	h.add("b")
	h.add("a")
	h.add("")
	if len(h.wake) != 1 {
		t.Fatalf("%d wake-ups pending, want 1", len(h.wake))
	}
	all, pools, now := h.take()
	slices.Sort(pools)
	if !all || !slices.Equal(pools, []string{"a", "b"}) || len(now) != 0 {
		t.Errorf("take() = %v, %v, %v; want true, [a b], false", all, pools, now)
	}
	if all, pools, now := h.take(); all || len(pools) != 0 || len(now) != 0 {
		t.Errorf("second take() = %v, %v, %v; want nothing", all, pools, now)
	}
	h.add("a")
	h.addNow("b")
	h.add("c")
	if _, pools, now := h.take(); len(pools) != 3 || !slices.Equal(now, []string{"b"}) {
		t.Errorf("take() after addNow = %v, %v; want 3 pools, now [b]", pools, now)
	}
	if _, _, now := h.take(); len(now) != 0 {
		t.Error("now outlived its take")
	}
}

// TestActivatedSkipsDebounce: a unit's change waits for the debounce (an
// hour here); an instance that became active, with readiness = "notify",
// is reconciled at once, so that the steering's table learns of it.
// Without, active says only that the program started: it waits too.
func TestActivatedSkipsDebounce(t *testing.T) {
	for _, notify := range []bool{true, false} {
		more := ""
		if notify {
			more = "readiness = \"notify\"\n"
		}
		if got := activatedReconciles(t, more); got != notify {
			t.Errorf("notify %v: reconciled at once %v, want %v", notify, got, notify)
		}
	}
}

// activatedReconciles reports whether Activated makes a coordinator of a
// pool of more, with an hour's debounce, reconcile within a second.
func activatedReconciles(t *testing.T, more string) bool {
	sd := runningApp()
	cfg := testConfig(t, more)
	cfg.Debounce = time.Hour
	c := New(cfg, sd)
	reconciled := make(chan struct{}, 16)
	c.Observe(func() { reconciled <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	select {
	case <-reconciled: // the first reconcile does not wait
	case <-time.After(5 * time.Second):
		t.Fatal("no first reconcile")
	}
	c.Changed("app@2.service")
	select {
	case <-reconciled:
		t.Fatal("a change reconciled before the debounce")
	case <-time.After(200 * time.Millisecond):
	}
	c.Activated("app@2.service")
	select {
	case <-reconciled:
		return true
	case <-time.After(time.Second):
		return false
	}
}

// TestAdoptionIsBounded: an instance started by hand above api.MaxInstances
// (app@99999) does not become the pool's count.
func TestAdoptionIsBounded(t *testing.T) {
	sd := runningApp()
	sd.obs.Instances[99999] = Unit{Name: "app@99999.service", LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	settle(t, c, sd, "app", 3)
	if ps, err := c.ListPools(ctx); err != nil || len(ps) != 1 || ps[0].Desired != 2 {
		t.Fatalf("pools %+v %v, want app at 2", ps, err)
	}
	if err := c.Start(ctx, "app@99999"); err == nil || !strings.Contains(err.Error(), "a number from 1 to 1024") {
		t.Errorf("Start(app@99999) = %v, want the limit", err)
	}
}

// TestStateForgottenWithItsFile: what corral scale and stop set for a pool
// stays while its file is there, even invalid for a while, and is
// forgotten once the file is gone: a pool made again under that name
// starts from its new file.
func TestStateForgottenWithItsFile(t *testing.T) {
	sd := &fakeSystemd{}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	if _, err := c.Scale(ctx, "app", "4"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(c.cfg.PoolDir, "app.toml")
	stored := func() (Desired, bool) {
		st, err := c.cfg.Store.Load()
		if err != nil {
			t.Fatal(err)
		}
		d, ok := st.Pools["app"]
		return d, ok
	}
	if d, ok := stored(); !ok || d.Count != 4 || !d.Stopped {
		t.Fatalf("stored %+v %v, want 4 and stopped", d, ok)
	}

	os.WriteFile(file, []byte("exec = [\n"), 0o644) // invalid: the pool is skipped
	if err := c.reread(ctx); err != nil {
		t.Fatal(err)
	}
	if d, ok := stored(); !ok || d.Count != 4 || !d.Stopped {
		t.Errorf("with the file invalid, stored %+v %v, want it kept", d, ok)
	}

	os.Remove(file)
	if err := c.reread(ctx); err != nil {
		t.Fatal(err)
	}
	if d, ok := stored(); ok {
		t.Errorf("with the file gone, stored %+v, want nothing", d)
	}

	os.WriteFile(file, []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 3\n"), 0o644)
	if err := c.reread(ctx); err != nil {
		t.Fatal(err)
	}
	var d Desired
	c.do(ctx, func(pools poolSet) { d = pools["app"].desired })
	if d.Count != 3 || d.Scaled || d.Stopped {
		t.Errorf("the pool made again: %+v, want 3 instances from its file, not stopped", d)
	}
}
