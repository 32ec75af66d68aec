package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf/asm"

	"github.com/corral-pool/corral/internal/steer"
)

// The steps of the choice, in order, as the picture groups the blocks.
const (
	stageDoor   = "1. the door"
	stageMode   = "2. the mode and the hash"
	stageSticky = "sticky: a hash of the client's address"
	stageBucket = "3. the bucket's instance"
	stageDying  = "its process dying? (the kernel's word, before corrald's)"
	stageChoice = "the choice"
)

var stages = []string{stageDoor, stageMode, stageSticky, stageBucket, stageDying, stageChoice}

// facts is what a block does, as the rules read it.
type facts struct {
	ctx      map[string]bool // fields of the context it reads
	calls    []asm.BuiltinFunc
	maps     []string     // maps it loads
	subImm   []int64      // constants it subtracts
	andImm   []int64      // constants it masks with
	addImm   []int64      // constants it adds
	mul      bool         // it multiplies
	fromMap  bool         // it reads a map's value (through r0)
	mapInto  asm.Register // where it reads that value
	stackKey int64        // a constant it stores at fp-4, the lookup's key; -1 if none
	stackRd  []int16      // offsets below fp it reads
	stackWr  []int16      // offsets below fp it writes
	movImm   int          // moves of a constant
	onlyJa   bool         // it is one goto
	exit     bool
	last     asm.Instruction
}

func factsOf(b *block, fromCtx []bool) facts {
	f := facts{ctx: map[string]bool{}, stackKey: -1, last: b.ins[len(b.ins)-1]}
	f.onlyJa = len(b.ins) == 1 && f.last.OpCode.JumpOp() == asm.Ja
	for k, ins := range b.ins {
		op := ins.OpCode
		switch {
		case op.Class() == asm.LdXClass && fromCtx[b.first+k]:
			if name := steer.ContextField(ins.Offset); name != "" {
				f.ctx[name] = true
			}
		case op.Class() == asm.LdXClass && ins.Src == asm.R0:
			f.fromMap, f.mapInto = true, ins.Dst
		case op.Class() == asm.LdXClass && ins.Src == asm.RFP:
			f.stackRd = append(f.stackRd, ins.Offset)
		case op.Class() == asm.StClass && ins.Dst == asm.RFP && ins.Offset == -4:
			f.stackKey = ins.Constant
		case (op.Class() == asm.StClass || op.Class() == asm.StXClass) && ins.Dst == asm.RFP:
			f.stackWr = append(f.stackWr, ins.Offset)
		case op.JumpOp() == asm.Call && op.Class().IsJump():
			f.calls = append(f.calls, asm.BuiltinFunc(ins.Constant))
		case op.JumpOp() == asm.Exit && op.Class().IsJump():
			f.exit = true
		case op.Class() == asm.LdClass && ins.IsLoadFromMap():
			f.maps = append(f.maps, mapName(ins))
		case op.Class().IsALU() && op.Source() == asm.ImmSource:
			switch op.ALUOp() {
			case asm.Sub:
				f.subImm = append(f.subImm, ins.Constant)
			case asm.And:
				f.andImm = append(f.andImm, ins.Constant)
			case asm.Add:
				f.addImm = append(f.addImm, ins.Constant)
			case asm.Mul:
				f.mul = true
			case asm.Mov:
				f.movImm++
			}
		}
	}
	return f
}

func (f facts) calls1(fn asm.BuiltinFunc) bool { return slices.Contains(f.calls, fn) }

// standbyAt is where the program keeps a bucket's standby, below fp.
const standbyAt = -8

// rule says what a block that matches it does.
type rule struct {
	stage, title string
	match        func(f facts) bool
}

