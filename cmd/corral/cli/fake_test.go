package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

// t0 is the tests' now.
var t0 = time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)

func usecAt(t time.Time) uint64 { return uint64(t.UnixMicro()) }

// fakeAPI is a api.API with canned pools and instances. errs makes a
// method fail: by method name ("ListPools", "Scale"…).
type fakeAPI struct {
	mu        sync.Mutex
	pools     []api.PoolInfo
	instances map[string][]api.InstanceInfo
	errs      map[string]error
	calls     []string
	cpuStep   uint64 // added to every known CPU counter at each ListInstances
	closed    bool
	report    []api.Change // what Apply reports, if set
	unwatched bool         // Drain: no balancer asks for the pools
}

func newFake() *fakeAPI {
	return &fakeAPI{
		pools: []api.PoolInfo{
			{Name: "app", State: "running", Desired: 2, Running: 2, Balance: "reuseport",
				File: "/etc/corral/pools.d/app.toml", Listen: []string{":8080"}, Steering: "on"},
			{Name: "web", State: "crash-loop", Desired: 2, Running: 1, Balance: "shared",
				File: "/etc/corral/pools.d/web.toml", Listen: []string{"/run/web.sock", "127.0.0.1:8081"}},
		},
		instances: map[string][]api.InstanceInfo{
			"app": {
				{Pool: "app", Index: 1, Unit: "app@1.service", Phase: "running", ActiveState: "active", SubState: "running",
					PID: 1201, SinceUSec: usecAt(t0.Add(-3*time.Hour - 5*time.Minute)), MemoryBytes: 12<<20 + 512<<10, CPUNSec: 1_250_000_000,
					Messages: true},
				{Pool: "app", Index: 2, Unit: "app@2.service", Phase: "running", ActiveState: "active", SubState: "running",
					PID: 1202, SinceUSec: usecAt(t0.Add(-45 * time.Second)), Restarts: 1, MemoryBytes: api.Unknown, CPUNSec: api.Unknown},
			},
			"web": {
				{Pool: "web", Index: 1, Unit: "web@1.service", Phase: "running", ActiveState: "active", SubState: "running",
					PID: 1301, SinceUSec: usecAt(t0.Add(-50 * time.Hour)), MemoryBytes: 2 << 30, CPUNSec: 3723_000_000_000,
					Messages: true},
				{Pool: "web", Index: 2, Unit: "web@2.service", Phase: "crash-loop", ActiveState: "failed", SubState: "failed",
					SinceUSec: usecAt(t0.Add(-time.Minute)), Restarts: 7, MemoryBytes: api.Unknown, CPUNSec: 300_000_000,
					Reason: "exit-code 1; next try in 5m"},
			},
		},
		errs: map[string]error{},
	}
}

func (f *fakeAPI) call(name string, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.Join(append([]string{name}, args...), " "))
	return f.errs[name]
}

func (f *fakeAPI) ListPools(ctx context.Context) ([]api.PoolInfo, error) {
	if err := f.call("ListPools"); err != nil {
		return nil, err
	}
	return append([]api.PoolInfo(nil), f.pools...), nil
}

func (f *fakeAPI) ListInstances(ctx context.Context, name string) ([]api.InstanceInfo, error) {
	if err := f.call("ListInstances", name); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ins, ok := f.instances[name]
	if !ok {
		return nil, api.ErrNoPool
	}
	for i := range ins {
		if ins[i].CPUNSec != api.Unknown {
			ins[i].CPUNSec += f.cpuStep
		}
	}
	return append([]api.InstanceInfo(nil), ins...), nil
}

func (f *fakeAPI) Scale(ctx context.Context, name, spec string) (uint32, error) {
	if err := f.call("Scale", name, spec); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.pools {
		if p.Name != name {
			continue
		}
		n := int(p.Desired)
		switch {
		case spec == "auto":
			n = 8
		case strings.HasPrefix(spec, "+"), strings.HasPrefix(spec, "-"):
			d, _ := strconv.Atoi(spec)
			n += d
		default:
			n, _ = strconv.Atoi(spec)
		}
		if n < 1 {
			return 0, fmt.Errorf("%w: %s would have no instances", api.ErrBadSpec, name)
		}
		f.pools[i].Desired = uint32(n)
		return uint32(n), nil
	}
	return 0, api.ErrNoPool
}

func (f *fakeAPI) target(target string) error {
	name, _, _ := strings.Cut(target, "@")
	if _, ok := f.instances[name]; !ok {
		return api.ErrNoPool
	}
	if _, i, ok := api.ParseInstance(target); ok && i > len(f.instances[name]) {
		return api.ErrNoInstance
	}
	return nil
}

