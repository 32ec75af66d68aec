package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// journalOutput is canned `journalctl -o json` output: an instance's
// line, a message that is not UTF-8 (an array of bytes), systemd's own
// message about an instance, a multi-line message, an entry without
// SYSLOG_IDENTIFIER, a field given twice, a message too long for JSON, and
// a line that is not an entry.
const journalOutput = `{"__REALTIME_TIMESTAMP":"1795291201000000","SYSLOG_IDENTIFIER":"app@1","_SYSTEMD_UNIT":"app@1.service","MESSAGE":"listening on :8080","_PID":"1201"}
{"__REALTIME_TIMESTAMP":"1795291202000000","SYSLOG_IDENTIFIER":"app@1","_SYSTEMD_UNIT":"app@1.service","MESSAGE":[104,105,32,255,10]}
{"__REALTIME_TIMESTAMP":"1795291203000000","SYSLOG_IDENTIFIER":"systemd","_SYSTEMD_UNIT":"init.scope","UNIT":"app@2.service","MESSAGE":"Started app@2.service - app worker 2."}
{"__REALTIME_TIMESTAMP":"1795291204000000","SYSLOG_IDENTIFIER":"app@2","_SYSTEMD_UNIT":"app@2.service","MESSAGE":"panic: boom\ngoroutine 1 [running]:\n"}
{"__REALTIME_TIMESTAMP":"1795291205000000","_SYSTEMD_UNIT":"app@3.service","MESSAGE":"no identifier"}
{"__REALTIME_TIMESTAMP":"1795291206000000","SYSLOG_IDENTIFIER":"app@3","MESSAGE":["first",[115,101,99,111,110,100]]}
{"__REALTIME_TIMESTAMP":"1795291207000000","SYSLOG_IDENTIFIER":"app@3","MESSAGE":null}
-- No entries --
`

const journalFormatted = `2026-11-21 20:00:01 app@1 | listening on :8080
2026-11-21 20:00:02 app@1 | hi ` + "\uFFFD" + `
2026-11-21 20:00:03 app@2 | systemd: Started app@2.service - app worker 2.
2026-11-21 20:00:04 app@2 | panic: boom
2026-11-21 20:00:04 app@2 | goroutine 1 [running]:
2026-11-21 20:00:05 app@3 | no identifier
2026-11-21 20:00:06 app@3 | first
2026-11-21 20:00:06 app@3 | second
2026-11-21 20:00:07 app@3 | (message over 4096 bytes: journalctl --all shows it)
`

func TestLogs(t *testing.T) {
	base := []string{"--no-pager", "-o", "json"}
	for _, tt := range []struct {
		args     []string
		journal  *fakeJournal
		code     int
		out      string   // stdout, if set
		err      string   // in the error line and stderr
		journalA []string // journalctl's arguments, if it runs
	}{
		{args: []string{"app"}, journal: &fakeJournal{output: journalOutput}, out: journalFormatted,
			journalA: append(append([]string{"-u", "app@*.service"}, base...), "-n", "15")},
		{args: []string{"app", "-f", "-n", "100", "--instance", "2"}, journal: &fakeJournal{output: journalOutput},
			out: journalFormatted, journalA: append(append([]string{"-u", "app@2.service"}, base...), "-f", "-n", "100")},
		{args: []string{"app@3", "--lines=all"}, journal: &fakeJournal{output: journalOutput},
			journalA: append(append([]string{"-u", "app@3.service"}, base...), "-n", "all")},
		{args: []string{"app@3", "--instance", "3", "--follow"}, journal: &fakeJournal{},
			journalA: append(append([]string{"-u", "app@3.service"}, base...), "-f", "-n", "15")},
		{args: []string{"app"}, journal: &fakeJournal{output: "-- No entries --\n"}, out: "-",
			err: "corral: no journal entries for app@*.service", journalA: append(append([]string{"-u", "app@*.service"}, base...), "-n", "15")},
		{args: []string{"app"}, journal: &fakeJournal{err: ErrJournalDenied}, code: ExitInvalid,
			err: "corral: cannot read the journal: run with sudo or join the systemd-journal group"},
		{args: []string{"app"}, journal: &fakeJournal{err: errors.New("journalctl: Failed to add filter for units: No data available")}, code: ExitInvalid,
			err: "corral: logs app: journalctl: Failed to add filter for units: No data available"},
		// Usage errors: journalctl does not run.
		{args: []string{"app@3", "--instance", "2"}, code: ExitUsage, err: "logs: app@3 and --instance 2 disagree: give one", journalA: []string{}},
		{args: []string{"app", "--instance", "0"}, code: ExitUsage, err: `logs: bad instance in "app@0"`, journalA: []string{}},
		{args: []string{"app", "-n", "-3"}, code: ExitUsage, err: `logs: bad -n "-3": give a number of lines, or all`, journalA: []string{}},
		{args: []string{"app", "-n"}, code: ExitUsage, err: "logs: option -n needs a value; usage: corral logs POOL [-f] [-n N] [--instance I]", journalA: []string{}},
		{args: []string{"app", "--tail"}, code: ExitUsage, err: `logs: unknown option "--tail"; usage: corral logs POOL [-f] [-n N] [--instance I]`, journalA: []string{}},
		{args: []string{"app", "--follow=yes"}, code: ExitUsage, err: "logs: option --follow takes no value", journalA: []string{}},
		{args: []string{}, code: ExitUsage, err: "logs: give one pool", journalA: []string{}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if tt.journal == nil {
				tt.journal = &fakeJournal{}
			}
			env, out, errb := testEnv(newFake(), tt.journal)
			code, e := runEnv(t, context.Background(), env, append([]string{"logs"}, tt.args...)...)
			if code != tt.code || !strings.Contains(e+errb.String(), tt.err) {
				t.Errorf("exit %d, error %q, stderr %q; want exit %d and %q", code, e, errb, tt.code, tt.err)
			}
			switch {
			case tt.out == "-" && out.Len() > 0:
				t.Errorf("stdout %q, want nothing", out)
			case tt.out != "" && tt.out != "-" && out.String() != tt.out:
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.out)
			}
			if tt.journalA != nil {
				var got []string
				if len(tt.journal.args) > 0 {
					got = tt.journal.args[0]
				}
				if len(tt.journalA) == 0 && len(got) > 0 || len(tt.journalA) > 0 && !slices.Equal(got, tt.journalA) {
					t.Errorf("journalctl %q, want %q", got, tt.journalA)
				}
			}
		})
	}
}

