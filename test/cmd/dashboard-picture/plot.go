package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The picture's geometry, in pixels: Grafana's grid is 24 columns wide,
// and a row of its grid is unitH high here.
const (
	width   = 1600
	unitH   = 44
	margin  = 8   // around and between panels
	charW   = 7.2 // the width of a character of the legend's font, about
	legendH = 17  // a row of the legend
)

// palette is the series' colours, in order, for a white background.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// line is one series as drawn: x in seconds since the run's start, y in
// the panel's unit.
type line struct {
	name string
	pts  [][2]float64
}

// view is a panel made ready to draw.
type view struct {
	p       panel
	lines   []line
	notes   []string // grey legend items: series left out, targets without data
	message string   // instead of a graph: no data, or a query's error
	format  string   // the y axis's tic format, in gnuplot's printf
	ints    bool     // every value a whole number
}

// cgroupMetrics are the metrics that a box cannot have: its cgroup
// controllers belong to the host (test/sdbox).
var cgroupMetrics = []string{"corral_instance_cpu_seconds_total", "corral_instance_memory_bytes"}

// makeView turns what p's targets returned in rec into p's lines: legends
// from legendFormat, values in p's unit; a series that is 0 throughout is
// counted in a note, not drawn, so that the 7 restart causes of each pool
// do not bury the one that happened.
func makeView(p panel, rec *record) view {
	v := view{p: p, ints: true}
	zeros := 0
	var failed []string
	var raw []line
	for _, t := range p.Targets {
		if t.Hide {
			continue
		}
		expr, err := expand(t.Expr, rec.Step, rec.End.Sub(rec.Start))
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", t.RefID, err))
			continue
		}
		if e, ok := rec.Errors[expr]; ok {
			failed = append(failed, fmt.Sprintf("%s: %s", t.RefID, e))
			continue
		}
		res, ok := rec.Results[expr]
		if !ok {
			failed = append(failed, fmt.Sprintf("%s: not in the saved run; this query changed since: run again without -replay", t.RefID))
			continue
		}
		var ls []line
		for _, s := range res {
			if len(s.Points) == 0 {
				continue
			}
			l := line{name: legend(t.LegendFormat, s.Labels)}
			zero := true
			for _, pt := range s.Points {
				l.pts = append(l.pts, [2]float64{pt[0] - float64(rec.Start.Unix()), pt[1]})
				zero = zero && pt[1] == 0
			}
			if zero {
				zeros++
				continue
			}
			ls = append(ls, l)
		}
		if len(res) == 0 {
			name := t.LegendFormat
			if name == "" {
				name = "query " + t.RefID
			}
			v.notes = append(v.notes, "no data: "+name)
		}
		sort.SliceStable(ls, func(i, j int) bool { return ls[i].name < ls[j].name })
		raw = append(raw, ls...)
	}
	if zeros > 0 {
		v.notes = append(v.notes, fmt.Sprintf("+%d series at 0 throughout, not drawn", zeros))
	}
	scale, format := unit(p.FieldConfig.Defaults.Unit, raw)
	v.format = format
	for _, l := range raw {
		for i := range l.pts {
			l.pts[i][1] *= scale
			v.ints = v.ints && l.pts[i][1] == math.Trunc(l.pts[i][1])
		}
		v.lines = append(v.lines, l)
	}
	switch {
	case len(failed) > 0:
		v.message = "query failed: " + strings.Join(failed, "; ")
	case len(v.lines) == 0 && zeros == 0:
		v.message = "no data in this run"
		for _, m := range cgroupMetrics {
			for _, t := range p.Targets {
				if strings.Contains(t.Expr, m) {
					v.message = "no data in this run (container without cgroup accounting)"
				}
			}
		}
		v.notes = nil
	case len(v.lines) == 0:
		v.message = "0 throughout this run"
	}
	return v
}