func (f *fakeAPI) Start(ctx context.Context, target string) error {
	if err := f.call("Start", target); err != nil {
		return err
	}
	return f.target(target)
}

func (f *fakeAPI) Stop(ctx context.Context, target string) error {
	if err := f.call("Stop", target); err != nil {
		return err
	}
	return f.target(target)
}

func (f *fakeAPI) Restart(ctx context.Context, target string) error {
	if err := f.call("Restart", target); err != nil {
		return err
	}
	return f.target(target)
}

func (f *fakeAPI) Reload(ctx context.Context, name string, progress func(api.ReloadStep)) error {
	if err := f.call("Reload", name); err != nil {
		return err
	}
	if err := f.target(name); err != nil {
		return err
	}
	progress(api.ReloadStep{Pool: name, Index: 1, Phase: "restarting", Total: 1})
	progress(api.ReloadStep{Pool: name, Index: 1, Phase: "ready", Took: 42 * time.Millisecond, Done: 1, Total: 1})
	return nil
}

// Deploy: a release named "bad" rolls back at instance 2, one named
// "badpool" for the whole pool.
func (f *fakeAPI) Deploy(ctx context.Context, name, dir string, progress func(api.DeployStep)) (api.DeployReport, error) {
	if err := f.call("Deploy", name, dir); err != nil {
		return api.DeployReport{Pool: name}, err
	}
	return f.deploy(name, dir, progress)
}

func (f *fakeAPI) Rollback(ctx context.Context, name string, progress func(api.DeployStep)) (api.DeployReport, error) {
	if err := f.call("Rollback", name); err != nil {
		return api.DeployReport{Pool: name}, err
	}
	return f.deploy(name, "/srv/app/releases/1", progress)
}

func (f *fakeAPI) deploy(name, dir string, progress func(api.DeployStep)) (api.DeployReport, error) {
	if err := f.target(name); err != nil {
		return api.DeployReport{Pool: name}, err
	}
	rep := api.DeployReport{Pool: name, From: "/srv/app/releases/2", To: dir}
	progress(api.DeployStep{Pool: name, Phase: "switched", Release: dir, Total: 2})
	progress(api.DeployStep{Pool: name, Index: 1, Phase: "restarting", Release: dir, Total: 2})
	progress(api.DeployStep{Pool: name, Index: 1, Phase: "ready", Release: dir, Took: 42 * time.Millisecond, Done: 1, Total: 2})
	progress(api.DeployStep{Pool: name, Index: 1, Phase: "canary", Release: dir, Took: 10 * time.Second, Done: 1, Total: 2})
	progress(api.DeployStep{Pool: name, Index: 2, Phase: "restarting", Release: dir, Done: 1, Total: 2})
	if filepath.Base(dir) == "badpool" { // the gate failed for the pool, not one instance
		progress(api.DeployStep{Pool: name, Phase: "rolling back", Release: rep.From, Err: "context canceled"})
		progress(api.DeployStep{Pool: name, Phase: "rolled back", Release: rep.From})
		rep.RolledBack, rep.Reason = true, "context canceled"
		return rep, fmt.Errorf("%w: %s: context canceled; the pool runs %s again (log: journalctl -u %s@1.service)", api.ErrRolledBack, name, rep.From, name)
	}
	if filepath.Base(dir) == "bad" {
		progress(api.DeployStep{Pool: name, Index: 2, Phase: "rolling back", Release: rep.From, Err: "did not become ready: exited with status 1"})
		progress(api.DeployStep{Pool: name, Phase: "rolled back", Release: rep.From})
		rep.RolledBack, rep.Instance, rep.Reason, rep.Log = true, 2, "did not become ready: exited with status 1", "journalctl -u app@2.service"
		return rep, fmt.Errorf("%w: app@2: did not become ready: exited with status 1; the pool runs %s again; log: %s", api.ErrRolledBack, rep.From, rep.Log)
	}
	progress(api.DeployStep{Pool: name, Index: 2, Phase: "ready", Release: dir, Took: 40 * time.Millisecond, Done: 2, Total: 2})
	progress(api.DeployStep{Pool: name, Phase: "removed", Release: "/srv/app/releases/0"})
	progress(api.DeployStep{Pool: name, Phase: "kept", Release: "/opt/old", Err: "old release /opt/old is not beside the current release " + dir + " (in /srv/app/releases): not removed; remove it by hand if it is one"})
	return rep, nil
}

