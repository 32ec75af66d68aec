// Package steer chooses, in the kernel, which socket of a SO_REUSEPORT
// group takes each new connection: a BPF_PROG_TYPE_SK_REUSEPORT program
// attached to the group picks a slot of a REUSEPORT_SOCKARRAY map through
// a table of buckets that userspace fills with the allowed slots.
//
// A Group is the program and its two maps for one group (one address of a
// pool whose instances each have a socket):
//
//   - socks, the sockets by slot (instance i is slot i-1);
//   - table, Buckets entries each naming a slot+1 (0: none) and, above
//     it, the slot+1 of its standby (0: none; Entry), then the mode, then
//     the pid of each slot's process (0: none), for Exits.
//
// For each new connection the program takes, in order:
//
//  1. the door: a client source port from DoorBase to DoorBase+MaxSlots-1
//     picks slot port-DoorBase, whatever the table says;
//  2. a bucket: the kernel's hash of the connection (ModeHash), or a hash
//     of the client's address (ModeSticky), modulo Buckets;
//  3. the bucket's slot, if it has one, unless Exits says its process
//     dies: then the bucket's standby, if it has one whose process does
//     not, else the slot of the next bucket, Tries at most, a stride
//     apart, whose process does not; else, or when the slot is empty, the
//     kernel's own choice, as without a program.
//
// Table spreads the buckets over the allowed slots by rendezvous hashing:
// a slot that leaves takes only its own buckets with it, and gets the same
// ones back when it returns.
package steer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

const (
	// MaxSlots is the number of sockets a group can hold: one per
	// instance, as many as a pool may have.
	MaxSlots = 1024
	// Buckets is the size of the table: the unit in which connections are
	// spread over the slots.
	Buckets = 1024
	// DoorBase is the client source port that the program sends to slot 0
	// (instance 1); DoorBase+i-1 reaches instance i. The ports lie below
	// the ephemeral ranges of Linux (32768–60999), macOS and Windows
	// (49152–65535); FreeBSD's (10000–65535) covers them, so its clients
	// may land on a door by chance (docs/steering.md).
	DoorBase = 31744
	// Tries is how many buckets the program looks at for a slot whose
	// process does not die, triesStride apart.
	Tries       = 8
	triesStride = 389
	// pidsAt is the table's entry of slot 0's pid.
	pidsAt = Buckets + 1
	// A bucket's entry: slot+1 in its low bits, its standby's above.
	standbyShift = 16
	slotMask     = 1<<standbyShift - 1
	tableSize    = pidsAt + MaxSlots
)

// Mode is how the program picks a bucket.
type Mode uint32

const (
	// ModeHash spreads connections by the kernel's hash of each
	// connection's addresses and ports.
	ModeHash Mode = 0
	// ModeSticky sends every connection of a client address to the same
	// bucket.
	ModeSticky Mode = 1
)

// Offsets in struct sk_reuseport_md (linux/bpf.h).
const (
	mdData     = 0
	mdDataEnd  = 8
	mdEthProto = 20
	mdHash     = 32
)

const (
	skPass           = 1  // SK_PASS
	hdrStartNet      = 1  // BPF_HDR_START_NET
	soAttachReuseBPF = 52 // SO_ATTACH_REUSEPORT_EBPF
)

// Group steers the connections of one SO_REUSEPORT group.
type Group struct {
	socks, table *ebpf.Map
	prog         *ebpf.Program
}

// ErrUnavailable wraps the reasons a Group cannot be made here.
var ErrUnavailable = errors.New("steering in the kernel is not available")

// NewGroup makes the maps and the program of a new group, whose program
// learns from e which processes die. Its error, when BPF is not allowed or
// not supported here, wraps ErrUnavailable.
func NewGroup(e *Exits) (*Group, error) {
	socks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ReusePortSockArray, KeySize: 4, ValueSize: 8, MaxEntries: MaxSlots})
	if err != nil {
		return nil, unavailable("create the socket map", err)
	}
	table, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: tableSize})
	if err != nil {
		socks.Close()
		return nil, unavailable("create the table", err)
	}
	g, err := OpenGroup(socks, table, e)
	if err != nil {
		socks.Close()
		table.Close()
	}
	return g, err
}

