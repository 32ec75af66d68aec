package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-pool/corral/units"
)

// Config configures a Coordinator. Zero fields take the defaults named.
type Config struct {
	PoolDir string     // units.Dir
	Store   Store      // where Desired survives restarts
	CPUs    int        // for instances = "auto"; 1 if zero
	Host    units.Host // for the checks of pool files; units.DefaultHost()
	Log     *slog.Logger
	// Now and Rand are the clock and the random source of backoff jitter.
	Now  func() time.Time
	Rand func() float64
	// Debounce coalesces bursts of signals: 20ms.
	Debounce time.Duration
	// Resync re-reads pool files and reconciles every pool even without a
	// signal: 5m.
	Resync time.Duration
	// JobTimeout bounds one systemd job: 2m.
	JobTimeout time.Duration
}

// Event is something clients may want to hear of: an instance changed
// phase, or entered a crash loop.
type Event struct {
	CrashLoop bool // else a phase change
	Pool      string
	Index     int
	Phase     Phase
	Reason    string
}

// Coordinator keeps every pool's instances as the operator asked. One
// goroutine, Run, owns all its state; the other methods send it requests
// and are safe for concurrent use.
type Coordinator struct {
	cfg    Config
	sd     Systemd
	reqs   chan func()
	dirty  chan string // pool name; "" means every pool and a re-read of the pool files
	jobs   chan jobDone
	events chan Event

	// Owned by Run.
	pools map[string]*poolState
}

type poolState struct {
	cfg      *units.Pool
	desired  Desired
	tracker  *Tracker
	managed  map[int]bool
	observed Observed
	out      Output
	inflight map[string]bool
	// shrinking are the instances above the count that corrald is scaling
	// away; any other active instance above the count was started by
	// someone on purpose and is adopted.
	shrinking map[int]bool
	targetUp  bool
	wake      time.Time
	socketOK  bool
}

type jobDone struct {
	pool, unit string
	err        error
}

// New returns a coordinator of the pools in cfg.PoolDir acting through sd.
func New(cfg Config, sd Systemd) *Coordinator {
	if cfg.PoolDir == "" {
		cfg.PoolDir = units.Dir
	}
	if cfg.CPUs < 1 {
		cfg.CPUs = 1
	}
	if cfg.Host.Stat == nil {
		cfg.Host = units.DefaultHost()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.Resync == 0 {
		cfg.Resync = 5 * time.Minute
	}
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = 2 * time.Minute
	}
	return &Coordinator{
		cfg:    cfg,
		sd:     sd,
		reqs:   make(chan func()),
		dirty:  make(chan string, 256),
		jobs:   make(chan jobDone, 64),
		events: make(chan Event, 256),
		pools:  map[string]*poolState{},
	}
}

// Events returns the channel of events. Events are dropped, not queued,
// when nobody reads them fast enough.
func (c *Coordinator) Events() <-chan Event { return c.events }

// Dirty tells the coordinator that something about pool changed (a systemd
// signal); "" means anything may have changed, including the pool files.
// It never blocks: when the queue is full the hint is dropped, and the
// next signal or the resync timer catches up.
func (c *Coordinator) Dirty(pool string) {
	select {
	case c.dirty <- pool:
	default:
	}
}

// Changed tells the coordinator that a unit's properties changed (a
// systemd signal): what is cached of it is dropped and its pool marked.
// "" means systemd as a whole changed (a reload, a restart): everything is
// dropped, the pool files re-read and every pool marked.
func (c *Coordinator) Changed(unit string) {
	if inv, ok := c.sd.(Invalidator); ok {
		inv.Invalidate(unit)
	}
	if unit == "" {
		c.Dirty("")
		return
	}
	c.Dirty(unitPool(unit))
}

// do runs f in the Run goroutine and waits for it.
func (c *Coordinator) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case c.reqs <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ping returns once the Run goroutine has answered: the watchdog's proof
// that the coordinator is not stuck.
func (c *Coordinator) Ping(ctx context.Context) error { return c.do(ctx, func() {}) }

