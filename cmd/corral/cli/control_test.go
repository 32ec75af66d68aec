package cli

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/corral-pool/corral/api"
)

const deniedScale = "corral: permission denied: run 'sudo corral scale app 4' or join the corral group (sudo usermod -aG corral $USER, then log in again)"

func TestScale(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		errs    map[string]error
		code    int
		out     string // stdout, exactly
		err     string // in the error line
		calls   string // the API calls, if set
		stopped bool   // app is stopped
	}{
		{args: []string{"app", "4"}, out: "app: 4 instances (was 2)\n", calls: "ListPools|Scale app 4"},
		{args: []string{"app", "+3"}, out: "app: 5 instances (was 2)\n"},
		{args: []string{"app", "-1"}, out: "app: 1 instance (was 2)\n"},
		{args: []string{"app", "2"}, out: "app: 2 instances (unchanged)\n"},
		{args: []string{"app", "auto"}, out: "app: 8 instances (auto, one per CPU; was 2)\n"},
		// A stopped pool takes the count for when it starts.
		{args: []string{"app", "4"}, stopped: true, out: "app: 4 instances (was 2); the pool is stopped, so none runs: 'corral start app' starts them\n"},
		{args: []string{"app", "2"}, stopped: true, out: "app: 2 instances (unchanged); the pool is stopped, so none runs: 'corral start app' starts them\n"},
		{args: []string{"app", "-2"}, code: ExitInvalid, err: "corral: scale app -2: bad scale: app would have no instances; a pool runs 1 to 1024 instances: give N, +N, -N or auto"},
		// Bad specs are usage errors, found before asking corrald.
		{args: []string{"app", "0"}, code: ExitUsage, err: `scale: bad count "0": give N (1 to 1024), +N or -N to add or remove N, or auto for one per CPU; usage: corral scale POOL N|+N|-N|auto`, calls: "-"},
		{args: []string{"app", "1025"}, code: ExitUsage, err: `bad count "1025"`, calls: "-"},
		{args: []string{"app", "+-1"}, code: ExitUsage, err: `bad count "+-1"`, calls: "-"},
		{args: []string{"app", "04"}, code: ExitUsage, err: `bad count "04"`, calls: "-"},
		{args: []string{"app", "four"}, code: ExitUsage, err: `bad count "four"`, calls: "-"},
		{args: []string{"app"}, code: ExitUsage, err: "scale: give a pool and a count; usage: corral scale POOL N|+N|-N|auto", calls: "-"},
		{args: []string{"app", "4", "5"}, code: ExitUsage, err: "give a pool and a count", calls: "-"},
		{args: []string{"app", "--now", "4"}, code: ExitUsage, err: `scale: unknown option "--now"; usage: corral scale POOL N|+N|-N|auto`, calls: "-"},
		{args: []string{"@pp", "4"}, code: ExitUsage, err: `bad pool name "@pp"`, calls: "-"},
		// What corrald refuses.
		{args: []string{"nope", "4"}, code: ExitInvalid, err: `corral: no pool "nope": 'corral list' shows the pools; pool files live in /etc/corral/pools.d`, calls: "ListPools"},
		{args: []string{"app", "4"}, errs: map[string]error{"Scale": api.ErrDenied}, code: ExitDenied, err: deniedScale},
		{args: []string{"app", "4"}, errs: map[string]error{"ListPools": api.ErrNotRunning}, code: ExitNotRunning, err: "corral: corrald is not running: sudo systemctl start corral.service"},
		{args: []string{"app", "4"}, errs: map[string]error{"Scale": os.ErrDeadlineExceeded}, code: ExitInvalid, err: "corral: scale app 4: i/o timeout"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFake()
			if tt.errs != nil {
				f.errs = tt.errs
			}
			if tt.stopped {
				f.pools[0].State, f.pools[0].Running = "stopped", 0
			}
			env, out, _ := testEnv(f, nil)
			code, e := runEnv(t, context.Background(), env, append([]string{"scale"}, tt.args...)...)
			if code != tt.code || !strings.Contains(e, tt.err) || tt.out != "" && out.String() != tt.out {
				t.Errorf("exit %d, stdout %q, error %q\nwant exit %d, stdout %q, error %q", code, out, e, tt.code, tt.out, tt.err)
			}
			if tt.err == deniedScale && e != deniedScale {
				t.Errorf("denied: got %q, want exactly %q", e, deniedScale)
			}
			calls := strings.Join(f.calls, "|")
			if calls == "" {
				calls = "-"
			}
			if tt.calls != "" && calls != tt.calls {
				t.Errorf("calls %q, want %q", calls, tt.calls)
			}
		})
	}
}

