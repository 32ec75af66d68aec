package main

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/cilium/ebpf/asm"

	"github.com/corral-pool/corral/internal/steer"
)

// block is a basic block of the program: instructions that run one after
// the other, entered at the first, left at the last.
type block struct {
	id    int
	label string // the program's symbol at its first instruction, or ""
	ins   asm.Instructions
	first int    // the index of ins[0] in the program
	succ  []edge // in order: the jump taken, then the fall through
	stage string // which step of the choice it belongs to (a rule's)
	title string // what it does, in words (a rule's)
}

// edge is a way out of a block.
type edge struct {
	to    int
	taken bool   // a jump taken; false: the next instruction
	cond  string // the condition, as the instruction tests it ("r7 >= 1024"); "" when always
	means string // what the condition tells, in words
}

// blocks splits prog into its basic blocks and links them: a block starts
// at the program's start, at a symbol (a jump's target) and after a jump,
// and ends at a jump, an exit or before the next block's start.
func blocks(prog asm.Instructions) ([]*block, error) {
	starts := map[int]bool{0: true}
	symbols := map[string]int{}
	for i, ins := range prog {
		if s := ins.Symbol(); s != "" {
			starts[i] = true
			symbols[s] = i
		}
		if isJump(ins) && i+1 < len(prog) {
			starts[i+1] = true
		}
	}
	var bs []*block
	at := map[int]*block{} // by the index of its first instruction
	for i, ins := range prog {
		if starts[i] {
			b := &block{id: len(bs), label: ins.Symbol(), first: i}
			bs = append(bs, b)
			at[i] = b
		}
		b := bs[len(bs)-1]
		b.ins = append(b.ins, ins)
	}
	for _, b := range bs {
		last := b.ins[len(b.ins)-1]
		next := b.first + len(b.ins)
		fall := func() {
			if nb := at[next]; nb != nil {
				b.succ = append(b.succ, edge{to: nb.id})
			}
		}
		switch {
		case last.OpCode.JumpOp() == asm.Exit:
		case isJump(last):
			ti, ok := symbols[last.Reference()]
			if !ok {
				return nil, fmt.Errorf("instruction %d jumps to %q, which the program does not have", b.first+len(b.ins)-1, last.Reference())
			}
			b.succ = append(b.succ, edge{to: at[ti].id, taken: true})
			if last.OpCode.JumpOp() != asm.Ja {
				fall()
			}
		default:
			fall()
		}
	}
	return bs, nil
}

// isJump is true for a jump, conditional or not, and an exit: not for a
// call, after which the program goes on.
func isJump(ins asm.Instruction) bool {
	c := ins.OpCode.Class()
	if !c.IsJump() {
		return false
	}
	op := ins.OpCode.JumpOp()
	return op != asm.Call
}

// ctxRegs follows which registers hold the program's context (struct
// sk_reuseport_md *), in the program's order: r1 at the start, and the
// registers it is copied to. It returns, by instruction index, whether
// the source register of each instruction holds it.
func ctxRegs(prog asm.Instructions) []bool {
	holds := map[asm.Register]bool{asm.R1: true}
	out := make([]bool, len(prog))
	for i, ins := range prog {
		out[i] = holds[ins.Src]
		switch {
		case ins.OpCode.JumpOp() == asm.Call:
			for r := asm.R0; r <= asm.R5; r++ {
				holds[r] = false
			}
		case ins.OpCode.ALUOp() == asm.Mov && ins.OpCode.Source() == asm.RegSource && ins.OpCode.Class() == asm.ALU64Class:
			holds[ins.Dst] = holds[ins.Src]
		case ins.OpCode.Class().IsALU() || ins.OpCode.Class() == asm.LdXClass || ins.OpCode.Class() == asm.LdClass:
			holds[ins.Dst] = false
		}
	}
	return out
}

var sizes = map[asm.Size]string{asm.Byte: "u8", asm.Half: "u16", asm.Word: "u32", asm.DWord: "u64"}

var aluOps = map[asm.ALUOp]string{
	asm.Add: "+=", asm.Sub: "-=", asm.Mul: "*=", asm.Div: "/=", asm.Or: "|=", asm.And: "&=",
	asm.LSh: "<<=", asm.RSh: ">>=", asm.Mod: "%=", asm.Xor: "^=", asm.Mov: "=", asm.ArSh: "s>>=",
}

var jumpOps = map[asm.JumpOp]string{
	asm.JEq: "==", asm.JNE: "!=", asm.JGT: ">", asm.JGE: ">=", asm.JLT: "<", asm.JLE: "<=",
	asm.JSGT: "s>", asm.JSGE: "s>=", asm.JSLT: "s<", asm.JSLE: "s<=", asm.JSet: "&",
}