// Run reconciles until ctx is done. Call it once.
func (c *Coordinator) Run(ctx context.Context) error {
	c.loadPools()
	dirty := map[string]bool{}
	for name := range c.pools {
		dirty[name] = true
	}
	debounce := time.NewTimer(0)
	resync := time.NewTicker(c.cfg.Resync)
	defer resync.Stop()
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-c.reqs:
			f()
		case name := <-c.dirty:
			if name == "" {
				c.loadPools()
				for n := range c.pools {
					dirty[n] = true
				}
			} else if _, ok := c.pools[name]; ok {
				dirty[name] = true
			}
			debounce.Reset(c.cfg.Debounce)
		case j := <-c.jobs:
			if p := c.pools[j.pool]; p != nil {
				delete(p.inflight, j.unit)
			}
			if j.err != nil {
				c.cfg.Log.Warn("job failed", "pool", j.pool, "unit", j.unit, "err", j.err)
			}
			dirty[j.pool] = true
			debounce.Reset(c.cfg.Debounce)
		case <-resync.C:
			if inv, ok := c.sd.(Invalidator); ok {
				inv.Invalidate("")
			}
			c.loadPools()
			for n := range c.pools {
				dirty[n] = true
			}
			debounce.Reset(0)
		case <-wake.C:
			now := c.cfg.Now()
			for n, p := range c.pools {
				if !p.wake.IsZero() && !p.wake.After(now) {
					dirty[n] = true
				}
			}
			debounce.Reset(0)
		case <-debounce.C:
			names := make([]string, 0, len(dirty))
			for n := range dirty {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if p := c.pools[n]; p != nil {
					c.reconcile(ctx, n, p)
				}
				delete(dirty, n)
			}
			// The earliest backoff deadline of any pool.
			var next time.Time
			for _, p := range c.pools {
				if !p.wake.IsZero() && (next.IsZero() || p.wake.Before(next)) {
					next = p.wake
				}
			}
			if !next.IsZero() {
				wake.Reset(max(next.Sub(c.cfg.Now()), time.Millisecond))
			}
		}
	}
}

// loadPools reads the pool files and the stored state: new pools are added
// with the count their file or the store gives, removed ones dropped.
func (c *Coordinator) loadPools() {
	files, err := units.PoolFiles(c.cfg.PoolDir)
	if err != nil {
		c.cfg.Log.Error("read pool files", "err", err)
		return
	}
	cfgs, errs := units.LoadAll(files, c.cfg.Host)
	for _, e := range errs {
		c.cfg.Log.Warn("pool file skipped", "err", e.Error())
	}
	st, err := c.cfg.Store.Load()
	if err != nil {
		c.cfg.Log.Error("load state", "err", err)
	}
	seen := map[string]bool{}
	for _, cfg := range cfgs {
		seen[cfg.Name] = true
		p := c.pools[cfg.Name]
		if p == nil {
			d, ok := st.Pools[cfg.Name]
			if !ok || d.Count < 1 {
				d = Desired{Count: cfg.Count(c.cfg.CPUs), Auto: cfg.Instances == 0}
			}
			p = &poolState{desired: d, managed: map[int]bool{}, inflight: map[string]bool{}, shrinking: map[int]bool{}, socketOK: true}
			c.pools[cfg.Name] = p
			c.cfg.Log.Info("pool", "pool", cfg.Name, "desired", d.Count, "file", cfg.Path)
		}
		rp := cfg.Restart
		pol := Policy{Base: rp.Backoff, Cap: rp.BackoffMax, Jitter: 0.1, LoopFailures: rp.LoopFailures, LoopWindow: rp.LoopWindow}
		if p.tracker == nil || p.cfg == nil || p.cfg.Restart != rp {
			p.tracker = NewTracker(pol, c.cfg.Rand)
		}
		old := p.desired.Count
		if !p.desired.Scaled {
			p.desired.Count = cfg.Count(c.cfg.CPUs)
			p.desired.Auto = cfg.Instances == 0
		} else if p.desired.Auto {
			p.desired.Count = c.cfg.CPUs
		}
		p.shrink(old)
		p.cfg = cfg
	}
	for name := range c.pools {
		if !seen[name] {
			c.cfg.Log.Info("pool gone", "pool", name)
			delete(c.pools, name)
		}
	}
}

