package steer

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// sleeper starts a process that waits until killed, and reaps it at the
// end of the test.
func sleeper(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) == 0 {
		args = []string{"sleep", "60"}
	}
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestExitsSigkill: the kernel marks a watched process dying when the
// SIGKILL is sent, before it has run to handle it: here it is stopped,
// and stays so until it is reaped.
func TestExitsSigkill(t *testing.T) {
	e := newExits(t)
	if err := e.Tracing(); err != nil {
		t.Fatalf("no early word of deaths on this kernel: %v", err)
	}
	victim, other := sleeper(t), sleeper(t)
	pid, opid := uint32(victim.Process.Pid), uint32(other.Process.Pid)
	for _, p := range []uint32{pid, opid} {
		if err := e.Watch(p); err != nil {
			t.Fatal(err)
		}
	}
	if e.Dying(pid) {
		t.Fatal("dying before any signal")
	}
	victim.Process.Signal(syscall.SIGSTOP)
	if e.Dying(pid) {
		t.Fatal("dying after SIGSTOP")
	}
	victim.Process.Signal(syscall.SIGKILL)
	if !e.Dying(pid) {
		t.Fatal("not dying right after SIGKILL")
	}
	if e.Dying(opid) {
		t.Error("the other process is said to die")
	}
	if w := e.Watched(); !slices.Contains(w, pid) || !slices.Contains(w, opid) {
		t.Errorf("Watched = %v", w)
	}
	// Watch again leaves the mark; Forget removes the entry.
	e.Watch(pid)
	if !e.Dying(pid) {
		t.Error("Watch cleared the mark")
	}
	e.Forget(pid)
	if e.Dying(pid) || slices.Contains(e.Watched(), pid) {
		t.Error("still there after Forget")
	}
}

// TestExitsExit: a process that exits by itself is marked when it starts
// to (exit_group), and one that dies of a signal it does not handle too.
func TestExitsExit(t *testing.T) {
	e := newExits(t)
	if err := e.Tracing(); err != nil {
		t.Fatalf("no early word of deaths on this kernel: %v", err)
	}
	for _, c := range []struct{ name, script string }{
		{"exit", "read x; exit 3"},
		{"SIGSEGV", "read x; kill -SEGV $$"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", c.script)
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := uint32(cmd.Process.Pid)
			e.Watch(pid)
			defer e.Forget(pid)
			time.Sleep(20 * time.Millisecond)
			if e.Dying(pid) {
				t.Fatal("dying before it exits")
			}
			in.Write([]byte("\n"))
			cmd.Wait() // reaped: its pid stays ours until then, so the mark is its own
			if !e.Dying(pid) {
				t.Error("not marked after it exited")
			}
		})
	}
}

// dyingGroup is a group whose program learns of deaths in the kernel,
// with 3 sockets in its slots and a process for each, watched: pids.
func dyingGroup(t *testing.T) (*Group, *listeners, []*exec.Cmd, map[int]uint32) {
	t.Helper()
	e := newExits(t)
	if err := e.Tracing(); err != nil {
		t.Fatalf("no early word of deaths on this kernel: %v", err)
	}
	g, err := NewGroup(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	l := newListeners(t, 3)
	l.put(t, g)
	procs := []*exec.Cmd{sleeper(t), sleeper(t), sleeper(t)}
	pids := map[int]uint32{}
	for i, p := range procs {
		pids[i] = uint32(p.Process.Pid)
		e.Watch(pids[i])
	}
	return g, l, procs, pids
}

// TestSteerDying: a slot whose process the kernel said dies gets no new
// connection, before any table changes; the others take them all.
func TestSteerDying(t *testing.T) {
	g, l, procs, pids := dyingGroup(t)
	if err := g.Set(ModeHash, Table([]int{0, 1, 2}), pids); err != nil {
		t.Fatal(err)
	}
	if got := l.dial(t, "127.0.0.1", 0, 300); got[1] < 30 {
		t.Fatalf("all alive: %v", got)
	}
	procs[1].Process.Signal(syscall.SIGSTOP)
	procs[1].Process.Kill()
	if got := l.dial(t, "127.0.0.1", 0, 300); got[1] != 0 || got[0] < 30 || got[2] < 30 {
		t.Errorf("slot 1's process killed, the table unchanged: %v", got)
	}
	// Sticky: the addresses of the dying slot move; the others stay.
	if err := g.Set(ModeSticky, Table([]int{0, 1, 2}), nil); err != nil {
		t.Fatal(err)
	}
	home := map[int]int{}
	for a := 1; a <= 30; a++ {
		got := l.dial(t, "127.0.4."+itoa(a), 0, 3)
		home[a] = slices.IndexFunc(got, func(n int) bool { return n == 3 })
	}
	g.Set(ModeSticky, Table([]int{0, 1, 2}), pids)
	for a := 1; a <= 30; a++ {
		got := l.dial(t, "127.0.4."+itoa(a), 0, 3)
		now := slices.IndexFunc(got, func(n int) bool { return n == 3 })
		if now < 0 || now == 1 || (home[a] != 1 && now != home[a]) {
			t.Errorf("127.0.4.%d: on %d, now %v", a, home[a], got)
		}
	}
	// The door still reaches the dying slot.
	if got := l.dial(t, "127.0.4.200", DoorBase+1, 1); got[1] != 1 {
		t.Errorf("door of slot 1: %v", got)
	}
}

// TestSteerStandby: a bucket whose slot's process dies goes to its
// standby, exactly that slot's buckets (and sticky addresses), before any
// table changes; a standby that dies too leaves them to the others.
func TestSteerStandby(t *testing.T) {
	g, l, procs, pids := dyingGroup(t)
	// Slots 0 and 1 in the table, slot 2 the standby of both.
	table := Table([]int{0, 1})
	for b, v := range table {
		slot, _ := Slots(v)
		table[b] = Entry(slot, 2)
	}
	if slot, standby := Slots(table[0]); slot < 0 || slot > 1 || standby != 2 {
		t.Fatalf("Slots(%#x) = %d, %d", table[0], slot, standby)
	}
	if err := g.Set(ModeSticky, table, pids); err != nil {
		t.Fatal(err)
	}
	home := map[int]int{}
	for a := 1; a <= 30; a++ {
		got := l.dial(t, "127.0.4."+itoa(a), 0, 3)
		home[a] = slices.IndexFunc(got, func(n int) bool { return n == 3 })
		if home[a] == 2 {
			t.Fatalf("127.0.4.%d on the standby while all live: %v", a, got)
		}
	}
	procs[1].Process.Signal(syscall.SIGSTOP)
	procs[1].Process.Kill()
	for a := 1; a <= 30; a++ {
		got := l.dial(t, "127.0.4."+itoa(a), 0, 3)
		now := slices.IndexFunc(got, func(n int) bool { return n == 3 })
		if want := map[int]int{0: 0, 1: 2}[home[a]]; now != want {
			t.Errorf("127.0.4.%d: on %d, with slot 1 dying on %v, want all on %d", a, home[a], got, want)
		}
	}
	procs[2].Process.Signal(syscall.SIGSTOP)
	procs[2].Process.Kill()
	if got := l.dial(t, "127.0.0.1", 0, 100); got[0] != 100 {
		t.Errorf("slot 1 and its standby dying: %v, want all on slot 0", got)
	}
}

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}
