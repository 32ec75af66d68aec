package pool

import (
	"context"
	"errors"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/listenq"
	"github.com/corral-pool/corral/internal/steer"
	"github.com/corral-pool/corral/internal/units"
)

// testSteerer is a Steerer of c that decides as corrald's does; with
// instances that have no process it puts no socket in the kernel.
func testSteerer(t *testing.T, c *testCorrald, off error) *Steerer {
	t.Helper()
	s := &Steerer{co: c.Coordinator, acc: NewAcceptance(c.Coordinator), off: off, kick: make(chan struct{}, 1), reqs: make(chan func()),
		leaving: map[string]map[int]int{}, groups: map[groupKey]*sgroup{}, warned: map[string]string{}}
	if off == nil {
		// As corrald: steering is off where the kernel's map cannot be made.
		if s.kernel, s.off = steer.NewExits(); s.off == nil {
			t.Cleanup(func() { s.kernel.Close() })
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			select {
			case f := <-s.reqs:
				f()
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		for _, g := range s.groups {
			g.g.Close()
		}
	})
	return s
}

// TestCordon: an instance is cordoned and uncordoned, in the state file
// and in ListInstances; a whole pool, an instance that does not exist, the
// last instance taking connections, and a host without steering are
// refused, each with its error.
func TestCordon(t *testing.T) {
	sd := runningApp()
	for i, u := range sd.obs.Instances {
		u.MainPID = 0
		sd.obs.Instances[i] = u
	}
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	ctx := context.Background()
	settle(t, c, sd, "app", 2)
	s := testSteerer(t, c, nil)

	for _, tc := range []struct {
		target string
		want   error
	}{
		{"app", api.ErrBadArgument},
		{"app@3", api.ErrNoInstance},
		{"nope@1", api.ErrNoPool},
		{"app@x", nil}, // a bad name: ParseTarget's error
	} {
		err := s.Cordon(ctx, tc.target)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Cordon(%s) = %v, want %v", tc.target, err, tc.want)
		}
	}
	if err := s.Cordon(ctx, "app@1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Cordon(ctx, "app@1"); err != nil {
		t.Errorf("cordoning again: %v", err)
	}
	if err := s.Cordon(ctx, "app@2"); !errors.Is(err, api.ErrBadArgument) {
		t.Errorf("cordoning the last instance taking connections = %v", err)
	}
	st, _ := c.cfg.Store.Load()
	if !slices.Equal(st.Pools["app"].Cordoned, []int{1}) {
		t.Errorf("state file after cordon: %+v", st.Pools["app"])
	}
	is, _ := c.ListInstances(ctx, "app")
	if len(is) != 2 || !is[0].Cordoned || is[1].Cordoned {
		t.Errorf("ListInstances after cordon: %+v", is)
	}
	if err := s.Uncordon(ctx, "app@1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.cfg.Store.Load(); st.Pools["app"].Cordoned != nil {
		t.Errorf("state file after uncordon: %+v", st.Pools["app"])
	}

	off := testSteerer(t, c, steer.ErrUnavailable)
	if err := off.Cordon(ctx, "app@1"); !errors.Is(err, api.ErrNoSteering) {
		t.Errorf("Cordon without steering = %v", err)
	}
}

