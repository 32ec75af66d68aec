package steer

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listeners opens n TCP sockets of one SO_REUSEPORT group at a free port
// of 127.0.0.1 (without MPTCP, which a sockarray refuses), each counting
// the connections it accepts by the client's address.
type listeners struct {
	lns  []*net.TCPListener
	addr string
	mu   sync.Mutex
	got  []map[string]int // by listener: client address → connections
}

func newListeners(t *testing.T, n int) *listeners {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	lc.SetMultipathTCP(false)
	l := &listeners{}
	for i := range n {
		addr := "127.0.0.1:0"
		if i > 0 {
			addr = l.addr
		}
		ln, err := lc.Listen(context.Background(), "tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		l.addr = ln.Addr().String()
		l.lns = append(l.lns, ln.(*net.TCPListener))
		l.got = append(l.got, map[string]int{})
	}
	for i, ln := range l.lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				h, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				l.mu.Lock()
				l.got[i][h]++
				l.mu.Unlock()
				c.Close()
			}
		}()
	}
	t.Cleanup(func() {
		for _, ln := range l.lns {
			ln.Close()
		}
	})
	return l
}

// put puts every listener in g at its index.
func (l *listeners) put(t *testing.T, g *Group) {
	t.Helper()
	for i, ln := range l.lns {
		// Not ln.File(), which would make the listener blocking.
		rc, err := ln.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var perr error
		if err := rc.Control(func(fd uintptr) { perr = g.Put(i, int(fd)) }); err != nil {
			t.Fatal(err)
		}
		if perr != nil {
			t.Fatal(perr)
		}
	}
}

