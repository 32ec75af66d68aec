package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-pool/corral/api"
)

func TestDeploy(t *testing.T) {
	wd, _ := os.Getwd()
	for _, tt := range []struct {
		args  []string
		errs  map[string]error
		code  int
		want  []string // in stdout, or in the error line
		calls string
	}{
		{[]string{"deploy", "app", "/srv/app/releases/3"}, nil, ExitOK, []string{
			"app: release link on /srv/app/releases/3\n", "app@1 restarting on /srv/app/releases/3 (0 of 2 ready)\n", "app@1 ready in 42ms (1 of 2)\n",
			"app@1 is the canary: watched alone for 10s\n", "app: removed old release /srv/app/releases/0 (beyond keep_releases)\n",
			"app: old release /opt/old is not beside the current release /srv/app/releases/3 (in /srv/app/releases): not removed; remove it by hand if it is one\n",
			"app: 2 instance(s) on /srv/app/releases/3 in "}, "Deploy app /srv/app/releases/3"},
		{[]string{"deploy", "app", "releases/3"}, nil, ExitOK, []string{"on " + filepath.Join(wd, "releases/3")}, "Deploy app " + filepath.Join(wd, "releases/3")},
		{[]string{"deploy", "app", "/srv/app/releases/bad"}, nil, ExitInvalid, []string{
			"corral: deploy app: deploy rolled back: app@2: did not become ready: exited with status 1; the pool runs /srv/app/releases/2 again; log: journalctl -u app@2.service"}, "Deploy app /srv/app/releases/bad"},
		{[]string{"rollback", "app"}, nil, ExitOK, []string{"app: 2 instance(s) on /srv/app/releases/1"}, "Rollback app"},
		{[]string{"deploy", "app", "/srv/x"}, map[string]error{"Deploy": api.ErrNoRelease}, ExitInvalid, []string{"corral: deploy app: no release"}, "Deploy app /srv/x"},
		{[]string{"deploy", "app", "/srv/x"}, map[string]error{"Deploy": api.ErrBusy}, ExitInvalid, []string{"corral: deploy app: busy"}, "Deploy app /srv/x"},
		{[]string{"rollback", "app"}, map[string]error{"Rollback": api.ErrDenied}, ExitDenied, []string{"permission denied"}, "Rollback app"},
		{[]string{"deploy", "nope", "/srv/x"}, nil, ExitInvalid, []string{`corral: no pool "nope"`}, "Deploy nope /srv/x"},
		{[]string{"deploy", "app"}, nil, ExitUsage, []string{"deploy: give a pool and a release directory; usage: corral deploy POOL DIR [--json]"}, ""},
		{[]string{"deploy", "app", ""}, nil, ExitUsage, []string{"give a pool and a release directory"}, ""},
		{[]string{"deploy", "app@1", "/srv/x"}, nil, ExitUsage, []string{`deploy: bad pool name "app@1"`}, ""},
		{[]string{"rollback"}, nil, ExitUsage, []string{"rollback: give one pool"}, ""},
		{[]string{"rollback", "app", "/srv/x"}, nil, ExitUsage, []string{"rollback: give one pool; usage: corral rollback POOL [--json]"}, ""},
		{[]string{"deploy", "app", "/srv/x", "/srv/y"}, nil, ExitUsage, []string{"give a pool and a release directory"}, ""},
		{[]string{"deploy", "app", "/srv/x", "--now"}, nil, ExitUsage, []string{`deploy: unknown option "--now"`}, ""},
		// Relative directories are the caller's: resolved and cleaned here.
		{[]string{"deploy", "app", "./releases/../releases/4"}, nil, ExitOK, []string{"app: 2 instance(s) on " + filepath.Join(wd, "releases/4")}, "Deploy app " + filepath.Join(wd, "releases/4")},
		{[]string{"deploy", "app", "../4"}, nil, ExitOK, nil, "Deploy app " + filepath.Join(filepath.Dir(wd), "4")},
		{[]string{"rollback", "app"}, map[string]error{"Rollback": fmt.Errorf("%w: corral remembers no release of app before /srv/app/releases/2 to roll back to", api.ErrNoRelease)}, ExitInvalid,
			[]string{"corral: rollback app: no release: corral remembers no release of app before /srv/app/releases/2"}, "Rollback app"},
		{[]string{"rollback", "app"}, map[string]error{"Rollback": api.ErrBusy}, ExitInvalid, []string{"corral: rollback app: busy"}, "Rollback app"},
		{[]string{"deploy", "app", "/srv/x"}, map[string]error{"Deploy": api.ErrDenied}, ExitDenied,
			[]string{"corral: permission denied: run 'sudo corral deploy app /srv/x' or join the corral group"}, "Deploy app /srv/x"},
		{[]string{"deploy", "app", "/srv/x"}, map[string]error{"Deploy": api.ErrNotRunning}, ExitNotRunning, []string{"corral: corrald is not running"}, "Deploy app /srv/x"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFake()
			f.errs = tt.errs
			env, out, _ := testEnv(f, nil)
			code, e := runEnv(t, context.Background(), env, tt.args...)
			got := e
			if code == ExitOK {
				got = out.String()
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s", code, tt.code, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("got %q\nwant %q in it", got, w)
				}
			}
			if call := strings.Join(f.calls, "|"); call != tt.calls {
				t.Errorf("calls %q, want %q", call, tt.calls)
			}
		})
	}
}

