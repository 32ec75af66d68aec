package steer

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Exits is the kernel's first word that a watched process dies, at the
// moment it is sealed, not when the process has finished exiting: a SIGKILL
// sent to it (by anyone: kill(2), the OOM killer, systemd's watchdog), or
// the first of its threads to exit once the process as a whole does
// (exit_group(2), a fatal signal it did not handle). Between that moment
// and the end of the exit lie milliseconds on a busy host, the time the
// process takes to be scheduled and tear itself down, and every new
// connection the kernel sends to its socket in them waits until a
// replacement takes it.
//
// A map holds the watched processes, by pid as their own PID namespace
// sees it and that namespace's inode: 0 while they live, 1 once they die.
// Two programs on raw tracepoints set it: signal_generate and
// sched_process_exit (since Linux 6.16 it comes before the process's
// memory is torn down). The steering program of every Group made with
// these Exits reads it and sends a connection whose slot's process dies to
// another slot.
//
// The map needs only what a Group needs; the tracing programs also need
// CAP_PERFMON and the kernel's BTF (for the offsets of the fields they
// read). Without them Tracing says why, and the
// map stays as Watch left it: steering then learns of an exit from the
// caller (WaitExit).
type Exits struct {
	dying   *ebpf.Map
	ns      uint32 // the inode of our PID namespace
	links   []link.Link
	tracing error
}

// dyingKey is a key of the map: the layout the programs write.
type dyingKey struct{ PID, NS uint32 }

// NewExits makes the map and attaches the tracing programs if it can. Its
// error, when BPF is not available here, wraps ErrUnavailable; a failure
// of the tracing alone is Tracing's.
func NewExits() (*Exits, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return nil, fmt.Errorf("%w: read our PID namespace: %v", ErrUnavailable, err)
	}
	dying, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: 4 * MaxSlots})
	if err != nil {
		return nil, unavailable("create the map of dying processes", err)
	}
	e := &Exits{dying: dying, ns: uint32(st.Ino)}
	e.tracing = e.attach()
	return e, nil
}

// Tracing returns why the kernel does not tell of deaths early here, or
// nil when it does.
func (e *Exits) Tracing() error { return e.tracing }

// Watch adds process pid (of our PID namespace) to the map as alive; a pid
// already there keeps its state.
func (e *Exits) Watch(pid uint32) error {
	err := e.dying.Update(dyingKey{pid, e.ns}, uint32(0), ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("steer: watch process %d: %w", pid, err)
	}
	return nil
}

// Forget removes pid from the map.
func (e *Exits) Forget(pid uint32) {
	e.dying.Delete(dyingKey{pid, e.ns})
}

// Dying reports whether the kernel said that pid dies.
func (e *Exits) Dying(pid uint32) bool {
	var v uint32
	return e.dying.Lookup(dyingKey{pid, e.ns}, &v) == nil && v != 0
}

// Watched returns the pids in the map.
func (e *Exits) Watched() []uint32 {
	var (
		k   dyingKey
		v   uint32
		out []uint32
	)
	for it := e.dying.Iterate(); it.Next(&k, &v); {
		out = append(out, k.PID)
	}
	return out
}

// Close detaches the tracing programs and releases the map (the programs of
// groups that use it keep it while they live).
func (e *Exits) Close() error {
	var errs []error
	for _, l := range e.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(append(errs, e.dying.Close())...)
}

// kernelLayout holds the offsets, in the running kernel's structures, of
// the fields the tracing programs follow from a task to its pid and
// namespace: task->group_leader->thread_pid, pid->level,
// pid->numbers[level].nr and .ns, and the namespace's ns.inum; and to
// whether its process exits: task->signal->flags.
type kernelLayout struct {
	leader, threadPid int32 // task_struct
	signal, flags     int32 // task_struct, signal_struct
	level, numbers    int32 // pid
	upidSize          int32
	nr, ns            int32 // upid
	inum              int32 // pid_namespace: ns.inum
}

func readLayout() (kernelLayout, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return kernelLayout{}, fmt.Errorf("read the kernel's BTF: %w", err)
	}
	var l kernelLayout
	var errs []error
	off := func(st, path string, dst *int32) {
		var s *btf.Struct
		if err := spec.TypeByName(st, &s); err != nil {
			errs = append(errs, fmt.Errorf("struct %s: %w", st, err))
			return
		}
		o, err := memberOffset(s, path)
		if err != nil {
			errs = append(errs, fmt.Errorf("struct %s: %w", st, err))
		}
		*dst = o
	}
	off("task_struct", "group_leader", &l.leader)
	off("task_struct", "thread_pid", &l.threadPid)
	off("task_struct", "signal", &l.signal)
	off("signal_struct", "flags", &l.flags)
	off("pid", "level", &l.level)
	off("pid", "numbers", &l.numbers)
	off("upid", "nr", &l.nr)
	off("upid", "ns", &l.ns)
	off("pid_namespace", "ns", &l.inum)
	var nsc int32
	off("ns_common", "inum", &nsc)
	l.inum += nsc
	var u *btf.Struct
	if err := spec.TypeByName("upid", &u); err == nil {
		l.upidSize = int32(u.Size)
	}
	return l, errors.Join(errs...)
}