// unit is the factor and the tic format for Grafana's unit, given the
// values: bytes in B, KiB, MiB or GiB as they need, percentunit (1 = one
// core here) in percent.
func unit(u string, ls []line) (float64, string) {
	switch u {
	case "percentunit":
		return 100, "%g%%"
	case "percent":
		return 1, "%g%%"
	case "reqps", "ops":
		return 1, "%g/s"
	case "s":
		return 1, "%g s"
	case "bytes", "decbytes":
		top := 0.0
		for _, l := range ls {
			for _, p := range l.pts {
				top = max(top, p[1])
			}
		}
		base, names := 1024.0, []string{"B", "KiB", "MiB", "GiB", "TiB"}
		if u == "decbytes" {
			base, names = 1000, []string{"B", "kB", "MB", "GB", "TB"}
		}
		i := 0
		for ; i < len(names)-1 && top >= math.Pow(base, float64(i+1)); i++ {
		}
		return 1 / math.Pow(base, float64(i)), "%g " + names[i]
	}
	return 1, "%g"
}

// box is a rectangle in pixels from the picture's top left.
type box struct{ x0, y0, x1, y1 float64 }

// legendItem is a legend entry placed at x, y (pixels; y its middle).
type legendItem struct {
	text  string
	color string // "" for a grey note without a line sample
	x, y  float64
}

// layoutLegend flows the entries left to right in rows below the plot, as
// Grafana's list legend does, from (x, y) within a width of w.
func layoutLegend(names []string, colors []string, x, y, w float64) ([]legendItem, int) {
	var items []legendItem
	cx, rows := x, 1
	for i, n := range names {
		iw := float64(len([]rune(n)))*charW + 18
		if colors[i] != "" {
			iw += 22
		}
		if cx > x && cx+iw > x+w {
			cx, rows = x, rows+1
		}
		items = append(items, legendItem{text: n, color: colors[i], x: cx, y: y + float64(rows-1)*legendH})
		cx += iw
	}
	return items, rows
}

// plotter writes a gnuplot script and its data files into dir.
type plotter struct {
	dir    string
	height float64
	b      strings.Builder
	files  int
	header []string // the heading's lines, until the first panel draws them
}

func (g *plotter) sx(x float64) string { return strconv.FormatFloat(x/width, 'f', 5, 64) }
func (g *plotter) sy(y float64) string { return strconv.FormatFloat(1-y/g.height, 'f', 5, 64) }
func (g *plotter) printf(format string, a ...any) {
	fmt.Fprintf(&g.b, format, a...)
}

// data writes rows to a new data file and returns its quoted name; a nil
// row is a blank line, which breaks a line in gnuplot.
func (g *plotter) data(rows [][]float64) (string, error) {
	g.files++
	name := filepath.Join(g.dir, fmt.Sprintf("s%03d.dat", g.files))
	var b strings.Builder
	for _, r := range rows {
		for i, f := range r {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(f, 'g', 8, 64))
		}
		b.WriteByte('\n')
	}
	return gpString(name), os.WriteFile(name, []byte(b.String()), 0o644)
}

