package cli

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// tickingClock returns a clock that moves one second at every reading,
// starting at t0.
func tickingClock() func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return t0.Add(time.Duration(n-1) * time.Second)
	}
}

func monitEnv(terminal bool) (*Env, *fakeAPI, *fakeJournal, *strings.Builder) {
	f := newFake()
	f.cpuStep = 500_000_000 // half a CPU second per sample: 50% at one sample a second
	j := &fakeJournal{output: journalOutput}
	env, out, _ := testEnv(f, j)
	env.Now = tickingClock()
	env.IsTerminal = terminal
	var b strings.Builder
	env.Stdout = &b
	_ = out
	return env, f, j, &b
}

func TestMonitPlain(t *testing.T) {
	env, f, j, out := monitEnv(false)
	code, e := runEnv(t, context.Background(), env, "monit", "--interval", "1ms", "--count", "2")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, e)
	}
	got := out.String()
	if strings.Contains(got, "\x1b") {
		t.Errorf("escape codes in plain output:\n%q", got)
	}
	frames := strings.Split(got, "--- ")
	if len(frames) != 3 || frames[0] != "" {
		t.Fatalf("want 2 frames, each after a timestamp line; got:\n%s", got)
	}
	for i, want := range []string{"2026-11-21 20:00:00 ---\n", "2026-11-21 20:00:01 ---\n"} {
		if !strings.HasPrefix(frames[i+1], want) {
			t.Errorf("frame %d starts %q, want %q", i+1, frames[i+1][:min(30, len(frames[i+1]))], want)
		}
	}
	// The first frame has no CPU % yet; the second has 0.5s of CPU over 1s.
	for _, tt := range []struct {
		frame int
		want  string
	}{
		{1, "POOL/INSTANCE  STATE       PID   UPTIME  RESTARTS  CPU%  MEMORY\n"},
		{1, "app@1          running     1201  3h      0         -     12.5 MiB\n"},
		{2, "app@1          running     1201  3h      0         50.0%  12.5 MiB\n"},
		{2, "app@2          running     1202  46s     1         -      -\n"},
		{2, "web            crash-loop  desired 2, running 1, balance shared\n"},
		{2, "latest log lines of every pool:\n"},
		{2, "2026-11-21 20:00:06 app@3 | second\n2026-11-21 20:00:07 app@3 | (message over 4096 bytes: journalctl --all shows it)\n"},
	} {
		if !strings.Contains(frames[tt.frame], tt.want) {
			t.Errorf("frame %d lacks %q:\n%s", tt.frame, tt.want, frames[tt.frame])
		}
	}
	if n := strings.Count(frames[2], " | "); n != 5 {
		t.Errorf("frame 2 has %d log lines, want 5:\n%s", n, frames[2])
	}
	want := []string{"-u", "app@*.service", "-u", "web@*.service", "--no-pager", "-o", "json", "-n", "5"}
	if len(j.args) != 2 || strings.Join(j.args[1], " ") != strings.Join(want, " ") {
		t.Errorf("journalctl runs %q, want twice %q", j.args, want)
	}
	if calls := strings.Join(f.calls, "|"); calls != "ListPools|ListInstances app|ListInstances web|ListPools|ListInstances app|ListInstances web" {
		t.Errorf("calls %s", calls)
	}
}

func TestMonitTerminal(t *testing.T) {
	env, _, j, out := monitEnv(true)
	j.output = ""
	code, e := runEnv(t, context.Background(), env, "monit", "web", "--interval=1ms", "--count=2")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, e)
	}
	got := out.String()
	for _, want := range []string{ansiClearAll + ansiHome + "corral monit  2026-11-21 20:00:00  every 1ms, Ctrl-C to quit" + ansiClearLine + "\n",
		ansiHome + "corral monit  2026-11-21 20:00:01", ansiAlert + "crash-loop" + ansiReset, "latest log lines of web:", "(none)", ansiClearDown} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%q", want, got)
		}
	}
	if strings.Count(got, ansiClearAll) != 1 || strings.Count(got, ansiHome) != 2 || strings.Contains(got, "app@") {
		t.Errorf("want one clear, two redraws, only pool web:\n%q", got)
	}
}

// TestMonitCancel: Ctrl-C ends monit with exit 0.
func TestMonitCancel(t *testing.T) {
	env, _, _, out := monitEnv(false)
	ctx, cancel := context.WithCancel(context.Background())
	env.Journal = func(context.Context, []string, io.Writer) error { cancel(); return nil }
	done := make(chan struct{})
	var code int
	go func() {
		code, _ = runEnv(t, ctx, env, "monit", "--interval", "1h")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("monit did not end on cancel")
	}
	if code != ExitOK {
		t.Errorf("exit %d, want 0; output:\n%s", code, out)
	}
}

func TestMonitErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"monit", "nope", "--count", "1"}, ExitInvalid, `corral: no pool "nope"`},
		{[]string{"monit", "--interval", "0"}, ExitUsage, `monit: bad --interval "0": give a duration such as 1s or 500ms; usage: corral monit [POOL] [--interval D] [--count N]`},
		{[]string{"monit", "--interval", "soon"}, ExitUsage, `bad --interval "soon"`},
		{[]string{"monit", "--count", "0"}, ExitUsage, `monit: bad --count "0"`},
		{[]string{"monit", "a", "b"}, ExitUsage, "monit: give at most one pool"},
		{[]string{"monit", "--watch"}, ExitUsage, `monit: unknown option "--watch"`},
	} {
		env, _, _, _ := monitEnv(false)
		if code, e := runEnv(t, context.Background(), env, tt.args...); code != tt.code || !strings.Contains(e, tt.want) {
			t.Errorf("corral %v: exit %d %q, want exit %d %q", tt.args, code, e, tt.code, tt.want)
		}
	}
	if d, err := parseInterval("2"); d != 2*time.Second || err != nil {
		t.Errorf("parseInterval(2) = %v, %v", d, err)
	}
}
