package pool

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// Recycler restarts instances before they get into trouble: one older than its pool's
// recycle_after (plus its own share of recycle_jitter, so that instances started together
// are not recycled together), and one whose memory stays at or above memory_high, or
// whose cgroup's memory.pressure shows stalls over Stall, for Sustain: the kernel
// throttles it there, and memory_max would kill it mid-request.
//
// It restarts through the path of a rolling reload (Reloader.restartReady: a restart job,
// so the worker drains on SIGTERM, then the wait until the new one is ready), one instance
// of a pool at a time, only while the pool's other instances are up within
// max_unavailable, and never the last running instance: a pool of one is not recycled.
type Recycler struct {
	co     *Coordinator
	reload *Reloader
	log    *slog.Logger
	// Interval between looks (1s), and how long memory must stay at or above memory_high,
	// or stalled at least Stall percent, before the instance is recycled (4s): a spike is
	// left alone, but the kernel throttles an instance above MemoryHigh=, so it is not
	// left there long.
	Interval, Sustain time.Duration
	// Stall is the share of time, in percent over the last 10 seconds, that some task of
	// an instance may stall on memory (its cgroup's memory.pressure, "some avg10"): 20.
	// It catches an instance that thrashes below memory_high. 0 turns it off.
	Stall float64

	mu      sync.Mutex
	running map[string]bool // pools with a recycle in progress

	above map[string]time.Time // by unit: since when its memory is at or above memory_high; Run's own
}

// NewRecycler returns the recycling of co's pools, restarting through reload.
func NewRecycler(co *Coordinator, reload *Reloader) *Recycler {
	return &Recycler{co: co, reload: reload, log: co.cfg.Log, Interval: time.Second, Sustain: 4 * time.Second, Stall: 20,
		running: map[string]bool{}, above: map[string]time.Time{}}
}

// Run looks at the pools every Interval until ctx is done.
func (r *Recycler) Run(ctx context.Context) error {
	every(ctx, r.Interval, r.look, func(err error) { r.log.Warn("recycle: look at the pools", "err", err) })
	return nil
}

// idleLook is how long every waits after a look that found no pool to watch: a pool that
// needs watching is picked up this late at worst, and an idle corrald wakes for nothing
// less often.
const idleLook = 5 * time.Second

// every calls look every d, or idleLook after a look that watched no pool, until ctx is
// done, and fail with its errors but those of the end.
func every(ctx context.Context, d time.Duration, look func(context.Context) (watched int, err error), fail func(error)) {
	wait := d
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := look(ctx)
		if err != nil && ctx.Err() == nil {
			fail(err)
		}
		wait = d
		if n == 0 && err == nil {
			wait = max(d, idleLook)
		}
	}
}

// look takes one look at every pool that recycles, and starts the recycles due.
func (r *Recycler) look(ctx context.Context) (int, error) {
	pools, err := r.co.views(ctx, func(cfg *units.Pool) bool { return cfg.RecycleAfter > 0 || cfg.MemoryHigh != "" })
	if err != nil {
		return 0, err
	}
	now := r.co.cfg.Now()
	seen := map[string]bool{}
	for _, p := range pools {
		mem := map[int]memSample{}
		if p.cfg.MemoryHigh != "" {
			for _, i := range p.running() {
				unit := p.instances[i].Name
				m, _ := r.co.sd.Counters(ctx, unit)
				stall, err := r.co.sd.MemoryStall(ctx, unit)
				if err != nil {
					stall = -1
				}
				mem[i] = memSample{bytes: m, stall: stall}
				seen[unit] = true
			}
		}
		i, why, byMemory := r.due(p, mem, now)
		if i == 0 || !r.start(p.name) {
			continue
		}
		go r.recycle(ctx, p, i, why, byMemory)
	}
	for u := range r.above {
		if !seen[u] {
			delete(r.above, u)
		}
	}
	return len(pools), nil
}

