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

// UseMessenger makes the coordinator carry messages through m. Call it
// before Run.
func (c *Coordinator) UseMessenger(m Messenger, unitOf func(ctx context.Context, pid uint32) (string, error)) {
	c.msgs, c.unitOf = m, unitOf
}

// Broadcast delivers text to every instance of pool that runs, or should:
// instances held stopped by the operator are left out, and so are the
// pool's instances when the operator stopped the pool. With wait > 0 it
// waits that long (at most relay.MaxWait) for their replies. Each result
// says why an instance did not get the message. It fails with ErrNoPool
// for a pool corrald does not know, and when text cannot travel.
func (c *Coordinator) Broadcast(ctx context.Context, pool, text string, wait time.Duration) ([]api.MessageResult, error) {
	if c.msgs == nil {
		return nil, api.ErrNoMessages
	}
	ts, err := c.targets(ctx, pool, 0)
	if err != nil {
		return nil, err
	}
	return messageError(c.msgs.Broadcast(ctx, pool, ts, text, wait))
}

// Send delivers text to one instance, "POOL@I", as Broadcast does. It fails
// with ErrNoInstance for an instance the pool does not have: above its
// count, and not running.
func (c *Coordinator) Send(ctx context.Context, target, text string, wait time.Duration) ([]api.MessageResult, error) {
	if c.msgs == nil {
		return nil, api.ErrNoMessages
	}
	pool, i, err := api.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if i == 0 {
		return nil, fmt.Errorf("%w %q: send goes to one instance, POOL@I; broadcast goes to a whole pool", api.ErrNoInstance, target)
	}
	ts, err := c.targets(ctx, pool, i)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		if on, err := c.msgs.Connected(ctx, pool); err != nil || !on[i] {
			return nil, fmt.Errorf("%w %s@%d: the pool runs instances 1 to %d; 'corral scale %s %d' adds it",
				api.ErrNoInstance, pool, i, c.count(ctx, pool), pool, i)
		}
		ts = []relay.Target{{Pool: pool, Index: i}} // started by hand, above the count
	}
	return messageError(c.msgs.Send(ctx, ts, text, wait))
}

// messageError makes an error of a text that cannot travel (package
// message) an API error, ErrBadMessage.
func messageError(rs []api.MessageResult, err error) ([]api.MessageResult, error) {
	if errors.Is(err, message.ErrTooLarge) || errors.Is(err, message.ErrNotText) || errors.Is(err, message.ErrEmpty) {
		return rs, fmt.Errorf("%w: %w", api.ErrBadMessage, err)
	}
	return rs, err
}

func (c *Coordinator) count(ctx context.Context, pool string) int {
	n := 0
	c.do(ctx, func() {
		if p := c.pools[pool]; p != nil {
			n = p.desired.Count
		}
	})
	return n
}

// targets returns the instances of pool a message goes to, from what the
// coordinator knows now; only instance only if it is not 0.
func (c *Coordinator) targets(ctx context.Context, pool string, only int) ([]relay.Target, error) {
	var out []relay.Target
	found := false
	err := c.do(ctx, func() {
		p := c.pools[pool]
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

// Worker returns the pool and instance of the process pid: the relay's
// Config.Identify. The process must run in an instance unit of a pool
// corrald manages.
func (c *Coordinator) Worker(ctx context.Context, pid int32) (string, int, error) {
	unit, pool, i, err := c.instanceOf(ctx, uint32(pid))
	if err != nil {
		return "", 0, fmt.Errorf("%w: only the workers of corral pools may connect", err)
	}
	if pool == "" {
		if unit == "" {
			unit = "no unit"
		}
		return "", 0, fmt.Errorf("process %d runs in %s, not in an instance of a corral pool: only the workers of corral pools may connect", pid, unit)
	}
	return pool, i, nil
}

// callerPool returns the pool whose worker process pid is, or "" for a
// process that is no worker. It fails closed: when the process cannot be
// looked up, the error says so and the caller is refused, never taken for
// an operator.
func (c *Coordinator) callerPool(ctx context.Context, pid uint32) (string, error) {
	if pid == 0 {
		return "", errors.New("the bus did not say which process called")
	}
	_, pool, _, err := c.instanceOf(ctx, pid)
	return pool, err
}

// instanceOf returns the unit of process pid and, if it is an instance of
// a pool corrald manages, the pool and index. err is set only when the
// process cannot be looked up.
func (c *Coordinator) instanceOf(ctx context.Context, pid uint32) (unit, pool string, index int, err error) {
	if c.unitOf == nil {
		return "", "", 0, errors.New("corrald cannot look up processes")
	}
	unit, err = c.unitOf(ctx, pid)
	if err != nil {
		return "", "", 0, fmt.Errorf("cannot tell which unit process %d runs in: %w", pid, err)
	}
	p, i, ok := api.ParseInstance(unit)
	if ok && unit == InstanceName(p, i) {
		ok = false
		if err := c.do(ctx, func() { _, ok = c.pools[p] }); err != nil {
			return "", "", 0, err
		}
		if ok {
			return unit, p, i, nil
		}
	}
	return unit, "", 0, nil
}