// dial makes n connections from the client address from (port 0: any),
// and waits until they are accepted; it returns the connections each
// listener took, and resets the counts.
func (l *listeners) dial(t *testing.T, from string, port, n int) []int {
	t.Helper()
	// SO_REUSEADDR: a door's port may still be in TIME_WAIT from an earlier run.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from), Port: port}, Timeout: 5 * time.Second,
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}}
	for range n {
		c, err := d.Dial("tcp4", l.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		counts, total := make([]int, len(l.got)), 0
		for i, m := range l.got {
			for _, k := range m {
				counts[i] += k
			}
			total += counts[i]
		}
		if total >= n || time.Now().After(deadline) {
			for i := range l.got {
				l.got[i] = map[string]int{}
			}
			l.mu.Unlock()
			return counts
		}
		l.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

func newGroup(t *testing.T) *Group {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root (CAP_BPF, CAP_NET_ADMIN); CI runs as root")
	}
	g, err := NewGroup(newExits(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func newExits(t *testing.T) *Exits {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root (CAP_BPF, CAP_PERFMON); CI runs as root")
	}
	e, err := NewExits()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestSteerHash: connections go only to the slots in the table, spread
// over them, and follow a new table at once.
func TestSteerHash(t *testing.T) {
	g := newGroup(t)
	l := newListeners(t, 4)
	l.put(t, g)
	if err := g.Set(ModeHash, Table([]int{0, 1, 2, 3}), nil); err != nil {
		t.Fatal(err)
	}
	got := l.dial(t, "127.0.0.1", 0, 400)
	for i, n := range got {
		if n < 40 {
			t.Errorf("all 4 allowed: listener %d took %d of 400: %v", i, n, got)
		}
	}
	if err := g.Set(ModeHash, Table([]int{0, 2}), nil); err != nil {
		t.Fatal(err)
	}
	got = l.dial(t, "127.0.0.1", 0, 200)
	if got[1] != 0 || got[3] != 0 || got[0] < 40 || got[2] < 40 {
		t.Errorf("0 and 2 allowed: %v", got)
	}
}

// TestSteerSticky: every connection of a client address reaches one
// slot; removing a slot moves only its addresses, and they come back.
func TestSteerSticky(t *testing.T) {
	g := newGroup(t)
	l := newListeners(t, 4)
	l.put(t, g)
	all := []int{0, 1, 2, 3}
	where := func(slots []int) map[string]int {
		if err := g.Set(ModeSticky, Table(slots), nil); err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for a := 1; a <= 40; a++ {
			addr := fmt.Sprintf("127.0.1.%d", a)
			got := l.dial(t, addr, 0, 10)
			for i, n := range got {
				if n == 10 {
					out[addr] = i
				} else if n != 0 {
					t.Errorf("%s: spread over listeners %v", addr, got)
				}
			}
		}
		return out
	}
	before := where(all)
	used := map[int]int{}
	for _, i := range before {
		used[i]++
	}
	if len(used) != 4 {
		t.Errorf("40 addresses on %d of 4 listeners: %v", len(used), used)
	}
	without := where([]int{0, 2, 3})
	for a, i := range before {
		if i != 1 && without[a] != i {
			t.Errorf("%s moved from %d to %d when 1 left", a, i, without[a])
		}
		if without[a] == 1 {
			t.Errorf("%s still on 1 after it left", a)
		}
	}
	after := where(all)
	for a, i := range before {
		if after[a] != i {
			t.Errorf("%s on %d after 1 came back, was %d", a, after[a], i)
		}
	}
}

// TestSteerDoor: a source port of the door reaches its slot even when the
// table sends nothing there.
func TestSteerDoor(t *testing.T) {
	g := newGroup(t)
	l := newListeners(t, 3)
	l.put(t, g)
	if err := g.Set(ModeHash, Table([]int{0}), nil); err != nil {
		t.Fatal(err)
	}
	for slot := range 3 {
		got := l.dial(t, fmt.Sprintf("127.0.2.%d", 1+os.Getpid()%250), DoorBase+slot, 1)
		if got[slot] != 1 {
			t.Errorf("door of slot %d: %v", slot, got)
		}
	}
}

// TestSteerEmptySlot: a slot whose socket closed is empty, and the kernel
// chooses among the open ones.
func TestSteerEmptySlot(t *testing.T) {
	g := newGroup(t)
	l := newListeners(t, 2)
	l.put(t, g)
	if _, ok := g.Cookie(1); !ok {
		t.Fatal("slot 1 empty after Put")
	}
	l.lns[1].Close()
	if _, ok := g.Cookie(1); ok {
		t.Error("slot 1 still full after its socket closed")
	}
	if err := g.Set(ModeHash, Table([]int{1}), nil); err != nil {
		t.Fatal(err)
	}
	if got := l.dial(t, "127.0.0.1", 0, 20); got[0] != 20 {
		t.Errorf("only 0 open: %v", got)
	}
}

func TestTable(t *testing.T) {
	if tb := Table(nil); tb[0] != 0 || len(tb) != Buckets {
		t.Fatalf("empty: %d buckets, first %d", len(tb), tb[0])
	}
	all := Table([]int{0, 1, 2, 3, 4, 5, 6, 7})
	count := map[uint32]int{}
	for _, s := range all {
		count[s]++
	}
	for s := uint32(1); s <= 8; s++ {
		if count[s] < Buckets/8/2 || count[s] > Buckets/8*2 {
			t.Errorf("slot %d has %d of %d buckets", s-1, count[s], Buckets)
		}
	}
	less := Table([]int{0, 1, 2, 4, 5, 6, 7})
	for b := range all {
		if all[b] != 4 && less[b] != all[b] {
			t.Fatalf("bucket %d moved from %d to %d though its slot stayed", b, all[b]-1, less[b]-1)
		}
		if less[b] == 4 {
			t.Fatalf("bucket %d on the slot that left", b)
		}
	}
}

// TestFindSocket: the socket of a process is found among its fds, and a
// process without it gives 0.
func TestFindSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pidfd_getfd of a process needs CAP_SYS_PTRACE or its own uid")
	}
	l := newListeners(t, 1)
	rc, _ := l.lns[0].SyscallConn()
	var ino uint64
	rc.Control(func(fd uintptr) { ino, _ = Inode(int(fd)) })
	got, err := FindSocket(os.Getpid(), func(n uint64) bool { return n == ino })
	if err != nil || got != ino {
		t.Errorf("FindSocket = %d, %v; want %d", got, err, ino)
	}
	got, err = FindSocket(os.Getpid(), func(uint64) bool { return false })
	if err != nil || got != 0 {
		t.Errorf("FindSocket of nothing = %d, %v", got, err)
	}
}

// TestSteerNewMaps: a socket left in the map of a group whose maps nobody
// keeps (a corrald stopped, then started afresh) goes into a new group's.
func TestSteerNewMaps(t *testing.T) {
	old := newGroup(t)
	l := newListeners(t, 2)
	l.put(t, old)
	old.Close() // the attached program keeps its maps
	g := newGroup(t)
	l.put(t, g)
	if err := g.Set(ModeHash, Table([]int{1}), nil); err != nil {
		t.Fatal(err)
	}
	if got := l.dial(t, "127.0.0.1", 0, 20); got[1] != 20 {
		t.Errorf("the new group's table sends all to 1: %v", got)
	}
}

// TestSteerDetach: after Detach the kernel's hash serves every socket
// again, whatever the table said.
func TestSteerDetach(t *testing.T) {
	g := newGroup(t)
	l := newListeners(t, 2)
	l.put(t, g)
	if err := g.Set(ModeHash, Table([]int{0}), nil); err != nil {
		t.Fatal(err)
	}
	rc, _ := l.lns[1].SyscallConn()
	var derr error
	rc.Control(func(fd uintptr) { derr = Detach(int(fd)) })
	if derr != nil {
		t.Fatal(derr)
	}
	if got := l.dial(t, "127.0.0.1", 0, 100); got[0] == 0 || got[1] == 0 {
		t.Errorf("after Detach: %v", got)
	}
}

// TestOwnerTake: a copy of a process's socket is taken by its inode, also
// after the process moved it to another fd number, as systemd does when it
// reloads.
func TestOwnerTake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pidfd_getfd needs CAP_SYS_PTRACE or the same user")
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(s, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	ino, _ := Inode(s)
	o, err := OpenOwner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	take := func() {
		t.Helper()
		fd, err := o.Take(ino)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := Inode(fd); got != ino {
			t.Errorf("took inode %d, want %d", got, ino)
		}
		unix.Close(fd)
	}
	take()
	moved, err := unix.FcntlInt(uintptr(s), unix.F_DUPFD_CLOEXEC, 200)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(s)
	defer unix.Close(moved)
	take()
	if _, err := o.Take(1 << 40); err == nil {
		t.Error("took a socket that does not exist")
	}
}

// TestWaitExit: WaitExit returns when the process exits, at once for one
// that is gone, and with ctx's error when cancelled.
func TestWaitExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- WaitExit(context.Background(), cmd.Process.Pid) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WaitExit returned while the process runs: %v", err)
	default:
	}
	t0 := time.Now()
	cmd.Process.Kill()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("WaitExit returned %v after the kill", time.Since(t0))
	case <-time.After(5 * time.Second):
		t.Fatal("WaitExit did not return after the kill")
	}
	cmd.Wait()
	if err := WaitExit(context.Background(), cmd.Process.Pid); err != nil {
		t.Errorf("WaitExit of a process gone: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := WaitExit(ctx, os.Getpid()); err != context.DeadlineExceeded {
		t.Errorf("WaitExit of a process that stays, cancelled: %v", err)
	}
}