// due returns the instance of p to recycle now, why, and whether for its memory; or 0:
// the one longest at or above memory_high for Sustain, else the one most past its age, if
// the pool can spare it.
func (r *Recycler) due(p poolView, mem map[int]memSample, now time.Time) (int, string, bool) {
	running := p.running()
	memI, memWhy, memOver, ageI, ageWhy, agePast := 0, "", time.Duration(-1), 0, "", time.Duration(-1)
	for _, i := range running {
		u := p.instances[i]
		if m, ok := mem[i]; ok && m.sick(p.cfg.MemoryHighBytes, r.Stall) {
			since, ok := r.above[u.Name]
			if !ok {
				since = now
				r.above[u.Name] = now
			}
			if over := now.Sub(since); over >= r.Sustain && over > memOver {
				memI, memOver = i, over
				memWhy = fmt.Sprintf("memory %s at or above memory_high = %s for %s", fmtBytes(m.bytes), p.cfg.MemoryHigh, fmtDuration(over))
				if !m.sick(p.cfg.MemoryHighBytes, 0) {
					memWhy = fmt.Sprintf("stalled on memory %.0f%% of the last 10s (memory.pressure) for %s", m.stall, fmtDuration(over))
				}
			}
		} else {
			delete(r.above, u.Name)
		}
		if p.cfg.RecycleAfter > 0 && !u.ActiveEnter.IsZero() {
			age := now.Sub(u.ActiveEnter)
			if past := age - p.cfg.RecycleAfter - jitterOf(u, p.cfg.RecycleJitter); past >= 0 && past > agePast {
				ageI, agePast = i, past
				ageWhy = fmt.Sprintf("up %s, past recycle_after = %s", fmtDuration(age), p.cfg.RecycleAfter)
			}
		}
	}
	// Never the last running instance, never past max_unavailable: later.
	if up := len(running); up < 2 || p.count-up >= max(p.cfg.MaxUnavailable, 1) {
		return 0, "", false
	}
	if memI != 0 {
		return memI, memWhy, true
	}
	return ageI, ageWhy, false
}

// memSample is one reading of an instance's memory: MemoryCurrent (or Unknown), and the
// "some avg10" of its memory.pressure in percent (-1: unknown).
type memSample struct {
	bytes uint64
	stall float64
}

// sick reports whether the sample is at or above high bytes (0: memory_high is a share of
// RAM, whose bytes corrald does not compare), or stalled at least stall percent.
func (m memSample) sick(high int64, stall float64) bool {
	return high > 0 && m.bytes != api.Unknown && m.bytes >= uint64(high) || stall > 0 && m.stall >= stall
}

// jitterOf is u's own share of jitter: the same for one life of the instance (its
// ActiveEnter), spread evenly over [0, jitter) across instances and lives.
func jitterOf(u Unit, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", u.Name, u.ActiveEnter.UnixNano())
	return time.Duration(h.Sum64() % uint64(jitter))
}

// start marks a recycle of pool as running, unless one is, or a reload.
func (r *Recycler) start(pool string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[pool] || r.reload.Reloading(pool) {
		return false
	}
	r.running[pool] = true
	return true
}

// recycle restarts instance i of p as a rolling reload restarts it. For its memory, it
// first lifts the kernel's throttling of the instance at memory_high, for the rest of its
// life: a process above MemoryHigh= is throttled so hard that its drain took 17 s instead
// of a fraction of one (a Go worker 4 MiB over, under emulation), while the connections in
// its socket's queue timed out. The next start has memory_high again.
func (r *Recycler) recycle(ctx context.Context, p poolView, i int, why string, byMemory bool) {
	defer func() {
		r.mu.Lock()
		delete(r.running, p.name)
		r.mu.Unlock()
	}()
	unit := InstanceName(p.name, i)
	r.log.Info("recycle", "pool", p.name, "instance", i, "reason", why)
	t0 := time.Now()
	if byMemory {
		if err := r.co.sd.LiftMemoryHigh(ctx, unit); err != nil {
			r.log.Warn("recycle: lift memory_high for the drain", "pool", p.name, "instance", i, "err", err)
		}
	}
	err := r.reload.restartReady(ctx, unit, p.cfg.Readiness == units.ReadinessNotify, p.cfg.ReadyDelay)
	r.co.Dirty(p.name)
	cause := "age"
	if byMemory {
		cause = "memory"
	}
	r.co.tally.Add(TallyRecycle, p.name, cause, 1)
	if err != nil {
		r.log.Warn("recycle failed", "pool", p.name, "instance", i, "err", err, "hint", "journalctl -u "+unit)
		return
	}
	r.log.Info("recycled", "pool", p.name, "instance", i, "took", time.Since(t0).Round(time.Millisecond))
}

// fmtBytes writes a memory size as MiB.
func fmtBytes(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
