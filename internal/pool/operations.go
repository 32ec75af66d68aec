package pool

// The API's operations: requests to the Run goroutine, jobs outside it.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// ListPools implements API.
func (c *Coordinator) ListPools(ctx context.Context) ([]api.PoolInfo, error) {
	var out []api.PoolInfo
	err := c.do(ctx, func() {
		for name, p := range c.pools {
			out = append(out, c.poolInfo(name, p))
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func (c *Coordinator) poolInfo(name string, p *poolState) api.PoolInfo {
	info := api.PoolInfo{Name: name, Desired: uint32(p.desired.Count), Balance: string(p.cfg.Balance), File: p.cfg.Path}
	for _, l := range p.cfg.Listen {
		info.Listen = append(info.Listen, l.Address)
	}
	loop, failed := false, false
	for i, u := range p.observed.Instances {
		if u.Active() && i <= p.desired.Count {
			info.Running++
		}
		switch p.out.Phases[i] {
		case api.PhaseCrashLoop:
			loop = true
		case api.PhaseBackoff:
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
// from systemd afresh, and whether each worker is connected for messages
// from the messenger; phases come from the last reconcile.
func (c *Coordinator) ListInstances(ctx context.Context, pool string) ([]api.InstanceInfo, error) {
	var (
		phases   map[int]api.Phase
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
		return nil, fmt.Errorf("%w %q", api.ErrNoPool, pool)
	}
	o, err := c.sd.Observe(ctx, pool)
	if err != nil {
		return nil, err
	}
	var connected map[int]bool
	if c.msgs != nil {
		if connected, err = c.msgs.Connected(ctx, pool); err != nil {
			return nil, err
		}
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
	var out []api.InstanceInfo
	for i := range idx {
		u := o.Instances[i]
		if i > count && !u.Active() && !u.Failed() {
			continue // scaled away
		}
		ph := phases[i]
		if ph == "" {
			ph = api.PhaseStopped
			if u.Active() {
				ph = api.PhaseRunning
			}
		}
		info := api.InstanceInfo{Pool: pool, Index: uint32(i), Unit: InstanceName(pool, i), Phase: string(ph),
			ActiveState: u.ActiveState, SubState: u.SubState, Restarts: u.NRestarts + uint32(restarts[i]),
			MemoryBytes: api.Unknown, CPUNSec: api.Unknown, Reason: reasons[i], Messages: connected[i]}
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

func maps(m map[int]api.Phase) map[int]api.Phase {
	out := make(map[int]api.Phase, len(m))
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
		return fmt.Errorf("%w %q", api.ErrNoPool, name)
	}
	return ferr
}

// Scale implements API.
func (c *Coordinator) Scale(ctx context.Context, pool, spec string) (uint32, error) {
	var n int
	err := c.withPool(ctx, pool, func(p *poolState) error {
		sc, err := api.ParseScale(spec)
		if err != nil {
			return err
		}
		count, err := sc.Count(p.desired.Count, c.cfg.CPUs)
		if err != nil {
			return fmt.Errorf("scale %s %s: %w", pool, spec, err)
		}
		auto := sc.Auto
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

// act is Start, Stop and Restart: plan, in the Run goroutine, changes the
// pool's desired state and returns the units to act on, in order; then
// job runs on each, one after the other, outside the loop.
func (c *Coordinator) act(ctx context.Context, target string, job func(context.Context, string) error,
	plan func(p *poolState, name string, i int) []string) error {
	name, i, err := api.ParseTarget(target)
	if err != nil {
		return err
	}
	var todo []string
	err = c.withPool(ctx, name, func(p *poolState) error {
		todo = plan(p, name, i)
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Dirty(name)
	return c.runJobs(ctx, job, todo)
}

// Start implements API: a pool starts (its stopped and held marks are
// cleared, its target and instances started); an instance is un-held and
// started.
func (c *Coordinator) Start(ctx context.Context, target string) error {
	return c.act(ctx, target, c.sd.Start, func(p *poolState, name string, i int) []string {
		if i > 0 {
			p.unhold(i)
			return []string{InstanceName(name, i)}
		}
		p.desired.Stopped, p.desired.Held = false, nil
		for n := 1; n <= p.desired.Count; n++ {
			p.managed[n] = true
		}
		return []string{name + ".target"}
	})
}

// Stop implements API: a pool is marked stopped and its sockets, target and
// instances stopped; an instance is held and stopped with, in reuseport
// mode, its socket. Sockets go first: a connection queued on a socket
// whose instance is stopping would start the instance again and cancel the
// stop job (seen under load). The instances still drain what they
// accepted; with tcp_migrate_req, what is queued on one reuseport socket
// moves to its siblings.
func (c *Coordinator) Stop(ctx context.Context, target string) error {
	return c.act(ctx, target, c.sd.Stop, func(p *poolState, name string, i int) []string {
		if i > 0 {
			if !p.desired.IsHeld(i) {
				p.desired.Held = append(p.desired.Held, i)
				slices.Sort(p.desired.Held)
			}
			delete(p.managed, i)
			if p.cfg.Balance == units.BalanceReusePort {
				return []string{SocketName(name, i), InstanceName(name, i)}
			}
			return []string{InstanceName(name, i)}
		}
		p.desired.Stopped, p.desired.StoppedAt = true, c.cfg.Now()
		p.managed = map[int]bool{}
		var stop []string
		for _, n := range sortedKeys(p.observed.Sockets) {
			stop = append(stop, SocketName(name, n))
		}
		stop = append(stop, name+".target")
		for _, n := range sortedKeys(p.observed.Instances) {
			if u := p.observed.Instances[n]; u.Active() || u.Failed() {
				stop = append(stop, InstanceName(name, n))
			}
		}
		return stop
	})
}

// Restart implements API: one instance, or every active instance of a pool
// one after the other, so that the others keep serving.
func (c *Coordinator) Restart(ctx context.Context, target string) error {
	return c.act(ctx, target, c.sd.Restart, func(p *poolState, name string, i int) []string {
		if i > 0 {
			p.unhold(i) // down for a moment on purpose, not held
			return []string{InstanceName(name, i)}
		}
		var restart []string
		for _, n := range sortedKeys(p.observed.Instances) {
			if p.observed.Instances[n].Active() && n <= p.desired.Count {
				restart = append(restart, InstanceName(name, n))
			}
		}
		return restart
	})
}

// unhold clears instance i's held mark and lets corrald start it.
func (p *poolState) unhold(i int) {
	p.desired.Held = slices.DeleteFunc(p.desired.Held, func(h int) bool { return h == i })
	p.managed[i] = true
}

func sortedKeys(m map[int]Unit) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// runJobs runs one job after the other and stops at the first failure.
func (c *Coordinator) runJobs(ctx context.Context, f func(context.Context, string) error, todo []string) error {
	for _, u := range todo {
		jctx, cancel := context.WithTimeout(ctx, c.cfg.JobTimeout)
		err := f(jctx, u)
		cancel()
		if err != nil && !errors.Is(err, api.ErrFailed) {
			err = fmt.Errorf("%w: %w", api.ErrFailed, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ErrJobFailed is wrapped by API errors when systemd refused or failed a
// job.
var ErrJobFailed = errors.New("systemd job failed")

// Apply implements API: ApplyIn with systemd's generator directory.
func (c *Coordinator) Apply(ctx context.Context) ([]api.Change, error) {
	return c.ApplyIn(ctx, GeneratorDir)
}
