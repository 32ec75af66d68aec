package pool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/release"
	"github.com/corral-pool/corral/internal/steer"
	"github.com/corral-pool/corral/internal/units"
)

// Deployer runs deploys and rollbacks of the pools that have a release
// link (release = in the pool file), a symlink their exec or
// working_directory goes through:
//
//  1. the link is switched to the new release (release.Switch) and the
//     release remembered (Desired.Releases);
//  2. the first instance, the canary, is restarted onto it and held for
//     the pool's canary period under live traffic;
//  3. the others are restarted max_unavailable at a time, each ready
//     before the next.
//
// Every restarted instance must pass the gate: become ready (READY=1, or
// ready_delay), answer the pool's health request, if any, through the
// steering's door, and stay up, with the same process, until the deploy
// ends. When the gate fails anywhere, the link goes back, every instance
// whose process started after the switch is restarted onto the release
// before, the same careful way, and Deploy's error wraps
// api.ErrRolledBack.
type Deployer struct {
	co *Coordinator
	rl *Reloader
	// Poll is how often the instances under watch are looked at.
	Poll time.Duration
	// Settle is how long each instance after the canary is held before
	// the next batch: min(canary/10, 2s) at least Poll, unless set.
	Settle time.Duration
	// Probe sends the health request to one instance; nil: through the
	// steering's door (probeDoor).
	Probe func(ctx context.Context, l units.Listen, i int, method, path string) error
}

// NewDeployer returns the deploys of co's pools; rl keeps a deploy and a
// reload of one pool from running at once.
func NewDeployer(co *Coordinator, rl *Reloader) *Deployer {
	return &Deployer{co: co, rl: rl, Poll: 100 * time.Millisecond, Probe: probeDoor}
}

// deployPlan is what a deploy needs of its pool, read once.
type deployPlan struct {
	pool, link    string
	idx           []int // the instances to restart, in order
	batch         int
	notify        bool
	delay, canary time.Duration
	startTimeout  time.Duration // start_timeout: systemd stops an instance not ready by then
	method, path  string        // the health request; "" none
	listen        units.Listen  // where the health request goes
	keep          int
	history       []ReleaseRecord
	switchedAt    time.Time
	out           *outOfTable // instances the gate refused, kept out of the steering's table
}

// outOfTable holds the instances that failed a deploy's gate out of the
// steering's table, so that live traffic does not reach a release the gate
// refused, until the rollback has restarted them or the deploy ends. Each
// entry stands for one Leave.
type outOfTable struct {
	mu  sync.Mutex
	idx []int
}

func (o *outOfTable) add(i int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.idx = append(o.idx, i)
}

// release ends the holds on instance i (every instance when i is 0).
func (o *outOfTable) release(st *Steerer, pool string, i int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.idx = slices.DeleteFunc(o.idx, func(n int) bool {
		if i == 0 || n == i {
			st.Return(pool, n)
			return true
		}
		return false
	})
}

// ReleaseRecord is a release a pool's link pointed at, and since when.
type ReleaseRecord struct {
	Dir   string    `json:"dir"`
	Since time.Time `json:"since"`
}

// Deploy points pool's release link at dir and rolls the pool onto it,
// gated; on a failure it rolls the pool back (see Deployer). progress, if
// not nil, is called from Deploy's goroutine for every step.
func (d *Deployer) Deploy(ctx context.Context, pool, dir string, progress func(api.DeployStep)) (api.DeployReport, error) {
	return d.run(ctx, pool, dir, false, progress)
}

// Rollback points pool's release link back at the release before the
// current one and rolls the pool onto it, gated as a deploy.
func (d *Deployer) Rollback(ctx context.Context, pool string, progress func(api.DeployStep)) (api.DeployReport, error) {
	return d.run(ctx, pool, "", true, progress)
}

