package pool

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/listenq"
	"github.com/corral-pool/corral/internal/units"
)

// Drainer takes a pool of this host out of its balancers' rotation for
// maintenance and puts it back: a drained pool keeps serving every
// connection it has and every one that still comes, but the HAProxy agent
// (package agent) answers "drain", so HAProxy sends it no new ones. The
// mark is part of the pool's desired state: it survives corrald's restarts,
// an upgrade of the package and a reboot, until Undrain.
type Drainer struct {
	co *Coordinator
	// Established reads the established connections: listenq.Established.
	Established func(listenq.Families) ([]listenq.Socket, error)
	// Poll is how often Drain counts the connections left: 200ms.
	Poll time.Duration
	// Watched is how recent a balancer's check of a pool must be for Drain
	// to wait until a balancer is told: 1m.
	Watched time.Duration

	mu      sync.Mutex
	checked map[string]checks // by pool
}

// checks is when a balancer last asked for a pool, and last heard drain.
type checks struct{ any, drain time.Time }

// NewDrainer returns the drains of co's pools.
func NewDrainer(co *Coordinator) *Drainer {
	return &Drainer{co: co, Established: listenq.Established, Poll: 200 * time.Millisecond, Watched: time.Minute,
		checked: map[string]checks{}}
}

// Checked records that a balancer asked for pool and heard drain or not
// (the HAProxy agent calls it for every answer).
func (d *Drainer) Checked(pool string, drain bool) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.checked) > 4096 {
		d.checked = map[string]checks{}
	}
	c := d.checked[pool]
	c.any = now
	if drain {
		c.drain = now
	}
	d.checked[pool] = c
}

// told reports whether, for a drain that began at since, no balancer
// watches pool (none asked in Watched before it), or one heard drain since.
func (d *Drainer) told(pool string, since time.Time) (watched, told bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.checked[pool]
	watched = !c.any.IsZero() && c.any.After(since.Add(-d.Watched))
	return watched, c.drain.After(since)
}

// Drain marks pool drained, then waits until no connection to its
// addresses is established or timeout passed, and reports how many are
// left and how long it waited. Draining a drained pool waits again. While
// a balancer watches the pool (its agent checks came in the last Watched),
// the connections count only once one has heard "drain": until its next
// check it still sends new ones, and 0 connections before then means
// nothing.
func (d *Drainer) Drain(ctx context.Context, pool string, timeout time.Duration) (api.DrainReport, error) {
	if timeout < 0 || timeout > api.MaxDrainWait {
		return api.DrainReport{}, fmt.Errorf("%w: a drain waits at most %s for the connections to end: give a shorter --timeout (the pool stays drained after it anyway)", api.ErrBadArgument, api.MaxDrainWait)
	}
	var listen []units.Listen
	if err := d.co.withPool(ctx, pool, func(p *poolState) error {
		p.desired.Drained = true
		listen = p.cfg.Listen
		return nil
	}); err != nil {
		return api.DrainReport{}, err
	}
	d.co.cfg.Log.Info("drained: the HAProxy agent answers drain", "pool", pool)
	t0 := time.Now()
	deadline := t0.Add(timeout)
	for {
		n, err := d.connections(listen)
		watched, told := d.told(pool, t0)
		r := api.DrainReport{Pool: pool, Left: n, Waited: time.Since(t0), Watched: watched, Told: told}
		if err != nil {
			r.Left = -1
			return r, fmt.Errorf("drained, but cannot count its connections: %w", err)
		}
		if n == 0 && (told || !watched) || !time.Now().Before(deadline) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return api.DrainReport{Pool: pool, Left: n, Waited: time.Since(t0)}, ctx.Err()
		case <-time.After(min(d.Poll, time.Until(deadline))):
		}
	}
}

// Undrain puts pool back in rotation.
func (d *Drainer) Undrain(ctx context.Context, pool string) error {
	err := d.co.withPool(ctx, pool, func(p *poolState) error {
		p.desired.Drained = false
		return nil
	})
	if err == nil {
		d.co.cfg.Log.Info("undrained: the HAProxy agent answers up", "pool", pool)
	}
	return err
}

// connections counts the established connections to the addresses of
// listen.
func (d *Drainer) connections(listen []units.Listen) (int, error) {
	socks, err := d.Established(families(listen))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range socks {
		for _, l := range listen {
			if serves(l, s.Addr) {
				n++
				break
			}
		}
	}
	return n, nil
}

// serves reports whether a connection whose local address is addr came in
// through l.
func serves(l units.Listen, addr string) bool {
	if l.Unix {
		return addr == l.Address
	}
	a := units.Listen{Address: addr}
	return a.Overlaps(l)
}
