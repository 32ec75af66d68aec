package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/api"
)

// ErrJournalDenied is returned by Journalctl when the user may not read
// the system journal.
var ErrJournalDenied = errors.New("cannot read the journal: run with sudo or join the systemd-journal group")

// defaultLines is how many lines `corral logs` shows without -n, as pm2.
const defaultLines = "15"

// Journalctl runs journalctl(1) with args and copies its standard output
// to stdout until it exits or ctx is done (then it is killed). It returns
// ErrJournalDenied as soon as journalctl says the user cannot see the
// system's messages, and otherwise journalctl's first error line.
func Journalctl(ctx context.Context, args []string, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stderr := &journalStderr{cancel: cancel}
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if stderr.denied {
		return ErrJournalDenied
	}
	if err != nil {
		if msg := strings.TrimSpace(string(stderr.buf)); msg != "" {
			msg, _, _ = strings.Cut(msg, "\n")
			return fmt.Errorf("journalctl: %s", msg)
		}
		return fmt.Errorf("journalctl: %w", err)
	}
	return nil
}

// journalStderr keeps the start of journalctl's standard error and cancels
// it when it says it cannot show the system's messages. There is no exit
// status for that: with -f it would follow the user's own journal forever,
// so the texts of journalctl's two notices are all there is to go by.
type journalStderr struct {
	buf    []byte
	denied bool
	cancel func()
}

func (s *journalStderr) Write(p []byte) (int, error) {
	const keep = 4096
	if len(s.buf) < keep {
		s.buf = append(s.buf, p[:min(len(p), keep-len(s.buf))]...)
	}
	if !s.denied && (bytes.Contains(s.buf, []byte("insufficient permissions")) ||
		bytes.Contains(s.buf, []byte("not seeing messages from other users"))) {
		s.denied = true
		s.cancel()
	}
	return len(p), nil
}

// journalArgs returns journalctl's arguments for units' entries as JSON.
func journalArgs(unitNames []string, follow bool, lines string) []string {
	var args []string
	for _, u := range unitNames {
		args = append(args, "-u", u)
	}
	args = append(args, "--no-pager", "-o", "json")
	if follow {
		args = append(args, "-f")
	}
	if lines != "" {
		args = append(args, "-n", lines)
	}
	return args
}

// journalEntry is the part of a `journalctl -o json` entry that logs show.
type journalEntry struct {
	Realtime string          `json:"__REALTIME_TIMESTAMP"`
	Message  json.RawMessage `json:"MESSAGE"`
	Ident    json.RawMessage `json:"SYSLOG_IDENTIFIER"`
	Unit     json.RawMessage `json:"_SYSTEMD_UNIT"`
	About    json.RawMessage `json:"UNIT"` // systemd's own messages about a unit
}

// journalField decodes a field of `journalctl -o json`: a string; an
// array of bytes when the value is not UTF-8; an array of such values when
// the entry has the field more than once (joined by newlines); null when
// the value is over 4096 bytes (ok is false).
func journalField(raw json.RawMessage) (s string, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return "", false
	}
	b := make([]byte, 0, len(elems))
	for _, e := range elems {
		var c uint8
		if json.Unmarshal(e, &c) != nil {
			b = nil
			break
		}
		b = append(b, c)
	}
	if b != nil {
		return string(b), true
	}
	var parts []string
	for _, e := range elems {
		if p, ok := journalField(e); ok {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "\n"), len(parts) > 0
}

// formatEntry turns one line of `journalctl -o json` into lines like
// pm2's: "2026-11-21 20:01:02 app@1 | message", one per line of the
// message. A line that is not an entry gives nothing.
func formatEntry(line []byte, loc *time.Location) []string {
	var e journalEntry
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
		return nil
	}
	when := "-"
	if us, err := strconv.ParseInt(e.Realtime, 10, 64); err == nil {
		when = time.UnixMicro(us).In(loc).Format(time.DateTime)
	}
	ident, _ := journalField(e.Ident)
	unit, _ := journalField(e.Unit)
	about, _ := journalField(e.About)
	name := ident
	if _, _, ok := api.ParseInstance(ident); !ok {
		// Not the instance's own identifier: systemd's messages about the
		// unit, or a process that set its own identifier.
		for _, u := range []string{unit, about} {
			if _, _, ok := api.ParseInstance(u); ok && strings.HasSuffix(u, ".service") {
				name = strings.TrimSuffix(u, ".service")
				break
			}
		}
	}
	if name == "" {
		name = "-"
	}
	msg, ok := journalField(e.Message)
	if !ok {
		msg = "(message over 4096 bytes: journalctl --all shows it)"
	}
	if ident != "" && ident != name {
		msg = ident + ": " + msg
	}
	msg = strings.ToValidUTF8(strings.TrimRight(msg, "\n"), "\uFFFD")
	var out []string
	for _, l := range strings.Split(msg, "\n") {
		out = append(out, when+" "+name+" | "+l)
	}
	return out
}

// logWriter takes journalctl's output as it comes and writes each entry
// formatted to out.
type logWriter struct {
	out     io.Writer
	loc     *time.Location
	partial []byte
	n       int // entries written
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		lines := formatEntry(w.partial[:i], w.loc)
		w.partial = append(w.partial[:0], w.partial[i+1:]...)
		if len(lines) == 0 {
			continue
		}
		w.n++
		if _, err := io.WriteString(w.out, strings.Join(lines, "\n")+"\n"); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// runLogs is `corral logs POOL [-f] [-n N] [--instance I]`, like pm2 logs.
func runLogs(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("logs", args,
		option{long: "follow", short: "f"},
		option{long: "lines", short: "n", takesValue: true},
		option{long: "instance", takesValue: true})
	if err != nil {
		return err
	}
	target, name, err := oneTarget("logs", operands, "give one pool")
	if err != nil {
		return err
	}
	unit := name + "@*.service"
	if strings.Contains(target, "@") {
		unit = target + ".service"
	}
	if i, ok := opts["instance"]; ok {
		if _, err := parseTarget("logs", name+"@"+i); err != nil {
			return err
		}
		if strings.Contains(target, "@") && target != name+"@"+i {
			return badUsage("logs", "%s and --instance %s disagree: give one", target, i)
		}
		unit = name + "@" + i + ".service"
	}
	lines := defaultLines
	if n, ok := opts["lines"]; ok {
		if v, err := strconv.Atoi(n); n != "all" && (err != nil || v < 0) {
			return badUsage("logs", "bad -n %q: give a number of lines, or all", n)
		}
		lines = n
	}
	follow := opts["follow"] != ""
	w := &logWriter{out: env.Stdout, loc: env.now().Location()}
	err = env.journal(ctx, journalArgs([]string{unit}, follow, lines), w)
	switch {
	case ctx.Err() != nil:
		return nil // Ctrl-C
	case errors.Is(err, ErrJournalDenied):
		return &ExitError{Code: ExitInvalid, Err: err}
	case err != nil:
		return failed("logs %s: %w", target, err)
	}
	if w.n == 0 && !follow && lines != "0" {
		fmt.Fprintf(env.Stderr, "corral: no journal entries for %s\n", unit)
	}
	return nil
}