// TestServing: the table holds the instances that run, minus those
// cordoned or leaving for a reload.
func TestServing(t *testing.T) {
	sd := runningApp()
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	settle(t, c, sd, "app", 2)
	s := testSteerer(t, c, nil)
	v := steered{poolView: poolView{name: "app", count: 2, instances: sd.obs.Instances}}
	if got, _ := s.serving(v, time.Now()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("serving = %v", got)
	}
	v.cordoned = []int{2}
	if got, _ := s.serving(v, time.Now()); !slices.Equal(got, []int{1}) {
		t.Errorf("serving with 2 cordoned = %v", got)
	}
	v.cordoned = nil
	s.leaving["app"] = map[int]int{1: 1}
	if got, _ := s.serving(v, time.Now()); !slices.Equal(got, []int{2}) {
		t.Errorf("serving with 1 leaving = %v", got)
	}
	s.Return("app", 1)
	if got, _ := s.serving(v, time.Now()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("serving after Return = %v", got)
	}
	// Without readiness = "notify", an instance serves ready_delay after
	// it became active.
	now := time.Now()
	v.cfg = &units.Pool{Readiness: units.ReadinessSimple, ReadyDelay: time.Second}
	v.instances = maps.Clone(v.instances)
	u := v.instances[2]
	u.ActiveEnter = now.Add(-300 * time.Millisecond)
	v.instances[2] = u
	u = v.instances[1]
	u.ActiveEnter = now.Add(-time.Minute)
	v.instances[1] = u
	if got, wake := s.serving(v, now); !slices.Equal(got, []int{1}) || !wake.Equal(now.Add(700*time.Millisecond)) {
		t.Errorf("serving with 2 started 300ms ago, ready_delay 1s = %v, wake in %v", got, wake.Sub(now))
	}
	v.cfg.Readiness = units.ReadinessNotify
	if got, wake := s.serving(v, now); !slices.Equal(got, []int{1, 2}) || !wake.IsZero() {
		t.Errorf("serving with readiness = notify = %v, %v", got, wake)
	}
	// An instance whose process the kernel said dies leaves at once, before
	// its exit is seen (here never: it stays a zombie until the end).
	if os.Geteuid() != 0 {
		t.Skip("the rest needs BPF tracing programs: root (CAP_BPF, CAP_PERFMON); CI runs as root")
	}
	if s.kernel == nil || s.kernel.Tracing() != nil {
		t.Fatalf("no early word of deaths here: steering %v", s.Off())
	}
	proc := exec.Command("sleep", "60")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	defer proc.Wait()
	u = v.instances[2]
	u.MainPID = uint32(proc.Process.Pid)
	v.instances[2] = u
	s.kernel.Watch(u.MainPID)
	if got, _ := s.serving(v, now); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("serving before the kill = %v", got)
	}
	proc.Process.Signal(syscall.SIGSTOP)
	proc.Process.Kill()
	if got, _ := s.serving(v, now); !slices.Equal(got, []int{1}) {
		t.Errorf("serving with 2's process killed = %v", got)
	}
}

// TestAwaitEmpty: Leave's wait returns once the leaving instance's sockets
// have empty queues (others' queues do not count, a closed socket counts as
// empty), gives up after its limit, and after a failed read.
func TestAwaitEmpty(t *testing.T) {
	reads := func(queues ...[]listenq.Socket) (func() ([]listenq.Socket, error), *int) {
		n := 0
		return func() ([]listenq.Socket, error) {
			q := queues[min(n, len(queues)-1)]
			n++
			return q, nil
		}, &n
	}
	ours := func(q uint32) listenq.Socket { return listenq.Socket{Addr: "127.0.0.1:8080", Inode: 7, Queued: q} }
	other := listenq.Socket{Addr: "127.0.0.1:8080", Inode: 8, Queued: 50}
	ctx := context.Background()

	read, n := reads([]listenq.Socket{ours(3), other}, []listenq.Socket{ours(1), other}, []listenq.Socket{ours(0), other})
	if !awaitEmpty(ctx, read, []uint64{7}, 5*time.Second) || *n != 3 {
		t.Errorf("draining queue: emptied after %d reads, want true after 3", *n)
	}
	read, n = reads([]listenq.Socket{other})
	if !awaitEmpty(ctx, read, []uint64{7}, 5*time.Second) || *n != 1 {
		t.Errorf("closed socket: %d reads, want true after 1", *n)
	}
	read, _ = reads([]listenq.Socket{ours(2)})
	t0 := time.Now()
	if awaitEmpty(ctx, read, []uint64{7}, 50*time.Millisecond) {
		t.Error("a queue that never empties: want false")
	}
	if took := time.Since(t0); took < 50*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %v, want its limit, 50ms", took)
	}
	if awaitEmpty(ctx, func() ([]listenq.Socket, error) { return nil, errors.New("netlink") }, []uint64{7}, time.Second) {
		t.Error("a failed read: want false")
	}
}

