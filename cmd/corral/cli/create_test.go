package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// createEnv is a test Env whose pool directory is a new temporary one.
func createEnv(t *testing.T, f *fakeAPI) (*Env, *strings.Builder, string) {
	t.Helper()
	env, out, _ := testEnv(f, nil)
	env.PoolDir = t.TempDir()
	var sb strings.Builder
	env.Stdout = &sb
	_ = out
	return env, &sb, env.PoolDir
}

// TestCreate: corral start NAME … -- COMMAND writes a valid pool file that
// says what the command line said, applies it and starts the pool.
func TestCreate(t *testing.T) {
	f := newFake()
	f.instances["shop"] = nil
	env, out, dir := createEnv(t, f)
	cwd, _ := os.Getwd()
	code, e := runEnv(t, context.Background(), env, "start", "shop", "--listen", "127.0.0.1:3000", "-l", "[::1]:3000",
		"-i", "max", "-e", "NODE_ENV=production", "--env", `GREETING=say "hi"`, "--", "true", "server.js", "--port=3000")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, e)
	}
	path := filepath.Join(dir, "shop.toml")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := units.Parse(path, "shop", src)
	if err != nil {
		t.Fatalf("the file made is invalid: %v\n%s", err, src)
	}
	if !filepath.IsAbs(p.Exec[0]) || filepath.Base(p.Exec[0]) != "true" || strings.Join(p.Exec[1:], " ") != "server.js --port=3000" {
		t.Errorf("exec %q", p.Exec)
	}
	if len(p.Listen) != 2 || p.Listen[1].Address != "[::1]:3000" || p.Instances != 0 || p.WorkingDirectory != cwd ||
		p.Environment["NODE_ENV"] != "production" || p.Environment["GREETING"] != `say "hi"` {
		t.Errorf("pool %+v\n%s", p, src)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v %v", fi.Mode(), err)
	}
	if got := strings.Join(f.calls, "|"); got != "Apply|Start shop" {
		t.Errorf("calls %s", got)
	}
	for _, want := range []string{"shop: created " + path, "shop: started 8 instance(s) on 127.0.0.1:3000 [::1]:3000", "'corral delete shop' removes the pool"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// Again: refused, the file as it was.
	f.calls = nil
	code, e = runEnv(t, context.Background(), env, "start", "shop", "--listen", "127.0.0.1:4000", "--", "/bin/true")
	if again, _ := os.ReadFile(path); code != ExitInvalid || !strings.Contains(e, "shop.toml exists: 'corral start shop' starts that pool; 'corral delete shop' first") || string(again) != string(src) || len(f.calls) != 0 {
		t.Errorf("exit %d %q, calls %v; file now:\n%s", code, e, f.calls, again)
	}
}

// TestCreateRefuses: a bad command line, a file that would be invalid, or
// an apply that fails leave no file behind.
func TestCreateRefuses(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		errs  map[string]error
		code  int
		err   string
		calls string
	}{
		{args: []string{"shop", "--", "/bin/true"}, code: ExitUsage, err: "give --listen ADDR, the address systemd listens on for shop"},
		{args: []string{"shop", "--listen", ":3000"}, code: ExitUsage, err: "give the command after the pool's name"},
		{args: []string{"sh@p", "--listen", ":3000", "--", "/bin/true"}, code: ExitUsage, err: `bad pool name`},
		{args: []string{"shop", "--listen", "localhost:3000", "--", "/bin/true"}, code: ExitInvalid, err: "start shop: nothing was made: listen[0] = \"localhost:3000\": \"localhost\" is not an IP address"},
		{args: []string{"shop", "--listen", ":3000", "-i", "many", "--", "/bin/true"}, code: ExitInvalid, err: `instances must be "auto"`},
		{args: []string{"shop", "--listen", ":3000", "-e", "NOEQUALS", "--", "/bin/true"}, code: ExitUsage, err: `--env "NOEQUALS": give NAME=VALUE`},
		{args: []string{"shop", "--listen", ":3000", "-e", "LISTEN_FDS=3", "--", "/bin/true"}, code: ExitInvalid, err: "LISTEN_FDS is set by corral or systemd itself"},
		{args: []string{"shop", "--listen", ":3000", "--", "no-such-program-here"}, code: ExitUsage, err: "no-such-program-here: not found in PATH: give its absolute path"},
		{args: []string{"shop", "--listen", ":3000", "--", "/nonexistent/node"}, code: ExitInvalid, err: "/nonexistent/node does not exist"},
		{args: []string{"shop", "--listen", ":3000", "--", "/bin/true"}, errs: map[string]error{"Apply": fmt.Errorf("%w: web.toml:1:1: bad", api.ErrInvalidConfig)},
			code: ExitInvalid, err: "start shop: nothing was made: corrald applies every pool file, and one is invalid", calls: "Apply"},
		{args: []string{"shop", "--listen", ":3000", "--", "/bin/true"}, errs: map[string]error{"Apply": fmt.Errorf("%w: shop: added: start failed", api.ErrFailed)},
			code: ExitInvalid, err: "start shop: systemd job failed: shop: added: start failed; its file is removed again, but its units stay until 'corral apply' succeeds", calls: "Apply|Stop shop|Apply"},
		{args: []string{"shop", "--listen", ":3000", "--", "/bin/true"}, errs: map[string]error{"Apply": api.ErrDenied}, code: ExitDenied, calls: "Apply"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFake()
			f.errs = tt.errs
			if f.errs == nil {
				f.errs = map[string]error{}
			}
			env, _, dir := createEnv(t, f)
			code, e := runEnv(t, context.Background(), env, append([]string{"start"}, tt.args...)...)
			if code != tt.code || !strings.Contains(e, tt.err) {
				t.Errorf("exit %d, error %q; want %d, %q", code, e, tt.code, tt.err)
			}
			calls := strings.Join(f.calls, "|")
			if tt.calls == "" && calls != "" || tt.calls != "" && calls != tt.calls {
				t.Errorf("calls %q, want %q", calls, tt.calls)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left in the pool directory: %v", left)
			}
		})
	}
}

