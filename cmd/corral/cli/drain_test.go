package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-pool/corral/api"
)

func TestDrain(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		drained bool // app was drained before
		errs    map[string]error
		code    int
		want    string // stdout, or the error line
		calls   string
	}{
		{[]string{"drain", "app"}, false, nil, ExitOK, "app: drained; no connection left after 1.2s\n", "Drain app 1m0s"},
		{[]string{"drain", "web", "--timeout", "30s"}, false, nil, ExitOK,
			"web: drained; 3 connection(s) still open after 30s (the timeout): they are served to their end; no balancer has asked since: it may still send connections\n", "Drain web 30s"},
		{[]string{"drain", "app", "--timeout=0s"}, false, nil, ExitOK, "app: drained; no connection left after 1.2s\n", "Drain app 0s"},
		{[]string{"undrain", "app"}, false, nil, ExitOK, "app: back in rotation\n", "Undrain app"},
		{[]string{"drain", "nope"}, false, nil, ExitInvalid, `corral: no pool "nope"`, "Drain nope 1m0s"},
		{[]string{"drain", "app"}, false, map[string]error{"Drain": api.ErrDenied}, ExitDenied, "corral: permission denied: run 'sudo corral drain app'", "Drain app 1m0s"},
		{[]string{"drain", "app", "--timeout", "2h"}, false, nil, ExitUsage, `drain: bad --timeout "2h": give a duration from 0s to 1h0m0s`, ""},
		{[]string{"drain", "app", "--timeout", "-1s"}, false, nil, ExitUsage, `bad --timeout "-1s"`, ""},
		{[]string{"drain", "app@1"}, false, nil, ExitUsage, `drain: bad pool name "app@1"`, ""},
		{[]string{"drain"}, false, nil, ExitUsage, "drain: give one pool; usage: corral drain POOL [--timeout D]", ""},
		{[]string{"undrain", "app@1"}, false, nil, ExitUsage, `undrain: bad pool name "app@1"`, ""},
		// Out of rotation while the whole pool restarts, and back after.
		{[]string{"restart", "app", "--drain"}, false, nil, ExitOK,
			"app: drained; no connection left after 1.2s\nrestarted app\napp: back in rotation\n", "ListPools|Drain app 1m0s|Restart app|Undrain app"},
		{[]string{"reload", "app", "--drain", "--drain-timeout", "5s"}, false, nil, ExitOK, "", "ListPools|Drain app 5s|Reload app|Undrain app"},
		// A pool drained before stays drained.
		{[]string{"restart", "app", "--drain"}, true, nil, ExitOK,
			"app: drained; no connection left after 1.2s\nrestarted app\napp: stays drained, as it was before\n", "ListPools|Drain app 1m0s|Restart app"},
		// A failed restart leaves it drained, and says so.
		{[]string{"restart", "app", "--drain"}, false, map[string]error{"Restart": api.ErrFailed}, ExitInvalid,
			"(app stays drained: 'corral undrain app' when it serves again)", "ListPools|Drain app 1m0s|Restart app"},
		{[]string{"restart", "app@1", "--drain"}, false, nil, ExitUsage, "--drain takes a whole pool out of rotation: give POOL, not app@1", ""},
		{[]string{"restart", "app", "--drain-timeout", "5s"}, false, nil, ExitUsage, "--drain-timeout needs --drain", ""},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFake()
			f.pools[0].Drained = tt.drained
			if tt.errs != nil {
				f.errs = tt.errs
			}
			env, out, _ := testEnv(f, nil)
			code, e := runEnv(t, context.Background(), env, tt.args...)
			got := e
			if code == ExitOK {
				got = out.String()
			}
			if code != tt.code || !strings.Contains(got, tt.want) || code == ExitOK && tt.want != "" && got != tt.want {
				t.Errorf("exit %d, got %q\nwant exit %d, %q", code, got, tt.code, tt.want)
			}
			if tt.code == ExitUsage && tt.calls == "" {
				tt.calls = strings.Join(f.calls, "|") // asked or not, no change
				for _, c := range f.calls {
					if !strings.HasPrefix(c, "ListPools") {
						t.Errorf("a usage error called %s", c)
					}
				}
			}
			if call := strings.Join(f.calls, "|"); call != tt.calls {
				t.Errorf("calls %q, want %q", call, tt.calls)
			}
		})
	}
}

// TestDrainUnwatched: a drain says when no balancer asks for the pool.
func TestDrainUnwatched(t *testing.T) {
	f := newFake()
	f.unwatched = true
	env, out, _ := testEnv(f, nil)
	if code, e := runEnv(t, context.Background(), env, "drain", "app"); code != ExitOK ||
		out.String() != "app: drained; no connection left after 1.2s; no balancer asked corrald's agent in the last minute\n" {
		t.Errorf("exit %d, %q, %q", code, out, e)
	}
}

// TestStatusShowsTheAgentsAnswer: with [agent] in corral.toml, status says
// what HAProxy hears for the pool; without, nothing.
func TestStatusShowsTheAgentsAnswer(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "corral.toml")
	os.WriteFile(conf, []byte("[agent]\nlisten = \":9811\"\n"), 0o644)
	for _, tc := range []struct {
		conf    string
		drained bool
		want    string
	}{
		{conf, false, "  agent      up ready 100% (what HAProxy's agent check hears)\n"},
		{conf, true, "  agent      up drain #drained: corral undrain app (what HAProxy's agent check hears)\n"},
		{"", false, ""},
		{filepath.Join(t.TempDir(), "none.toml"), false, ""},
	} {
		f := newFake()
		f.pools[0].Drained = tc.drained
		env, out, _ := testEnv(f, nil)
		env.DaemonConf = tc.conf
		if code, e := runEnv(t, context.Background(), env, "status", "app"); code != ExitOK {
			t.Fatalf("status: %d %s", code, e)
		}
		if got := out.String(); tc.want != "" && !strings.Contains(got, tc.want) || tc.want == "" && strings.Contains(got, "agent ") {
			t.Errorf("conf %q drained %v: status says\n%s\nwant the line %q", tc.conf, tc.drained, got, tc.want)
		}
		out.Reset()
		runEnv(t, context.Background(), env, "status", "app", "--json")
		if hasAgent := strings.Contains(out.String(), `"agent": "up`); hasAgent != (tc.want != "") {
			t.Errorf("conf %q: status --json has the agent's answer: %v\n%s", tc.conf, hasAgent, out)
		}
	}
}
