package pool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/internal/units"
)

func TestExitCause(t *testing.T) {
	limited := &units.Pool{MemoryMax: "100M", Watchdog: 10 * time.Second}
	for _, c := range []struct {
		result, code, status string
		cfg                  *units.Pool
		want                 string
	}{
		{"success", "exited", "0", nil, ""},
		{"", "", "", nil, ""},
		{"exit-code", "exited", "1", nil, "exited with status 1"},
		{"signal", "killed", "SEGV", nil, "killed by SIGSEGV"},
		{"core-dump", "dumped", "ABRT", nil, "dumped core on SIGABRT"},
		{"oom-kill", "killed", "KILL", limited, "out of memory (memory_max = 100M)"},
		{"oom-kill", "killed", "KILL", &units.Pool{}, "out of memory"},
		{"oom-kill", "killed", "KILL", nil, "out of memory"},
		{"watchdog", "dumped", "ABRT", limited, `hung: no answer for 10s (watchdog = "10s")`},
		{"watchdog", "killed", "KILL", nil, "hung: the watchdog fired"},
		{"timeout", "killed", "KILL", nil, "timed out starting or stopping; killed by SIGKILL"},
		{"timeout", "", "", nil, "timed out starting or stopping"},
		{"resources", "", "", nil, "resources"},
	} {
		if got := ExitCause(c.result, c.code, c.status, c.cfg); got != c.want {
			t.Errorf("ExitCause(%q, %q, %q) = %q, want %q", c.result, c.code, c.status, got, c.want)
		}
	}
}

func TestLastExits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("app@1.service", "oom-kill killed KILL\n")
	write("app@2.service", "exit-code exited 3\n")
	write("app@3.service", "exit-code exited 3\n") // up, never restarted: not read
	write("app@5.service", strings.Repeat("x", 10000))
	if err := os.Symlink(filepath.Join(dir, "app@1.service"), filepath.Join(dir, "app@4.service")); err != nil {
		t.Fatal(err)
	}
	o := Observed{Instances: map[int]Unit{
		1: {Name: "app@1.service", ActiveState: "active", NRestarts: 2},
		2: {Name: "app@2.service", ActiveState: "failed", Result: "exit-code"},
		3: {Name: "app@3.service", ActiveState: "active"},
		4: {Name: "app@4.service", ActiveState: "failed"},
		5: {Name: "app@5.service", ActiveState: "failed"},
		6: {Name: "app@6.service", ActiveState: "failed"},
	}}
	lastExits(dir, o, &units.Pool{MemoryMax: "100M"})
	want := map[int]string{1: "out of memory (memory_max = 100M)", 2: "exited with status 3"}
	for i, u := range o.Instances {
		if u.Exit != want[i] {
			t.Errorf("instance %d: Exit %q, want %q", i, u.Exit, want[i])
		}
	}
	lastExits("", o, nil) // reads nothing, changes nothing
	if o.Instances[1].Exit != want[1] {
		t.Error("lastExits with no directory changed Exit")
	}
}

// TestExitNamesTheCause: the reasons of a crash loop that systemd's restarts made, and of
// a failed instance, name the recorded cause, not systemd's bare result.
func TestExitNamesTheCause(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := NewTracker(Policy{LoopFailures: 3, LoopWindow: time.Minute, Base: time.Second, Cap: 10 * time.Second}, nil)
	in := Input{Pool: "app", Desired: Desired{Count: 2}, Now: start, Observed: Observed{
		Target: Unit{Name: "app.target", ActiveState: "active", ActiveEnter: start.Add(-time.Hour)},
		Instances: map[int]Unit{
			1: {Name: "app@1.service", ActiveState: "active", SubState: "running", Result: "success", NRestarts: 0,
				ActiveEnter: start, Exit: "out of memory (memory_max = 100M)"},
			2: {Name: "app@2.service", ActiveState: "failed", Result: "exit-code", InactiveEnter: start,
				ActiveEnter: start.Add(-time.Second), Exit: "exited with status 3"},
		}}}
	Plan(in, tr)
	u := in.Observed.Instances[1]
	u.NRestarts = 3
	in.Observed.Instances[1] = u
	in.Now = start.Add(time.Second)
	out := Plan(in, tr)
	if r := out.Reasons[1]; !strings.Contains(r, "(last: out of memory (memory_max = 100M))") {
		t.Errorf("instance 1 (systemd restarted it 3 times): reason %q, want the recorded cause", r)
	}
	if r := out.Reasons[2]; !strings.Contains(r, "exited with status 3") {
		t.Errorf("instance 2 (failed): reason %q, want the recorded cause", r)
	}
}
