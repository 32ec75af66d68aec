package pool

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/listenq"
)

// fakeQueues is what the kernel reports, set by the test.
type fakeQueues struct {
	mu    sync.Mutex
	socks []listenq.Socket
}

func (f *fakeQueues) set(socks ...listenq.Socket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.socks = socks
}

func (f *fakeQueues) listening(listenq.Families) ([]listenq.Socket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]listenq.Socket(nil), f.socks...), nil
}

// TestNotAccepting: an instance whose socket's queue is not empty and does
// not go down for After is not-accepting, in ListInstances (with its queue)
// and ListPools; a queue that goes down clears it. With reuseport the
// kernel's sockets are paired with the instances by the order they were
// made, whatever their numbers.
func TestNotAccepting(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	up := func(name string, at time.Time) Unit {
		return Unit{Name: name, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: at}
	}
	sd := &fakeSystemd{obs: Observed{
		Target: up("app.target", t0),
		// app@2's socket was made first (app@1's was restarted since).
		Sockets:   map[int]Unit{1: up("app@1.socket", t0.Add(2*time.Second)), 2: up("app@2.socket", t0.Add(time.Second))},
		Instances: map[int]Unit{1: up("app@1.service", t0), 2: up("app@2.service", t0)},
	}}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	settle(t, c, sd, "app", 1)
	ctx := context.Background()

	q := &fakeQueues{}
	acc := NewAcceptance(c.Coordinator)
	acc.Listening, acc.After = q.listening, 100*time.Millisecond
	status := NewStatus(c.Coordinator, nil, acc)
	other := listenq.Socket{Addr: "127.0.0.1:9", Inode: 50, Queued: 7} // not the pool's
	q.set(other, listenq.Socket{Addr: "127.0.0.1:1", Inode: 100}, listenq.Socket{Addr: "127.0.0.1:1", Inode: 200, Queued: 3})

	check := func() bool {
		t.Helper()
		busy, err := acc.check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return busy
	}
	if !check() {
		t.Errorf("a queue of the pool is not empty, and the check is not busy: it would wait Interval for the next reading")
	}
	if s := acc.Stuck("app"); len(s) != 0 {
		t.Fatalf("stuck at once: %v", s)
	}
	time.Sleep(150 * time.Millisecond)
	q.set(other, listenq.Socket{Addr: "127.0.0.1:1", Inode: 100}, listenq.Socket{Addr: "127.0.0.1:1", Inode: 200, Queued: 4})
	check()
	s := acc.Stuck("app")
	if len(s) != 1 || s[1].Queued != 4 {
		t.Fatalf("stuck %v, want app@1 (the socket made last) with 4 queued", s)
	}
	is, err := status.ListInstances(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if is[0].Phase != string(api.PhaseNotAccepting) || is[0].Queued != 4 || !strings.Contains(is[0].Reason, "listens on a port of its own") ||
		is[1].Phase != string(api.PhaseRunning) {
		t.Errorf("instances %+v", is)
	}
	if ps, _ := status.ListPools(ctx); len(ps) != 1 || ps[0].State != string(api.PhaseNotAccepting) {
		t.Errorf("pools %+v", ps)
	}

	// A queue that was empty at the last reading is not stuck, however
	// long ago that reading was.
	q.set(other, listenq.Socket{Addr: "127.0.0.1:1", Inode: 100}, listenq.Socket{Addr: "127.0.0.1:1", Inode: 200, Queued: 4})
	check()
	time.Sleep(150 * time.Millisecond)
	q.set(other, listenq.Socket{Addr: "127.0.0.1:1", Inode: 100, Queued: 2}, listenq.Socket{Addr: "127.0.0.1:1", Inode: 200, Queued: 4})
	check()
	if s := acc.Stuck("app"); len(s) != 1 || s[2] != (Stuck{}) {
		t.Errorf("stuck %v, want app@1 only: app@2's queue was empty at the reading before", s)
	}

	// It took one: no longer stuck.
	q.set(other, listenq.Socket{Addr: "127.0.0.1:1", Inode: 100}, listenq.Socket{Addr: "127.0.0.1:1", Inode: 200, Queued: 3})
	check()
	if s := acc.Stuck("app"); len(s) != 0 {
		t.Errorf("stuck after its queue went down: %v", s)
	}

	q.set(other, listenq.Socket{Addr: "127.0.0.1:1", Inode: 100}, listenq.Socket{Addr: "127.0.0.1:1", Inode: 200})
	if check() {
		t.Errorf("every queue of the pool is empty (another socket's is not), and the check is busy")
	}

	// A socket unit starting or stopping: the kernel has another count of
	// sockets than systemd; nothing is paired, nothing is claimed.
	q.set(listenq.Socket{Addr: "127.0.0.1:1", Inode: 200, Queued: 9})
	check()
	time.Sleep(150 * time.Millisecond)
	check()
	if s := acc.Stuck("app"); len(s) != 0 {
		t.Errorf("stuck with unpaired sockets: %v", s)
	}
}

// TestNotAcceptingShared: one shared socket stuck marks every running
// instance; a stopped pool is not checked.
func TestNotAcceptingShared(t *testing.T) {
	up := func(name string) Unit {
		return Unit{Name: name, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now()}
	}
	sd := &fakeSystemd{obs: Observed{Target: up("app.target"), Sockets: map[int]Unit{0: up("app.socket")},
		Instances: map[int]Unit{1: up("app@1.service"), 2: up("app@2.service")}}}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	c.do(ctx, func(ps poolSet) { ps["app"].cfg.Balance = "shared" })
	settle(t, c, sd, "app", 1)
	q := &fakeQueues{}
	q.set(listenq.Socket{Addr: "127.0.0.1:1", Inode: 7, Queued: 2})
	acc := NewAcceptance(c.Coordinator)
	acc.Listening, acc.After = q.listening, 50*time.Millisecond
	acc.check(ctx)
	time.Sleep(80 * time.Millisecond)
	acc.check(ctx)
	is, _ := NewStatus(c.Coordinator, nil, acc).ListInstances(ctx, "app")
	if len(is) != 2 || is[0].Phase != string(api.PhaseNotAccepting) || is[1].Phase != string(api.PhaseNotAccepting) {
		t.Errorf("instances %+v, want both not-accepting", is)
	}
	if err := c.Stop(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	acc.check(ctx)
	if s := acc.Stuck("app"); len(s) != 0 {
		t.Errorf("a stopped pool: stuck %v", s)
	}
}

// BenchmarkCheck: one reading of the kernel's sockets and the verdicts
// for a pool of 64 instances, as corrald does each second.
func BenchmarkCheck(b *testing.B) {
	up := func(name string, at time.Time) Unit {
		return Unit{Name: name, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: at}
	}
	obs := Observed{Target: up("app.target", time.Now()), Sockets: map[int]Unit{}, Instances: map[int]Unit{}}
	for i := 1; i <= 64; i++ {
		obs.Sockets[i] = up(fmt.Sprintf("app@%d.socket", i), time.Now().Add(time.Duration(i)))
		obs.Instances[i] = up(fmt.Sprintf("app@%d.service", i), time.Now())
	}
	sd := &fakeSystemd{obs: obs}
	c, cancel := newTestCoordinator(b, sd)
	defer cancel()
	settle(b, c, sd, "app", 1)
	acc := NewAcceptance(c.Coordinator)
	ctx := context.Background()
	for b.Loop() {
		if _, err := acc.check(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