// TestAwaitEmptyRealQueue: on a real socket, the wait lasts while
// connections sit in its accept queue and ends once they are accepted.
func TestAwaitEmptyRealQueue(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ino, err := steer.Inode(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	ctx := context.Background()
	if awaitEmpty(ctx, listenq.Listening, []uint64{ino}, 100*time.Millisecond) {
		t.Fatal("3 connections in the queue: the wait should last its limit")
	}
	done := make(chan bool, 1)
	go func() { done <- awaitEmpty(ctx, listenq.Listening, []uint64{ino}, 10*time.Second) }()
	for range 3 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	select {
	case ok := <-done:
		if !ok {
			t.Error("the queue emptied: want true")
		}
	case <-time.After(5 * time.Second):
		t.Error("the wait outlived the queue")
	}
}

// TestQueuesOf: Leave waits on the sockets of the leaving instance, in
// every address of its pool, and only while its process runs.
func TestQueuesOf(t *testing.T) {
	self := uint32(os.Getpid())
	s := &Steerer{dead: map[uint32]bool{}, groups: map[groupKey]*sgroup{
		{"app", "127.0.0.1:8080"}: {pid: map[int]uint32{0: self, 1: self}, ino: map[int]uint64{0: 10, 1: 11}},
		{"app", "[::1]:8080"}:     {pid: map[int]uint32{1: self}, ino: map[int]uint64{1: 21}},
		{"web", "127.0.0.1:9090"}: {pid: map[int]uint32{1: self}, ino: map[int]uint64{1: 31}},
	}}
	got := s.queuesOf("app", 2)
	slices.Sort(got)
	if !slices.Equal(got, []uint64{11, 21}) {
		t.Errorf("app@2's sockets: %v, want [11 21]", got)
	}
	if got := s.queuesOf("app", 3); len(got) != 0 {
		t.Errorf("an instance with no socket in the table: %v, want none", got)
	}
	s.dead[self] = true
	if got := s.queuesOf("app", 2); len(got) != 0 {
		t.Errorf("its process exited: %v, want none", got)
	}
	delete(s.dead, self)
	// A pid no process has.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	s.groups[groupKey{"app", "127.0.0.1:8080"}].pid[1] = uint32(gone.Process.Pid)
	if got := s.queuesOf("app", 2); !slices.Equal(got, []uint64{21}) {
		t.Errorf("one address's process gone: %v, want [21]", got)
	}
}

// TestRotation: without spares the table spreads the buckets over the
// slots that serve; with them, a spare takes exactly the buckets of the
// instance it stands for, the others keep theirs, and it gives them back;
// the spares out of the table are the buckets' standbys.
func TestRotation(t *testing.T) {
	// low is the slot+1 of each bucket; standbys the standbys used.
	low := func(table []uint32) []uint32 {
		out := make([]uint32, len(table))
		for b, v := range table {
			slot, _ := steer.Slots(v)
			out[b] = uint32(slot + 1)
		}
		return out
	}
	standbys := func(table []uint32) map[int]int {
		n := map[int]int{}
		for _, v := range table {
			_, sb := steer.Slots(v)
			n[sb]++
		}
		return n
	}
	owner := func(table []uint32) map[uint32]int {
		n := map[uint32]int{}
		for _, v := range low(table) {
			n[v]++
		}
		return n
	}
	// No spares: as the table of the serving slots.
	table, slots, stand, standby := rotation(2, []int{0, 1})
	if !slices.Equal(table, steer.Table([]int{0, 1})) || !slices.Equal(slots, []int{0, 1}) || len(stand) != 0 || len(standby) != 0 {
		t.Errorf("all serving: slots %v, stand %v, standby %v", slots, stand, standby)
	}
	if table, slots, _, _ := rotation(2, []int{0}); !slices.Equal(table, steer.Table([]int{0})) || !slices.Equal(slots, []int{0}) {
		t.Errorf("one down, no spare: slots %v", slots)
	}
	// A spare waits while the rotation serves, the standby of every bucket.
	table, slots, stand, standby = rotation(2, []int{0, 1, 2})
	if !slices.Equal(low(table), steer.Table([]int{0, 1})) || !slices.Equal(slots, []int{0, 1}) || len(stand) != 0 ||
		!slices.Equal(standby, []int{2}) || standbys(table)[2] != steer.Buckets {
		t.Errorf("a spare waiting: slots %v, stand %v, standby %v, buckets %v, standbys %v", slots, stand, standby, owner(table), standbys(table))
	}
	// Slot 1 down: the spare (slot 2) takes its buckets, and only those.
	full := steer.Table([]int{0, 1})
	table, slots, stand, standby = rotation(2, []int{0, 2})
	if !slices.Equal(slots, []int{0, 2}) || !maps.Equal(stand, map[int]int{1: 2}) || len(standby) != 0 {
		t.Errorf("slot 1 down: slots %v, stand %v, standby %v", slots, stand, standby)
	}
	for b := range table {
		want := full[b]
		if want == 2 {
			want = 3
		}
		if table[b] != want {
			t.Fatalf("bucket %d: %d, want %d (slot 1's went to the spare, the others stay)", b, table[b], want)
		}
	}
	// Two spares, one instance down: the first spare stands in, the
	// second waits, the standby of all.
	table, slots, stand, standby = rotation(2, []int{1, 2, 3})
	if !slices.Equal(slots, []int{1, 2}) || !maps.Equal(stand, map[int]int{0: 2}) || !slices.Equal(standby, []int{3}) || standbys(table)[3] != steer.Buckets {
		t.Errorf("slot 0 down, two spares: slots %v, stand %v, standby %v", slots, stand, standby)
	}
	// Two spares waiting: each the standby of one slot's buckets.
	table, _, _, standby = rotation(2, []int{0, 1, 2, 3})
	if sb := standbys(table); !slices.Equal(standby, []int{2, 3}) || sb[2] != owner(table)[1] || sb[3] != owner(table)[2] {
		t.Errorf("two spares waiting: standby %v, standbys %v, buckets %v", standby, sb, owner(table))
	}
	// More down than spares: the spare stands for the first, the serving
	// ones share the buckets of the other.
	table, slots, stand, _ = rotation(3, []int{2, 3})
	if !slices.Equal(slots, []int{2, 3}) || !maps.Equal(stand, map[int]int{0: 3}) {
		t.Errorf("two down, one spare: slots %v, stand %v", slots, stand)
	}
	if n := owner(table); n[0] != 0 || n[1] != 0 || n[2] != 0 || n[3]+n[4] != steer.Buckets {
		t.Errorf("two down, one spare: buckets %v", n)
	}
	// None serving: an empty table, the kernel's hash.
	if table, slots, _, _ := rotation(2, nil); slots != nil || owner(table)[0] != steer.Buckets {
		t.Errorf("none serving: slots %v", slots)
	}
}

// TestExitedSpare: an instance in the table whose process exits is taken
// out at once and the spare takes its place, without waiting for
// systemd's word; the spare's pid is in the table as the buckets'
// standby before.
func TestExitedSpare(t *testing.T) {
	sd := runningApp()
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	settle(t, c, sd, "app", 2)
	s := testSteerer(t, c, nil)
	if s.off != nil {
		t.Skip("loading a BPF program needs root (CAP_BPF, CAP_NET_ADMIN); CI runs as root")
	}
	g, err := steer.NewGroup(s.kernel)
	if err != nil {
		t.Fatal(err)
	}
	key := groupKey{"app", ":8080"}
	sg := &sgroup{g: g, pid: map[int]uint32{}, ino: map[int]uint64{}}
	s.groups[key] = sg
	s.watch, s.dead = map[uint32]exitWatch{}, map[uint32]bool{}
	s.set(key, sg, steer.ModeHash, 2, []int{0, 1, 2}, map[int]uint32{0: 100, 1: 101, 2: 102})
	if !slices.Equal(sg.slots, []int{0, 1}) || !slices.Equal(sg.standby, []int{2}) || !maps.Equal(sg.pids, map[int]uint32{0: 100, 1: 101, 2: 102}) || len(sg.stands()) != 0 {
		t.Fatalf("before: slots %v, standby %v, pids %v", sg.slots, sg.standby, sg.pids)
	}
	s.watch[101] = exitWatch{pool: "app", i: 2, cancel: func() {}}
	s.exited(101)
	if !slices.Equal(sg.slots, []int{0, 2}) || !maps.Equal(sg.pids, map[int]uint32{0: 100, 2: 102}) || !maps.Equal(sg.stands(), map[int]int{3: 2}) {
		t.Errorf("after app@2 exited: slots %v, pids %v, stands %v", sg.slots, sg.pids, sg.stands())
	}
	if !s.dead[101] {
		t.Error("the exit is not remembered")
	}
}

// TestListSpares: ListInstances shows the pool's spares, with the instance
// each in rotation stands for, and ListPools' capacity is the rotation's;
// without steering on the host there are none, as every instance then
// takes connections.
func TestListSpares(t *testing.T) {
	sd := runningApp()
	c := New(testConfig(t, "spares = 1\n"), sd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	tc := assemble(c, nil, nil)
	settle(t, tc, sd, "app", 2)
	s := testSteerer(t, tc, nil)
	if s.off != nil {
		t.Skip("loading a BPF program needs root (CAP_BPF, CAP_NET_ADMIN); CI runs as root")
	}
	tc.Status.st = s
	is, err := tc.ListInstances(ctx, "app")
	if err != nil || len(is) != 2 || is[0].Spare || !is[1].Spare || is[1].StandsFor != 0 {
		t.Fatalf("ListInstances = %+v, %v", is, err)
	}
	s.stands = map[string]map[int]int{"app": {2: 1}}
	if is, _ := tc.ListInstances(ctx, "app"); !is[1].Spare || is[1].StandsFor != 1 {
		t.Errorf("app@2 standing for app@1: %+v", is[1])
	}
	// The HAProxy agent's 100% is the rotation: one instance.
	if ps, _ := tc.ListPools(ctx); len(ps) != 1 || ps[0].Capacity != 1 {
		t.Errorf("ListPools with one spare of 2: %+v", ps)
	}
	tc.Status.st = testSteerer(t, tc, steer.ErrUnavailable)
	if is, _ := tc.ListInstances(ctx, "app"); is[1].Spare {
		t.Errorf("a spare without steering: %+v", is[1])
	}
	if ps, _ := tc.ListPools(ctx); len(ps) != 1 || ps[0].Capacity != 2 {
		t.Errorf("ListPools with a spare, steering off: %+v", ps)
	}
}