func (d *Deployer) run(ctx context.Context, pool, dir string, back bool, progress func(api.DeployStep)) (rep api.DeployReport, err error) {
	rep.Pool = pool
	if progress == nil {
		progress = func(api.DeployStep) {}
	}
	plan, err := d.plan(ctx, pool)
	if err != nil {
		return rep, err
	}
	rep.From, err = release.Current(plan.link)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("%w: %v", api.ErrNoRelease, err)
	}
	if back {
		for _, r := range plan.history {
			if r.Dir != rep.From {
				dir = r.Dir
				break
			}
		}
		if dir == "" {
			return rep, fmt.Errorf("%w: corral remembers no release of %s before %s to roll back to (only releases put in place by corral deploy)", api.ErrNoRelease, pool, rep.From)
		}
	}
	if plan.method != "" {
		if err := d.rl.steer.Off(); err != nil {
			return rep, fmt.Errorf("%w: health = %q needs steering in the kernel to reach one instance, and it is off (%v): remove health from %s's file, or give corrald its capabilities (docs/steering.md)", api.ErrBadArgument, plan.method+" "+plan.path, err, pool)
		}
	}
	end, ok := d.rl.begin(pool)
	if !ok {
		return rep, fmt.Errorf("%w: a reload or deploy of %s is under way: wait for it to end", api.ErrBusy, pool)
	}
	defer end()
	plan.out = &outOfTable{}
	defer plan.out.release(d.rl.steer, pool, 0)
	defer func() {
		outcome := "ok"
		switch {
		case rep.RolledBack:
			outcome = "rolled back"
		case err != nil:
			outcome = "failed"
		}
		d.co.tally.Add(TallyDeploy, pool, outcome, 1)
	}()

	if err := trusted(plan.link, dir); err != nil {
		return rep, fmt.Errorf("%w: %v", api.ErrBadArgument, err)
	}
	prev, err := release.Switch(plan.link, dir)
	if errors.Is(err, syscall.EROFS) {
		return rep, fmt.Errorf("%w: %v: corrald may change release links only under /srv and /opt (ReadWritePaths= of corral.service): move the link there, or add the link's directory with a drop-in ([Service] ReadWritePaths=%s)", api.ErrBadArgument, err, filepath.Dir(plan.link))
	}
	if err != nil {
		return rep, fmt.Errorf("%w: %v", api.ErrBadArgument, err)
	}
	rep.To = dir
	if rep.From == "" {
		rep.From = prev
	}
	plan.switchedAt = d.co.cfg.Now()
	d.remember(ctx, plan, dir, rep.From, "")
	progress(api.DeployStep{Pool: pool, Phase: "switched", Release: dir, Total: len(plan.idx)})

	failed, touched, gerr := d.roll(ctx, plan, dir, progress)
	if gerr == nil {
		d.prune(ctx, plan, dir, d.trim(ctx, plan), progress)
		return rep, nil
	}
	rep.Instance, rep.Reason = failed, gerr.Error()
	if failed > 0 {
		rep.Log = "journalctl -u " + InstanceName(pool, failed)
	}
	if rep.From == "" {
		return rep, fmt.Errorf("%s@%d: %w; there is no release before %s to go back to: the link stays", pool, failed, gerr, dir)
	}
	progress(api.DeployStep{Pool: pool, Index: failed, Phase: "rolling back", Release: rep.From, Err: gerr.Error()})
	if err := d.rollBack(ctx, plan, rep.From, dir, touched, progress); err != nil {
		return rep, fmt.Errorf("%s@%d: %w; rolling back to %s failed too: %v", pool, failed, gerr, rep.From, err)
	}
	rep.RolledBack = true
	progress(api.DeployStep{Pool: pool, Phase: "rolled back", Release: rep.From})
	what := fmt.Sprintf("%s@%d", pool, failed)
	if failed == 0 {
		what = pool
	}
	log := ""
	if !strings.Contains(gerr.Error(), "journalctl") {
		log = " (log: journalctl -u " + InstanceName(pool, max(failed, 1)) + ")"
	}
	return rep, fmt.Errorf("%w: %s: %v; the pool runs %s again%s", api.ErrRolledBack, what, gerr, rep.From, log)
}