// TestDeployJSON: one report with its steps, for a rollback too.
func TestDeployJSON(t *testing.T) {
	f := newFake()
	env, out, _ := testEnv(f, nil)
	code, e := runEnv(t, context.Background(), env, "deploy", "app", "/srv/app/releases/bad", "--json")
	if code != ExitInvalid {
		t.Errorf("exit %d: %s", code, e)
	}
	var rep deployJSON
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.OK || !rep.RolledBack || rep.Instance != "app@2" || rep.From != "/srv/app/releases/2" || rep.Log != "journalctl -u app@2.service" ||
		len(rep.Steps) != 7 || rep.Steps[5].Phase != "rolling back" || !strings.Contains(rep.Error, "rolled back") {
		t.Errorf("report %+v", rep)
	}
	if strings.Contains(out.String(), "restarting on") {
		t.Errorf("--json printed steps as text:\n%s", out)
	}
}

// TestDeployRolledBackText: a deploy rolled back shows the failure and the
// way back as it goes, then exits 1 naming the instance, the reason and
// its log; a failure of the whole pool names the pool.
func TestDeployRolledBackText(t *testing.T) {
	for _, c := range []struct {
		dir  string
		want []string // stdout, in order
		err  string
	}{
		{"/srv/app/releases/bad", []string{
			"app@2 restarting on /srv/app/releases/bad (1 of 2 ready)\n",
			"app@2 failed: did not become ready: exited with status 1; rolling back to /srv/app/releases/2\n",
			"app: back on /srv/app/releases/2\n"},
			"corral: deploy app: deploy rolled back: app@2: did not become ready: exited with status 1; the pool runs /srv/app/releases/2 again; log: journalctl -u app@2.service"},
		{"/srv/app/releases/badpool", []string{
			"app failed: context canceled; rolling back to /srv/app/releases/2\n",
			"app: back on /srv/app/releases/2\n"},
			"corral: deploy app: deploy rolled back: app: context canceled"},
	} {
		f := newFake()
		env, out, _ := testEnv(f, nil)
		code, e := runEnv(t, context.Background(), env, "deploy", "app", c.dir)
		if code != ExitInvalid || !strings.HasPrefix(e, c.err) {
			t.Errorf("deploy %s: exit %d, %q; want exit %d, %q", c.dir, code, e, ExitInvalid, c.err)
		}
		rest := out.String()
		for _, w := range c.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("deploy %s: stdout lacks %q after what came before:\n%s", c.dir, w, out)
				break
			}
			rest = rest[i+len(w):]
		}
		if strings.Contains(out.String(), "instance(s) on") {
			t.Errorf("deploy %s: a rolled back deploy printed the line of a good one:\n%s", c.dir, out)
		}
	}
}

// TestDeployJSONRefused: a deploy corrald refuses still prints one JSON
// report, saying why, and exits 1.
func TestDeployJSONRefused(t *testing.T) {
	f := newFake()
	f.errs = map[string]error{"Deploy": fmt.Errorf("%w: a reload or deploy of app is under way: wait for it to end", api.ErrBusy)}
	env, out, _ := testEnv(f, nil)
	code, e := runEnv(t, context.Background(), env, "deploy", "app", "/srv/app/releases/3", "--json")
	if code != ExitInvalid || !strings.Contains(e, "a reload or deploy of app is under way") {
		t.Errorf("exit %d, %q", code, e)
	}
	var rep deployJSON
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.OK || rep.RolledBack || rep.Pool != "app" || !strings.Contains(rep.Error, "under way") || rep.Steps == nil || len(rep.Steps) != 0 {
		t.Errorf("report %+v", rep)
	}
}

// TestReleasesLine: status says which release the instances run, each
// release with its instances while they differ.
func TestReleasesLine(t *testing.T) {
	in := func(i uint32, r string) api.InstanceInfo { return api.InstanceInfo{Pool: "shop", Index: i, Release: r} }
	for _, c := range []struct {
		ins  []api.InstanceInfo
		want string
	}{
		{[]api.InstanceInfo{in(1, ""), in(2, "")}, ""},
		{[]api.InstanceInfo{in(1, "/r/42"), in(2, "/r/42")}, "/r/42 (2 instance(s))"},
		{[]api.InstanceInfo{in(1, "/r/42"), in(2, "/r/41"), in(3, "/r/41"), in(4, "")}, "/r/42 (shop@1); /r/41 (shop@2, shop@3)"},
	} {
		if got := releasesLine("shop", c.ins); got != c.want {
			t.Errorf("releasesLine = %q, want %q", got, c.want)
		}
	}
}