// OpenGroup loads the program over maps of an earlier NewGroup (kept, for
// instance, in systemd's fd store while the sockets they hold live on).
// The group owns the maps from now on. The new program is attached to the
// group's sockets by the next Put or Attach.
func OpenGroup(socks, table *ebpf.Map, e *Exits) (*Group, error) {
	if socks.Type() != ebpf.ReusePortSockArray || socks.MaxEntries() != MaxSlots || table.Type() != ebpf.Array || table.MaxEntries() != tableSize {
		return nil, fmt.Errorf("steer: not the maps of a group: %v[%d], %v[%d]", socks.Type(), socks.MaxEntries(), table.Type(), table.MaxEntries())
	}
	// Without the tracepoint programs nothing marks a process dying, and
	// without CAP_PERFMON the verifier explores the mispredicted side of
	// each jump too, and refuses the loop over the buckets as endless: the
	// program then takes the bucket's slot as it is.
	dying, ns := -1, uint32(0)
	if e != nil && e.Tracing() == nil {
		dying, ns = e.dying.FD(), e.ns
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "corral_steer",
		Type:         ebpf.SkReuseport,
		AttachType:   ebpf.AttachSkReuseportSelect,
		License:      "Apache-2.0",
		Instructions: program(socks.FD(), table.FD(), dying, ns),
	})
	if err != nil {
		return nil, unavailable("load the program", err)
	}
	return &Group{socks: socks, table: table, prog: prog}, nil
}

func unavailable(what string, err error) error {
	hint := ""
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		hint = " (it needs CAP_BPF and CAP_NET_ADMIN, and the bpf system call)"
	}
	return fmt.Errorf("%w: %s: %v%s", ErrUnavailable, what, err, hint)
}

// Maps returns the group's maps, for keeping (see OpenGroup). They stay
// the group's.
func (g *Group) Maps() (socks, table *ebpf.Map) { return g.socks, g.table }

// Close releases the group's program and maps. The kernel keeps a program
// that is attached, and its maps, until the group's last socket closes.
func (g *Group) Close() error {
	return errors.Join(g.prog.Close(), g.socks.Close(), g.table.Close())
}

// Put makes the listening socket fd the slot's and attaches the program to
// its group. fd stays the caller's; close it at once, since a copy kept
// open keeps its socket in the group after its owner closed it.
func (g *Group) Put(slot int, fd int) error {
	if slot < 0 || slot >= MaxSlots {
		return fmt.Errorf("steer: slot %d out of 0..%d", slot, MaxSlots-1)
	}
	err := g.socks.Put(uint32(slot), uint64(fd))
	// EBUSY: the socket is in the map of a program no longer kept (a
	// corrald stopped, not restarted, loses its fd store); detach that
	// program from the group, and the kernel frees its maps soon after.
	for try := 0; errors.Is(err, unix.EBUSY) && try < 50; try++ {
		if try == 0 {
			Detach(fd)
		}
		time.Sleep(10 * time.Millisecond)
		err = g.socks.Put(uint32(slot), uint64(fd))
	}
	if err != nil {
		return fmt.Errorf("steer: put the socket in slot %d: %w", slot, err)
	}
	return g.Attach(fd)
}

// Attach attaches the group's program to the group of the socket fd, in
// place of any other.
func (g *Group) Attach(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, soAttachReuseBPF, g.prog.FD()); err != nil {
		return fmt.Errorf("steer: attach the program: %w", err)
	}
	return nil
}

// Detach takes the program off the group of the socket fd: the kernel
// chooses again, and frees the group's maps once nothing else holds them.
func Detach(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
}

// Cookie returns the socket cookie of the slot's socket (SO_COOKIE), and
// false when the slot is empty: the kernel empties a slot when its socket
// closes.
func (g *Group) Cookie(slot int) (uint64, bool) {
	var c uint64
	if err := g.socks.Lookup(uint32(slot), &c); err != nil {
		return 0, false
	}
	return c, true
}

// SocketCookie returns the cookie of the socket fd (SO_COOKIE), as Cookie
// reports it for a slot.
func SocketCookie(fd int) (uint64, error) {
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
}

