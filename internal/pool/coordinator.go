package pool

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/loop"
	"github.com/corral-pool/corral/internal/units"
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
	// Resync reconciles every pool even without a signal: 5m. It does
	// not re-read the pool files: corrald acts on the files in effect,
	// read when it starts, when systemd reloads (which reruns the
	// generator) and on Apply.
	Resync time.Duration
	// JobTimeout bounds one systemd job: 2m.
	JobTimeout time.Duration
	// ExitsDir holds the instances' exit records (units.ExitsDir), which
	// name the cause of each exit; "" reads none.
	ExitsDir string
}

// Event is something clients may want to hear of: an instance changed
// phase, or entered a crash loop.
type Event struct {
	CrashLoop bool // else a phase change
	Pool      string
	Index     int
	Phase     api.Phase
	Reason    string
}

// Coordinator keeps every pool's instances as the operator asked: it holds
// the desired state, reconciles it with systemd's, and runs the loop. One
// goroutine, Run, owns all its state; the other methods send it requests
// and are safe for concurrent use.
//
// The rest of corrald are components beside it (Status, Reloader,
// Applier, Router, Workers), each owning one concern and reaching the
// pools only through do and withPool, which run in the loop
// (docs/design.md).
type Coordinator struct {
	cfg    Config
	sd     Systemd
	reqs   chan func()
	hints  *hints // what changed: a pool, or everything and the pool files
	jobs   chan jobDone
	events chan Event
	tally  *Tally // what happened, for the metrics
	// hung are the units the Pinger killed as hung whose exit is not
	// counted yet.
	hung *unitSet

	// observers are called after each reconcile (Observe).
	observers []func()

	// Owned by Run.
	pools poolSet
}

// poolSet is every pool by name; owned by the Run goroutine.
type poolSet map[string]*poolState

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
		hints:  newHints(),
		jobs:   make(chan jobDone, 64),
		events: make(chan Event, 256),
		tally:  &Tally{},
		hung:   &unitSet{},
		pools:  map[string]*poolState{},
	}
}

// Events returns the channel of events. Events are dropped, not queued,
// when nobody reads them fast enough.
func (c *Coordinator) Events() <-chan Event { return c.events }

// Observe has f called, from the Run goroutine, after each reconcile of a
// pool: f must not block (a kick of a component's own loop). Call it
// before Run.
func (c *Coordinator) Observe(f func()) { c.observers = append(c.observers, f) }

// Dirty tells the coordinator that something about pool changed (a systemd
// signal); "" means anything may have changed, including the pool files.
// It never blocks, and no hint is lost: hints that come while the
// coordinator is busy are merged and taken together.
func (c *Coordinator) Dirty(pool string) { c.hints.add(pool) }

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

// Activated tells the coordinator that an instance unit became active.
// With readiness = "notify" that is its READY=1, and its pool is
// reconciled without waiting for the burst of signals to end, so that
// what waits on the instance, the steering's table above all, learns of it
// at once rather than a debounce later. Without, active says only that the
// program was started (it joins the table after ready_delay), and the
// signal is an ordinary change.
func (c *Coordinator) Activated(unit string) {
	if inv, ok := c.sd.(Invalidator); ok {
		inv.Invalidate(unit)
	}
	c.hints.addNow(unitPool(unit))
}

// do runs f with the pools in the Run goroutine and waits for it. f must
// not keep what it is given.
func (c *Coordinator) do(ctx context.Context, f func(pools poolSet)) error {
	return loop.Do(ctx, c.reqs, func() { f(c.pools) })
}

// reread reads the pool files again, as they are now in effect (after a
// daemon-reload).
func (c *Coordinator) reread(ctx context.Context) error {
	return c.do(ctx, func(pools poolSet) { pools.load(c.cfg) })
}

// Ping returns once the Run goroutine has answered: the watchdog's proof
// that the coordinator is not stuck.
func (c *Coordinator) Ping(ctx context.Context) error { return c.do(ctx, func(poolSet) {}) }

