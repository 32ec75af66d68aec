package main

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/corral-pool/corral/internal/steer"
)

// TestProgramDrawn fails when the program changed in a way the rules of
// describe.go do not know: then the picture would be wrong, and `make
// steering-picture` would refuse to draw it.
func TestProgramDrawn(t *testing.T) {
	prog := steer.Listing()
	bs, err := blocks(prog)
	if err != nil {
		t.Fatal(err)
	}
	if err := describe(prog, bs); err != nil {
		t.Fatal(err)
	}
	byTitle := map[string]*block{}
	perStage := map[string]int{}
	n := 0
	for _, b := range bs {
		if other := byTitle[b.title]; other != nil {
			t.Errorf("blocks %d and %d have the same title %q: a rule matches too much", other.id, b.id, b.title)
		}
		byTitle[b.title] = b
		perStage[b.stage]++
		n += len(b.ins)
	}
	if n != len(prog) {
		t.Errorf("the blocks hold %d instructions, the program %d", n, len(prog))
	}
	for _, st := range stages {
		if perStage[st] == 0 {
			t.Errorf("no block in stage %q", st)
		}
	}
	// Every block is reached from the start, and every way leads to the
	// exit.
	seen := map[int]bool{}
	var walk func(id int)
	walk = func(id int) {
		if seen[id] {
			return
		}
		seen[id] = true
		b := bs[id]
		if len(b.succ) == 0 && b.ins[len(b.ins)-1].OpCode.JumpOp() != asm.Exit {
			t.Errorf("block %d (%s) ends without an exit", b.id, b.title)
		}
		for _, e := range b.succ {
			walk(e.to)
		}
	}
	walk(0)
	if len(seen) != len(bs) {
		t.Errorf("%d of %d blocks reached from the start", len(seen), len(bs))
	}
	// The door goes straight to the select.
	var door *block
	for _, b := range bs {
		if b.stage == stageDoor && len(b.succ) == 1 && b.succ[0].taken {
			door = b
		}
	}
	if door == nil || bs[door.succ[0].to].stage != stageChoice {
		t.Errorf("no door block that jumps to the choice")
	}
	g := graph(prog, bs)
	for _, want := range []string{"bpf_sk_select_reuseport", "ctx-&gt;hash", "ETH_P_IPV6", "goto select", "rank=same; table", "other buckets that move: 0. Back, it gets the same"} {
		if !strings.Contains(g, want) {
			t.Errorf("the graph has no %q", want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		ins     asm.Instruction
		fromCtx bool
		want    string
	}{
		{asm.Mov.Reg(asm.R6, asm.R1), false, "r6 = r1"},
		{asm.LoadMem(asm.R7, asm.R6, 32, asm.Word), true, "r7 = ctx->hash"},
		{asm.LoadMem(asm.R7, asm.RFP, -24, asm.Word), false, "r7 = *(u32 *)(fp - 24)"},
		{asm.StoreImm(asm.RFP, -4, 1024, asm.Word), false, "*(u32 *)(fp - 4) = 1024"},
		{asm.Xor.Reg32(asm.R7, asm.R1), false, "w7 ^= w1"},
		{asm.Mul.Imm32(asm.R7, -0x7b935975), false, "w7 *= 0x846ca68b"},
		{asm.HostTo(asm.BE, asm.R7, asm.Half), false, "r7 = be16(r7)"},
		{asm.LoadMapPtr(asm.R2, steer.ListingSocksFD), false, "r2 = &socks"},
		{asm.FnSkSelectReuseport.Call(), false, "call bpf_sk_select_reuseport"},
		{asm.JGE.Imm(asm.R7, 1024, "pick"), false, "if r7 >= 1024 goto pick"},
		{asm.JNE.Imm(asm.R9, steer.EthProtoIPv6, "load"), false, "if r9 != ETH_P_IPV6 goto load"},
	} {
		if got := format(tt.ins, tt.fromCtx); got != tt.want {
			t.Errorf("format(%v) = %q, want %q", tt.ins, got, tt.want)
		}
	}
}
