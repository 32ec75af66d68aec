package pool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/steer"
	"github.com/corral-pool/corral/internal/units"
)

// releaseFake is systemd whose restart of an instance starts it on the
// release its link points at then: a release named "exits" fails to
// start, "never" fails after 1.1 s (as systemd does at start_timeout with
// an instance that sends no READY=1), "crash3" starts but its instance 3
// crashes soon after, any other starts and stays.
type releaseFake struct {
	*fakeSystemd
	link      string
	pid       uint32
	onRestart func(unit, release string) // if not nil, called first
}

func (f *releaseFake) Observe(context.Context, string) (Observed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observes++
	o := f.obs
	o.Instances = maps.Clone(f.obs.Instances)
	return o, nil
}

func (f *releaseFake) Restart(_ context.Context, unit string) error {
	target, _ := os.Readlink(f.link)
	rel := filepath.Base(target)
	if f.onRestart != nil {
		f.onRestart(unit, rel)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, "restart "+unit+" on "+rel)
	var i int
	fmt.Sscanf(unit, "app@%d.service", &i)
	u := f.obs.Instances[i]
	now := time.Now()
	f.pid++
	u.MainPID, u.InactiveExit, u.ActiveEnter, u.ActiveState, u.Exit = 1000+f.pid, now, now, "active", ""
	if rel == "never" { // no READY=1: systemd stops it at start_timeout
		f.mu.Unlock()
		time.Sleep(1100 * time.Millisecond)
		f.mu.Lock()
		u.ActiveState, u.MainPID, u.Result, u.Exit = "failed", 0, "timeout", ""
		f.obs.Instances[i] = u
		return errors.New("job for " + unit + " failed")
	}
	if rel == "exits" {
		u.ActiveState, u.MainPID, u.Result, u.Exit = "failed", 0, "exit-code", "exited with status 1"
		f.obs.Instances[i] = u
		return errors.New("job for " + unit + " failed: see 'journalctl -u " + unit + "'")
	}
	f.obs.Instances[i] = u
	if rel == "crash3" && i == 3 {
		go func() {
			time.Sleep(30 * time.Millisecond)
			f.mu.Lock()
			defer f.mu.Unlock()
			u := f.obs.Instances[i]
			u.ActiveState, u.MainPID, u.Exit = "activating", 0, "exited with status 2"
			f.obs.Instances[i] = u
		}()
	}
	return nil
}

func (f *releaseFake) restarts() []string {
	var out []string
	for _, j := range f.Jobs() {
		if strings.HasPrefix(j, "restart ") {
			out = append(out, strings.TrimPrefix(j, "restart "))
		}
	}
	return out
}

