package pool

import (
	"context"
	"maps"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/internal/units"
)

// Parts are corrald: the coordinator and the components beside it, each
// owning one concern and answering the API's calls for it. A new
// capability is a component of its own here, reaching the pools through
// the coordinator's do and withPool (docs/design.md).
type Parts struct {
	Coordinator *Coordinator // the desired state: Scale, Start, Stop, Restart; events
	Status      *Status      // ListPools, ListInstances
	Reloader    *Reloader    // Reload
	Deployer    *Deployer    // Deploy, Rollback: releases switched through a link, gated, rolled back on failure
	Applier     *Applier     // Apply
	Router      *Router      // Broadcast, Send
	Workers     *Workers     // whose worker a process is
	Acceptance  *Acceptance  // which instances accept no connection; Run it
	Recycler    *Recycler    // instances restarted by age or memory_high; Run it
	Pinger      *Pinger      // the watchdog of workers PID 1 cannot watch; nil without messages; Run it
	Drainer     *Drainer     // Drain, Undrain: a pool out of its balancers' rotation
	Steerer     *Steerer     // Cordon, Uncordon; where new connections go; nil until Steer; Run it
}

// Steer adds the steering of new connections in the kernel (Steerer),
// with the fds corrald inherited and store to keep its maps across
// restarts: the coordinator kicks it after each reconcile, and reloads take
// each instance out of its table before they stop it.
func (p *Parts) Steer(inherited []activation.FD, store FDStore) {
	s := NewSteerer(p.Coordinator, p.Acceptance, inherited)
	s.Store = store
	p.Steerer, p.Reloader.steer, p.Status.st = s, s, s
	p.Coordinator.Observe(s.Kick)
}

// Assemble builds the components around co. msgs is nil when corrald
// carries no messages.
func Assemble(co *Coordinator, workers *Workers, msgs Messenger) Parts {
	reload := NewReloader(co)
	acc := NewAcceptance(co)
	var pinger *Pinger
	if p, ok := msgs.(Pings); ok && msgs != nil {
		pinger = NewPinger(co, p)
	}
	return Parts{
		Pinger:      pinger,
		Coordinator: co,
		Acceptance:  acc,
		Status:      NewStatus(co, msgs, acc),
		Reloader:    reload,
		Deployer:    NewDeployer(co, reload),
		Recycler:    NewRecycler(co, reload),
		Applier:     NewApplier(co, reload),
		Router:      NewRouter(co, msgs),
		Workers:     workers,
		Drainer:     NewDrainer(co),
	}
}

// poolView is a copy of what a component beside the coordinator needs of
// one pool, taken in the coordinator's loop (views).
type poolView struct {
	name      string
	cfg       *units.Pool
	count     int
	instances map[int]Unit
}

// running returns the instances of v from 1 to its count that are up, in
// order.
func (v poolView) running() []int {
	var idx []int
	for _, i := range sortedKeys(v.instances) {
		if i <= v.count && v.instances[i].Up() {
			idx = append(idx, i)
		}
	}
	return idx
}

// views copies, in the coordinator's loop, the pools that run (not
// stopped by the operator) and whose pool file keep accepts.
func (c *Coordinator) views(ctx context.Context, keep func(*units.Pool) bool) ([]poolView, error) {
	var vs []poolView
	err := c.do(ctx, func(ps poolSet) {
		for name, p := range ps {
			if p.cfg != nil && !p.desired.Stopped && keep(p.cfg) {
				vs = append(vs, poolView{name: name, cfg: p.cfg, count: p.desired.Count, instances: maps.Clone(p.observed.Instances)})
			}
		}
	})
	return vs, err
}
