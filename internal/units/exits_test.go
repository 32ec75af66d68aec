package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseExit(t *testing.T) {
	for _, tc := range []struct {
		line                 string
		result, code, status string
		ok                   bool
	}{
		{"success exited 0", "success", "exited", "0", true},
		{"exit-code exited 3\n", "exit-code", "exited", "3", true},
		{"exit-code exited 255", "exit-code", "exited", "255", true},
		{"oom-kill killed KILL", "oom-kill", "killed", "KILL", true},
		{"watchdog dumped ABRT", "watchdog", "dumped", "ABRT", true},
		{"signal killed RTMIN+3", "signal", "killed", "RTMIN+3", true},
		{"resources  ", "resources", "", "", true}, // no main process: EXIT_CODE and EXIT_STATUS unset
		{"start-limit-hit  \n", "start-limit-hit", "", "", true},

		{"", "", "", "", false},
		{"\n", "", "", "", false},
		{"  ", "", "", "", false},
		{"success exited", "", "", "", false},
		{"success exited 0 extra", "", "", "", false},
		{"success  exited 0", "", "", "", false},
		{"success exited 256", "", "", "", false},
		{"success exited -1", "", "", "", false},
		{"success exited 07", "", "", "", false},
		{"success exited KILL", "", "", "", false},
		{"signal killed 9", "", "", "", false},
		{"signal killed SIGKILL ", "", "", "", false},
		{"signal killed kill", "", "", "", false},
		{"signal stopped KILL", "", "", "", false},
		{"resources  3", "", "", "", false},
		{"Success exited 0", "", "", "", false},
		{"exit_code exited 0", "", "", "", false},
		{"success exited 0\n\n", "", "", "", false},
		{"success exited 0\r", "", "", "", false},
		{"success\texited 0", "", "", "", false},
	} {
		r, c, s, ok := ParseExit(tc.line)
		if r != tc.result || c != tc.code || s != tc.status || ok != tc.ok {
			t.Errorf("ParseExit(%q) = %q %q %q %v, want %q %q %q %v", tc.line, r, c, s, ok, tc.result, tc.code, tc.status, tc.ok)
		}
	}
}

// TestExitRecord runs the shell of ExecStopPost= as systemd would (with
// "$$" and %n expanded), with corral hint replaced: it writes a record
// ParseExit reads, then runs the case; without ExitsDir it says nothing,
// still runs the case, and succeeds.
func TestExitRecord(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("no sh")
	}
	dir := filepath.Join(t.TempDir(), "exits")
	p := &Pool{Sandbox: Sandbox{WriteExecuteMemory: true}}
	line := strings.NewReplacer("$$", "$", "%n", "app@3.service", ExitsDir, dir, "exec "+HintCommand, "echo hint").Replace(hintLine(p))
	script, ok := strings.CutPrefix(line, "/bin/sh -c '")
	if !ok || !strings.HasSuffix(script, "'") {
		t.Fatalf("ExecStopPost= is not a /bin/sh -c '…' line: %s", line)
	}
	script = strings.TrimSuffix(script, "'")
	run := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v", script, err)
		}
		return string(out)
	}

	// No ExitsDir (corrald not running).
	if out := run("SERVICE_RESULT=signal", "EXIT_CODE=killed", "EXIT_STATUS=SYS"); out != "hint\n" {
		t.Errorf("without %s the shell printed %q, want the hint alone", dir, out)
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string // the record
		hint bool
	}{
		{[]string{"SERVICE_RESULT=exit-code", "EXIT_CODE=exited", "EXIT_STATUS=203"}, "exit-code exited 203", true},
		{[]string{"SERVICE_RESULT=oom-kill", "EXIT_CODE=killed", "EXIT_STATUS=KILL"}, "oom-kill killed KILL", true},
		{[]string{"SERVICE_RESULT=signal", "EXIT_CODE=killed", "EXIT_STATUS=KILL"}, "signal killed KILL", false},
		{[]string{"SERVICE_RESULT=resources"}, "resources  ", false},
	} {
		out := run(tc.env...)
		if (out == "hint\n") != tc.hint || out != "" && out != "hint\n" {
			t.Errorf("%v: the shell printed %q, want the hint %v", tc.env, out, tc.hint)
		}
		b, err := os.ReadFile(filepath.Join(dir, "app@3.service"))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want+"\n" {
			t.Errorf("%v: record %q, want %q", tc.env, b, tc.want+"\n")
		}
		if _, _, _, ok := ParseExit(string(b)); !ok {
			t.Errorf("ParseExit(%q) is not ok", b)
		}
	}
}
