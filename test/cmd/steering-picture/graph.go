package main

import (
	"fmt"
	"html"
	"slices"
	"strings"

	"github.com/cilium/ebpf/asm"

	"github.com/corral-pool/corral/internal/steer"
)

const (
	font     = "DejaVu Sans"
	monoFont = "DejaVu Sans Mono"
)

// stageColors: the title's background of each stage's blocks, and the
// stage's own.
var stageColors = map[string][2]string{
	stageDoor:   {"#f6c89f", "#fdf1e6"},
	stageMode:   {"#b9d7ea", "#edf5fa"},
	stageSticky: {"#d5c4e8", "#f5f0fa"},
	stageBucket: {"#bfe3c0", "#eef8ee"},
	stageDying:  {"#f2b8b8", "#fcefef"},
	stageChoice: {"#e0e0e0", "#f7f7f7"},
}

// inTable is which instances corrald puts in the table (internal/pool's
// Steerer.serving), and which it leaves out.
var inTable = []struct {
	in   bool
	what string
}{
	{true, "running (active), once ready: READY=1 with readiness = \"notify\", else up for ready_delay"},
	{false, "starting, stopping, stopped, held, backoff, crash-loop; surplus (above the count)"},
	{false, "leaving for a reload or a recycle: out before it stops, back once ready"},
	{false, "cordoned (corral cordon POOL@I), until corral uncordon"},
	{false, "not-accepting: its queue grows and it takes nothing"},
	{false, "dying or dead: out once the kernel says so (dying) or its pidfd reports the exit; the program skips it before that, to its standby"},
	{false, "a spare (spares = N, the highest-numbered instances): the standby of the buckets until an instance of the rotation is out; then in, with exactly that one's buckets, until it is back"},
}

// wrap breaks s into lines of about width characters.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

func esc(s string) string { return html.EscapeString(s) }

func escLines(lines []string) string {
	for i, l := range lines {
		lines[i] = esc(l)
	}
	return strings.Join(lines, "<br/>")
}

// rendezvous is what steer.Table does to a pool of n instances when
// instance leave leaves the table and comes back, in words.
func rendezvous(n, leave int) []string {
	var all, without []int
	for i := 1; i <= n; i++ {
		all = append(all, i-1)
		if i != leave {
			without = append(without, i-1)
		}
	}
	before, after := steer.Table(all), steer.Table(without)
	count := func(t []uint32) map[uint32]int {
		c := map[uint32]int{}
		for _, v := range t {
			c[v]++
		}
		return c
	}
	cb, ca := count(before), count(after)
	var shares, to, gains []string
	for i := 1; i <= n; i++ {
		shares = append(shares, fmt.Sprintf("%d", cb[uint32(i)]))
		if i != leave {
			to = append(to, fmt.Sprint(i))
			gains = append(gains, fmt.Sprint(ca[uint32(i)]-cb[uint32(i)]))
		}
	}
	others := 0
	for b := range before {
		if before[b] != uint32(leave) && after[b] != before[b] {
			others++
		}
	}
	back := "the same"
	if !slices.Equal(steer.Table(all), before) {
		back = "other"
	}
	return []string{
		fmt.Sprintf("steer.Table with instances 1 to %d in it: %s buckets.", n, strings.Join(shares, ", ")),
		fmt.Sprintf("Instance %d leaves: its %d buckets go to instances %s (%s); other buckets that move: %d. Back, it gets %s %d.",
			leave, cb[uint32(leave)], strings.Join(to, ", "), strings.Join(gains, ", "), others, back, cb[uint32(leave)]),
	}
}

