package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/api"
)

// ANSI sequences of monit's redraw on a terminal.
const (
	ansiHome      = "\x1b[H"  // cursor to the top left
	ansiClearLine = "\x1b[K"  // clear to the end of the line
	ansiClearDown = "\x1b[J"  // clear to the end of the screen
	ansiClearAll  = "\x1b[2J" // clear the screen
)

// monitLogLines is how many of the latest log lines monit shows.
const monitLogLines = 5

// cpuSample is an instance's CPU time at a moment, for CPU %.
type cpuSample struct {
	nsec uint64
	at   time.Time
}

// monitor is the state of one `corral monit`: the last CPU samples.
type monitor struct {
	env      *Env
	api      api.API
	name     string // the pool shown, or "" for all
	interval time.Duration
	prev     map[string]cpuSample // by unit
}

// runMonit is `corral monit [POOL] [--interval D] [--count N]`, like pm2
// monit: every interval, the instances with CPU % and the latest log lines.
func runMonit(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("monit", args,
		option{long: "interval", takesValue: true},
		option{long: "count", takesValue: true})
	if err != nil {
		return err
	}
	m := &monitor{env: env, interval: time.Second, prev: map[string]cpuSample{}}
	switch len(operands) {
	case 0:
	case 1:
		m.name = operands[0]
		if err := checkPoolName("monit", m.name); err != nil {
			return err
		}
	default:
		return badUsage("monit", "give at most one pool")
	}
	if s, ok := opts["interval"]; ok {
		if m.interval, err = parseInterval(s); err != nil {
			return badUsage("monit", "bad --interval %q: give a duration such as 1s or 500ms", s)
		}
	}
	count := 0
	if s, ok := opts["count"]; ok {
		if count, err = strconv.Atoi(s); err != nil || count < 1 {
			return badUsage("monit", "bad --count %q: give a number of refreshes from 1 on", s)
		}
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	m.api = corrald
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		err := m.refresh(ctx, n == 1)
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		if err != nil {
			return err
		}
		if count > 0 && n >= count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// parseInterval takes a Go duration ("500ms", "2s") or seconds ("2").
func parseInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, err
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return 0, errors.New("interval must be positive")
	}
	return d, nil
}

// refresh samples corrald and the journal once and draws a frame.
func (m *monitor) refresh(ctx context.Context, first bool) error {
	s, err := take(ctx, m.env, m.api, m.name)
	if err != nil {
		return err
	}
	logs := m.logs(ctx, s)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var b strings.Builder
	if m.env.IsTerminal {
		fmt.Fprintf(&b, "corral monit  %s  every %s, Ctrl-C to quit\n", stamp(s.at, s.at), m.interval)
	} else {
		fmt.Fprintf(&b, "--- %s ---\n", stamp(s.at, s.at))
	}
	if len(s.pools) == 0 {
		fmt.Fprintln(&b, "no pools")
	} else {
		writeTable(&b, listHeader("CPU%"), listRows(s, func(in api.InstanceInfo) string { return m.cpu(in, s.at) }), m.env.IsTerminal)
		of := "every pool"
		if m.name != "" {
			of = m.name
		}
		fmt.Fprintf(&b, "\nlatest log lines of %s:\n", of)
		for _, l := range logs {
			fmt.Fprintln(&b, l)
		}
	}
	m.forget(s)
	return m.draw(b.String(), first)
}

// cpu returns an instance's CPU use since the last sample, in % of one
// CPU, and keeps this sample; "-" without an earlier sample or a counter.
func (m *monitor) cpu(in api.InstanceInfo, at time.Time) string {
	if in.CPUNSec == api.Unknown {
		delete(m.prev, in.Unit)
		return "-"
	}
	prev, ok := m.prev[in.Unit]
	m.prev[in.Unit] = cpuSample{nsec: in.CPUNSec, at: at}
	wall := at.Sub(prev.at)
	if !ok || in.CPUNSec < prev.nsec || wall <= 0 { // a restart resets the counter
		return "-"
	}
	return fmt.Sprintf("%.1f%%", float64(in.CPUNSec-prev.nsec)/float64(wall.Nanoseconds())*100)
}

// forget drops the samples of instances that are gone.
func (m *monitor) forget(s *snapshot) {
	seen := map[string]bool{}
	for _, ins := range s.instances {
		for _, in := range ins {
			seen[in.Unit] = true
		}
	}
	for u := range m.prev {
		if !seen[u] {
			delete(m.prev, u)
		}
	}
}

// logs returns the latest log lines of the pools shown, or a line saying
// why there are none.
func (m *monitor) logs(ctx context.Context, s *snapshot) []string {
	var patterns []string
	for _, p := range s.pools {
		patterns = append(patterns, p.Name+"@*.service")
	}
	if len(patterns) == 0 {
		return nil
	}
	var buf bytes.Buffer
	w := &logWriter{out: &buf, loc: s.at.Location()}
	if err := m.env.journal(ctx, journalArgs(patterns, false, strconv.Itoa(monitLogLines)), w); err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if w.n == 0 {
		return []string{"(none)"}
	}
	return lines[max(0, len(lines)-monitLogLines):]
}

// draw writes a frame: on a terminal over the last one, from the top left
// of the screen; otherwise after it.
func (m *monitor) draw(frame string, first bool) error {
	w := m.env.Stdout
	if !m.env.IsTerminal {
		_, err := io.WriteString(w, frame+"\n")
		return err
	}
	var b strings.Builder
	if first {
		b.WriteString(ansiClearAll)
	}
	b.WriteString(ansiHome)
	for _, l := range strings.SplitAfter(frame, "\n") {
		if l == "" {
			continue
		}
		b.WriteString(strings.TrimSuffix(l, "\n") + ansiClearLine + "\n")
	}
	b.WriteString(ansiClearDown)
	_, err := io.WriteString(w, b.String())
	return err
}