// Run reconciles until ctx is done. Call it once.
func (c *Coordinator) Run(ctx context.Context) error {
	c.pools.load(c.cfg)
	dirty := map[string]bool{}
	mark(dirty, c.pools, c.pools.names())
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
		case <-c.hints.wake:
			all, names, now := c.hints.take()
			if all {
				c.pools.load(c.cfg)
				names = c.pools.names()
			}
			mark(dirty, c.pools, names)
			if slices.ContainsFunc(now, c.pools.notifies) {
				debounce.Reset(0)
			} else {
				debounce.Reset(c.cfg.Debounce)
			}
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
			// Everything observed afresh, the pool files not: what
			// /etc holds now may not be in effect yet.
			if inv, ok := c.sd.(Invalidator); ok {
				inv.Invalidate("")
			}
			mark(dirty, c.pools, c.pools.names())
			debounce.Reset(0)
		case <-wake.C:
			mark(dirty, c.pools, c.pools.due(c.cfg.Now()))
			debounce.Reset(0)
		case <-debounce.C:
			for _, n := range slices.Sorted(maps.Keys(dirty)) {
				if p := c.pools[n]; p != nil {
					c.reconcile(ctx, n, p)
				}
				delete(dirty, n)
			}
			if next := c.pools.nextWake(); !next.IsZero() {
				wake.Reset(max(next.Sub(c.cfg.Now()), time.Millisecond))
			}
		}
	}
}

// notifies reports whether pool exists and its instances say when they
// are ready (readiness = "notify").
func (pools poolSet) notifies(pool string) bool {
	p := pools[pool]
	return p != nil && p.cfg != nil && p.cfg.Readiness == units.ReadinessNotify
}

// mark adds the pools of names that exist to dirty.
func mark(dirty map[string]bool, pools poolSet, names []string) {
	for _, n := range names {
		if _, ok := pools[n]; ok {
			dirty[n] = true
		}
	}
}

// names returns every pool's name.
func (pools poolSet) names() []string { return slices.Collect(maps.Keys(pools)) }

// due returns the pools whose backoff deadline has come.
func (pools poolSet) due(now time.Time) []string {
	var out []string
	for n, p := range pools {
		if !p.wake.IsZero() && !p.wake.After(now) {
			out = append(out, n)
		}
	}
	return out
}

// nextWake returns the earliest backoff deadline of any pool, or zero.
func (pools poolSet) nextWake() time.Time {
	var next time.Time
	for _, p := range pools {
		if !p.wake.IsZero() && (next.IsZero() || p.wake.Before(next)) {
			next = p.wake
		}
	}
	return next
}