// newDeployTest is a pool app of 3 instances whose exec goes through the
// release link LINK, pointing at DIR/v1, with releases v1, v2, v3, exits,
// never and crash3 beside it.
func newDeployTest(t *testing.T, extra string) (*Deployer, *releaseFake, string, string) {
	t.Helper()
	dir := t.TempDir()
	for _, r := range []string{"v1", "v2", "v3", "exits", "never", "crash3"} {
		os.MkdirAll(filepath.Join(dir, "releases", r), 0o755)
	}
	link := filepath.Join(dir, "current")
	os.Symlink(filepath.Join(dir, "releases", "v1"), link)
	running := func(n string) Unit {
		return Unit{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running", ActiveEnter: time.Now().Add(-time.Hour), InactiveExit: time.Now().Add(-time.Hour), MainPID: 7}
	}
	sd := &releaseFake{fakeSystemd: &fakeSystemd{obs: Observed{
		Target:    running("app.target"),
		Sockets:   map[int]Unit{1: running("app@1.socket"), 2: running("app@2.socket"), 3: running("app@3.socket")},
		Instances: map[int]Unit{1: running("app@1.service"), 2: running("app@2.service"), 3: running("app@3.service")},
	}}, link: link}
	pools := filepath.Join(dir, "pools.d")
	os.MkdirAll(pools, 0o755)
	file := fmt.Sprintf("exec = [%q]\nlisten = [\"127.0.0.1:1\"]\ninstances = 3\nreadiness = \"notify\"\nrelease = %q\ncanary = \"200ms\"\n%s", link+"/bin/app", link, extra)
	os.WriteFile(filepath.Join(pools, "app.toml"), []byte(file), 0o644)
	co := New(Config{PoolDir: pools, Store: Store{Path: filepath.Join(dir, "state.json")}, CPUs: 2,
		Debounce: time.Millisecond, Rand: func() float64 { return 0.5 }}, sd)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go co.Run(ctx)
	c := assemble(co, nil, nil)
	settle(t, c, sd.fakeSystemd, "app", 2)
	d := NewDeployer(co, c.Reloader)
	d.Poll, d.Settle = 10*time.Millisecond, 50*time.Millisecond
	return d, sd, link, filepath.Join(dir, "releases")
}

func linkOn(t *testing.T, link string) string {
	t.Helper()
	dst, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(dst)
}

// TestDeployGood: the link moves, the canary goes first and is held, the
// rest follow, and the release is remembered.
func TestDeployGood(t *testing.T) {
	d, sd, link, rel := newDeployTest(t, "")
	var phases []string
	t0 := time.Now()
	rep, err := d.Deploy(context.Background(), "app", filepath.Join(rel, "v2"), func(st api.DeployStep) {
		phases = append(phases, fmt.Sprintf("%s %d", st.Phase, st.Index))
	})
	if err != nil {
		t.Fatalf("Deploy = %v (%+v)", err, rep)
	}
	if took := time.Since(t0); took < 200*time.Millisecond {
		t.Errorf("the deploy took %v, less than the canary period", took)
	}
	if linkOn(t, link) != "v2" || rep.RolledBack || filepath.Base(rep.From) != "v1" || filepath.Base(rep.To) != "v2" {
		t.Errorf("link on %s, report %+v", linkOn(t, link), rep)
	}
	want := []string{"app@1.service on v2", "app@2.service on v2", "app@3.service on v2"}
	if got := sd.restarts(); !equalStrings(got, want) {
		t.Errorf("restarts %v, want %v", got, want)
	}
	if !strings.Contains(strings.Join(phases, ","), "ready 1,canary 1,restarting 2") {
		t.Errorf("phases %v: the canary is not held before instance 2", phases)
	}
	var rs []ReleaseRecord
	d.co.withPool(context.Background(), "app", func(p *poolState) error { rs = p.desired.Releases; return nil })
	if len(rs) != 2 || filepath.Base(rs[0].Dir) != "v2" || filepath.Base(rs[1].Dir) != "v1" || !rs[1].Since.IsZero() {
		t.Errorf("releases remembered: %+v", rs)
	}
	// Status shows the release each instance runs, once the coordinator
	// has seen their new processes.
	st := NewStatus(d.co, nil, NewAcceptance(d.co))
	waitFor := time.Now().Add(5 * time.Second)
	for {
		ins, err := st.ListInstances(context.Background(), "app")
		var got []string
		for _, in := range ins {
			got = append(got, filepath.Base(in.Release))
		}
		if err == nil && strings.Join(got, " ") == "v2 v2 v2" {
			break
		}
		if time.Now().After(waitFor) {
			t.Fatalf("releases in ListInstances: %v, %v", got, err)
		}
		d.co.Dirty("app")
		time.Sleep(10 * time.Millisecond)
	}
	// corral rollback returns to v1, the link's target before the first
	// deploy.
	rep, err = d.Rollback(context.Background(), "app", nil)
	if err != nil || linkOn(t, link) != "v1" {
		t.Errorf("Rollback after the first deploy = %v, %+v, link on %s", err, rep, linkOn(t, link))
	}
}

// TestDeployRollsBack: a release that fails to start, and one whose
// instance 3 crashes after the canary, are rolled back: the link returns,
// and every instance that started on the bad release restarts on v1.
func TestDeployRollsBack(t *testing.T) {
	for _, c := range []struct {
		bad      string
		instance int
		reason   string
		restarts []string
	}{
		{"exits", 1, "exited with status 1", []string{"app@1.service on exits", "app@1.service on v1"}},
		{"never", 1, "did not become ready: no READY=1 within start_timeout (1s), so systemd stopped it", []string{"app@1.service on never", "app@1.service on v1"}},
		{"crash3", 3, "crashed after it was ready (exited with status 2)", []string{
			"app@1.service on crash3", "app@2.service on crash3", "app@3.service on crash3",
			"app@1.service on v1", "app@2.service on v1", "app@3.service on v1"}},
	} {
		t.Run(c.bad, func(t *testing.T) {
			d, sd, link, rel := newDeployTest(t, "start_timeout = \"1s\"\n")
			rep, err := d.Deploy(context.Background(), "app", filepath.Join(rel, c.bad), nil)
			if !errors.Is(err, api.ErrRolledBack) {
				t.Fatalf("Deploy = %v", err)
			}
			t.Log(err)
			if !rep.RolledBack || rep.Instance != c.instance || !strings.Contains(rep.Reason, c.reason) || rep.Log != fmt.Sprintf("journalctl -u app@%d.service", c.instance) {
				t.Errorf("report %+v", rep)
			}
			if linkOn(t, link) != "v1" {
				t.Errorf("link on %s after the rollback", linkOn(t, link))
			}
			if got := sd.restarts(); !equalStrings(got, c.restarts) {
				t.Errorf("restarts %v, want %v", got, c.restarts)
			}
		})
	}
}

// TestDeployKeepsRefusedOut: an instance probed for health is out of the
// steering's table; one whose answer fails the gate stays out until the
// rollback has restarted it onto the release before, and every instance is
// back in the table when the deploy ends.
func TestDeployKeepsRefusedOut(t *testing.T) {
	d, sd, link, rel := newDeployTest(t, "health = \"GET /health\"\n")
	st := testSteerer(t, &testCorrald{Coordinator: d.co}, nil)
	if st.off != nil {
		t.Fatalf("steering: %v (this test needs root and BPF)", st.off)
	}
	d.rl.steer = st // testSteerer serves the requests that Leave makes
	out := func(i int) int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.leaving["app"][i]
	}
	var probedOut []int
	d.Probe = func(_ context.Context, _ units.Listen, i int, _, _ string) error {
		probedOut = append(probedOut, out(i))
		if linkOn(t, link) == "v2" {
			return errors.New("answered 500 Internal Server Error")
		}
		return nil
	}
	var atRollback int
	sd.onRestart = func(unit, rel string) {
		if unit == "app@1.service" && rel == "v1" {
			atRollback = out(1)
		}
	}
	_, err := d.Deploy(context.Background(), "app", filepath.Join(rel, "v2"), nil)
	if !errors.Is(err, api.ErrRolledBack) || !strings.Contains(err.Error(), "answered 500") {
		t.Fatalf("Deploy = %v", err)
	}
	if fmt.Sprint(probedOut) != "[1]" {
		t.Errorf("holds on the canary while probed: %v, want [1]", probedOut)
	}
	if atRollback != 2 {
		t.Errorf("holds on app@1 as the rollback restarted it: %d, want 2 (the gate's and the restart's)", atRollback)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.leaving["app"]) != 0 {
		t.Errorf("out of the table after the deploy: %v", st.leaving["app"])
	}
}