// trusted refuses a release directory that someone other than root or
// the owner of the link's directory could have written: a deploy runs its
// code as the pool's user, and the corral group, which may deploy, must
// not so run code of its own.
func trusted(link, dir string) error {
	var st, parent syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil // release.Switch says what is wrong with it
	}
	if err := syscall.Stat(filepath.Dir(link), &parent); err != nil {
		return nil
	}
	switch {
	case st.Uid != 0 && st.Uid != parent.Uid:
		return fmt.Errorf("release %s belongs to uid %d, neither root nor the owner of %s (uid %d): corral deploys only releases those could have written; chown it", dir, st.Uid, filepath.Dir(link), parent.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("release %s is writable by its group or others (mode %04o): anyone who can write it could change the code the pool runs; chmod go-w %s", dir, st.Mode&0o7777, dir)
	}
	return nil
}

// plan reads what a deploy of pool needs.
func (d *Deployer) plan(ctx context.Context, pool string) (deployPlan, error) {
	plan := deployPlan{pool: pool}
	err := d.co.withPool(ctx, pool, func(p *poolState) error {
		if p.cfg == nil {
			return fmt.Errorf("%w %q: its pool file is gone", api.ErrNoPool, pool)
		}
		if p.cfg.Release == "" {
			return fmt.Errorf("%w: %s has no release link: set release = \"/srv/%s/current\" in %s (a symlink its exec or working_directory goes through), then corral apply", api.ErrNoRelease, pool, pool, p.cfg.Path)
		}
		for _, n := range sortedKeys(p.observed.Instances) {
			if p.observed.Instances[n].Live() && n <= p.desired.Count {
				plan.idx = append(plan.idx, n)
			}
		}
		plan.link, plan.keep = p.cfg.Release, p.cfg.KeepReleases
		plan.batch = max(p.cfg.MaxUnavailable, 1)
		plan.notify = p.cfg.Readiness == units.ReadinessNotify
		plan.delay, plan.canary, plan.startTimeout = p.cfg.ReadyDelay, p.cfg.Canary, p.cfg.StartTimeout
		plan.method, plan.path = p.cfg.HealthMethod, p.cfg.HealthPath
		for _, l := range p.cfg.Listen {
			if !l.Unix {
				plan.listen = l
				break
			}
		}
		if plan.method != "" && plan.listen.Address == "" {
			return fmt.Errorf("%w: health = %q needs a TCP address in listen: %s has only unix sockets", api.ErrBadArgument, p.cfg.Health, pool)
		}
		plan.history = append([]ReleaseRecord(nil), p.desired.Releases...)
		return nil
	})
	return plan, err
}

// remember records that the link points at dir from now, after from:
// before the first deploy, the release the link pointed at, since an
// unknown time (zero), so that the first deploy can be rolled back too.
// A release rolled back (drop) is forgotten: corral rollback never
// returns to it. The list keeps one more than keep_releases until the
// deploy has passed (trim), so that a deploy rolled back forgets nothing.
func (d *Deployer) remember(ctx context.Context, plan deployPlan, dir, from, drop string) {
	d.co.withPool(ctx, plan.pool, func(p *poolState) error {
		rs := []ReleaseRecord{{Dir: dir, Since: plan.switchedAt}}
		old := p.desired.Releases
		if len(old) == 0 && from != "" {
			old = []ReleaseRecord{{Dir: from}}
		}
		for _, r := range old {
			if r.Dir != dir && r.Dir != drop && len(rs) < max(plan.keep, 2)+1 {
				rs = append(rs, r)
			}
		}
		p.desired.Releases = rs
		return nil
	})
}

// trim forgets the releases beyond keep_releases, after a deploy that
// passed, and returns them.
func (d *Deployer) trim(ctx context.Context, plan deployPlan) (beyond []string) {
	d.co.withPool(ctx, plan.pool, func(p *poolState) error {
		if n := max(plan.keep, 2); len(p.desired.Releases) > n {
			for _, r := range p.desired.Releases[n:] {
				beyond = append(beyond, r.Dir)
			}
			p.desired.Releases = slices.Clone(p.desired.Releases[:n])
		}
		return nil
	})
	return beyond
}

