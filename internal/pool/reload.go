package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// Reloader runs rolling reloads: each instance of a pool restarted onto
// the current binaries and units, a few at a time, each ready before the
// next.
type Reloader struct {
	co         *Coordinator
	sd         Systemd
	jobTimeout time.Duration
	steer      *Steerer // nil without steering

	mu        sync.Mutex
	reloading map[string]int  // reloads and deploys running, by pool
	deploying map[string]bool // deploys running, by pool
}

// NewReloader returns the reloads of co's pools.
func NewReloader(co *Coordinator) *Reloader {
	return &Reloader{co: co, sd: co.sd, jobTimeout: co.cfg.JobTimeout, reloading: map[string]int{}, deploying: map[string]bool{}}
}

// Reloading reports whether a reload of pool runs: the Recycler waits for its end.
func (r *Reloader) Reloading(pool string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloading[pool] > 0
}

// mark counts a reload of pool until the returned func is called.
func (r *Reloader) mark(pool string) func() {
	r.mu.Lock()
	r.reloading[pool]++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.reloading[pool]--; r.reloading[pool] <= 0 {
			delete(r.reloading, pool)
		}
		r.mu.Unlock()
	}
}

// begin marks a deploy of pool until the returned func is called, unless
// a reload or deploy of pool runs (false).
func (r *Reloader) begin(pool string) (end func(), ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reloading[pool] > 0 {
		return nil, false
	}
	r.reloading[pool]++
	r.deploying[pool] = true
	return func() {
		r.mu.Lock()
		delete(r.deploying, pool)
		if r.reloading[pool]--; r.reloading[pool] <= 0 {
			delete(r.reloading, pool)
		}
		r.mu.Unlock()
	}, true
}

// Reload restarts the active instances of pool onto the current binaries
// and units, max_unavailable at a time (from the pool file), waiting for
// each new instance to be ready: READY=1 with readiness = "notify" (the
// restart job returns then), else ready_delay after its start if it still
// runs. It stops at the first instance that fails: the instances not yet
// restarted keep running the old version, and the error says which
// instance failed and where its log is. progress, if not nil, is called
// from Reload's goroutine for every step.
func (r *Reloader) Reload(ctx context.Context, pool string, progress func(api.ReloadStep)) (err error) {
	var (
		idx      []int
		batch    int
		delay    time.Duration
		notify   bool
		notFound = true
	)
	err = r.co.withPool(ctx, pool, func(p *poolState) error {
		notFound = false
		for _, n := range sortedKeys(p.observed.Instances) {
			if p.observed.Instances[n].Live() && n <= p.desired.Count {
				idx = append(idx, n)
			}
		}
		batch = max(p.cfg.MaxUnavailable, 1)
		delay = p.cfg.ReadyDelay
		notify = p.cfg.Readiness == units.ReadinessNotify
		return nil
	})
	if err != nil {
		return err
	}
	if notFound {
		return fmt.Errorf("%w %q", api.ErrNoPool, pool)
	}
	if progress == nil {
		progress = func(api.ReloadStep) {}
	}
	r.mu.Lock()
	deploying := r.deploying[pool]
	r.mu.Unlock()
	if deploying {
		return fmt.Errorf("%w: a deploy of %s is under way: wait for it to end", api.ErrBusy, pool)
	}
	defer r.mark(pool)()
	defer func() {
		outcome := "ok"
		if err != nil {
			outcome = "failed"
		}
		r.co.tally.Add(TallyReload, pool, outcome, 1)
	}()
	done := 0
	for start := 0; start < len(idx); start += batch {
		group := idx[start:min(start+batch, len(idx))]
		// Down for a moment on purpose: not held, and corrald may start
		// them if the restart leaves them stopped.
		if err := r.co.withPool(ctx, pool, func(p *poolState) error {
			for _, i := range group {
				p.unhold(i)
			}
			return nil
		}); err != nil {
			return err
		}
		type result struct {
			i    int
			took time.Duration
			err  error
		}
		results := make([]result, len(group))
		var wg sync.WaitGroup
		for k, i := range group {
			progress(api.ReloadStep{Pool: pool, Index: i, Phase: "restarting", Done: done, Total: len(idx)})
			wg.Add(1)
			go func() {
				defer wg.Done()
				// New connections go to the others before it stops,
				// and come back once it is ready.
				r.steer.Leave(ctx, pool, i)
				defer r.steer.Return(pool, i)
				t0 := time.Now()
				err := r.restartReady(ctx, InstanceName(pool, i), notify, delay)
				results[k] = result{i, time.Since(t0), err}
			}()
		}
		wg.Wait()
		sort.Slice(results, func(a, b int) bool { return results[a].i < results[b].i })
		var failed []error
		for _, r := range results {
			if r.err != nil {
				progress(api.ReloadStep{Pool: pool, Index: r.i, Phase: "failed", Took: r.took, Err: r.err.Error(), Done: done, Total: len(idx)})
				failed = append(failed, fmt.Errorf("%s@%d did not come back: %w", pool, r.i, r.err))
				continue
			}
			done++
			progress(api.ReloadStep{Pool: pool, Index: r.i, Phase: "ready", Took: r.took, Done: done, Total: len(idx)})
		}
		r.co.Dirty(pool)
		if len(failed) > 0 {
			left := len(idx) - start - len(group)
			return fmt.Errorf("%w: %w; %d instance(s) not reloaded keep serving the old version", api.ErrReload, errors.Join(failed...), left)
		}
	}
	return nil
}

// restartReady restarts unit and waits until it is ready.
func (r *Reloader) restartReady(ctx context.Context, unit string, notify bool, delay time.Duration) error {
	jctx, cancel := context.WithTimeout(ctx, r.jobTimeout)
	defer cancel()
	if err := r.sd.Restart(jctx, unit); err != nil {
		return err
	}
	if notify || delay <= 0 {
		return nil
	}
	// No READY=1 to wait for: give it ready_delay, then it must still run.
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	active, err := r.sd.IsActive(jctx, unit)
	if err != nil {
		return err
	}
	if !active {
		return fmt.Errorf("%s stopped within ready_delay (%v) of its start (see 'journalctl -u %s')", unit, delay, unit)
	}
	return nil
}