func TestStartStopRestart(t *testing.T) {
	for _, tt := range []struct {
		args []string
		errs map[string]error
		code int
		want string // stdout or the error line
		call string // the API call, if any
	}{
		{[]string{"start", "app"}, nil, ExitOK, "started app\n", "Start app"},
		{[]string{"start", "app@2"}, nil, ExitOK, "started app@2\n", "Start app@2"},
		{[]string{"stop", "app@1"}, nil, ExitOK, "stopped app@1; it stays stopped until 'corral start app@1'\n", "Stop app@1"},
		{[]string{"stop", "web"}, nil, ExitOK, "stopped web; it stays stopped until 'corral start web'\n", "Stop web"},
		{[]string{"restart", "my_app.v2-x"}, nil, ExitInvalid, `corral: no pool "my_app.v2-x"`, "Restart my_app.v2-x"},
		{[]string{"restart", "app"}, nil, ExitOK, "restarted app\n", "Restart app"},
		{[]string{"restart", "app@1024"}, nil, ExitInvalid,
			"corral: restart app@1024: no such instance: 'corral status app' lists its instances, 'corral scale app N' sets how many run", "Restart app@1024"},
		{[]string{"restart", "app"}, map[string]error{"Restart": api.ErrDenied}, ExitDenied,
			"corral: permission denied: run 'sudo corral restart app' or join the corral group", "Restart app"},
		{[]string{"stop", "app"}, map[string]error{"Stop": api.ErrNotRunning}, ExitNotRunning, "corral: corrald is not running", "Stop app"},
		{[]string{"start", "app"}, map[string]error{"Start": os.ErrPermission}, ExitInvalid, "corral: start app: permission denied", "Start app"},
		// Bad targets: usage errors, corrald is not asked.
		{[]string{"start", "app@0"}, nil, ExitUsage, `start: bad instance in "app@0": give POOL@I with I a number from 1 to 1024, e.g. app@1; usage: corral start POOL[@I]`, ""},
		{[]string{"stop", "app@01"}, nil, ExitUsage, `bad instance in "app@01"`, ""},
		{[]string{"stop", "app@1025"}, nil, ExitUsage, `bad instance in "app@1025"`, ""},
		{[]string{"stop", "app@"}, nil, ExitUsage, `bad instance in "app@"`, ""},
		{[]string{"stop", "app@1@2"}, nil, ExitUsage, `bad instance in "app@1@2"`, ""},
		{[]string{"restart", "@1"}, nil, ExitUsage, `bad pool name ""`, ""},
		{[]string{"restart", ".app"}, nil, ExitUsage, `bad pool name ".app"`, ""},
		{[]string{"restart"}, nil, ExitUsage, "restart: give one pool or instance; usage: corral restart POOL[@I]", ""},
		{[]string{"restart", "a", "b"}, nil, ExitUsage, "give one pool or instance", ""},
		{[]string{"restart", "-f", "app"}, nil, ExitUsage, `restart: unknown option "-f"; usage: corral restart POOL[@I]`, ""},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFake()
			if tt.errs != nil {
				f.errs = tt.errs
			}
			env, out, _ := testEnv(f, nil)
			code, e := runEnv(t, context.Background(), env, tt.args...)
			got := e
			if code == ExitOK {
				got = out.String()
			}
			if code != tt.code || !strings.Contains(got, tt.want) || code == ExitOK && got != tt.want {
				t.Errorf("exit %d, got %q\nwant exit %d, %q", code, got, tt.code, tt.want)
			}
			if call := strings.Join(f.calls, "|"); call != tt.call {
				t.Errorf("calls %q, want %q", call, tt.call)
			}
		})
	}
}

func TestShellJoin(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "app", "+2"}, "scale app +2"},
		{[]string{"logs", "a b"}, "logs 'a b'"},
		{[]string{"x", "it's", ""}, `x 'it'\''s' ''`},
	} {
		if got := shellJoin(tt.args); got != tt.want {
			t.Errorf("shellJoin(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
