package pool

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// deadlineSystemd records how long each restart may take.
type deadlineSystemd struct {
	fakeSystemd
	mu   sync.Mutex
	left []time.Duration
}

func (d *deadlineSystemd) Restart(ctx context.Context, u string) error {
	dl, ok := ctx.Deadline()
	d.mu.Lock()
	if ok {
		d.left = append(d.left, time.Until(dl))
	} else {
		d.left = append(d.left, -1)
	}
	d.mu.Unlock()
	return d.record("restart", u)
}

// TestReloadHasNoCallTimeout: a reload over the bus is bounded by each
// restart's JobTimeout, not by the 5-minute call timeout, which cut large
// pools in half during a package upgrade.
func TestReloadHasNoCallTimeout(t *testing.T) {
	running := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	}
	sd := &deadlineSystemd{fakeSystemd: fakeSystemd{obs: Observed{
		Target:    running("app.target"),
		Sockets:   map[int]Unit{1: running("app@1.socket"), 2: running("app@2.socket")},
		Instances: map[int]Unit{1: running("app@1.service"), 2: running("app@2.service")},
	}}}
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.d")
	os.MkdirAll(pools, 0o755)
	os.WriteFile(filepath.Join(pools, "app.toml"), []byte("exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:1\"]\ninstances = 2\nreadiness = \"notify\"\n"), 0o644)
	const job = 20 * time.Minute // longer than callTimeout
	c := New(Config{PoolDir: pools, Store: Store{Path: filepath.Join(dir, "state.json")}, CPUs: 2,
		Debounce: time.Millisecond, JobTimeout: job, Rand: func() float64 { return 0.5 }}, sd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		is, _ := NewStatus(c, nil, nil).ListInstances(ctx, "app")
		if len(is) == 2 && is[1].ActiveState == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator does not see app's 2 instances: %+v", is)
		}
	}
	s := &server{parts: Assemble(c, nil, nil)}
	if err := s.reload("app", nil); err != nil {
		t.Fatalf("reload: %v", err)
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if len(sd.left) != 2 {
		t.Fatalf("%d restarts, want 2", len(sd.left))
	}
	for _, l := range sd.left {
		if l < job-time.Minute {
			t.Errorf("a restart had %v left, want its JobTimeout (%v): the call's timeout cut it", l, job)
		}
	}
}

// TestReadRate: a user gets readBurst reads at once, then readRate a
// second; each user has their own; an answer over the rate is held a moment
// (slowDown), at most maxSlowed at once.
func TestReadRate(t *testing.T) {
	s := &callers{slowed: make(chan struct{}, 1)}
	for i := range readBurst {
		if !s.readAllowed(1000) {
			t.Fatalf("read %d of the burst refused", i)
		}
	}
	if s.readAllowed(1000) {
		t.Error("a read beyond the burst allowed")
	}
	if !s.readAllowed(1001) {
		t.Error("another user's read refused")
	}
	t0 := time.Now()
	s.slowDown()
	if d := time.Since(t0); d < slowDownFor {
		t.Errorf("slowDown held the answer %v, want %v", d, slowDownFor)
	}
	s.slowed <- struct{}{} // full: the next answer goes at once
	t0 = time.Now()
	s.slowDown()
	if d := time.Since(t0); d >= slowDownFor {
		t.Errorf("slowDown with every slot taken held the answer %v", d)
	}
}
