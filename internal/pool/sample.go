package pool

import (
	"context"
	"sort"

	"github.com/corral-pool/corral/api"
)

// Sample is every pool as the metrics show it, and what happened to them
// since corrald started.
type Sample struct {
	Pools  []PoolSample
	Counts map[TallyKey]uint64
}

// PoolSample is one pool in a Sample.
type PoolSample struct {
	api.PoolInfo
	Instances []api.InstanceInfo
	Queues    []Queue
}

// Sample takes a Sample without a call to systemd: the phases from the last
// reconcile, each running instance's memory and CPU from its cgroup and the
// accept queues from the Acceptance's last reading. Reading it every second
// costs the pools nothing: one pass of the coordinator's loop copies what it
// needs.
func (s *Status) Sample(ctx context.Context) (Sample, error) {
	type copied struct {
		info api.PoolInfo
		v    phaseView
		o    Observed
	}
	var cs []copied
	if err := s.co.do(ctx, func(pools poolSet) {
		for name, p := range pools {
			cs = append(cs, copied{p.info(name, s.co.cfg.CPUs), p.phaseView(), p.observed})
		}
	}); err != nil {
		return Sample{}, err
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].info.Name < cs[j].info.Name })
	out := Sample{Counts: s.co.tally.Counts()}
	now := s.co.cfg.Now()
	for _, c := range cs {
		ps := PoolSample{PoolInfo: c.info, Instances: c.v.instances(c.info.Name, c.o, nil)}
		stuck := s.acc.Stuck(c.info.Name)
		notAccepting(&ps.PoolInfo, stuck)
		markStuck(ps.Instances, stuck, now)
		s.readCounters(ctx, ps.Instances)
		ps.Queues = s.acc.Queues(c.info.Name)
		out.Pools = append(out.Pools, ps)
	}
	return out, nil
}