// TestSteerWithoutPerfmon runs the steering tests again in a process
// without CAP_PERFMON (nor CAP_SYS_ADMIN, which implies it), as corrald
// runs under a drop-in that takes it: the tracepoint programs cannot load,
// and the steering program, without its stage for dying processes, still
// loads and steers.
func TestSteerWithoutPerfmon(t *testing.T) {
	if os.Getenv("CORRAL_STEER_NO_PERFMON") != "" { // the child
		e := newExits(t)
		if err := e.Tracing(); err == nil || !strings.Contains(err.Error(), "CAP_PERFMON") {
			t.Fatalf("the tracepoint programs without CAP_PERFMON: %v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root (CAP_BPF, CAP_NET_ADMIN); CI runs as root")
	}
	cmd := exec.Command("setpriv", "--bounding-set", "-sys_admin,-perfmon", os.Args[0], "-test.count=1",
		"-test.run", "^(TestSteerWithoutPerfmon|TestSteerHash|TestSteerSticky|TestSteerDoor|TestSteerEmptySlot|TestSteerDetach)$", "-test.v")
	cmd.Env = append(os.Environ(), "CORRAL_STEER_NO_PERFMON=1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "--- PASS") != 6 {
		t.Fatalf("the steering tests without CAP_PERFMON: %v\n%s", err, out)
	}
}