// draw draws d's panels from rec into the PNG out.
func draw(ctx context.Context, d *dashboard, rec *record, dashPath, out string) error {
	term, err := terminal(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dashboard-picture")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	dur := rec.End.Sub(rec.Start)
	header := headerLines(d, rec, dashPath)
	top := float64(margin + 16 + 20*(len(header)-1) + 14)
	bottom := 0
	for _, p := range d.Panels {
		bottom = max(bottom, p.GridPos.Y+p.GridPos.H)
	}
	g := &plotter{dir: dir, height: top + float64(bottom*unitH) + margin}
	if term == "pngcairo" {
		g.printf("set terminal pngcairo noenhanced size %d,%d font \"DejaVu Sans,9\" background rgb \"#f4f5f5\"\n", width, int(g.height))
	} else {
		g.printf("set terminal png noenhanced truecolor size %d,%d font \"DejaVu Sans,9\" background rgb \"#f4f5f5\"\n", width, int(g.height))
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	g.printf("set output %s\nset multiplot\n", gpString(abs))
	g.header = header
	for _, p := range d.Panels {
		pos := p.GridPos
		b := box{
			x0: margin/2 + float64(pos.X)*(width-margin)/24 + margin/2,
			x1: margin/2 + float64(pos.X+pos.W)*(width-margin)/24 - margin/2,
			y0: top + float64(pos.Y*unitH) + margin/2,
			y1: top + float64((pos.Y+pos.H)*unitH) - margin/2,
		}
		if err := g.panel(makeView(p, rec), b, rec, dur); err != nil {
			return err
		}
	}
	g.printf("unset multiplot\nset output\n")
	script := filepath.Join(dir, "dashboard.gp")
	if err := os.WriteFile(script, []byte(g.b.String()), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return err
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if msg, err := exec.CommandContext(c, "gnuplot", script).CombinedOutput(); err != nil {
		keep = true
		return fmt.Errorf("gnuplot %s: %w: %s(the script and its data stay in %s)", script, err, msg, dir)
	}
	return nil
}

// terminal is gnuplot's PNG terminal: pngcairo if this gnuplot has it,
// else png.
func terminal(ctx context.Context) (string, error) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(c, "gnuplot", "-e", "set terminal").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gnuplot: %w: %s: run 'make deps' (apt-get install gnuplot-nox)", err, out)
	}
	if strings.Contains(string(out), "pngcairo") {
		return "pngcairo", nil
	}
	if strings.Contains(string(out), " png ") {
		return "png", nil
	}
	return "", fmt.Errorf("this gnuplot has neither the pngcairo nor the png terminal: apt-get install gnuplot-nox")
}

// headerLines is the picture's heading: what it is, the run, and the
// scenario's steps, numbered as the dashed lines in the panels.
func headerLines(d *dashboard, rec *record, dashPath string) []string {
	lines := []string{fmt.Sprintf("%s: %s drawn by gnuplot from the dashboard's own queries over a real run (not a Grafana screenshot)", d.Title, filepath.ToSlash(dashPath))}
	lines = append(lines, wrap(fmt.Sprintf("%s UTC, %v · %s · range queries, step %v, $host = $pool = .*",
		rec.Start.UTC().Format("2006-01-02 15:04"), rec.End.Sub(rec.Start), rec.About, rec.Step), " · ")...)
	items := []string{"Scenario (the dashed lines; m:ss since its start):"}
	for i, e := range rec.Events {
		items = append(items, fmt.Sprintf("%d  %s %s", i+1, clock(e.At.Seconds()), e.What))
	}
	return append(lines, wrap(strings.Join(items, "   "), "   ")...)
}

// headerChars is about how many characters of the heading's font a line
// of the picture holds.
const headerChars = 195

// wrap breaks s into lines of at most headerChars, at sep.
func wrap(s, sep string) []string {
	var lines []string
	cur := ""
	for i, item := range strings.Split(s, sep) {
		switch {
		case i == 0:
			cur = item
		case len([]rune(cur+sep+item)) > headerChars:
			lines = append(lines, cur)
			cur = "    " + item
		default:
			cur += sep + item
		}
	}
	return append(lines, cur)
}

// clock is s seconds as m:ss.
func clock(s float64) string {
	n := int(math.Round(s))
	return fmt.Sprintf("%d:%02d", n/60, n%60)
}

// panel draws v in b.
func (g *plotter) panel(v view, b box, rec *record, dur time.Duration) error {
	g.printf("\n# panel %d: %s\nunset label\nunset arrow\nunset object\nunset key\n", v.p.ID, v.p.Title)
	g.printf("set object 1 rect from screen %s,%s to screen %s,%s behind fc rgb \"white\" fs solid 1.0 border lc rgb \"#d0d1d3\"\n",
		g.sx(b.x0), g.sy(b.y1), g.sx(b.x1), g.sy(b.y0))
	// The heading, with the first panel: a plot draws the labels set.
	for i, l := range g.header {
		font := "DejaVu Sans,10"
		if i == 0 {
			font = "DejaVu Sans Bold,13"
		}
		g.printf("set label %d %s at screen %s,%s left font %s tc rgb \"#222222\"\n", 100+i, gpString(l), g.sx(margin+4), g.sy(float64(margin+10+20*i)), gpString(font))
	}
	g.header = nil
	g.printf("set label 1 %s at screen %s,%s left font \"DejaVu Sans Bold,11\" tc rgb \"#222222\"\n", gpString(v.p.Title), g.sx(b.x0+10), g.sy(b.y0+16))

	var names, colors []string
	for i, l := range v.lines {
		names = append(names, l.name)
		colors = append(colors, palette[i%len(palette)])
	}
	for _, n := range v.notes {
		names = append(names, n)
		colors = append(colors, "")
	}
	plotL, plotR := b.x0+64, b.x1-16
	items, rows := layoutLegend(names, colors, b.x0+12, 0, b.x1-b.x0-24)
	plotT, plotB := b.y0+30, b.y1-24-float64(rows)*legendH-6
	if v.message != "" && len(v.lines) == 0 {
		items = nil
		plotB = b.y1 - 12
	}
	g.printf("set lmargin at screen %s\nset rmargin at screen %s\nset tmargin at screen %s\nset bmargin at screen %s\n",
		g.sx(plotL), g.sx(plotR), g.sy(plotT), g.sy(plotB))
	for i, it := range items {
		y := plotB + 30 + it.y
		x := it.x
		tc := "#333333"
		if it.color != "" {
			g.printf("set arrow %d from screen %s,%s to screen %s,%s nohead lw 3 lc rgb %s front\n", 10+i, g.sx(x), g.sy(y), g.sx(x+16), g.sy(y), gpString(it.color))
			x += 22
		} else {
			tc = "#777777"
		}
		g.printf("set label %d %s at screen %s,%s left tc rgb %s\n", 10+i, gpString(it.text), g.sx(x), g.sy(y), gpString(tc))
	}

	secs := dur.Seconds()
	g.printf("set xrange [0:%g]\n", secs)
	if len(v.lines) == 0 {
		g.printf("unset xtics\nunset ytics\nunset grid\nset border 0\nset yrange [0:1]\n")
		g.printf("set label 2 %s at graph 0.5,0.5 center font \"DejaVu Sans,12\" tc rgb \"#555555\"\n", gpString(v.message))
		g.printf("plot 1/0 notitle\n")
		return nil
	}
	if v.message != "" {
		g.printf("set label 2 %s at graph 0.5,0.5 center tc rgb \"#c4162a\"\n", gpString(v.message))
	}
	g.printf("set border 1 lc rgb \"#9a9a9a\"\nset grid xtics ytics lt 1 lc rgb \"#ececec\"\nset tics nomirror scale 0 tc rgb \"#555555\"\n")
	g.printf("set xtics (%s)\n", xtics(secs))
	g.printf("set format y %s\n", gpString(v.format))
	low, high := 0.0, 0.0
	for _, l := range v.lines {
		for _, p := range l.pts {
			low, high = min(low, p[1]), max(high, p[1])
		}
	}
	stacked := v.p.FieldConfig.Defaults.Custom.Stacking.Mode == "normal"
	bars := v.p.FieldConfig.Defaults.Custom.DrawStyle == "bars"
	fill := v.p.FieldConfig.Defaults.Custom.FillOpacity / 100
	var stackTop map[float64]float64
	if stacked {
		stackTop = map[float64]float64{}
		high = stackHigh(v.lines)
	}
	if v.ints && high <= 8 {
		g.printf("set ytics 1\n")
	} else {
		g.printf("set ytics autofreq\n")
	}
	if low >= 0 {
		g.printf("set yrange [0:%g]\n", niceTop(high))
	} else {
		g.printf("set yrange [*:*]\n")
	}
	for i, e := range rec.Events {
		x := e.At.Seconds()
		g.printf("set arrow %d from first %g, graph 0 to first %g, graph 1 nohead dt 2 lc rgb \"#b8b8b8\" back\n", 60+i, x, x)
		g.printf("set label %d \"%d\" at first %g, graph 0.96 center font \"DejaVu Sans,8\" tc rgb \"#8a8a8a\"\n", 60+i, i+1, x)
	}
	var plots []string
	for i, l := range v.lines {
		color := gpString(palette[i%len(palette)])
		step := rec.Step.Seconds()
		switch {
		case bars:
			f, err := g.data(dataRows(l.pts, step, nil))
			if err != nil {
				return err
			}
			// A bar a step wide: at a bar every 2 s, Grafana's are as
			// close.
			g.printf("set boxwidth %g absolute\n", step)
			plots = append(plots, fmt.Sprintf("%s using 1:2 with boxes fs transparent solid %g noborder lc rgb %s notitle", f, max(fill, 0.35), color))
		case stacked:
			f, err := g.data(dataRows(l.pts, step, stackTop))
			if err != nil {
				return err
			}
			plots = append(plots, fmt.Sprintf("%s using 1:2:3 with filledcurves fs transparent solid %g noborder lc rgb %s notitle", f, max(fill, 0.2), color),
				fmt.Sprintf("%s using 1:3 with lines lw 1.6 lc rgb %s notitle", f, color))
		default:
			f, err := g.data(dataRows(l.pts, step, nil))
			if err != nil {
				return err
			}
			if fill > 0 {
				plots = append(plots, fmt.Sprintf("%s using 1:2 with filledcurves y=0 fs transparent solid %g noborder lc rgb %s notitle", f, fill, color))
			}
			plots = append(plots, fmt.Sprintf("%s using 1:2 with lines lw 1.6 lc rgb %s notitle", f, color))
		}
		if lone := isolated(l.pts, step); len(lone) > 0 && !bars {
			f, err := g.data(lone)
			if err != nil {
				return err
			}
			plots = append(plots, fmt.Sprintf("%s using 1:2 with points pt 7 ps 0.6 lc rgb %s notitle", f, color))
		}
	}
	g.printf("plot %s\n", strings.Join(plots, ", \\\n  "))
	return nil
}

// dataRows is pts as a data file's rows, with a blank row at each gap of more
// than a step and a half, where a line breaks. With stack, each row is x,
// the series below's top, and its own top, and stack keeps the tops.
func dataRows(pts [][2]float64, step float64, stack map[float64]float64) [][]float64 {
	var out [][]float64
	for i, p := range pts {
		if i > 0 && p[0]-pts[i-1][0] > 1.5*step {
			out = append(out, nil)
		}
		if stack == nil {
			out = append(out, []float64{p[0], p[1]})
			continue
		}
		below := stack[p[0]]
		stack[p[0]] = below + p[1]
		out = append(out, []float64{p[0], below, below + p[1]})
	}
	return out
}

// stackHigh is the top of the lines stacked.
func stackHigh(ls []line) float64 {
	sum := map[float64]float64{}
	high := 0.0
	for _, l := range ls {
		for _, p := range l.pts {
			sum[p[0]] += p[1]
			high = max(high, sum[p[0]])
		}
	}
	return high
}

// isolated is the points of pts with no neighbour within a step and a
// half: a line does not show them.
func isolated(pts [][2]float64, step float64) [][]float64 {
	var out [][]float64
	for i, p := range pts {
		before := i > 0 && p[0]-pts[i-1][0] <= 1.5*step
		after := i < len(pts)-1 && pts[i+1][0]-p[0] <= 1.5*step
		if !before && !after {
			out = append(out, []float64{p[0], p[1]})
		}
	}
	return out
}

// niceTop is the y axis's top for values up to high: a little room above
// them, on a round number.
func niceTop(high float64) float64 {
	if high <= 0 {
		return 1
	}
	h := high * 1.15
	mag := math.Pow(10, math.Floor(math.Log10(h)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*mag >= h {
			return m * mag
		}
	}
	return 10 * mag
}

// xtics labels the x axis (seconds since the start) in m:ss, every 15 s,
// 30 s, 1, 2, 5 or 10 min: at most 10 labels.
func xtics(secs float64) string {
	every := 600.0
	for _, e := range []float64{15, 30, 60, 120, 300, 600} {
		if secs/e <= 10 {
			every = e
			break
		}
	}
	var t []string
	for x := 0.0; x <= secs+0.5; x += every {
		t = append(t, fmt.Sprintf("%s %g", gpString(clock(x)), x))
	}
	return strings.Join(t, ", ")
}

// gpString quotes s for gnuplot: a double-quoted string.
func gpString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