// memberOffset returns the byte offset of member name in s, looking into
// anonymous structs and unions.
func memberOffset(s btf.Type, name string) (int32, error) {
	var ms []btf.Member
	switch t := s.(type) {
	case *btf.Struct:
		ms = t.Members
	case *btf.Union:
		ms = t.Members
	}
	for _, m := range ms {
		if m.Name == name {
			if m.BitfieldSize != 0 || m.Offset%8 != 0 {
				return 0, fmt.Errorf("member %s is a bit field", name)
			}
			return int32(m.Offset / 8), nil
		}
		if m.Name == "" {
			if o, err := memberOffset(btf.UnderlyingType(m.Type), name); err == nil {
				return int32(m.Offset/8) + o, nil
			}
		}
	}
	return 0, fmt.Errorf("no member %s", name)
}

// attach loads and attaches the tracing programs.
func (e *Exits) attach() error {
	l, err := readLayout()
	if err != nil {
		return err
	}
	progs := []struct {
		spec   ebpf.ProgramSpec
		attach func(*ebpf.Program) (link.Link, error)
	}{
		{ebpf.ProgramSpec{Name: "corral_sigkill", Type: ebpf.RawTracepoint, Instructions: signalProgram(l, e.dying.FD())},
			func(p *ebpf.Program) (link.Link, error) {
				return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "signal_generate", Program: p})
			}},
		{ebpf.ProgramSpec{Name: "corral_exit", Type: ebpf.RawTracepoint, Instructions: exitProgram(l, e.dying.FD())},
			func(p *ebpf.Program) (link.Link, error) {
				return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_process_exit", Program: p})
			}},
	}
	for _, pr := range progs {
		pr.spec.License = "GPL" // bpf_probe_read_kernel is GPL-only
		p, err := ebpf.NewProgram(&pr.spec)
		if err != nil {
			e.detach()
			return tracingErr("load "+pr.spec.Name, err)
		}
		lk, err := pr.attach(p)
		p.Close() // the link holds it
		if err != nil {
			e.detach()
			return tracingErr("attach "+pr.spec.Name, err)
		}
		e.links = append(e.links, lk)
	}
	return nil
}

func (e *Exits) detach() {
	for _, l := range e.links {
		l.Close()
	}
	e.links = nil
}

func tracingErr(what string, err error) error {
	hint := ""
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		hint = " (it needs CAP_PERFMON)"
	}
	return fmt.Errorf("%s: %v%s", what, err, hint)
}

const sigkill = 9

// signalProgram marks the process a SIGKILL is sent to. The raw
// tracepoint's arguments: sig, info, task, group, result.
func signalProgram(l kernelLayout, dying int) asm.Instructions {
	p := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),
		asm.JNE.Imm32(asm.R2, sigkill, "out"),
		asm.LoadMem(asm.R6, asm.R1, 16, asm.DWord),
	}
	return append(p, markTask(l, dying)...)
}

// signalGroupExit is SIGNAL_GROUP_EXIT of signal_struct's flags: the whole
// process exits (linux/sched/signal.h).
const signalGroupExit = 4

// exitProgram marks the process of a thread that exits, when the process
// exits as a whole. The raw tracepoint's arguments: task, and (since Linux
// 6.16) group_dead, which an older kernel leaves unread.
func exitProgram(l kernelLayout, dying int) asm.Instructions {
	p := asm.Instructions{asm.LoadMem(asm.R6, asm.R1, 0, asm.DWord)}
	p = append(p, readKernel(-8, 8, asm.R6, l.signal)...)
	p = append(p, asm.LoadMem(asm.R7, asm.RFP, -8, asm.DWord))
	p = append(p, readKernel(-8, 4, asm.R7, l.flags)...)
	p = append(p,
		asm.LoadMem(asm.R1, asm.RFP, -8, asm.Word),
		asm.And.Imm(asm.R1, signalGroupExit),
		asm.JEq.Imm(asm.R1, 0, "out"),
	)
	return append(p, markTask(l, dying)...)
}

// readKernel copies size bytes at src+off in the kernel to fp+dst, or
// jumps to "out".
func readKernel(dst int16, size int32, src asm.Register, off int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R3, src),
		asm.Add.Imm(asm.R3, off),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, int32(dst)),
		asm.Mov.Imm(asm.R2, size),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "out"),
	}
}

// markTask sets the map's entry of the process of the task in r6, if it
// has one, to 1: the key is the pid of its thread group leader in its own
// (innermost) PID namespace, and that namespace's inode.
func markTask(l kernelLayout, dying int) asm.Instructions {
	read := readKernel
	var p asm.Instructions
	p = append(p, read(-8, 8, asm.R6, l.leader)...)
	p = append(p, asm.LoadMem(asm.R6, asm.RFP, -8, asm.DWord))
	p = append(p, read(-8, 8, asm.R6, l.threadPid)...)
	p = append(p, asm.LoadMem(asm.R6, asm.RFP, -8, asm.DWord))
	p = append(p, read(-8, 4, asm.R6, l.level)...)
	p = append(p,
		asm.LoadMem(asm.R7, asm.RFP, -8, asm.Word),
		asm.JGT.Imm(asm.R7, 32, "out"),
		asm.Mul.Imm(asm.R7, l.upidSize),
		asm.Add.Reg(asm.R7, asm.R6),
		asm.Add.Imm(asm.R7, l.numbers),
	)
	p = append(p, read(-16, 4, asm.R7, l.nr)...)
	p = append(p, read(-8, 8, asm.R7, l.ns)...)
	p = append(p, asm.LoadMem(asm.R6, asm.RFP, -8, asm.DWord))
	p = append(p, read(-12, 4, asm.R6, l.inum)...)
	p = append(p,
		asm.LoadMapPtr(asm.R1, dying),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.StoreImm(asm.R0, 0, 1, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	return p
}