// TestDelete: delete stops the pool, removes its file and applies; a pool
// that is not there is already deleted.
func TestDelete(t *testing.T) {
	f := newFake()
	env, out, dir := createEnv(t, f)
	path := writePool(t, dir, "app.toml", "exec = [\"/bin/true\"]\nlisten = [\":8080\"]\n")
	if code, e := runEnv(t, context.Background(), env, "delete", "app"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, e)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still there: %v", err)
	}
	if got := strings.Join(f.calls, "|"); got != "ListPools|Stop app|Apply" {
		t.Errorf("calls %s", got)
	}
	if !strings.Contains(out.String(), "app: deleted (instances and sockets stopped, "+path+" removed)") {
		t.Errorf("output:\n%s", out)
	}

	// Twice: corrald no longer knows it, and there is no file.
	f.pools = f.pools[1:]
	f.calls, out = nil, &strings.Builder{}
	env.Stdout = out
	if code, e := runEnv(t, context.Background(), env, "delete", "app"); code != ExitOK || out.String() != "app: no such pool; nothing to delete\n" {
		t.Errorf("delete again: exit %d %q, output %q", code, e, out)
	}

	// A file corrald does not know (invalid, or not applied yet): removed
	// and applied.
	f.calls = nil
	path = writePool(t, dir, "new.toml", "exec = [\n")
	if code, e := runEnv(t, context.Background(), env, "delete", "new"); code != ExitOK || strings.Join(f.calls, "|") != "ListPools|Apply" {
		t.Errorf("delete of a file not applied: exit %d %q, calls %v", code, e, f.calls)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still there: %v", err)
	}

	for _, tt := range []struct {
		args   []string
		errs   map[string]error
		report []api.Change
		code   int
		err    string
	}{
		{args: []string{}, code: ExitUsage, err: "delete: give the pool to delete; usage: corral delete POOL"},
		{args: []string{"a", "b"}, code: ExitUsage, err: "give the pool to delete"},
		{args: []string{"web"}, errs: map[string]error{"Stop": api.ErrDenied}, code: ExitDenied},
		{args: []string{"web"}, errs: map[string]error{"ListPools": api.ErrNotRunning}, code: ExitNotRunning},
		{args: []string{"web"}, errs: map[string]error{"Apply": fmt.Errorf("%w: app.toml:1:1: bad", api.ErrInvalidConfig)}, code: ExitInvalid,
			err: "its units stay loaded until 'corral apply' succeeds"},
		{args: []string{"web"}, report: []api.Change{{Pool: "web", Action: "failed", Detail: "removed: stop web@1.service: timeout"}}, code: ExitInvalid,
			err: "delete web: stopped and"},
	} {
		f := newFake()
		f.errs, f.report = tt.errs, tt.report
		env, _, dir := createEnv(t, f)
		writePool(t, dir, "web.toml", "exec = [\"/bin/true\"]\nlisten = [\":8081\"]\n")
		if code, e := runEnv(t, context.Background(), env, append([]string{"delete"}, tt.args...)...); code != tt.code || !strings.Contains(e, tt.err) {
			t.Errorf("delete %v: exit %d %q, want %d %q", tt.args, code, e, tt.code, tt.err)
		}
	}
}

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:         `"plain"`,
		`say "hi" \ok`:  `"say \"hi\" \\ok"`,
		"tab\tnl\n\x7f": `"tab\u0009nl\u000A\u007F"`,
		"50% $HOME é":   `"50% $HOME é"`,
	} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}