// load reads the pool files and the stored state: new pools are added
// with the count their file or the store gives, removed ones dropped.
func (pools poolSet) load(conf Config) {
	files, err := units.PoolFiles(conf.PoolDir)
	if err != nil {
		conf.Log.Error("read pool files", "err", err)
		return
	}
	cfgs, errs := units.LoadAll(files, conf.Host)
	for _, e := range errs {
		conf.Log.Warn("pool file skipped", "err", e.Error())
	}
	st, err := conf.Store.Load()
	if err != nil {
		conf.Log.Error("load state", "err", err)
	}
	seen := map[string]bool{}
	for _, pc := range cfgs {
		seen[pc.Name] = true
		p := pools[pc.Name]
		if p == nil {
			d, ok := st.Pools[pc.Name]
			if !ok || d.Count < 1 {
				d = Desired{Count: pc.Count(conf.CPUs), Auto: pc.Instances == 0}
			}
			p = &poolState{desired: d, managed: map[int]bool{}, inflight: map[string]bool{}, shrinking: map[int]bool{}, socketOK: true}
			pools[pc.Name] = p
			conf.Log.Info("pool", "pool", pc.Name, "desired", d.Count, "file", pc.Path)
		}
		rp := pc.Restart
		if p.tracker == nil || p.cfg == nil || p.cfg.Restart != rp {
			p.tracker = NewTracker(PolicyOf(rp), conf.Rand)
		}
		old := p.desired.Count
		if !p.desired.Scaled {
			p.desired.Count = pc.Count(conf.CPUs)
			p.desired.Auto = pc.Instances == 0
		} else if p.desired.Auto {
			p.desired.Count = conf.CPUs
		}
		p.shrink(old)
		p.cfg = pc
	}
	gone := false
	for name := range pools {
		if !seen[name] {
			conf.Log.Info("pool gone", "pool", name)
			delete(pools, name)
			gone = true
		}
	}
	for name := range st.Pools {
		if _, err := os.Lstat(filepath.Join(conf.PoolDir, name+units.Ext)); err != nil {
			gone = true // its file was removed while it was invalid, or corrald was down
		}
	}
	if gone {
		pools.save(conf) // forget what corral scale or stop set for pools whose file is gone
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
	lastExits(c.cfg.ExitsDir, o, p.cfg)
	// The target came up (systemctl start NAME.target): the pool runs
	// again, nothing is held, and every instance up to the count that last
	// ran before the pool last went down is wanted again (the target's
	// Wants= covers only the pool file's count, not a scale). One that ran
	// since and is down again was stopped on purpose meanwhile: signals
	// are coalesced, so this reconcile may come after that stop.
	up := o.Target.Live()
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
		if !u.Live() {
			delete(p.shrinking, i)
			continue
		}
		delete(p.managed, i)
		if i > p.desired.Count && i <= api.MaxInstances && !p.shrinking[i] && !p.desired.Stopped {
			adopt = max(adopt, i)
		}
	}
	if adopt > 0 {
		// systemctl start app@5: the operator asked for more.
		c.cfg.Log.Info("adopted instances started by hand", "pool", name, "count", adopt, "was", p.desired.Count)
		p.desired.Count, p.desired.Auto, p.desired.Scaled = adopt, false, true
		c.pools.save(c.cfg)
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
		Managed: p.managed, Now: c.cfg.Now(), Hung: c.hung.instances(o)}, p.tracker)
	for _, e := range out.Exits {
		c.tally.Add(TallyExit, name, e.Class, uint64(e.N))
		c.hung.remove(InstanceName(name, e.Index))
	}
	p.observed, p.out, p.wake = o, out, out.Wake
	if !reflect.DeepEqual(out.Desired, p.desired) {
		p.desired = out.Desired
		c.pools.save(c.cfg)
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
			emit(c.events, Event{Pool: name, Index: i, Phase: ph, Reason: out.Reasons[i]})
		}
	}
	for _, i := range out.Loops {
		c.cfg.Log.Warn("crash loop", "pool", name, "instance", i, "reason", out.Reasons[i])
		emit(c.events, Event{CrashLoop: true, Pool: name, Index: i, Phase: api.PhaseCrashLoop, Reason: out.Reasons[i]})
	}
	for _, f := range c.observers {
		f()
	}
}

// emit sends e to whoever listens, or drops it.
func emit(events chan<- Event, e Event) {
	select {
	case events <- e:
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

// save writes every pool's Desired. The stored state of a pool whose file
// is there but invalid now is kept, for when it is fixed; that of a pool
// whose file is gone is forgotten.
func (pools poolSet) save(conf Config) {
	st := State{Version: 1, Pools: map[string]Desired{}}
	if old, err := conf.Store.Load(); err == nil {
		for n, d := range old.Pools {
			if _, err := os.Lstat(filepath.Join(conf.PoolDir, n+units.Ext)); err == nil {
				st.Pools[n] = d
			}
		}
	}
	for n, p := range pools {
		st.Pools[n] = p.desired
	}
	if err := conf.Store.Save(st); err != nil {
		conf.Log.Error("save state", "err", err)
	}
}
