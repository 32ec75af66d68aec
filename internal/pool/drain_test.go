package pool

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/listenq"
	"github.com/corral-pool/corral/internal/units"
)

func runningApp() *fakeSystemd {
	running := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now(), MainPID: 7}
	}
	return &fakeSystemd{obs: Observed{
		Target:    running("app.target"),
		Sockets:   map[int]Unit{1: running("app@1.socket"), 2: running("app@2.socket")},
		Instances: map[int]Unit{1: running("app@1.service"), 2: running("app@2.service")},
	}}
}

// TestDrain: a drain marks the pool drained, across a restart of corrald
// (the state file), waits while connections to the pool's addresses are
// established, and says how many are left at its timeout.
func TestDrain(t *testing.T) {
	sd := runningApp()
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	settle(t, c, sd, "app", 2)
	var open atomic.Int32
	open.Store(3)
	d := NewDrainer(c.Coordinator)
	d.Poll = 10 * time.Millisecond
	d.Established = func(fs listenq.Families) ([]listenq.Socket, error) {
		if fs&listenq.IPv4 == 0 {
			t.Errorf("the pool listens on 127.0.0.1, but the families read are %b", fs)
		}
		out := []listenq.Socket{{Addr: "127.0.0.1:9"}, {Addr: "10.0.0.1:1"}} // another port, another address
		for range open.Load() {
			out = append(out, listenq.Socket{Addr: "127.0.0.1:1"})
		}
		return out, nil
	}
	r, err := d.Drain(ctx, "app", 50*time.Millisecond)
	if err != nil || r.Left != 3 || r.Waited < 50*time.Millisecond {
		t.Errorf("Drain with 3 connections that stay = %+v, %v; want 3 left after the timeout", r, err)
	}
	ps, _ := c.ListPools(ctx)
	if len(ps) != 1 || !ps[0].Drained {
		t.Errorf("ListPools after Drain: %+v", ps)
	}
	st, _ := c.cfg.Store.Load()
	if !st.Pools["app"].Drained {
		t.Errorf("the drain is not in the state file: %+v", st)
	}
	go func() { time.Sleep(30 * time.Millisecond); open.Store(0) }()
	if r, err := d.Drain(ctx, "app", 10*time.Second); err != nil || r.Left != 0 || r.Waited > 5*time.Second {
		t.Errorf("Drain while the connections end = %+v, %v; want 0 left before the timeout", r, err)
	}
	if _, err := d.Drain(ctx, "nope", time.Second); !errors.Is(err, api.ErrNoPool) {
		t.Errorf("Drain(nope) = %v", err)
	}
	if _, err := d.Drain(ctx, "app", 2*time.Hour); !errors.Is(err, api.ErrBadArgument) || !strings.Contains(err.Error(), "at most 1h0m0s") {
		t.Errorf("Drain for 2h = %v", err)
	}
	d.Established = func(listenq.Families) ([]listenq.Socket, error) { return nil, errors.New("no netlink") }
	if r, err := d.Drain(ctx, "app", time.Second); err == nil || r.Left != -1 || !strings.Contains(err.Error(), "drained, but cannot count") {
		t.Errorf("Drain without netlink = %+v, %v", r, err)
	}
	if err := d.Undrain(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if ps, _ := c.ListPools(ctx); ps[0].Drained {
		t.Errorf("still drained after Undrain")
	}
	if st, _ := c.cfg.Store.Load(); st.Pools["app"].Drained {
		t.Errorf("the state file keeps the drain after Undrain")
	}
}

func TestServes(t *testing.T) {
	for _, tc := range []struct {
		listen, addr string
		want         bool
	}{
		{":8080", "127.0.0.1:8080", true},
		{":8080", "10.1.2.3:8080", true},
		{":8080", "[::1]:8080", true},
		{":8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "10.1.2.3:8080", false},
		{"0.0.0.0:8080", "10.1.2.3:8080", true},
		{"/run/app.sock", "/run/app.sock", true},
		{"/run/app.sock", "/run/other.sock", false},
	} {
		l, msg := units.ParseListen(tc.listen)
		if msg != "" {
			t.Fatal(msg)
		}
		if got := serves(l, tc.addr); got != tc.want {
			t.Errorf("serves(%s, %s) = %v", tc.listen, tc.addr, got)
		}
	}
}

// TestSample: a sample copies every pool from the loop, with what happened
// to them; the exits are counted once each, by cause, and a kill by the
// Pinger counts as hung.
func TestSample(t *testing.T) {
	sd := runningApp()
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	settle(t, c, sd, "app", 2)
	s, err := c.Status.Sample(ctx)
	if err != nil || len(s.Pools) != 1 {
		t.Fatalf("Sample = %+v, %v", s, err)
	}
	p := s.Pools[0]
	if p.Name != "app" || p.Running != 2 || p.Capacity != 2 || len(p.Instances) != 2 || p.Instances[0].Phase != "running" {
		t.Errorf("Sample's pool: %+v", p)
	}
	// systemd restarted app@1 after a SIGKILL, and app@2 after corrald's
	// Pinger killed it: NRestarts 0 → 1.
	c.Coordinator.hung.add("app@2.service")
	sd.mu.Lock()
	for i, why := range map[int]string{1: "signal", 2: "core-dump"} {
		u := sd.obs.Instances[i]
		u.NRestarts, u.Result, u.InactiveEnter = 1, why, time.Now()
		sd.obs.Instances[i] = u
	}
	sd.mu.Unlock()
	for range 3 { // reconciles that see the same restarts count them once
		c.Dirty("app")
		c.Ping(ctx)
		time.Sleep(20 * time.Millisecond)
	}
	want := map[TallyKey]uint64{{TallyExit, "app", "signal"}: 1, {TallyExit, "app", "hung"}: 1}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _ = c.Status.Sample(ctx)
		if len(s.Counts) == len(want) && s.Counts[TallyKey{TallyExit, "app", "signal"}] == 1 && s.Counts[TallyKey{TallyExit, "app", "hung"}] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts = %v, want %v", s.Counts, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.Coordinator.hung.instances(sd.obs) != nil {
		t.Errorf("app@2 still marked hung after its exit was counted")
	}
}

// TestDrainWaitsForTheBalancer: while a balancer checks the pool, a drain
// does not end at 0 connections before one heard "drain": until then it
// still sends new connections.
func TestDrainWaitsForTheBalancer(t *testing.T) {
	sd := runningApp()
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	settle(t, c, sd, "app", 2)
	d := NewDrainer(c.Coordinator)
	d.Poll = 5 * time.Millisecond
	d.Established = func(listenq.Families) ([]listenq.Socket, error) { return nil, nil }
	d.Checked("app", false) // HAProxy watches app
	// The check comes 100ms after this; the drain begins a moment later,
	// so it may count a little less.
	go func() { time.Sleep(100 * time.Millisecond); d.Checked("app", true) }()
	r, err := d.Drain(ctx, "app", 10*time.Second)
	if err != nil || r.Left != 0 || !r.Watched || !r.Told || r.Waited < 80*time.Millisecond {
		t.Errorf("Drain = %+v, %v; want it to end once the balancer heard drain, after 100ms", r, err)
	}
	// Nobody heard: it waits for its timeout, and says so.
	r, err = d.Drain(ctx, "app", 50*time.Millisecond)
	if err != nil || !r.Watched || r.Told || r.Waited < 50*time.Millisecond {
		t.Errorf("Drain with no check since = %+v, %v", r, err)
	}
	// A balancer that last asked long ago does not hold a drain.
	d.Watched = time.Nanosecond
	time.Sleep(time.Millisecond)
	if r, err := d.Drain(ctx, "app", 10*time.Second); err != nil || r.Watched || r.Waited > time.Second {
		t.Errorf("Drain with no recent check = %+v, %v", r, err)
	}
}