func (f *fakeAPI) Apply(ctx context.Context) ([]api.Change, error) {
	if err := f.call("Apply"); err != nil {
		return nil, err
	}
	if f.report != nil {
		return f.report, nil
	}
	return []api.Change{{Pool: "app", Action: "unchanged"}}, nil
}

// Broadcast answers as the demo does from running instances; the others
// are not delivered.
func (f *fakeAPI) Broadcast(ctx context.Context, name, text string, wait time.Duration) ([]api.MessageResult, error) {
	if err := f.call("Broadcast", name, text, wait.String()); err != nil {
		return nil, err
	}
	if err := f.target(name); err != nil {
		return nil, err
	}
	return f.results(name, 0, text, wait), nil
}

func (f *fakeAPI) Send(ctx context.Context, target, text string, wait time.Duration) ([]api.MessageResult, error) {
	if err := f.call("Send", target, text, wait.String()); err != nil {
		return nil, err
	}
	if err := f.target(target); err != nil {
		return nil, err
	}
	name, i, _ := api.ParseInstance(target)
	return f.results(name, i, text, wait), nil
}

func (f *fakeAPI) results(name string, only int, text string, wait time.Duration) []api.MessageResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.MessageResult
	for _, in := range f.instances[name] {
		if only != 0 && int(in.Index) != only {
			continue
		}
		r := api.MessageResult{Pool: name, Index: int(in.Index), Status: api.Delivered}
		switch {
		case in.Phase != "running":
			r.Status, r.Detail = api.NotDelivered, "it is not running ("+in.Phase+": "+in.Reason+")"
		case wait > 0:
			r.Status, r.Reply = api.Replied, fmt.Sprintf("instance %d got %q", in.Index, text)
		}
		out = append(out, r)
	}
	return out
}

func (f *fakeAPI) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// fakeJournal is an Env.Journal that writes canned journalctl output and
// records the arguments it was run with.
type fakeJournal struct {
	mu     sync.Mutex
	output string
	err    error
	args   [][]string
	// follow, if set, runs after the output with -f: it may block until ctx is done.
	follow func(ctx context.Context) error
}

func (j *fakeJournal) run(ctx context.Context, args []string, stdout io.Writer) error {
	j.mu.Lock()
	j.args = append(j.args, args)
	j.mu.Unlock()
	if _, err := stdout.Write([]byte(j.output)); err != nil {
		return err
	}
	if j.follow != nil {
		for _, a := range args {
			if a == "-f" {
				return j.follow(ctx)
			}
		}
	}
	return j.err
}

// testEnv returns an Env talking to api and journal, with the clock at t0.
func testEnv(corrald api.API, journal *fakeJournal) (*Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errb, PoolDir: "/etc/corral/pools.d", CPUs: 8, Version: "test",
		Connect: func(context.Context) (api.API, error) { return corrald, nil },
		Now:     func() time.Time { return t0 },
	}
	if journal != nil {
		env.Journal = journal.run
	}
	return env, &out, &errb
}

// runEnv runs args in env and returns the exit code main would use and
// the error line it would print.
func runEnv(t *testing.T, ctx context.Context, env *Env, args ...string) (code int, errLine string) {
	t.Helper()
	err := Run(ctx, env, args)
	if err == nil {
		return ExitOK, ""
	}
	code = ExitInvalid
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	return code, "corral: " + err.Error()
}

func (f *fakeAPI) Drain(ctx context.Context, name string, timeout time.Duration) (api.DrainReport, error) {
	if err := f.call("Drain", name, timeout.String()); err != nil {
		return api.DrainReport{}, err
	}
	if err := f.target(name); err != nil {
		return api.DrainReport{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	left := 0
	for i := range f.pools {
		if f.pools[i].Name == name {
			f.pools[i].Drained = true
			if name == "web" {
				left = 3 // web's clients hold their connections
			}
		}
	}
	waited := 1200 * time.Millisecond
	if left > 0 {
		waited = timeout
	}
	// HAProxy checks both; web's has not asked since the drain.
	return api.DrainReport{Pool: name, Left: left, Waited: waited, Watched: !f.unwatched, Told: name == "app" && !f.unwatched}, nil
}

func (f *fakeAPI) Cordon(ctx context.Context, target string) error {
	return f.call("Cordon", target)
}

func (f *fakeAPI) Uncordon(ctx context.Context, target string) error {
	return f.call("Uncordon", target)
}

func (f *fakeAPI) Undrain(ctx context.Context, name string) error {
	if err := f.call("Undrain", name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.pools {
		if f.pools[i].Name == name {
			f.pools[i].Drained = false
		}
	}
	return f.target(name)
}