// TestDeployPrunes: with keep_releases = 2, a deploy that passes removes
// the release that fell beyond them; one that is not beside the current
// release is kept, and the deploy says why; a deploy rolled back removes
// nothing.
func TestDeployPrunes(t *testing.T) {
	d, _, link, rel := newDeployTest(t, "keep_releases = 2\n")
	elsewhere := filepath.Join(filepath.Dir(rel), "elsewhere", "v4")
	os.MkdirAll(elsewhere, 0o755)
	deploy := func(dir string) ([]api.DeployStep, error) {
		var steps []api.DeployStep
		_, err := d.Deploy(context.Background(), "app", dir, func(s api.DeployStep) {
			if s.Phase == "removed" || s.Phase == "kept" {
				steps = append(steps, s)
			}
		})
		return steps, err
	}
	exists := func(r string) bool { _, err := os.Stat(filepath.Join(rel, r)); return err == nil }
	for _, c := range []struct {
		dir   string
		steps string // the removed and kept steps: phase, release
		why   string // in the kept step's Err
		gone  []string
	}{
		{filepath.Join(rel, "v2"), "[]", "", nil},
		{filepath.Join(rel, "exits"), "[]", "", nil}, // rolled back
		{filepath.Join(rel, "v3"), "[removed " + filepath.Join(rel, "v1") + "]", "", []string{"v1"}},
		{elsewhere, "[kept " + filepath.Join(rel, "v2") + "]", "is not beside the current release " + elsewhere, []string{"v1"}},
	} {
		steps, err := deploy(c.dir)
		if filepath.Base(c.dir) == "exits" {
			if !errors.Is(err, api.ErrRolledBack) {
				t.Fatalf("Deploy(exits) = %v", err)
			}
		} else if err != nil {
			t.Fatalf("Deploy(%s) = %v", c.dir, err)
		}
		var got []string
		for _, s := range steps {
			got = append(got, s.Phase+" "+s.Release)
			if s.Phase == "kept" && (c.why == "" || !strings.Contains(s.Err, c.why)) {
				t.Errorf("deploy of %s: kept %s: %s, want %q", filepath.Base(c.dir), s.Release, s.Err, c.why)
			}
		}
		if g := fmt.Sprint(got); g != c.steps {
			t.Errorf("deploy of %s: steps %s, want %s", filepath.Base(c.dir), g, c.steps)
		}
		for _, r := range []string{"v1", "v2", "v3", "exits"} {
			if gone := slices.Contains(c.gone, r); exists(r) == gone {
				t.Errorf("after the deploy of %s: %s exists %v, want %v", filepath.Base(c.dir), r, exists(r), !gone)
			}
		}
	}
	if linkOn(t, link) != "v4" {
		t.Errorf("link on %s", linkOn(t, link))
	}
}

