package pool

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// Status answers what the pools and their instances are doing: the
// coordinator's phases, systemd's counters and whether each worker is
// connected for messages.
type Status struct {
	co   *Coordinator
	sd   Systemd
	msgs Messenger   // nil when corrald carries no messages
	acc  *Acceptance // nil when nothing checks that instances accept
	st   *Steerer    // nil without steering
}

// NewStatus returns the status of co's pools; msgs and acc may be nil.
func NewStatus(co *Coordinator, msgs Messenger, acc *Acceptance) *Status {
	return &Status{co: co, sd: co.sd, msgs: msgs, acc: acc}
}

// ListPools implements API.
func (s *Status) ListPools(ctx context.Context) ([]api.PoolInfo, error) {
	var out []api.PoolInfo
	err := s.co.do(ctx, func(pools poolSet) {
		for name, p := range pools {
			info := p.info(name, s.co.cfg.CPUs)
			info.Steering = steering(p.cfg, s.st)
			if info.Steering == "on" && p.cfg.Spares > 0 {
				// The spares stand in for the instances that leave:
				// the host's share is that of its rotation.
				info.Capacity = uint32(units.InRotation(int(info.Capacity), p.cfg.Spares))
			}
			out = append(out, info)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := range out {
		notAccepting(&out[i], s.acc.Stuck(out[i].Name))
	}
	return out, err
}

// notAccepting shows a running pool with stuck sockets as not-accepting.
func notAccepting(info *api.PoolInfo, stuck map[int]Stuck) {
	if len(stuck) > 0 && (info.State == "running" || info.State == "degraded") {
		info.State = string(api.PhaseNotAccepting)
	}
}

// steering is PoolInfo.Steering for a pool of cfg.
func steering(cfg *units.Pool, st *Steerer) string {
	switch {
	case !cfg.Balance.PerInstance():
		return ""
	case !cfg.Steering:
		return "disabled"
	case st.Off() != nil:
		return "off: " + st.Off().Error()
	}
	return "on"
}

// info is p as ListPools shows it, on a host of cpus.
func (p *poolState) info(name string, cpus int) api.PoolInfo {
	info := api.PoolInfo{Name: name, Desired: uint32(p.desired.Count), Balance: string(p.cfg.Balance), File: p.cfg.Path,
		Drained: p.desired.Drained, Capacity: uint32(p.cfg.Count(cpus))}
	for _, l := range p.cfg.Listen {
		info.Listen = append(info.Listen, l.Address)
	}
	loop, failed := false, false
	for i, u := range p.observed.Instances {
		if u.Live() && i <= p.desired.Count {
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
func (s *Status) ListInstances(ctx context.Context, pool string) ([]api.InstanceInfo, error) {
	var (
		v     phaseView
		found bool
	)
	err := s.co.do(ctx, func(pools poolSet) {
		if p := pools[pool]; p != nil {
			found, v = true, p.phaseView()
		}
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w %q", api.ErrNoPool, pool)
	}
	o, err := s.sd.Observe(ctx, pool)
	if err != nil {
		return nil, err
	}
	var connected map[int]bool
	if s.msgs != nil {
		if connected, err = s.msgs.Connected(ctx, pool); err != nil {
			return nil, err
		}
	}
	out := v.instances(pool, o, connected)
	markStuck(out, s.acc.Stuck(pool), s.co.cfg.Now())
	if v.spares > 0 && s.st.Off() == nil {
		markSpares(out, units.InRotation(v.count, v.spares), v.count, s.st.Stands(pool))
	}
	s.readCounters(ctx, out)
	return out, nil
}

// markStuck shows the running instances that accept no connection as
// not-accepting, with the queue and the likely cause; index 0 stands for
// every instance of a shared socket.
func markStuck(out []api.InstanceInfo, stuck map[int]Stuck, now time.Time) {
	for k := range out {
		in := &out[k]
		st, ok := stuck[int(in.Index)]
		if !ok {
			st, ok = stuck[0]
		}
		if !ok || in.Phase != string(api.PhaseRunning) {
			continue
		}
		in.Phase, in.Queued = string(api.PhaseNotAccepting), st.Queued
		in.Reason = fmt.Sprintf("%d connection(s) wait in its socket's queue, none taken for %s: it likely listens on a port of its own instead of fd 3",
			st.Queued, now.Sub(st.Since).Round(time.Second))
	}
}

// markSpares shows the instances above regular up to count as spares,
// with the instance each in the steering's table stands for (stands).
func markSpares(out []api.InstanceInfo, regular, count int, stands map[int]int) {
	for k := range out {
		in := &out[k]
		if i := int(in.Index); i > regular && i <= count {
			in.Spare, in.StandsFor = true, uint32(stands[i])
		}
	}
}

// phaseView is what the last reconcile said of a pool's instances, copied
// out of the loop.
type phaseView struct {
	phases   map[int]api.Phase
	reasons  map[int]string
	restarts map[int]int
	count    int
	spares   int // the pool file's spares, with steering
	cordoned []int
	releases []ReleaseRecord // with a release link: the link's targets (Desired.Releases)
}

func (p *poolState) phaseView() phaseView {
	v := phaseView{phases: maps.Clone(p.out.Phases), reasons: maps.Clone(p.out.Reasons), restarts: map[int]int{}, count: p.desired.Count,
		cordoned: slices.Clone(p.desired.Cordoned)}
	if p.cfg != nil && p.cfg.Release != "" {
		v.releases = slices.Clone(p.desired.Releases)
	}
	if p.cfg != nil && p.cfg.Balance.PerInstance() && p.cfg.Steering {
		v.spares = p.cfg.Spares
	}
	for i := range p.out.Phases {
		v.restarts[i] = p.tracker.Restarts(i)
	}
	return v
}

// instances returns a row for every instance up to the count, and every
// other one systemd knows that is not scaled away, sorted by index.
func (v phaseView) instances(pool string, o Observed, connected map[int]bool) []api.InstanceInfo {
	idx := map[int]bool{}
	for i := range o.Instances {
		idx[i] = true
	}
	for i := range v.phases {
		idx[i] = true
	}
	for i := 1; i <= v.count; i++ {
		idx[i] = true
	}
	var out []api.InstanceInfo
	for _, i := range slices.Sorted(maps.Keys(idx)) {
		u := o.Instances[i]
		if i > v.count && !u.Live() && !u.Failed() {
			continue // scaled away
		}
		ph := v.phases[i]
		if ph == "" {
			ph = api.PhaseStopped
			if u.Live() {
				ph = api.PhaseRunning
			}
		}
		info := api.InstanceInfo{Pool: pool, Index: uint32(i), Unit: InstanceName(pool, i), Phase: string(ph),
			ActiveState: u.ActiveState, SubState: u.SubState, Restarts: u.NRestarts + uint32(v.restarts[i]),
			MemoryBytes: api.Unknown, CPUNSec: api.Unknown, Reason: v.reasons[i], Messages: connected[i],
			Cordoned: slices.Contains(v.cordoned, i)}
		if info.ActiveState == "" {
			info.ActiveState, info.SubState = "inactive", "dead"
		}
		if u.Live() {
			info.PID = u.MainPID
			if !u.ActiveEnter.IsZero() {
				info.SinceUSec = uint64(u.ActiveEnter.UnixMicro())
			}
			info.Release = releaseOf(v.releases, u)
		}
		out = append(out, info)
	}
	return out
}

// readCounters reads the memory and CPU of each running instance of out
// from systemd: they change without a signal.
func (s *Status) readCounters(ctx context.Context, out []api.InstanceInfo) {
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
			out[k].MemoryBytes, out[k].CPUNSec = s.sd.Counters(ctx, out[k].Unit)
		}()
	}
	wg.Wait()
}
