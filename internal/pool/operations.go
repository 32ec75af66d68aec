package pool

// The operator's changes to the desired state (Scale, Start, Stop,
// Restart): requests to the Run goroutine, jobs outside it.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"time"

	"github.com/corral-pool/corral/api"
)

// withPool runs f on the named pool in the Run goroutine, and saves its
// desired state if f changed it. It fails with ErrNoPool for a pool
// corrald does not know.
func (c *Coordinator) withPool(ctx context.Context, name string, f func(p *poolState) error) error {
	var ferr error
	found := false
	err := c.do(ctx, func(pools poolSet) {
		p := pools[name]
		if p == nil {
			return
		}
		found = true
		before := p.desired
		ferr = f(p)
		if !reflect.DeepEqual(before, p.desired) {
			pools.save(c.cfg)
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
	return runJobs(ctx, c.cfg.JobTimeout, job, todo)
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
			if p.cfg.Balance.PerInstance() {
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
			if u := p.observed.Instances[n]; u.Live() || u.Failed() {
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
			if p.observed.Instances[n].Live() && n <= p.desired.Count {
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

// runJobs runs one job after the other, each within timeout, and stops at
// the first failure.
func runJobs(ctx context.Context, timeout time.Duration, f func(context.Context, string) error, todo []string) error {
	for _, u := range todo {
		jctx, cancel := context.WithTimeout(ctx, timeout)
		err := f(jctx, u)
		cancel()
		if err != nil && errors.Is(err, api.ErrFailed) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: %w", api.ErrFailed, err)
		}
	}
	return nil
}
