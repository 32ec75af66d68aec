package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report turns the rounds' results into tables, goals and a chart.
type report struct {
	cfg    config
	m      machine
	sel    []spec
	res    *results
	routes []route
}

func newReport(cfg config, m machine, sel []spec, res *results) *report {
	return &report{cfg: cfg, m: m, sel: sel, res: res, routes: (&bench{config: cfg}).routes()}
}

// A row is one cell's medians over the rounds.
type row struct {
	spec   spec
	route  route
	shape  shape
	rounds []load

	rps       float64
	p50, p99  time.Duration
	failed    float64
	wrkCore   float64       // wrk's CPU time over the run's length: share of one core
	wrkPerReq time.Duration // wrk's CPU time per response
	shares    []float64     // each instance's share, largest first
	jain      float64
}

// row computes the medians of a cell (its counting run's with counting);
// false if it never ran. The shares come from the counting runs where
// there are some.
func (r *report) row(s spec, rt route, sh shape, counting bool) (row, bool) {
	loads := r.res.loads[cell{s.id, rt.name, sh, counting}]
	if len(loads) == 0 {
		return row{}, false
	}
	counted := loads
	if c := r.res.loads[cell{s.id, rt.name, sh, true}]; len(c) > 0 {
		counted = c
	}
	w := row{spec: s, route: rt, shape: sh, rounds: loads}
	var rps, failed, core, perReq, jains []float64
	var p50, p99 []time.Duration
	var sh2 [][]float64
	for _, l := range loads {
		rps = append(rps, l.rps)
		p50 = append(p50, l.p50)
		p99 = append(p99, l.p99)
		failed = append(failed, float64(l.failed()))
		core = append(core, l.wrkCPU.Seconds()/l.dur.Seconds())
		perReq = append(perReq, float64(l.wrkCPU)/float64(max(l.requests, 1)))
	}
	for _, l := range counted {
		jains = append(jains, jain(l.counts(), s.instances))
		sh2 = append(sh2, shares(l.counts(), s.instances))
	}
	w.rps, w.p50, w.p99, w.failed = median(rps), medianDur(p50), medianDur(p99), median(failed)
	w.wrkCore, w.wrkPerReq = median(core), time.Duration(median(perReq))
	w.jain, w.shares = median(jains), medianShares(sh2)
	return w, true
}

// get finds a row by system id.
func (r *report) get(id, routeName string, sh shape) (row, bool) {
	for _, s := range r.sel {
		if s.id != id {
			continue
		}
		for _, rt := range r.routes {
			if rt.name == routeName {
				return r.row(s, rt, sh, false)
			}
		}
	}
	return row{}, false
}

func shapeLabel(sh shape) string {
	if sh == connClose {
		return "`Connection: close`"
	}
	return "keep-alive"
}