// shrink marks the instances between the count and old, a larger count
// the pool had, as being scaled away.
func (p *poolState) shrink(old int) {
	for i := p.desired.Count + 1; i <= old; i++ {
		p.shrinking[i] = true
	}
}

// reconcile observes one pool and acts on the difference.
func (c *Coordinator) reconcile(ctx context.Context, name string, p *poolState) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	o, err := c.sd.Observe(octx, name)
	cancel()
	if err != nil {
		c.cfg.Log.Error("observe", "pool", name, "err", err)
		return
	}
	// The target came up (systemctl start NAME.target): the pool runs
	// again, nothing is held, and every instance up to the count that last
	// ran before the pool last went down is wanted again (the target's
	// Wants= covers only the pool file's count, not a scale). One that ran
	// since and is down again was stopped on purpose meanwhile: signals
	// are coalesced, so this reconcile may come after that stop.
	up := o.Target.Active()
	if up && !p.targetUp {
		p.desired.Held = nil
		for i := 1; i <= p.desired.Count; i++ {
			if u, ok := o.Instances[i]; ok && u.ActiveEnter.Before(o.Target.InactiveEnter) {
				p.managed[i] = true
			}
		}
	}
	p.targetUp = up
	adopt := 0
	for i, u := range o.Instances {
		if !u.Active() {
			delete(p.shrinking, i)
			continue
		}
		delete(p.managed, i)
		if i > p.desired.Count && !p.shrinking[i] && !p.desired.Stopped {
			adopt = max(adopt, i)
		}
	}
	if adopt > 0 {
		// systemctl start app@5: the operator asked for more.
		c.cfg.Log.Info("adopted instances started by hand", "pool", name, "count", adopt, "was", p.desired.Count)
		p.desired.Count, p.desired.Auto, p.desired.Scaled = adopt, false, true
		c.save()
	}
	sockOK := true
	for _, u := range o.Sockets {
		if u.Failed() {
			sockOK = false
		}
	}
	if !sockOK && p.socketOK {
		c.cfg.Log.Warn("socket failed: connections to the pool are refused until an instance can start; corrald restarts the socket then",
			"pool", name, "hint", "journalctl -u "+name+"*.socket")
	} else if sockOK && !p.socketOK {
		c.cfg.Log.Info("socket listening again", "pool", name)
	}
	p.socketOK = sockOK
	prev := p.out.Phases
	out := Plan(Input{Pool: name, Balance: string(p.cfg.Balance), Desired: p.desired, Observed: o,
		Managed: p.managed, Now: c.cfg.Now()}, p.tracker)
	p.observed, p.out, p.wake = o, out, out.Wake
	if !reflect.DeepEqual(out.Desired, p.desired) {
		p.desired = out.Desired
		c.save()
	}
	for _, a := range out.Actions {
		if p.inflight[a.Unit] {
			continue
		}
		p.inflight[a.Unit] = true
		c.cfg.Log.Info("act", "pool", name, "action", a.Kind.String(), "unit", a.Unit, "reason", a.Reason)
		go c.runAction(ctx, name, a)
	}
	for i, ph := range out.Phases {
		if prev[i] != ph {
			c.emit(Event{Pool: name, Index: i, Phase: ph, Reason: out.Reasons[i]})
		}
	}
	for _, i := range out.Loops {
		c.cfg.Log.Warn("crash loop", "pool", name, "instance", i, "reason", out.Reasons[i])
		c.emit(Event{CrashLoop: true, Pool: name, Index: i, Phase: PhaseCrashLoop, Reason: out.Reasons[i]})
	}
}

