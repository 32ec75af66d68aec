package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/internal/units"
)

func run(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errb, PoolDir: dir, CPUs: 2, Version: "test"}
	err := Run(context.Background(), env, args)
	code = ExitOK
	if err != nil {
		code = ExitInvalid
		var ee *ExitError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		errb.WriteString("corral: " + err.Error() + "\n")
	}
	return out.String(), errb.String(), code
}

func writePool(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	writePool(t, dir, "good.toml", "exec = [\"/bin/true\"]\nlisten = [\"127.0.0.1:7001\"]\n")
	bad := writePool(t, dir, "bad.toml", "exec = [\"true\"]\nlisten = [\"127.0.0.1:7002\"]\ninstances = 0\n")

	out, errs, code := run(t, dir, "validate")
	if code != ExitInvalid {
		t.Errorf("validate with a bad pool: exit %d, want %d", code, ExitInvalid)
	}
	for _, want := range []string{bad + ":1:8: exec[0] = \"true\" must be an absolute path", bad + ":3:13: instances must be from 1 to 1024", "1 of 2 pool file(s) invalid"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(out, "good: ok") || !strings.Contains(out, "auto (2 here)") || !strings.Contains(out, "exposure") {
		t.Errorf("stdout:\n%s", out)
	}

	// A Node pool says that the preload is on, and how to turn it off.
	node := writePool(t, t.TempDir(), "shop.toml", "exec = [\"/usr/bin/node\", \"/srv/shop/index.js\"]\nlisten = [\"127.0.0.1:7005\", \"[::1]:7005\", \"127.0.0.1:7006\"]\n")
	if out, errs, code := run(t, dir, "validate", node); code != ExitOK || !strings.Contains(out, "node       preload on: the app's listen() of 7005 or 7006 is served on systemd's socket") || !strings.Contains(out, "node_preload = false turns it off") {
		t.Errorf("validate shop.toml: exit %d:\n%s%s", code, out, errs)
	}

	// Only the good file: exit 0.
	if _, errs, code := run(t, dir, "validate", filepath.Join(dir, "good.toml")); code != ExitOK {
		t.Errorf("validate good.toml: exit %d: %s", code, errs)
	}

	// A new file that takes the port of an installed pool.
	other := writePool(t, t.TempDir(), "other.toml", "exec = [\"/bin/true\"]\nlisten = [\":7001\"]\n")
	if _, errs, code := run(t, dir, "validate", other); code != ExitInvalid || !strings.Contains(errs, `overlaps 127.0.0.1:7001 of installed pool "good"`) {
		t.Errorf("validate other.toml: exit %d: %s", code, errs)
	}

	// A missing binary is an error for validate.
	miss := writePool(t, t.TempDir(), "miss.toml", "exec = [\"/nonexistent/node\"]\nlisten = [\":7003\"]\n")
	if _, errs, code := run(t, dir, "validate", miss); code != ExitInvalid || !strings.Contains(errs, "/nonexistent/node does not exist") {
		t.Errorf("validate miss.toml: exit %d: %s", code, errs)
	}

	// A file that does not exist.
	if _, errs, code := run(t, dir, "validate", "/nonexistent/x.toml"); code != ExitInvalid || !strings.Contains(errs, "/nonexistent/x.toml: no such file") {
		t.Errorf("validate missing file: exit %d: %s", code, errs)
	}
}

func TestValidateEmptyDir(t *testing.T) {
	out, _, code := run(t, filepath.Join(t.TempDir(), "none"), "validate")
	if code != ExitOK || !strings.Contains(out, "no pool files") {
		t.Errorf("exit %d, out %q", code, out)
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{nil, ExitUsage, "no command given"},
		{[]string{"frob"}, ExitUsage, `unknown command "frob": run 'corral help'`},
		{[]string{"validate", "--strict"}, ExitUsage, `unknown option "--strict"`},
		{[]string{"version", "x"}, ExitUsage, "takes no arguments"},
		{[]string{"help"}, ExitOK, "usage: corral COMMAND"},
		{[]string{"--version"}, ExitOK, "corral test"},
	} {
		out, errs, code := run(t, t.TempDir(), tt.args...)
		if code != tt.code || !strings.Contains(out+errs, tt.want) {
			t.Errorf("corral %v: exit %d, output %q; want exit %d and %q", tt.args, code, out+errs, tt.code, tt.want)
		}
	}
}

func TestHint(t *testing.T) {
	wx := &units.Pool{Path: "/etc/corral/pools.d/app.toml", Sandbox: units.Sandbox{WriteExecuteMemory: false}}
	jit := &units.Pool{Path: "/etc/corral/pools.d/app.toml", Sandbox: units.Sandbox{WriteExecuteMemory: true}}
	for _, tt := range []struct {
		pool                 *units.Pool
		result, code, status string
		want                 string
	}{
		{wx, "success", "exited", "0", ""},
		{wx, "exit-code", "exited", "1", ""},
		{wx, "exit-code", "exited", "203", "exec[0] could not be executed"},
		{wx, "exit-code", "exited", "226", "sandbox.writable_paths must exist"},
		{wx, "core-dump", "dumped", "TRAP", "set it to true in /etc/corral/pools.d/app.toml"},
		{jit, "core-dump", "dumped", "TRAP", ""},
		{nil, "signal", "killed", "SEGV", ""},
		{wx, "signal", "killed", "KILL", ""},
		{&units.Pool{Path: "/etc/corral/pools.d/app.toml", MemoryMax: "100M"}, "oom-kill", "killed", "KILL", "ran out of memory (memory_max = 100M) and the kernel killed it: raise memory_max in /etc/corral/pools.d/app.toml"},
		{nil, "oom-kill", "killed", "KILL", "ran out of memory"},
		{wx, "watchdog", "dumped", "ABRT", "hung: the worker stopped showing it is alive (watchdog)"},
		{&units.Pool{Watchdog: 4 * time.Second}, "watchdog", "dumped", "ABRT", `(watchdog = "4s")`},
	} {
		got := Hint(tt.pool, tt.result, tt.code, tt.status)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("Hint(%v %s %s %s) = %q, want %q", tt.pool != nil, tt.result, tt.code, tt.status, got, tt.want)
		}
	}
}

// TestHintCases: the unit runs `corral hint` (units.HintCases) after every
// result for which Hint has something to say.
func TestHintCases(t *testing.T) {
	var signals []string
	for s := syscall.Signal(1); s < 32; s++ {
		if name := unix.SignalName(s); name != "" {
			signals = append(signals, strings.TrimPrefix(name, "SIG"))
		}
	}
	for _, pool := range []*units.Pool{
		{Path: "/etc/corral/pools.d/app.toml", Sandbox: units.Sandbox{WriteExecuteMemory: false}},
		{Path: "/etc/corral/pools.d/app.toml", Sandbox: units.Sandbox{WriteExecuteMemory: true}},
	} {
		cases := units.HintCases(pool)
		check := func(result, code, status string) {
			if Hint(pool, result, code, status) != "" && !slices.Contains(cases, code+":"+status) && !slices.Contains(units.HintResults(), result) {
				t.Errorf("write_execute_memory = %v: Hint has a line for %s:%s, which units.HintCases leaves out", pool.Sandbox.WriteExecuteMemory, code, status)
			}
		}
		for st := range 256 {
			check("exit-code", "exited", strconv.Itoa(st))
		}
		for _, sig := range signals {
			check("signal", "killed", sig)
			check("core-dump", "dumped", sig)
			check("oom-kill", "killed", sig)
			check("watchdog", "dumped", sig)
		}
	}
}