// Set fills the table: each bucket's slot+1 (0 for none, see Table), the
// mode, and the pid of the process of each slot in pids (the others: none).
func (g *Group) Set(mode Mode, buckets []uint32, pids map[int]uint32) error {
	if len(buckets) != Buckets {
		return fmt.Errorf("steer: %d buckets, want %d", len(buckets), Buckets)
	}
	keys := make([]uint32, tableSize)
	for i := range keys {
		keys[i] = uint32(i)
	}
	vals := append(append(make([]uint32, 0, tableSize), buckets...), uint32(mode))
	vals = append(vals, make([]uint32, MaxSlots)...)
	for slot, pid := range pids {
		if slot >= 0 && slot < MaxSlots {
			vals[pidsAt+slot] = pid
		}
	}
	if _, err := g.table.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	}
	for i, k := range keys {
		if err := g.table.Put(k, vals[i]); err != nil {
			return fmt.Errorf("steer: fill the table: %w", err)
		}
	}
	return nil
}

// Entry is a bucket's entry in the table: slot, and standby, the slot
// that takes the bucket's connections while slot's process dies, before
// the table changes (a spare instance); -1 is none, for either.
func Entry(slot, standby int) uint32 {
	return uint32(standby+1)<<standbyShift | uint32(slot+1)
}

// Slots reads a bucket's entry: its slot and its standby, -1 for none.
func Slots(e uint32) (slot, standby int) {
	return int(e&slotMask) - 1, int(e>>standbyShift) - 1
}

// Table spreads Buckets over slots: each bucket goes to the slot with the
// highest score for it (rendezvous hashing), as slot+1; 0 when slots is
// empty.
func Table(slots []int) []uint32 {
	out := make([]uint32, Buckets)
	for b := range out {
		var best uint64
		for _, s := range slots {
			if sc := mix64(uint64(b)<<32 | uint64(uint32(s))); out[b] == 0 || sc > best {
				best, out[b] = sc, uint32(s)+1
			}
		}
	}
	return out
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// ipv6 is ETH_P_IPV6 as sk_reuseport_md's eth_protocol holds it: in
// network order, read as a host integer.
var ipv6 = int32(binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, unix.ETH_P_IPV6)))