// markdown is the whole results text: setup, tables, goals; chart is the
// chart's path relative to where the text goes ("" for none); perRound adds
// every round's figures.
func (r *report) markdown(chart string, perRound bool) string {
	var b strings.Builder
	r.header(&b)
	if chart != "" {
		fmt.Fprintf(&b, "![req/s and p99 per system](%s)\n\n", chart)
	}
	r.loadTable(&b)
	r.killTable(&b)
	r.countingCost(&b)
	r.goals(&b)
	if perRound {
		r.roundsTable(&b)
	}
	if len(r.res.notes) > 0 {
		b.WriteString("Notes from the run:\n\n")
		for _, n := range r.res.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if len(r.res.errs) > 0 {
		b.WriteString("**Errors** (the cells affected have fewer rounds):\n\n")
		for _, e := range r.res.errs {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(e.Error(), "\n", " "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *report) header(b *strings.Builder) {
	m := r.m
	fmt.Fprintf(b, "Command: `%s`.\n\n", r.cfg.command)
	fmt.Fprintf(b, "Machine: %d cores (%s), %s, %s, %s; %s, %s, %s, %s, corral %s; %s.\n\n",
		m.cores, m.cpu, m.os, m.kernel, m.systemd, m.node, m.pm2, m.wrk, m.goVer, m.corral, m.date.Format("2006-01-02"))
	fmt.Fprintf(b, "Rounds: %d, each running every system once, in an order that rotates from round to round; "+
		"the figures are medians over the rounds. Load: `wrk -t1 -c%d -d%s --timeout 10s --latency` on 127.0.0.1, "+
		"one system at a time, wrk on the same %d cores. Pools and the cluster module run %d instances; "+
		"the corral pools run in a throwaway real systemd with the .deb installed.\n\n",
		r.cfg.rounds, r.cfg.conns, r.cfg.dur, m.cores, r.cfg.instances)
	if med, hi := r.otherLoad(); hi >= 0 {
		fmt.Fprintf(b, "Other work (processes outside the benchmark, and CPU time the hypervisor gave to other machines) took %.0f%% of a core during the median run, %.0f%% during the busiest.\n\n", 100*med, 100*hi)
	}
	if p := r.provisional(); p != "" {
		fmt.Fprintf(b, "**Provisional**: %s\n\n", p)
	}
}

// otherLoad is the median and the highest CPU other work took during the
// runs, in cores; -1, -1 without runs.
func (r *report) otherLoad() (med, hi float64) {
	var xs []float64
	for _, ls := range r.res.loads {
		for _, l := range ls {
			xs = append(xs, l.otherLoad())
		}
	}
	if len(xs) == 0 {
		return -1, -1
	}
	return median(xs), slices.Max(xs)
}

// provisional says why the figures are provisional, or "".
func (r *report) provisional() string {
	var why []string
	if _, hi := r.otherLoad(); hi > 0.1 { // a tenth of a core
		why = append(why, fmt.Sprintf("Other work took up to %.0f%% of a core during the runs.", 100*hi))
	}
	if r.m.busyBefore > 0.05 || r.m.busyAfter > 0.05 {
		why = append(why, fmt.Sprintf("The machine was busy with other work: %.0f%% of its CPU was in use before the run and %.0f%% after it, with nothing of the benchmark running.",
			100*r.m.busyBefore, 100*r.m.busyAfter))
	}
	if r.cfg.provisional {
		why = append(why, "Marked so on the command line (-provisional).")
	}
	if r.cfg.rounds < 3 || r.cfg.dur < 10*time.Second {
		why = append(why, fmt.Sprintf("A short run (rounds: %d, %s each).", r.cfg.rounds, r.cfg.dur))
	}
	return strings.Join(why, " ")
}

func (r *report) loadTable(b *strings.Builder) {
	b.WriteString("| route | load | system | req/s | p50 | p99 | failed | wrk CPU | requests per instance, % | Jain's index |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rt := range r.routes {
		for _, sh := range shapes {
			for _, s := range r.sel {
				w, ok := r.row(s, rt, sh, false)
				if !ok {
					continue
				}
				shares, j := fmtShares(w.shares), fmt.Sprintf("%.3f", w.jain)
				if s.instances == 1 {
					shares, j = "–", "–"
				}
				fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s | %s | %s | %.0f%% of a core, %s/req | %s | %s |\n",
					rt.path, shapeLabel(sh), s.label, fmtRPS(w.rps), fmtDur(w.p50), fmtDur(w.p99),
					fmtCount(w.failed), 100*w.wrkCore, fmtDur(w.wrkPerReq), shares, j)
			}
		}
	}
	b.WriteString("\n")
}

func (r *report) killTable(b *strings.Builder) {
	if len(r.res.kills) == 0 {
		return
	}
	rt := r.routes[0]
	fmt.Fprintf(b, "SIGKILL of one of %d workers under load (`%s`, `wrk -c%d -d%s`, the kill a third of the way in); "+
		"median (each round):\n\n", r.cfg.instances, rt.path, r.cfg.conns, r.cfg.killDur)
	b.WriteString("| system | load | refused connections | failed requests | killed worker's open connections | queued on its sockets | replacement answering after |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, sh := range shapes {
		for _, s := range r.sel {
			ks := r.res.kills[cell{s.id, rt.name, sh, false}]
			if len(ks) == 0 {
				continue
			}
			var refused, failed, open, queued, repl []float64
			var replS []string
			for _, k := range ks {
				refused = append(refused, float64(k.load.connect))
				failed = append(failed, float64(k.load.failed()))
				open = append(open, float64(k.open))
				queued = append(queued, float64(k.queued))
				if k.replaced {
					repl = append(repl, float64(k.replacement))
				}
				replS = append(replS, fmtReplacement(k))
			}
			med := "none"
			if len(repl) == len(ks) {
				med = fmtDur(time.Duration(median(repl)))
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s (%s) |\n", s.label, shapeLabel(sh),
				fmtRounds(refused), fmtRounds(failed), fmtRounds(open), fmtRounds(queued), med, strings.Join(replS, ", "))
		}
	}
	b.WriteString("\n")
}

// countingCost compares the hello runs with count.lua to those without it,
// system by system: wrk's CPU per response and the req/s.
func (r *report) countingCost(b *strings.Builder) {
	hello := r.routes[1]
	var cpuRatio, rpsRatio []float64
	var with, without []float64
	for _, s := range r.sel {
		for _, sh := range shapes {
			plain, ok1 := r.row(s, hello, sh, false)
			counting, ok2 := r.row(s, hello, sh, true)
			if !ok1 || !ok2 || plain.wrkPerReq <= 0 || plain.rps <= 0 {
				continue
			}
			cpuRatio = append(cpuRatio, float64(counting.wrkPerReq)/float64(plain.wrkPerReq))
			rpsRatio = append(rpsRatio, counting.rps/plain.rps)
			if sh == keepAlive {
				with = append(with, float64(counting.wrkPerReq))
				without = append(without, float64(plain.wrkPerReq))
			}
		}
	}
	if len(cpuRatio) == 0 {
		return
	}
	fmt.Fprintf(b, "Counting the answers per instance (count.lua, wrk's response() callback) on `%s`: "+
		"the req/s, latencies and wrk CPU above come from runs without it, the shares from a %s run with it right after. "+
		"With it, wrk took %.2fx the CPU per response (median of %d systems and load shapes; keep-alive: %s instead of %s) "+
		"and the servers answered %.2fx the req/s. On `%s` it counts inline: at a few hundred req/s it costs nothing measurable.\n\n",
		hello.path, r.cfg.countDur(), median(cpuRatio), len(cpuRatio), fmtDur(time.Duration(median(with))), fmtDur(time.Duration(median(without))),
		median(rpsRatio), r.routes[0].path)
}

// A goal is one of issue 6's bars, as measured.
type goal struct {
	what, measured string
	met            bool
}

func (r *report) goalList() []goal {
	return slices.Concat(r.throughputGoals(), r.balanceGoals(), r.killGoals())
}

// The corral pools of the default balance, reuseport.
const corralNode, corralGo = "corral-node-reuseport", "corral-go-reuseport"

// throughputGoals compares corral's throughput with the cluster module's,
// pm2's and one Go process's.
func (r *report) throughputGoals() []goal {
	var gs []goal
	ratio := func(a, b float64) float64 { return a / math.Max(b, 1e-9) }
	for _, rt := range r.routes {
		c, ok := r.get(corralNode, rt.name, keepAlive)
		cl, ok2 := r.get("cluster", rt.name, keepAlive)
		pm, ok3 := r.get("pm2", rt.name, keepAlive)
		if ok && ok2 && ok3 {
			gs = append(gs, goal{
				fmt.Sprintf("Node app under corral ≥ Node's cluster module and ≥ pm2: `%s`, keep-alive", rt.path),
				fmt.Sprintf("%s req/s; cluster %s (%.2fx), pm2 %s (%.2fx)", fmtRPS(c.rps), fmtRPS(cl.rps), ratio(c.rps, cl.rps), fmtRPS(pm.rps), ratio(c.rps, pm.rps)),
				c.rps >= cl.rps && c.rps >= pm.rps})
		}
		c, ok = r.get(corralNode, rt.name, connClose)
		cl, ok2 = r.get("cluster", rt.name, connClose)
		if ok && ok2 {
			gs = append(gs, goal{
				fmt.Sprintf("Node app under corral ≥ 1.2x Node's cluster module: `%s`, `Connection: close`", rt.path),
				fmt.Sprintf("%s req/s; cluster %s: %.2fx", fmtRPS(c.rps), fmtRPS(cl.rps), ratio(c.rps, cl.rps)),
				c.rps >= 1.2*cl.rps})
		}
	}
	cpu := r.routes[0]
	if g, ok := r.get(corralGo, cpu.name, keepAlive); ok {
		if one, ok := r.get("go1", cpu.name, keepAlive); ok {
			gs = append(gs, goal{fmt.Sprintf("Go demo pool ≥ 1.7x one instance (GOMAXPROCS=1): `%s`, keep-alive", cpu.path),
				fmt.Sprintf("%s vs %s req/s: %.2fx", fmtRPS(g.rps), fmtRPS(one.rps), ratio(g.rps, one.rps)), g.rps >= 1.7*one.rps})
		}
		if all, ok := r.get("go", cpu.name, keepAlive); ok {
			gs = append(gs, goal{fmt.Sprintf("Go demo pool ≥ 0.95x one Go process with GOMAXPROCS=%d: `%s`, keep-alive", r.cfg.instances, cpu.path),
				fmt.Sprintf("%s vs %s req/s: %.2fx", fmtRPS(g.rps), fmtRPS(all.rps), ratio(g.rps, all.rps)), g.rps >= 0.95*all.rps})
		}
		gs = append(gs, goal{fmt.Sprintf("Go demo pool: p99 ≤ 1.5x p50, `%s`, keep-alive", cpu.path),
			fmt.Sprintf("p50 %s, p99 %s: %.2fx", fmtDur(g.p50), fmtDur(g.p99), ratio(float64(g.p99), float64(g.p50))), g.p99 <= g.p50*3/2})
	}
	return gs
}

// balanceGoals holds the default balance to an even spread.
func (r *report) balanceGoals() []goal {
	var gs []goal
	for _, id := range []string{corralNode, corralGo} {
		worst, where, n := 2.0, "", 0
		for _, rt := range r.routes {
			for _, sh := range shapes {
				if w, ok := r.get(id, rt.name, sh); ok {
					n++
					if w.jain < worst {
						worst, where = w.jain, fmt.Sprintf("`%s` %s", rt.path, shapeLabel(sh))
					}
				}
			}
		}
		if n > 0 {
			gs = append(gs, goal{fmt.Sprintf("default balance (reuseport), %s: Jain's index ≥ 0.98 in both load shapes", r.label(id)),
				fmt.Sprintf("lowest %.3f (%s) of %d cells", worst, where, n), worst >= 0.98})
		}
	}
	return gs
}

// killGoals holds a SIGKILLed worker to no refused connection and a quick
// replacement.
func (r *report) killGoals() []goal {
	var gs []goal
	for _, s := range r.sel {
		if !s.corral || !s.kill {
			continue
		}
		for _, sh := range shapes {
			ks := r.res.kills[cell{s.id, r.routes[0].name, sh, false}]
			if len(ks) == 0 {
				continue
			}
			refused, overOpen, replaced := 0, 0, 0
			var repl []float64
			for _, k := range ks {
				refused += k.load.connect
				if k.load.failed() > k.open {
					overOpen++
				}
				if k.replaced {
					replaced++
					repl = append(repl, float64(k.replacement))
				}
			}
			what := fmt.Sprintf("SIGKILL one of %d, %s, %s", r.cfg.instances, s.label, shapeLabel(sh))
			gs = append(gs,
				goal{what + ": zero refused connections", fmt.Sprintf("%d refused in %d runs", refused, len(ks)), refused == 0},
				goal{what + ": failed ≤ the killed worker's open connections", fmt.Sprintf("over in %d of %d runs", overOpen, len(ks)), overOpen == 0})
			med := time.Duration(median(repl))
			gs = append(gs, goal{what + ": replacement serving within 150 ms",
				fmt.Sprintf("median %s, %d of %d runs replaced", fmtDur(med), replaced, len(ks)), replaced == len(ks) && med <= 150*time.Millisecond})
		}
	}
	return gs
}

func (r *report) label(id string) string {
	for _, s := range specs(r.cfg.instances) {
		if s.id == id {
			return s.label
		}
	}
	return id
}

func (r *report) goals(b *strings.Builder) {
	gs := r.goalList()
	if len(gs) == 0 {
		return
	}
	b.WriteString("Issue 6's goals, as measured in this run:\n\n| goal | measured | met |\n|---|---|---|\n")
	for _, g := range gs {
		met := "**no**"
		if g.met {
			met = "yes"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", g.what, g.measured, met)
	}
	b.WriteString("\n")
}

// roundsTable lists every round's req/s, p99 and failed requests.
func (r *report) roundsTable(b *strings.Builder) {
	b.WriteString("Every round (req/s; p99; failed; CPU other work took, % of a core):\n\n| route | load | system | rounds |\n|---|---|---|---|\n")
	for _, rt := range r.routes {
		for _, sh := range shapes {
			for _, s := range r.sel {
				loads := r.res.loads[cell{s.id, rt.name, sh, false}]
				if len(loads) == 0 {
					continue
				}
				var each []string
				for _, l := range loads {
					each = append(each, fmt.Sprintf("%s; %s; %d; %.0f%%", fmtRPS(l.rps), fmtDur(l.p99), l.failed(), 100*l.otherLoad()))
				}
				fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", rt.path, shapeLabel(sh), s.label, strings.Join(each, " · "))
			}
		}
	}
	b.WriteString("\n")
}

// gnuplot is the chart's script: four panels (req/s and p99 of each route),
// one pair of bars (keep-alive, Connection: close) per system; the data
// inline.
func (r *report) gnuplot(png string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set terminal pngcairo size 1600,1000 font \"sans,10\"\nset output %s\n", gpString(png))
	title := fmt.Sprintf("wrk -t1 -c%d on 127.0.0.1, %d cores, median of %d rounds, %s", r.cfg.conns, r.m.cores, r.cfg.rounds, r.m.date.Format("2006-01-02"))
	if r.provisional() != "" {
		title += " (provisional: busy machine or short run)"
	}
	b.WriteString("set datafile missing \"?\"\nset style data histograms\nset style histogram clustered gap 1\n")
	b.WriteString("set style fill solid 0.85 border -1\nset boxwidth 0.9\nset grid ytics\nset key inside top left opaque box\n")
	b.WriteString("set xtics scale 0 rotate by 25 right font \",9\"\nset yrange [0:*]\nset offsets 0, 0, graph 0.2, 0\nset bmargin 7\n")
	for i, rt := range r.routes {
		fmt.Fprintf(&b, "$d%d << EOD\n", i)
		for _, s := range r.sel {
			cols := []string{gpString(s.label)}
			for _, what := range []string{"rps", "p99"} {
				for _, sh := range shapes {
					w, ok := r.row(s, rt, sh, false)
					switch {
					case !ok:
						cols = append(cols, "?")
					case what == "rps":
						cols = append(cols, strconv.FormatFloat(w.rps, 'f', 1, 64))
					default:
						cols = append(cols, strconv.FormatFloat(float64(w.p99)/float64(time.Millisecond), 'f', 2, 64))
					}
				}
			}
			b.WriteString(strings.Join(cols, " ") + "\n")
		}
		b.WriteString("EOD\n")
	}
	fmt.Fprintf(&b, "set multiplot layout 2,%d title %s\n", len(r.routes), gpString(title))
	for _, what := range []struct{ name, unit string }{{"req/s", "req/s"}, {"p99", "ms"}} {
		for i, rt := range r.routes {
			col := 2
			if what.name == "p99" {
				col = 4
			}
			fmt.Fprintf(&b, "set title %s\nset ylabel %s\n", gpString(fmt.Sprintf("GET %s: %s", rt.path, what.name)), gpString(what.unit))
			fmt.Fprintf(&b, "plot $d%d using %d:xtic(1) title \"keep-alive\", $d%d using %d title \"Connection: close\"\n", i, col, i, col+1)
		}
	}
	b.WriteString("unset multiplot\n")
	return b.String()
}

// gpString quotes s for gnuplot: a double-quoted string, in which \n is a
// line break.
func gpString(s string) string {
	return `"` + strings.NewReplacer(`"`, `\"`).Replace(s) + `"`
}

const (
	beginMarker = "<!-- bench-peers: begin. Written by `make bench-peers`; edit outside these markers. -->"
	endMarker   = "<!-- bench-peers: end -->"
)

// replaceSection puts body between doc's bench-peers markers.
func replaceSection(doc, body string) (string, error) {
	i := strings.Index(doc, "<!-- bench-peers: begin")
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i {
		return "", fmt.Errorf("no bench-peers markers (%q … %q)", beginMarker, endMarker)
	}
	return doc[:i] + beginMarker + "\n\n" + body + doc[j:], nil
}

// write prints the results, writes them and the chart to -out and, with
// -doc, into that file's section.
func (r *report) write(ctx context.Context) error {
	if err := os.MkdirAll(r.cfg.out, 0o755); err != nil {
		return err
	}
	png := filepath.Join(r.cfg.out, "bench-peers.png")
	results := filepath.Join(r.cfg.out, "bench-peers.md")
	cmd := exec.CommandContext(ctx, "gnuplot")
	cmd.Stdin = strings.NewReader(r.gnuplot(png))
	var chartErr error
	if out, err := cmd.CombinedOutput(); err != nil {
		chartErr = fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	text := "# corral against Node's cluster module and pm2: results\n\n" + r.markdown("bench-peers.png", true)
	fmt.Print(text)
	if err := os.WriteFile(results, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s\n", results, png)
	if r.cfg.doc == "" {
		return chartErr
	}
	doc, err := os.ReadFile(r.cfg.doc)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(r.cfg.doc), png)
	if err != nil {
		rel = png
	}
	updated, err := replaceSection(string(doc), r.markdown(filepath.ToSlash(rel), false))
	if err != nil {
		return fmt.Errorf("%s: %w", r.cfg.doc, err)
	}
	if err := os.WriteFile(r.cfg.doc, []byte(updated), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "updated %s\n", r.cfg.doc)
	return chartErr
}

// fmtDur shows a latency with three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// fmtRPS shows req/s as whole numbers with a space between thousands.
func fmtRPS(v float64) string {
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	return s
}

func fmtCount(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fmtShares shows shares as percentages, largest first: "50.2 / 49.8".
func fmtShares(s []float64) string {
	var p []string
	for _, v := range s {
		p = append(p, fmt.Sprintf("%.1f", 100*v))
	}
	return strings.Join(p, " / ")
}

// fmtRounds shows the median and each round's value: "33 (31, 33, 40)".
func fmtRounds(xs []float64) string {
	var each []string
	for _, x := range xs {
		each = append(each, fmtCount(x))
	}
	return fmt.Sprintf("%s (%s)", fmtCount(median(xs)), strings.Join(each, ", "))
}

func fmtReplacement(k killResult) string {
	if !k.replaced {
		return "none"
	}
	return fmtDur(k.replacement)
}