// prune removes old, the releases beyond keep_releases after a deploy of
// dir that passed, unless an instance still runs one (release.Remove says
// which paths it refuses). Each removal, and each release kept, is a step.
func (d *Deployer) prune(ctx context.Context, plan deployPlan, dir string, old []string, progress func(api.DeployStep)) {
	if len(old) == 0 {
		return
	}
	rs := append([]ReleaseRecord{{Dir: dir, Since: plan.switchedAt}}, plan.history...)
	runs := map[string]int{}
	d.co.withPool(ctx, plan.pool, func(p *poolState) error {
		for _, i := range sortedKeys(p.observed.Instances) {
			if u := p.observed.Instances[i]; u.Live() {
				runs[releaseOf(rs, u)] = i
			}
		}
		return nil
	})
	for _, o := range old {
		var why error
		if i, ok := runs[o]; ok {
			why = fmt.Errorf("old release %s not removed: %s runs it", o, InstanceName(plan.pool, i))
		} else {
			why = release.Remove(plan.link, o)
		}
		if why != nil {
			progress(api.DeployStep{Pool: plan.pool, Phase: "kept", Release: o, Err: why.Error()})
			continue
		}
		progress(api.DeployStep{Pool: plan.pool, Phase: "removed", Release: o})
	}
}

// roll restarts plan's instances onto dir, the first as the canary, and
// gates each; it returns the instance that failed (0: the pool), the
// instances it restarted, and why.
func (d *Deployer) roll(ctx context.Context, plan deployPlan, dir string, progress func(api.DeployStep)) (int, []int, error) {
	var touched []int
	started := map[int]uint32{} // on the new release: its main process
	settle := d.Settle
	if settle == 0 {
		settle = max(min(plan.canary/10, 2*time.Second), d.Poll)
	}
	done := 0
	for start := 0; start < len(plan.idx); {
		n := plan.batch
		if start == 0 {
			n = 1 // the canary
		}
		group := plan.idx[start:min(start+n, len(plan.idx))]
		start += len(group)
		touched = append(touched, group...)
		for _, i := range group {
			progress(api.DeployStep{Pool: plan.pool, Index: i, Phase: "restarting", Release: dir, Done: done, Total: len(plan.idx)})
		}
		errs := make([]error, len(group))
		took := make([]time.Duration, len(group))
		pids := make([]uint32, len(group))
		ch := make(chan struct{}, len(group))
		for k, i := range group {
			go func() {
				defer func() { ch <- struct{}{} }()
				t0 := time.Now()
				errs[k] = d.restart(ctx, plan, i, func(since time.Time) error {
					u, err := d.started(ctx, plan.pool, i, since, d.rl.jobTimeout)
					if err != nil {
						return err
					}
					if !u.Up() || u.MainPID == 0 {
						return fmt.Errorf("stopped as it started (%s)", exitOf(u))
					}
					pids[k] = u.MainPID
					if plan.method != "" {
						return d.Probe(ctx, plan.listen, i, plan.method, plan.path)
					}
					return nil
				})
				took[k] = time.Since(t0)
			}()
		}
		for range group {
			<-ch
		}
		for k, i := range group {
			if errs[k] != nil {
				return i, touched, errs[k]
			}
			started[i] = pids[k]
			if plan.method != "" {
				progress(api.DeployStep{Pool: plan.pool, Index: i, Phase: "healthy", Release: dir, Done: done, Total: len(plan.idx)})
			}
			done++
			progress(api.DeployStep{Pool: plan.pool, Index: i, Phase: "ready", Release: dir, Took: took[k], Done: done, Total: len(plan.idx)})
		}
		hold := settle
		if len(started) == 1 && len(group) == 1 && group[0] == plan.idx[0] {
			hold = plan.canary
			progress(api.DeployStep{Pool: plan.pool, Index: group[0], Phase: "canary", Release: dir, Took: hold, Done: done, Total: len(plan.idx)})
		}
		if i, err := d.watch(ctx, plan.pool, started, hold); err != nil {
			return i, touched, err
		}
	}
	return 0, touched, nil
}