// program is the SK_REUSEPORT program of a group over its maps.
func program(socks, table, dying int, ns uint32) asm.Instructions {
	// r0 = the value of map fd at the key at fp+key, or goto miss.
	lookupAt := func(fd int, key int32, miss string) asm.Instructions {
		return asm.Instructions{
			asm.LoadMapPtr(asm.R1, fd),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, key),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, miss),
		}
	}
	lookup := func(fd int) asm.Instructions { return lookupAt(fd, -4, "pass") }
	mix := func(shift, mul int32) asm.Instructions { // r7 ^= r7 >> shift; r7 *= mul
		ins := asm.Instructions{asm.Mov.Reg32(asm.R1, asm.R7), asm.RSh.Imm32(asm.R1, shift), asm.Xor.Reg32(asm.R7, asm.R1)}
		if mul != 0 {
			ins = append(ins, asm.Mul.Imm32(asm.R7, mul))
		}
		return ins
	}
	var p asm.Instructions
	p = append(p,
		asm.Mov.Reg(asm.R6, asm.R1),
		// 1. The door: the client's source port, the first two bytes of
		// the TCP (or UDP) header.
		asm.LoadMem(asm.R2, asm.R6, mdData, asm.DWord),
		asm.LoadMem(asm.R3, asm.R6, mdDataEnd, asm.DWord),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 4),
		asm.JGT.Reg(asm.R4, asm.R3, "pick"),
		asm.LoadMem(asm.R7, asm.R2, 0, asm.Half),
		asm.HostTo(asm.BE, asm.R7, asm.Half),
		asm.Sub.Imm(asm.R7, DoorBase),
		asm.JGE.Imm(asm.R7, MaxSlots, "pick"),
		asm.Ja.Label("select"),
		// 2. The mode, after the buckets; the connection's hash.
		asm.StoreImm(asm.RFP, -4, Buckets, asm.Word).WithSymbol("pick"),
	)
	p = append(p, lookup(table)...)
	p = append(p,
		asm.LoadMem(asm.R8, asm.R0, 0, asm.Word),
		asm.LoadMem(asm.R7, asm.R6, mdHash, asm.Word),
		asm.JNE.Imm(asm.R8, int32(ModeSticky), "bucket"),
		// Sticky: a hash of the client's address, read from the IP header
		// (IPv4: 4 bytes at 12; IPv6: 16 at 8); unreadable, the kernel's.
		// The buffer is zeroed first: without CAP_PERFMON the verifier
		// refuses to read a byte the helper may not have written.
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, -24, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.LoadMem(asm.R9, asm.R6, mdEthProto, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 12),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -24),
		asm.Mov.Imm(asm.R4, 4),
		asm.JNE.Imm(asm.R9, ipv6, "load"),
		asm.Mov.Imm(asm.R2, 8),
		asm.Mov.Imm(asm.R4, 16),
		asm.Mov.Imm(asm.R5, hdrStartNet).WithSymbol("load"),
		asm.FnSkbLoadBytesRelative.Call(),
		asm.JNE.Imm(asm.R0, 0, "bucket"),
		asm.LoadMem(asm.R7, asm.RFP, -24, asm.Word),
		asm.JNE.Imm(asm.R9, ipv6, "mix"),
		asm.LoadMem(asm.R1, asm.RFP, -20, asm.Word),
		asm.Xor.Reg32(asm.R7, asm.R1),
		asm.LoadMem(asm.R1, asm.RFP, -16, asm.Word),
		asm.Xor.Reg32(asm.R7, asm.R1),
		asm.LoadMem(asm.R1, asm.RFP, -12, asm.Word),
		asm.Xor.Reg32(asm.R7, asm.R1),
	)
	// lowbias32: consecutive addresses land in unrelated buckets.
	m := mix(16, 0x7feb352d)
	m[0] = m[0].WithSymbol("mix")
	p = append(p, m...)
	p = append(p, mix(15, -0x7b935975)...) // 0x846ca68b
	p = append(p, mix(16, 0)...)
	if dying < 0 {
		// 3. The bucket's slot (no dying map: see OpenGroup).
		p = append(p,
			asm.And.Imm(asm.R7, Buckets-1).WithSymbol("bucket"),
			asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		)
		p = append(p, lookup(table)...)
		p = append(p,
			asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
			asm.And.Imm32(asm.R7, slotMask),
			asm.JEq.Imm(asm.R7, 0, "pass"),
			asm.Sub.Imm(asm.R7, 1),
		)
		return append(p, selectSlot(socks)...)
	}
	// 3. The bucket's slot, unless its process dies (Exits): then its
	// standby, unless its process dies too, then the next of a few
	// buckets further on whose slot's process does not.
	p = append(p,
		asm.And.Imm(asm.R7, Buckets-1).WithSymbol("bucket"),
		asm.Mov.Reg(asm.R8, asm.R7),
		asm.Mov.Imm(asm.R9, 0),
		asm.StoreMem(asm.RFP, -4, asm.R8, asm.Word).WithSymbol("try"),
	)
	p = append(p, lookup(table)...)
	p = append(p,
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		// The standby (+1, 0: none), kept on the stack.
		asm.Mov.Reg32(asm.R1, asm.R7),
		asm.RSh.Imm32(asm.R1, standbyShift),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		asm.And.Imm32(asm.R7, slotMask),
		asm.JEq.Imm(asm.R7, 0, "pass"),
		asm.Sub.Imm(asm.R7, 1),
		// The slot's process, after the buckets and the mode.
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("check"),
		asm.Add.Imm(asm.R1, pidsAt),
		asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word),
	)
	p = append(p, lookupAt(table, -4, "select")...)
	p = append(p,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "select"),
		// Does it die? The key: its pid and our PID namespace.
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.Word),
		asm.StoreImm(asm.RFP, -12, int64(int32(ns)), asm.Word),
	)
	p = append(p, lookupAt(dying, -16, "select")...)
	p = append(p,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JNE.Imm(asm.R1, 1, "select"),
		asm.Add.Imm(asm.R9, 1),
		asm.JGE.Imm(asm.R9, Tries, "pass"),
		// It dies: its standby, once, if it has one.
		asm.LoadMem(asm.R1, asm.RFP, -8, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "next"),
		asm.StoreImm(asm.RFP, -8, 0, asm.Word),
		asm.Mov.Reg(asm.R7, asm.R1),
		asm.Sub.Imm(asm.R7, 1),
		asm.Ja.Label("check"),
		asm.Add.Imm(asm.R8, triesStride).WithSymbol("next"),
		asm.And.Imm(asm.R8, Buckets-1),
		asm.Ja.Label("try"),
	)
	return append(p, selectSlot(socks)...)
}

// selectSlot selects slot r7 of socks for the connection (an empty slot
// leaves the choice to the kernel) and passes it; it is the program's end,
// "select", and "pass".
func selectSlot(socks int) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word).WithSymbol("select"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, socks),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -4),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	}
}
