package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/corral-pool/corral/api"
)

// ANSI sequences, written only when Env.IsTerminal.
const (
	ansiAlert = "\x1b[1;31m" // bold red
	ansiReset = "\x1b[0m"
)

// row is one line of a table.
type row struct {
	cells []string
	// note, when set, replaces the cells from the third column on: free
	// text such as a pool's summary, not aligned with the columns.
	note string
	// alert highlights the second cell (a state) on a terminal.
	alert bool
}

// writeTable aligns header and rows in columns with text/tabwriter.
// header's cells must hold no spaces: where they start in the aligned
// header line is where the columns start, which places notes and
// highlights after alignment.
func writeTable(w io.Writer, header []string, rows []row, color bool) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, r := range rows {
		cells := r.cells
		if r.note != "" {
			cells = make([]string, len(header))
			copy(cells, r.cells[:2])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	starts := columnStarts(lines[0])
	var out strings.Builder
	out.WriteString(strings.TrimRight(lines[0], " ") + "\n")
	for i, r := range rows {
		line := lines[i+1]
		if r.note != "" {
			line = line[:byteOffset(starts, r.cells, 2)] + r.note
		}
		if r.alert && color {
			at := byteOffset(starts, r.cells, 1)
			end := at + len(r.cells[1])
			line = line[:at] + ansiAlert + line[at:end] + ansiReset + line[end:]
		}
		out.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// columnStarts returns where each word of an aligned header line starts.
func columnStarts(header string) []int {
	var starts []int
	for i := 0; i < len(header); i++ {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	return starts
}

// byteOffset returns where column k starts in an aligned line whose
// cells are cells: tabwriter pads by characters, not bytes.
func byteOffset(starts []int, cells []string, k int) int {
	off := starts[k]
	for j := 0; j < k && j < len(cells); j++ {
		off += len(cells[j]) - utf8.RuneCountInString(cells[j])
	}
	return off
}

// hasUptime reports whether an instance's process has run since
// SinceUSec: active, reloading, or stopping but not yet gone.
func hasUptime(in api.InstanceInfo) bool {
	switch in.ActiveState {
	case "active", "reloading", "deactivating":
		return in.SinceUSec != 0
	}
	return false
}

// instanceName returns "app@3".
func instanceName(in api.InstanceInfo) string {
	return fmt.Sprintf("%s@%d", in.Pool, in.Index)
}

func pidCell(pid uint32) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func uptimeCell(in api.InstanceInfo, now time.Time) string {
	if !hasUptime(in) {
		return "-"
	}
	return humanDuration(now.Sub(in.Since()))
}

// humanDuration rounds d down to its largest unit, as pm2 does: 45s, 12m,
// 3h, 2d.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// cpuTime shows CPU time: 0.4s, 12.3s, 4m05s, 3h02m.
func cpuTime(nsec uint64) string {
	if nsec == api.Unknown {
		return "-"
	}
	d := time.Duration(nsec)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// memory shows bytes in MiB, or GiB from 1 GiB on.
func memory(b uint64) string {
	if b == api.Unknown {
		return "-"
	}
	const mib = 1 << 20
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/mib)
}

// stamp formats a time as logs and status show it, in now's location.
func stamp(t, now time.Time) string {
	return t.In(now.Location()).Format(time.DateTime)
}

// poolNote is the summary on a pool's line of the list.
func poolNote(p api.PoolInfo) string {
	note := fmt.Sprintf("desired %d, running %d, balance %s", p.Desired, p.Running, p.Balance)
	if p.Drained {
		note += ", drained"
	}
	return note
}

func crashLoop(state string) bool { return state == string(api.PhaseCrashLoop) }

// alert reports whether a state is shown highlighted: a crash loop, or
// instances that accept no connection.
func alert(state string) bool { return crashLoop(state) || state == string(api.PhaseNotAccepting) }