// TestLogsFollowCancel: Ctrl-C (ctx cancelled) ends `logs -f` with exit 0
// after what it printed.
func TestLogsFollowCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j := &fakeJournal{output: journalOutput, follow: func(ctx context.Context) error {
		cancel()
		<-ctx.Done()
		return errors.New("signal: killed")
	}}
	env, out, errb := testEnv(newFake(), j)
	code, e := runEnv(t, ctx, env, "logs", "app", "-f")
	if code != ExitOK || out.String() != journalFormatted || errb.Len() > 0 {
		t.Errorf("exit %d %s, stderr %q, stdout:\n%s", code, e, errb, out)
	}
}

// TestLogWriterChunks: journalctl's output arrives in pieces that split
// lines anywhere.
func TestLogWriterChunks(t *testing.T) {
	for _, size := range []int{1, 7, 100, len(journalOutput)} {
		var out bytes.Buffer
		w := &logWriter{out: &out, loc: time.UTC}
		for s := journalOutput; s != ""; {
			n := min(size, len(s))
			if _, err := w.Write([]byte(s[:n])); err != nil {
				t.Fatal(err)
			}
			s = s[n:]
		}
		if out.String() != journalFormatted || w.n != 7 {
			t.Errorf("chunks of %d: %d entries, output:\n%s", size, w.n, out.String())
		}
	}
}

func TestJournalField(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want string
		ok   bool
	}{
		{`"plain"`, "plain", true},
		{`[104,105]`, "hi", true},
		{`[]`, "", true},
		{`null`, "", false},
		{``, "", false},
		{`["a",[98]]`, "a\nb", true},
		{`[300]`, "", false},
		{`{"x":1}`, "", false},
	} {
		got, ok := journalField([]byte(tt.raw))
		if got != tt.want || ok != tt.ok {
			t.Errorf("journalField(%s) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.ok)
		}
	}
}

// fakeJournalctl puts a journalctl script on PATH.
func fakeJournalctl(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "journalctl"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestJournalctl(t *testing.T) {
	for _, tt := range []struct {
		name, script string
		out          string
		err          error  // errors.Is
		errText      string // or the error's text
	}{
		{"copies stdout", `echo "$@"; echo '{"MESSAGE":"x"}'`, "-u app@*.service -o json\n{\"MESSAGE\":\"x\"}\n", nil, ""},
		{"not in the journal groups, following", `echo '{}'
echo "Hint: You are currently not seeing messages from other users and the system." >&2
exec sleep 60`, "", ErrJournalDenied, ""},
		{"no journal file readable", `echo "No journal files were opened due to insufficient permissions." >&2; exit 1`, "", ErrJournalDenied, ""},
		{"fails", `echo "Failed to add filter for units: No data available" >&2; echo more >&2; exit 1`, "", nil,
			"journalctl: Failed to add filter for units: No data available"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fakeJournalctl(t, tt.script)
			var out bytes.Buffer
			start := time.Now()
			err := Journalctl(context.Background(), []string{"-u", "app@*.service", "-o", "json"}, &out)
			switch {
			case tt.err != nil && !errors.Is(err, tt.err),
				tt.err == nil && tt.errText == "" && err != nil,
				tt.errText != "" && (err == nil || err.Error() != tt.errText):
				t.Errorf("error %v, want %v %q", err, tt.err, tt.errText)
			}
			if tt.out != "" && out.String() != tt.out {
				t.Errorf("stdout %q, want %q", out.String(), tt.out)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestJournalctlCancel: cancelling ctx stops a following journalctl.
func TestJournalctlCancel(t *testing.T) {
	fakeJournalctl(t, `echo '{"MESSAGE":"x"}'; exec sleep 60`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Journalctl(ctx, []string{"-f"}, &bytes.Buffer{})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("error %v after %v; want an error soon after ctx is done", err, time.Since(start))
	}
}