// restart restarts instance i out of the steering's table and waits
// until it is ready and passes check, if not nil, given when the restart
// began. It rejoins the table only then, ending any earlier hold on it;
// one that fails stays out (plan.out) until the deploy ends.
func (d *Deployer) restart(ctx context.Context, plan deployPlan, i int, check func(since time.Time) error) (err error) {
	d.rl.steer.Leave(ctx, plan.pool, i)
	defer func() {
		if err != nil {
			plan.out.add(i)
			return
		}
		d.rl.steer.Return(plan.pool, i)
		plan.out.release(d.rl.steer, plan.pool, i)
	}()
	if err := d.co.withPool(ctx, plan.pool, func(p *poolState) error {
		p.unhold(i)
		return nil
	}); err != nil {
		return err
	}
	since := time.Now()
	err = d.rl.restartReady(ctx, InstanceName(plan.pool, i), plan.notify, plan.delay)
	d.co.Dirty(plan.pool)
	if err != nil {
		// Say why: systemd's start timeout, or what it recorded of the
		// exit.
		if plan.notify && plan.startTimeout > 0 && time.Since(since) >= plan.startTimeout {
			return fmt.Errorf("did not become ready: no READY=1 within start_timeout (%v), so systemd stopped it", plan.startTimeout)
		}
		if exit := d.exitSince(ctx, plan.pool, i, since, 2*time.Second); exit != "" {
			return fmt.Errorf("did not become ready: %s", exit)
		}
		return fmt.Errorf("did not become ready: %w", err)
	}
	if check != nil {
		return check(since)
	}
	return nil
}