// TestDeployThenRollback: after two good deploys, corral rollback returns
// to the one before, and a deploy refuses what it cannot do.
func TestDeployThenRollback(t *testing.T) {
	d, sd, link, rel := newDeployTest(t, "")
	ctx := context.Background()
	// A release anyone may write is refused.
	os.Mkdir(filepath.Join(rel, "open"), 0o755)
	os.Chmod(filepath.Join(rel, "open"), 0o777)
	for _, r := range []string{"v1", "v2"} {
		if _, err := d.Deploy(ctx, "app", filepath.Join(rel, r), nil); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := d.Rollback(ctx, "app", nil)
	if err != nil || linkOn(t, link) != "v1" || filepath.Base(rep.To) != "v1" {
		t.Fatalf("Rollback = %v, %+v, link on %s", err, rep, linkOn(t, link))
	}
	if n := len(sd.restarts()); n != 9 {
		t.Errorf("%d restarts, want 9: %v", n, sd.restarts())
	}
	for _, c := range []struct {
		pool, dir string
		want      error
	}{
		{"nope", filepath.Join(rel, "v2"), api.ErrNoPool},
		{"app", "relative/v2", api.ErrBadArgument},
		{"app", filepath.Join(rel, "missing"), api.ErrBadArgument},
		{"app", filepath.Join(rel, "open"), api.ErrBadArgument},
	} {
		if _, err := d.Deploy(ctx, c.pool, c.dir, nil); !errors.Is(err, c.want) {
			t.Errorf("Deploy(%s, %s) = %v, want %v", c.pool, c.dir, err, c.want)
		} else {
			t.Log(err)
		}
	}
	if linkOn(t, link) != "v1" {
		t.Errorf("a refused deploy moved the link to %s", linkOn(t, link))
	}
	end, _ := d.rl.begin("app")
	if _, err := d.Deploy(ctx, "app", filepath.Join(rel, "v2"), nil); !errors.Is(err, api.ErrBusy) {
		t.Errorf("Deploy during another = %v", err)
	}
	end()
	// A release rolled back is forgotten: corral rollback after it goes
	// to the release before the good one, not to the broken one.
	if _, err := d.Deploy(ctx, "app", filepath.Join(rel, "v2"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deploy(ctx, "app", filepath.Join(rel, "exits"), nil); !errors.Is(err, api.ErrRolledBack) {
		t.Fatalf("Deploy exits = %v", err)
	}
	if rep, err := d.Rollback(ctx, "app", nil); err != nil || filepath.Base(rep.To) != "v1" {
		t.Errorf("Rollback after a rolled back deploy = %+v, %v", rep, err)
	}
}

// TestDeployNeedsRelease: a pool without release = refuses, saying what
// to set.
func TestDeployNeedsRelease(t *testing.T) {
	sd := runningApp()
	c, cancel := newTestCoordinator(t, sd)
	defer cancel()
	settle(t, c, sd, "app", 2)
	d := NewDeployer(c.Coordinator, c.Reloader)
	_, err := d.Deploy(context.Background(), "app", "/srv/app/v2", nil)
	if !errors.Is(err, api.ErrNoRelease) || !strings.Contains(err.Error(), "release = ") {
		t.Errorf("Deploy = %v", err)
	}
}

// TestReleaseOf: an instance runs the release the link pointed at when
// its process started.
func TestReleaseOf(t *testing.T) {
	t0 := time.Now()
	rs := []ReleaseRecord{{"/r/v3", t0.Add(2 * time.Minute)}, {"/r/v2", t0.Add(time.Minute)}}
	for _, c := range []struct {
		start time.Time
		want  string
	}{
		{t0.Add(3 * time.Minute), "/r/v3"},
		{t0.Add(90 * time.Second), "/r/v2"},
		{t0, ""},
		{time.Time{}, ""},
	} {
		if got := releaseOf(rs, Unit{InactiveExit: c.start}); got != c.want {
			t.Errorf("started at %v: %q, want %q", c.start.Sub(t0), got, c.want)
		}
	}
}

func equalStrings(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestProbeDoor: the health request leaves from the door's port of the
// instance, and only a 2xx passes.
func TestProbeDoor(t *testing.T) {
	status := 200
	var from string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from = r.RemoteAddr
		if r.URL.Path != "/health" {
			status = 404
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	l := units.Listen{Address: strings.TrimPrefix(srv.URL, "http://")}
	ctx := context.Background()
	if err := probeDoor(ctx, l, 500, "GET", "/health"); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(":%d", steer.DoorBase+499); !strings.HasSuffix(from, want) {
		t.Errorf("the probe came from %s, want port %s", from, want)
	}
	status = 500
	if err := probeDoor(ctx, l, 500, "GET", "/health"); err == nil || !strings.Contains(err.Error(), "answered 500") {
		t.Errorf("a 500: %v", err)
	}
	srv.Close()
	if err := probeDoor(ctx, l, 500, "HEAD", "/health"); err == nil || !strings.Contains(err.Error(), "HEAD /health") {
		t.Errorf("nobody listening: %v", err)
	}
}