// rules, tried in order: the first that matches a block names it. They
// read what a block does (the context fields, helpers, maps and
// constants), not where it is, so that a reordered program is drawn as it
// is; a block that none matches stops the program (see describe).
var rules = []rule{
	{stageChoice, "select socks[slot]: that instance's socket takes the connection (an empty slot: the kernel's own choice)",
		func(f facts) bool { return f.calls1(asm.FnSkSelectReuseport) }},
	{stageChoice, "SK_PASS: the selected socket, or the one the kernel's hash picks",
		func(f facts) bool { return f.exit }},
	{stageSticky, "read the client's address from the IP header (bpf_skb_load_bytes_relative)",
		func(f facts) bool { return f.calls1(asm.FnSkbLoadBytesRelative) }},
	{stageSticky, "IPv4: 4 bytes at 12 of the IP header; or IPv6?",
		func(f facts) bool { return f.ctx["eth_protocol"] }},
	{stageDoor, fmt.Sprintf("the client's source port - %d: a door, below %d?", steer.DoorBase, steer.MaxSlots),
		func(f facts) bool { return slices.Contains(f.subImm, steer.DoorBase) }},
	{stageDoor, "a new connection: the TCP header's ports in reach?",
		func(f facts) bool { return f.ctx["data"] && f.ctx["data_end"] }},
	{stageDoor, fmt.Sprintf("a door port: slot = port - %d, instance slot+1, whatever the table says", steer.DoorBase),
		func(f facts) bool { return f.onlyJa }},
	{stageDying, fmt.Sprintf("the slot's process: table[%d + slot] (0: none known)", steer.Buckets+1),
		func(f facts) bool { return slices.Contains(f.addImm, steer.Buckets+1) }},
	{stageDying, "is it dying? dying[pid, our PID namespace]: set by the programs on the signal_generate (SIGKILL) and sched_process_exit tracepoints",
		func(f facts) bool { return slices.Contains(f.maps, "dying") }},
	{stageDying, "its mark: 0 alive, 1 dying",
		func(f facts) bool {
			return f.fromMap && f.mapInto == asm.R1 && f.last.OpCode.JumpOp() == asm.JNE && f.last.Constant == 1
		}},
	{stageDying, "a process known",
		func(f facts) bool { return f.fromMap && f.mapInto == asm.R1 }},
	{stageDying, "its standby, kept with the bucket's instance: the spare that takes the bucket while the process dies (0: none)?",
		func(f facts) bool { return slices.Contains(f.stackRd, standbyAt) }},
	{stageDying, "slot = the standby - 1, once: is its process dying too?",
		func(f facts) bool { return slices.Contains(f.stackWr, standbyAt) && !f.fromMap }},
	{stageDying, fmt.Sprintf("tried %d buckets?", steer.Tries),
		func(f facts) bool { return f.last.Constant == steer.Tries }},
	{stageDying, "the next bucket, further on",
		func(f facts) bool {
			return slices.Contains(f.andImm, steer.Buckets-1) && len(f.addImm) == 1 && f.last.OpCode.JumpOp() == asm.Ja
		}},
	{stageBucket, fmt.Sprintf("bucket = hash mod %d; the first of %d tries", steer.Buckets, steer.Tries),
		func(f facts) bool { return slices.Contains(f.andImm, steer.Buckets-1) && f.movImm == 1 }},
	{stageBucket, "the bucket's entry in the table",
		func(f facts) bool {
			return f.stackKey == -1 && slices.Contains(f.maps, "table") && !f.fromMap && len(f.andImm) == 0 && len(f.subImm) == 0 && len(f.addImm) == 1
		}},
	{stageMode, fmt.Sprintf("the mode, kept after the buckets: table[%d]", steer.Buckets),
		func(f facts) bool { return f.stackKey == steer.Buckets && slices.Contains(f.maps, "table") }},
	{stageMode, "the kernel's hash of the connection; the mode sticky?",
		func(f facts) bool { return f.ctx["hash"] && f.fromMap }},
	{stageSticky, "mix (lowbias32): neighbouring addresses, unrelated buckets",
		func(f facts) bool { return f.mul }},
	{stageBucket, "the bucket's instance: slot+1, 0 for none (its low 16 bits; its standby's above, kept)",
		func(f facts) bool { return f.fromMap }},
	{stageBucket, "slot = instance - 1",
		func(f facts) bool { return len(f.subImm) == 1 && f.subImm[0] == 1 }},
	{stageSticky, "IPv6: 16 bytes at 8",
		func(f facts) bool { return f.movImm == 2 && len(f.calls) == 0 && len(f.stackRd) == 0 }},
	{stageSticky, "IPv6: fold in its other 12 bytes",
		func(f facts) bool { return len(f.stackRd) == 3 }},
	{stageSticky, "the key: the address's first 4 bytes",
		func(f facts) bool { return len(f.stackRd) == 1 }},
}

// describe gives every block its stage and title, and every way out its
// meaning. A block no rule knows is an error: the program changed, and
// the picture would no longer say what it does.
func describe(prog asm.Instructions, bs []*block) error {
	fromCtx := ctxRegs(prog)
	var unknown []string
	for _, b := range bs {
		f := factsOf(b, fromCtx)
		for _, r := range rules {
			if r.match(f) {
				b.stage, b.title = r.stage, r.title
				break
			}
		}
		if b.title == "" {
			var lines []string
			for k, ins := range b.ins {
				lines = append(lines, "\t"+format(ins, fromCtx[b.first+k]))
			}
			unknown = append(unknown, fmt.Sprintf("instructions %d to %d:\n%s", b.first, b.first+len(b.ins)-1, strings.Join(lines, "\n")))
		}
		for k := range b.succ {
			e := &b.succ[k]
			if isJump(f.last) && f.last.OpCode.JumpOp() != asm.Ja {
				e.cond = condition(f.last, e.taken)
			}
			e.means = meaning(f, e.taken)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("no rule of describe.go says what these blocks of the program do; add one:\n%s", strings.Join(unknown, "\n"))
	}
	return nil
}

// meaning says in words what a block's last jump found, taken or not.
func meaning(f facts, taken bool) string {
	j := f.last
	if !isJump(j) || j.OpCode.JumpOp() == asm.Ja {
		return ""
	}
	pick := func(yes, no string) string {
		if taken {
			return yes
		}
		return no
	}
	imm := j.OpCode.Source() == asm.ImmSource
	switch {
	case f.ctx["data_end"] && !imm:
		return pick("cut short", "")
	case imm && j.Constant == steer.MaxSlots && slices.Contains(f.subImm, steer.DoorBase):
		return pick("not a door", "a door")
	case imm && j.Dst == asm.R0 && j.Constant == 0 && f.calls1(asm.FnMapLookupElem):
		return pick("no entry", "")
	case imm && j.Dst == asm.R0 && f.calls1(asm.FnSkbLoadBytesRelative):
		return pick("unreadable: the kernel's hash", "")
	case imm && j.Constant == int64(steer.ModeSticky) && f.ctx["hash"]:
		return pick("reuseport", "sticky")
	case imm && j.Constant == int64(steer.EthProtoIPv6):
		return pick("IPv4", "IPv6")
	case imm && j.Constant == 0 && slices.Contains(f.stackRd, standbyAt):
		return pick("none: a bucket further on", "a standby")
	case imm && j.Constant == steer.Tries:
		return pick("all dying: the kernel chooses", "")
	case imm && j.Constant == 1 && f.mapInto == asm.R1:
		return pick("alive", "dying")
	case imm && j.Constant == 0 && f.mapInto == asm.R1:
		return pick("none known", "")
	case imm && j.Constant == 0 && f.fromMap:
		return pick("none: the kernel chooses", "an instance")
	}
	return ""
}