func (c *Coordinator) emit(e Event) {
	select {
	case c.events <- e:
	default:
	}
}

func (c *Coordinator) runAction(ctx context.Context, pool string, a Action) {
	jctx, cancel := context.WithTimeout(ctx, c.cfg.JobTimeout)
	defer cancel()
	var err error
	switch a.Kind {
	case StartUnit:
		err = c.sd.Start(jctx, a.Unit)
	case StopUnit:
		err = c.sd.Stop(jctx, a.Unit)
	case ResetStartUnit:
		if err = c.sd.ResetFailed(jctx, a.Unit); err == nil {
			err = c.sd.Start(jctx, a.Unit)
		}
	}
	select {
	case c.jobs <- jobDone{pool, a.Unit, err}:
	case <-ctx.Done():
	}
}

// save writes every pool's Desired; called from Run.
func (c *Coordinator) save() {
	st := State{Version: 1, Pools: map[string]Desired{}}
	for n, p := range c.pools {
		st.Pools[n] = p.desired
	}
	if err := c.cfg.Store.Save(st); err != nil {
		c.cfg.Log.Error("save state", "err", err)
	}
}

// ListPools implements API.
func (c *Coordinator) ListPools(ctx context.Context) ([]PoolInfo, error) {
	var out []PoolInfo
	err := c.do(ctx, func() {
		for name, p := range c.pools {
			out = append(out, c.poolInfo(name, p))
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func (c *Coordinator) poolInfo(name string, p *poolState) PoolInfo {
	info := PoolInfo{Name: name, Desired: uint32(p.desired.Count), Balance: string(p.cfg.Balance), File: p.cfg.Path}
	for _, l := range p.cfg.Listen {
		info.Listen = append(info.Listen, l.Address)
	}
	loop, failed := false, false
	for i, u := range p.observed.Instances {
		if u.Active() && i <= p.desired.Count {
			info.Running++
		}
		switch p.out.Phases[i] {
		case PhaseCrashLoop:
			loop = true
		case PhaseBackoff:
			failed = true
		}
	}
	// An instance retried out of a crash loop stays in it until it has
	// run for the whole window.
	for i := 1; i <= p.desired.Count; i++ {
		if p.tracker.Loop(i) {
			loop = true
		}
	}
	switch {
	case p.desired.Stopped:
		info.State = "stopped"
	case loop:
		info.State = "crash-loop"
	case !p.socketOK:
		info.State = "socket-failed"
	case info.Running == 0 && !failed:
		info.State = "stopped"
	case int(info.Running) >= p.desired.Count:
		info.State = "running"
	default:
		info.State = "degraded"
	}
	return info
}

// ListInstances implements API. Its counters (pid, memory, CPU) are read
// from systemd afresh; phases come from the last reconcile.
func (c *Coordinator) ListInstances(ctx context.Context, pool string) ([]InstanceInfo, error) {
	var (
		phases   map[int]Phase
		reasons  map[int]string
		restarts = map[int]int{}
		count    int
		found    bool
	)
	err := c.do(ctx, func() {
		p := c.pools[pool]
		if p == nil {
			return
		}
		found = true
		phases, reasons, count = maps(p.out.Phases), mapsS(p.out.Reasons), p.desired.Count
		for i := range p.out.Phases {
			restarts[i] = p.tracker.Restarts(i)
		}
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w %q", ErrNoPool, pool)
	}
	o, err := c.sd.Observe(ctx, pool)
	if err != nil {
		return nil, err
	}
	idx := map[int]bool{}
	for i := range o.Instances {
		idx[i] = true
	}
	for i := range phases {
		idx[i] = true
	}
	for i := 1; i <= count; i++ {
		idx[i] = true
	}
	var out []InstanceInfo
	for i := range idx {
		u := o.Instances[i]
		if i > count && !u.Active() && !u.Failed() {
			continue // scaled away
		}
		ph := phases[i]
		if ph == "" {
			ph = PhaseStopped
			if u.Active() {
				ph = PhaseRunning
			}
		}
		info := InstanceInfo{Pool: pool, Index: uint32(i), Unit: InstanceName(pool, i), Phase: string(ph),
			ActiveState: u.ActiveState, SubState: u.SubState, Restarts: u.NRestarts + uint32(restarts[i]),
			MemoryBytes: Unknown, CPUNSec: Unknown, Reason: reasons[i]}
		if info.ActiveState == "" {
			info.ActiveState, info.SubState = "inactive", "dead"
		}
		if u.Active() {
			info.PID = u.MainPID
			if !u.ActiveEnter.IsZero() {
				info.SinceUSec = uint64(u.ActiveEnter.UnixMicro())
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	// The counters change without a signal: read them now.
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for k := range out {
		if out[k].PID == 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[k].MemoryBytes, out[k].CPUNSec = c.sd.Counters(ctx, out[k].Unit)
		}()
	}
	wg.Wait()
	return out, nil
}

func maps(m map[int]Phase) map[int]Phase {
	out := make(map[int]Phase, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mapsS(m map[int]string) map[int]string {
	out := make(map[int]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// parseTarget splits "app" or "app@3".
func parseTarget(t string) (pool string, i int, err error) {
	if at := strings.LastIndexByte(t, '@'); at >= 0 {
		p, n, ok := ParseInstance(t)
		if !ok {
			return "", 0, fmt.Errorf("%w %q: want POOL or POOL@I with I a number from 1", ErrNoInstance, t)
		}
		return p, n, nil
	}
	return t, 0, nil
}

// withPool runs f on the named pool in the Run goroutine.
func (c *Coordinator) withPool(ctx context.Context, name string, f func(p *poolState) error) error {
	var ferr error
	found := false
	err := c.do(ctx, func() {
		p := c.pools[name]
		if p == nil {
			return
		}
		found = true
		before := p.desired
		ferr = f(p)
		if !reflect.DeepEqual(before, p.desired) {
			c.save()
		}
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w %q", ErrNoPool, name)
	}
	return ferr
}

// Scale implements API.
func (c *Coordinator) Scale(ctx context.Context, pool, spec string) (uint32, error) {
	var n int
	err := c.withPool(ctx, pool, func(p *poolState) error {
		count, auto, err := ParseScale(spec, p.desired.Count, c.cfg.CPUs)
		if err != nil {
			return err
		}
		for i := p.desired.Count + 1; i <= count; i++ {
			p.managed[i] = true
		}
		for i := count + 1; i <= p.desired.Count; i++ {
			p.tracker.Forget(i)
		}
		old := p.desired.Count
		p.desired.Count, p.desired.Auto, p.desired.Scaled = count, auto, true
		p.shrink(old)
		p.desired.Held = slices.DeleteFunc(p.desired.Held, func(h int) bool { return h > count })
		n = count
		return nil
	})
	if err != nil {
		return 0, err
	}
	c.Dirty(pool)
	return uint32(n), nil
}

// ParseScale applies spec ("N", "+N", "-N" or "auto") to the current count.
func ParseScale(spec string, cur, cpus int) (count int, auto bool, err error) {
	if spec == "auto" {
		return max(cpus, 1), true, nil
	}
	rel := strings.HasPrefix(spec, "+") || strings.HasPrefix(spec, "-")
	n, perr := strconv.Atoi(spec)
	if perr != nil || (!rel && n < 1) {
		return 0, false, fmt.Errorf(`%w %q: want a number of instances (4), a change (+2, -1) or "auto"`, ErrBadSpec, spec)
	}
	if rel {
		n += cur
	}
	if n < 1 || n > units.MaxInstances {
		return 0, false, fmt.Errorf("%w %q: the pool would have %d instances; it needs 1 to %d (to stop it: corral stop POOL)", ErrBadSpec, spec, n, units.MaxInstances)
	}
	return n, false, nil
}

// Start implements API: a pool starts (its stopped and held marks are
// cleared, its target and instances started); an instance is un-held and
// started.
func (c *Coordinator) Start(ctx context.Context, target string) error {
	name, i, err := parseTarget(target)
	if err != nil {
		return err
	}
	var jobs []string
	err = c.withPool(ctx, name, func(p *poolState) error {
		if i > 0 {
			p.desired.Held = slices.DeleteFunc(p.desired.Held, func(h int) bool { return h == i })
			p.managed[i] = true
			jobs = []string{InstanceName(name, i)}
			return nil
		}
		p.desired.Stopped, p.desired.Held = false, nil
		for n := 1; n <= p.desired.Count; n++ {
			p.managed[n] = true
		}
		jobs = []string{name + ".target"}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Dirty(name)
	return c.runJobs(ctx, c.sd.Start, jobs)
}

// Stop implements API: a pool is marked stopped and its target, instances
// and sockets stopped (or traffic would start them again); an instance is
// held and stopped with, in reuseport mode, its socket.
func (c *Coordinator) Stop(ctx context.Context, target string) error {
	name, i, err := parseTarget(target)
	if err != nil {
		return err
	}
	var jobs []string
	err = c.withPool(ctx, name, func(p *poolState) error {
		reuse := p.cfg.Balance == units.BalanceReusePort
		if i > 0 {
			if !p.desired.IsHeld(i) {
				p.desired.Held = append(p.desired.Held, i)
				slices.Sort(p.desired.Held)
			}
			delete(p.managed, i)
			jobs = []string{InstanceName(name, i)}
			if reuse {
				jobs = append(jobs, SocketName(name, i))
			}
			return nil
		}
		p.desired.Stopped, p.desired.StoppedAt = true, c.cfg.Now()
		p.managed = map[int]bool{}
		jobs = []string{name + ".target"}
		for n, u := range p.observed.Instances {
			if u.Active() || u.Failed() {
				jobs = append(jobs, InstanceName(name, n))
			}
		}
		for n := range p.observed.Sockets {
			jobs = append(jobs, SocketName(name, n))
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Dirty(name)
	return c.runJobs(ctx, c.sd.Stop, jobs)
}

// Restart implements API: one instance, or every active instance of a pool
// one after the other, so that the others keep serving.
func (c *Coordinator) Restart(ctx context.Context, target string) error {
	name, i, err := parseTarget(target)
	if err != nil {
		return err
	}
	var jobs []string
	err = c.withPool(ctx, name, func(p *poolState) error {
		if i > 0 {
			jobs = []string{InstanceName(name, i)}
			p.desired.Held = slices.DeleteFunc(p.desired.Held, func(h int) bool { return h == i })
			p.managed[i] = true // down for a moment on purpose, not held
			return nil
		}
		var idx []int
		for n, u := range p.observed.Instances {
			if u.Active() && n <= p.desired.Count {
				idx = append(idx, n)
			}
		}
		sort.Ints(idx)
		for _, n := range idx {
			jobs = append(jobs, InstanceName(name, n))
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Dirty(name)
	return c.runJobs(ctx, c.sd.Restart, jobs)
}

// runJobs runs one job after the other and stops at the first failure.
func (c *Coordinator) runJobs(ctx context.Context, f func(context.Context, string) error, units []string) error {
	for _, u := range units {
		jctx, cancel := context.WithTimeout(ctx, c.cfg.JobTimeout)
		err := f(jctx, u)
		cancel()
		if err != nil {
			return errors.Join(ErrJobFailed, err)
		}
	}
	return nil
}

// ErrJobFailed is wrapped by API errors when systemd refused or failed a
// job.
var ErrJobFailed = errors.New("systemd job failed")