// graph is the picture in Graphviz's language.
func graph(prog asm.Instructions, bs []*block) string {
	fromCtx := ctxRegs(prog)
	var g strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&g, format+"\n", a...) }
	p("// Drawn by test/cmd/steering-picture from steer.Listing(): do not edit.")
	p("digraph steering {")
	p(`  graph [rankdir=TB, fontname=%q, fontsize=13, nodesep=0.35, ranksep=0.35, newrank=true, bgcolor="white", labelloc=t,`, font)
	p(`    label=<<b>How corrald's program in the kernel chooses the instance of a new connection</b><br/><font point-size="11">%s</font>>];`,
		esc(fmt.Sprintf("%d BPF instructions (internal/steer), in %d blocks; the conditions are those the jumps test", len(prog), len(bs))))
	p(`  node [fontname=%q, fontsize=11, shape=plain];`, font)
	p(`  edge [fontname=%q, fontsize=10, color="#555555", fontcolor="#333333", arrowsize=0.7];`, font)
	p(`  start [shape=box, style="rounded,filled", fillcolor="#fff7c2", label="a new TCP connection to an address of the pool\n(the kernel runs the program on the group's sockets)"];`)
	p(`  start -> b0;`)
	for _, st := range stages {
		p(`  subgraph "cluster_%s" {`, st)
		p(`    label=<<b>%s</b>>; labeljust=l; style="rounded,filled"; color="#999999"; fillcolor=%q;`, esc(st), stageColors[st][1])
		for _, b := range bs {
			if b.stage != st {
				continue
			}
			var code []string
			if b.label != "" {
				code = append(code, b.label+":")
			}
			for k, ins := range b.ins {
				code = append(code, "  "+format(ins, fromCtx[b.first+k]))
			}
			p(`    b%d [label=<<table border="0" cellborder="1" cellspacing="0" cellpadding="4" bgcolor="white">`+
				`<tr><td align="left" bgcolor=%q>%s</td></tr>`+
				`<tr><td align="left" balign="left"><font face=%q point-size="9">%s</font></td></tr></table>>];`,
				b.id, stageColors[st][0], escLines(wrap(b.title, 44)), monoFont, escLines(code))
		}
		p("  }")
	}
	for _, b := range bs {
		for _, e := range b.succ {
			label := e.cond
			if e.means != "" {
				if label != "" {
					label += ": "
				}
				label += e.means
			}
			style := ""
			if e.taken && e.cond != "" {
				style = `, style=bold`
			}
			p(`  b%d -> b%d [label=%q%s];`, b.id, e.to, label, style)
		}
	}
	// The maps, beside the blocks that load them.
	note := func(name string, rows ...string) {
		var cells []string
		for _, r := range rows {
			cells = append(cells, `<tr><td align="left" balign="left">`+r+`</td></tr>`)
		}
		p(`  %s [label=<<table border="1" color="#b8a97a" cellborder="0" cellspacing="0" cellpadding="3" bgcolor="#fffbe8">%s</table>>];`, name, strings.Join(cells, ""))
	}
	note("dying",
		"<b>dying</b>: HASH, pid and PID namespace → 0 alive, 1 dying",
		escLines(wrap("the main processes of the instances in a table (corrald adds and removes them); the programs on the signal_generate and sched_process_exit tracepoints set 1 when a SIGKILL is sent to one or it starts to exit, before it has exited", 48)))
	note("socks",
		fmt.Sprintf("<b>socks</b>: REUSEPORT_SOCKARRAY, %d slots", steer.MaxSlots),
		escLines(wrap("slot I-1 holds instance I's listening socket: PID 1's, which corrald copies, puts there and closes at once; the kernel empties a slot when its socket closes", 48)))
	states := []string{
		fmt.Sprintf("<b>table</b>: ARRAY of %d u32", steer.Buckets+1+steer.MaxSlots),
		escLines(wrap(fmt.Sprintf("buckets 0-%d: an instance (slot+1), or 0, and above it its standby's; entry %d: the mode, 0 reuseport, 1 sticky; then, by slot, the pid of its main process", steer.Buckets-1, steer.Buckets), 64)),
		"<b>the instances corrald puts in it</b>",
	}
	for _, s := range inTable {
		mark := "out: "
		if s.in {
			mark = "<b>in</b>: "
		}
		states = append(states, mark+escLines(wrap(s.what, 60)))
	}
	states = append(states, escLines(wrapAll(rendezvous(4, 2), 66)))
	note("table", states...)
	// Each map beside the first block that selects with it or looks
	// its buckets up.
	for _, name := range []string{"socks", "table", "dying"} {
		for i := len(bs) - 1; i >= 0; i-- {
			if slices.ContainsFunc(bs[i].ins, func(ins asm.Instruction) bool {
				return ins.OpCode.Class() == asm.LdClass && ins.IsLoadFromMap() && mapName(ins) == name
			}) {
				p(`  {rank=same; %s; b%d}`, name, bs[i].id)
				break
			}
		}
	}
	for _, b := range bs {
		for _, ins := range b.ins {
			if ins.OpCode.Class() == asm.LdClass && ins.IsLoadFromMap() {
				p(`  %s -> b%d [style=dashed, color="#999999", arrowhead=open, constraint=false];`, mapName(ins), b.id)
			}
		}
	}
	p("}")
	return g.String()
}

func wrapAll(paras []string, width int) []string {
	var out []string
	for _, s := range paras {
		out = append(out, wrap(s, width)...)
	}
	return out
}
