package pool

import (
	"context"
	"errors"
	"fmt"
	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
	"slices"
	"strconv"
	"time"

	"github.com/corral-pool/corral/internal/relay"
)

// Messenger carries messages to the workers: a *relay.Relay.
type Messenger interface {
	Send(ctx context.Context, targets []relay.Target, text string, wait time.Duration) ([]api.MessageResult, error)
	Broadcast(ctx context.Context, pool string, targets []relay.Target, text string, wait time.Duration) ([]api.MessageResult, error)
	Connected(ctx context.Context, pool string) (map[int]bool, error)
}

// Router carries the operator's messages to a pool's workers: it picks
// the instances that should get one, and says why the others cannot.
type Router struct {
	co   *Coordinator
	msgs Messenger // nil: corrald carries no messages
}

// NewRouter returns the router of co's pools through msgs, which is nil
// when corrald could not open its message socket.
func NewRouter(co *Coordinator, msgs Messenger) *Router {
	return &Router{co: co, msgs: msgs}
}

// Broadcast delivers text to every instance of pool that runs, or should:
// instances held stopped by the operator are left out, and so are the
// pool's instances when the operator stopped the pool. With wait > 0 it
// waits that long (at most relay.MaxWait) for their replies. Each result
// says why an instance did not get the message. It fails with ErrNoPool
// for a pool corrald does not know, and when text cannot travel.
func (r *Router) Broadcast(ctx context.Context, pool, text string, wait time.Duration) ([]api.MessageResult, error) {
	if r.msgs == nil {
		return nil, api.ErrNoMessages
	}
	ts, err := r.targets(ctx, pool, 0)
	if err != nil {
		return nil, err
	}
	return r.tallied(pool)(messageError(r.msgs.Broadcast(ctx, pool, ts, text, wait)))
}

// Send delivers text to one instance, "POOL@I", as Broadcast does. It fails
// with ErrNoInstance for an instance the pool does not have: above its
// count, and not running.
func (r *Router) Send(ctx context.Context, target, text string, wait time.Duration) ([]api.MessageResult, error) {
	if r.msgs == nil {
		return nil, api.ErrNoMessages
	}
	pool, i, err := api.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if i == 0 {
		return nil, fmt.Errorf("%w %q: send goes to one instance, POOL@I; broadcast goes to a whole pool", api.ErrNoInstance, target)
	}
	ts, err := r.targets(ctx, pool, i)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		if on, err := r.msgs.Connected(ctx, pool); err != nil || !on[i] {
			return nil, fmt.Errorf("%w %s@%d: the pool runs instances 1 to %d; 'corral scale %s %d' adds it",
				api.ErrNoInstance, pool, i, r.count(ctx, pool), pool, i)
		}
		ts = []relay.Target{{Pool: pool, Index: i}} // started by hand, above the count
	}
	return r.tallied(pool)(messageError(r.msgs.Send(ctx, ts, text, wait)))
}

// tallied counts the results of a message to pool by status, for the metrics.
func (r *Router) tallied(pool string) func([]api.MessageResult, error) ([]api.MessageResult, error) {
	return func(rs []api.MessageResult, err error) ([]api.MessageResult, error) {
		for _, res := range rs {
			r.co.tally.Add(TallyMessage, pool, string(res.Status), 1)
		}
		return rs, err
	}
}

// messageError makes an error of a text that cannot travel (package
// message) an API error, ErrBadMessage.
func messageError(rs []api.MessageResult, err error) ([]api.MessageResult, error) {
	if errors.Is(err, message.ErrTooLarge) || errors.Is(err, message.ErrNotText) || errors.Is(err, message.ErrEmpty) {
		return rs, fmt.Errorf("%w: %w", api.ErrBadMessage, err)
	}
	return rs, err
}

func (r *Router) count(ctx context.Context, pool string) int {
	n := 0
	r.co.do(ctx, func(pools poolSet) {
		if p := pools[pool]; p != nil {
			n = p.desired.Count
		}
	})
	return n
}

// targets returns the instances of pool a message goes to, from what the
// coordinator knows now; only instance only if it is not 0.
func (r *Router) targets(ctx context.Context, pool string, only int) ([]relay.Target, error) {
	var out []relay.Target
	found := false
	err := r.co.do(ctx, func(pools poolSet) {
		p := pools[pool]
		if p == nil {
			return
		}
		found = true
		idx := map[int]bool{}
		for i := 1; i <= p.desired.Count; i++ {
			idx[i] = true
		}
		for i := range p.out.Phases {
			idx[i] = true
		}
		order := make([]int, 0, len(idx))
		for i := range idx {
			order = append(order, i)
		}
		slices.Sort(order)
		for _, i := range order {
			if only != 0 && i != only {
				continue
			}
			ph := p.out.Phases[i]
			t := relay.Target{Pool: pool, Index: i}
			unit := InstanceName(pool, i)
			switch {
			case p.desired.Stopped:
				if only == 0 {
					continue
				}
				t.Down = "the pool is stopped: 'corral start " + pool + "' starts it"
			case ph == api.PhaseHeld || p.desired.IsHeld(i):
				if only == 0 {
					continue
				}
				t.Down = "it is stopped by the operator: 'corral start " + pool + "@" + strconv.Itoa(i) + "' starts it"
			case ph == api.PhaseSurplus:
				if only == 0 {
					continue
				}
				t.Down = "it is being stopped: the pool was scaled down"
			case ph == api.PhaseStarting:
				t.Starting = true
			case ph == api.PhaseStopping:
				t.Down = "it is stopping"
			case ph == api.PhaseStopped || ph == api.PhaseBackoff || ph == api.PhaseCrashLoop:
				t.Down = "it is not running (" + string(ph)
				if r := p.out.Reasons[i]; r != "" {
					t.Down += ": " + r
				}
				t.Down += "); 'corral status " + pool + "' and 'journalctl -u " + unit + "' tell more"
			}
			out = append(out, t)
		}
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w %q", api.ErrNoPool, pool)
	}
	return out, nil
}