// negated is the condition that does not hold when a jump falls through.
var negated = map[asm.JumpOp]string{
	asm.JEq: "!=", asm.JNE: "==", asm.JGT: "<=", asm.JGE: "<", asm.JLT: ">=", asm.JLE: ">",
	asm.JSGT: "s<=", asm.JSGE: "s<", asm.JSLT: "s>=", asm.JSLE: "s>",
}

func reg(r asm.Register, alu32 bool) string {
	if r == asm.RFP {
		return "fp"
	}
	s := r.String()
	if alu32 {
		s = "w" + strings.TrimPrefix(s, "r")
	}
	return s
}

// mapName names a map the program loads, by the placeholder fds of
// steer.Listing.
func mapName(ins asm.Instruction) string {
	switch uint32(ins.Constant) {
	case steer.ListingSocksFD:
		return "socks"
	case steer.ListingTableFD:
		return "table"
	case steer.ListingDyingFD:
		return "dying"
	}
	return fmt.Sprintf("map fd %d", uint32(ins.Constant))
}

// helper names a helper function as linux/bpf.h does: FnMapLookupElem is
// bpf_map_lookup_elem.
func helper(ins asm.Instruction) string {
	name := strings.TrimPrefix(asm.BuiltinFunc(ins.Constant).String(), "Fn")
	var b strings.Builder
	b.WriteString("bpf")
	for _, r := range name {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func mem(base string, off int16) string {
	switch {
	case off > 0:
		return fmt.Sprintf("(%s + %d)", base, off)
	case off < 0:
		return fmt.Sprintf("(%s - %d)", base, -off)
	}
	return "(" + base + ")"
}

// format writes one instruction as C-like pseudo-code, as the kernel's
// verifier log does; fromCtx is true when its source register holds the
// context, whose fields are named.
func format(ins asm.Instruction, fromCtx bool) string {
	op := ins.OpCode
	c := op.Class()
	switch {
	case c.IsALU():
		alu32 := c == asm.ALUClass
		if op.ALUOp() == asm.Swap {
			return fmt.Sprintf("%s = be%d(%s)", reg(ins.Dst, false), ins.Constant, reg(ins.Dst, false))
		}
		src := fmt.Sprint(ins.Constant)
		if alu32 && op.Source() == asm.ImmSource {
			src = fmt.Sprint(int32(ins.Constant))
			if ins.Constant > 0xffff || ins.Constant < -0xffff {
				src = fmt.Sprintf("%#x", uint32(ins.Constant))
			}
		}
		if op.Source() == asm.RegSource {
			src = reg(ins.Src, alu32)
		}
		return fmt.Sprintf("%s %s %s", reg(ins.Dst, alu32), aluOps[op.ALUOp()], src)
	case c == asm.LdXClass:
		if fromCtx {
			if f := steer.ContextField(ins.Offset); f != "" {
				return fmt.Sprintf("%s = ctx->%s", reg(ins.Dst, false), f)
			}
		}
		return fmt.Sprintf("%s = *(%s *)%s", reg(ins.Dst, false), sizes[op.Size()], mem(reg(ins.Src, false), ins.Offset))
	case c == asm.StClass:
		return fmt.Sprintf("*(%s *)%s = %d", sizes[op.Size()], mem(reg(ins.Dst, false), ins.Offset), ins.Constant)
	case c == asm.StXClass:
		return fmt.Sprintf("*(%s *)%s = %s", sizes[op.Size()], mem(reg(ins.Dst, false), ins.Offset), reg(ins.Src, false))
	case c == asm.LdClass && ins.IsLoadFromMap():
		return fmt.Sprintf("%s = &%s", reg(ins.Dst, false), mapName(ins))
	case c.IsJump():
		switch op.JumpOp() {
		case asm.Call:
			return "call " + helper(ins)
		case asm.Exit:
			return "exit"
		case asm.Ja:
			return "goto " + ins.Reference()
		}
		return fmt.Sprintf("if %s goto %s", condition(ins, true), ins.Reference())
	}
	return fmt.Sprint(ins)
}

// condition is the test of a conditional jump, as it holds when the jump
// is taken (taken) or when it falls through.
func condition(ins asm.Instruction, taken bool) string {
	alu32 := ins.OpCode.Class() == asm.Jump32Class
	sym := jumpOps[ins.OpCode.JumpOp()]
	if !taken {
		sym = negated[ins.OpCode.JumpOp()]
	}
	rhs := fmt.Sprint(ins.Constant)
	if ins.Constant == int64(steer.EthProtoIPv6) {
		rhs = "ETH_P_IPV6"
	}
	if ins.OpCode.Source() == asm.RegSource {
		rhs = reg(ins.Src, alu32)
	}
	return fmt.Sprintf("%s %s %s", reg(ins.Dst, alu32), sym, rhs)
}