// watch looks at the instances of started for hold: each must stay up
// with the process it had.
func (d *Deployer) watch(ctx context.Context, pool string, started map[int]uint32, hold time.Duration) (int, error) {
	deadline := time.Now().Add(hold)
	for {
		d.co.Dirty(pool)
		var failed int
		var why error
		err := d.co.withPool(ctx, pool, func(p *poolState) error {
			for _, i := range slices.Sorted(maps.Keys(started)) {
				u := p.observed.Instances[i]
				if u.MainPID != started[i] || !u.Live() {
					failed, why = i, fmt.Errorf("crashed after it was ready (%s)", exitOf(u))
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if why != nil {
			return failed, why
		}
		if !time.Now().Before(deadline) {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(min(d.Poll, time.Until(deadline))):
		}
	}
}

// rollBack points the link at from and restarts every instance the
// deploy restarted (touched) or whose process started after the switch,
// one at a time, each ready before the next.
func (d *Deployer) rollBack(ctx context.Context, plan deployPlan, from, failed string, touched []int, progress func(api.DeployStep)) error {
	if _, err := release.Switch(plan.link, from); err != nil {
		return err
	}
	back := plan
	back.switchedAt = d.co.cfg.Now()
	d.remember(ctx, back, from, "", failed)
	// The instances on the new release: those restarted, and any other
	// that started after the switch (a crash, systemd restarted it).
	idx := slices.Clone(touched)
	err := d.co.withPool(ctx, plan.pool, func(p *poolState) error {
		for _, n := range sortedKeys(p.observed.Instances) {
			u := p.observed.Instances[n]
			if n <= p.desired.Count && !u.InactiveExit.Before(plan.switchedAt) {
				idx = append(idx, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for k, i := range idx {
		progress(api.DeployStep{Pool: plan.pool, Index: i, Phase: "restarting", Release: from, Done: k, Total: len(idx)})
		t0 := time.Now()
		// An instance of the failed release may have hit systemd's start
		// limit (reset it), or be in systemd's own restart, whose job can
		// cancel this one (try again).
		err := retry(ctx, 3, time.Second, func() error {
			d.rl.sd.ResetFailed(ctx, InstanceName(plan.pool, i))
			return d.restart(ctx, plan, i, nil)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", InstanceName(plan.pool, i), err)
		}
		progress(api.DeployStep{Pool: plan.pool, Index: i, Phase: "ready", Release: from, Took: time.Since(t0), Done: k + 1, Total: len(idx)})
	}
	return nil
}

// started returns what the coordinator saw of instance i once it has seen
// the start that began after since (systemd's signals bring it within
// milliseconds), or what it saw last after wait.
func (d *Deployer) started(ctx context.Context, pool string, i int, since time.Time, wait time.Duration) (Unit, error) {
	return d.await(ctx, pool, i, wait, func(u Unit) bool {
		return !u.InactiveExit.Before(since) && u.ActiveState != "activating"
	})
}

// exitSince returns why instance i last exited, once the coordinator has
// read the record of an exit after since (a reconcile reads it, a moment
// after systemd's signal), or "" if none comes within wait.
func (d *Deployer) exitSince(ctx context.Context, pool string, i int, since time.Time, wait time.Duration) string {
	seen := func(u Unit) bool { return u.Exit != "" && !u.InactiveExit.Before(since) }
	if u, err := d.await(ctx, pool, i, wait, seen); err == nil && seen(u) {
		return u.Exit
	}
	return ""
}

// await returns what the coordinator saw of instance i once it satisfies
// cond, or what it saw last after wait, asking for a reconcile meanwhile.
func (d *Deployer) await(ctx context.Context, pool string, i int, wait time.Duration, cond func(Unit) bool) (Unit, error) {
	deadline := time.Now().Add(wait)
	for {
		var u Unit
		if err := d.co.withPool(ctx, pool, func(p *poolState) error {
			u = p.observed.Instances[i]
			return nil
		}); err != nil {
			return u, err
		}
		if cond(u) || !time.Now().Before(deadline) {
			return u, nil
		}
		d.co.Dirty(pool)
		select {
		case <-ctx.Done():
			return u, ctx.Err()
		case <-time.After(d.Poll):
		}
	}
}

// exitOf says why u is not up, for a deploy's report.
func exitOf(u Unit) string {
	switch {
	case u.Exit != "":
		return u.Exit
	case u.Result != "" && u.Result != "success":
		return u.Result
	case u.ActiveState != "":
		return u.ActiveState
	}
	return "gone"
}

// releaseOf is the release an instance runs: the one the link pointed at
// when its process started (the newest of rs, newest first, switched to
// before that), or "" when unknown.
func releaseOf(rs []ReleaseRecord, u Unit) string {
	if u.InactiveExit.IsZero() {
		return ""
	}
	for _, r := range rs {
		if !r.Since.After(u.InactiveExit) {
			return r.Dir
		}
	}
	return ""
}

// probeDoor sends method path to instance i through the steering's door:
// from the client port steer.DoorBase+i-1 to the address of l (a wildcard
// address: the loopback one), and wants a 2xx answer.
func probeDoor(ctx context.Context, l units.Listen, i int, method, path string) error {
	host, port, err := net.SplitHostPort(l.Address)
	if err != nil {
		return fmt.Errorf("health: listen address %q: %v", l.Address, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	addr := net.JoinHostPort(host, port)
	// A connection that fails is tried again; an answer is final.
	status := 0
	if err := retry(ctx, 5, 200*time.Millisecond, func() (err error) {
		status, err = probeOnce(ctx, addr, steer.DoorBase+i-1, method, path)
		return err
	}); err != nil {
		return fmt.Errorf("health: %s %s: %v", method, path, err)
	}
	if status/100 != 2 {
		return fmt.Errorf("health: %s %s answered %d", method, path, status)
	}
	return nil
}

// retry calls f up to n times, pause apart, until it returns nil, and
// returns its last error, or ctx's.
func retry(ctx context.Context, n int, pause time.Duration, f func() error) error {
	err := f()
	for try := 1; err != nil && try < n; try++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		err = f()
	}
	return err
}

func probeOnce(ctx context.Context, addr string, port int, method, path string) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dl := net.Dialer{LocalAddr: &net.TCPAddr{Port: port}, Control: reuseAddr}
	c, err := dl.DialContext(dctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	deadline, _ := dctx.Deadline()
	c.SetDeadline(deadline)
	req := method + " " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: corral-deploy\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// reuseAddr lets a door's port be bound again while an earlier probe's
// connection from it is in TIME_WAIT.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
	if err != nil {
		return err
	}
	return serr
}
