package pool

import (
	"context"
	"sync"
	"time"
)

// snapshots keep the answers to a read-only bus call (ListPools,
// ListInstances) for a moment, by key, so that any number of callers, any
// local user among them, costs the coordinator's loop and PID 1 at most one
// computation per key per period: callers that come while one is under way
// wait for its answer. A change made through the bus clears them, so an
// operator sees the effect of their own command at once.
type snapshots[T any] struct {
	ttl time.Duration
	// max bounds the keys kept; a caller may name pools that do not exist.
	max int

	mu sync.Mutex
	m  map[string]*snapshot[T]
}

type snapshot[T any] struct {
	done chan struct{} // closed when v and err are set
	at   time.Time
	v    T
	err  error
}

// snapshotTTL is how old an answer to ListPools or ListInstances may be;
// `corral list --watch`'s period is longer.
const snapshotTTL = 500 * time.Millisecond

// get returns the answer for key: a fresh one kept, the one under way, or
// a new one from compute. compute runs with its own deadline, so that a
// caller that gives up does not fail the others waiting for it.
func (s *snapshots[T]) get(ctx context.Context, key string, compute func(context.Context) (T, error)) (T, error) {
	s.mu.Lock()
	sn := s.m[key]
	if sn == nil || (sn.finished() && time.Since(sn.at) >= s.ttl) {
		sn = &snapshot[T]{done: make(chan struct{})}
		s.keep(key, sn)
		s.mu.Unlock()
		go func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v, err := compute(cctx)
			s.mu.Lock()
			sn.v, sn.err, sn.at = v, err, time.Now()
			s.mu.Unlock()
			close(sn.done)
		}()
	} else {
		s.mu.Unlock()
	}
	select {
	case <-sn.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return sn.v, sn.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// keep stores sn under key, first dropping finished snapshots when full.
func (s *snapshots[T]) keep(key string, sn *snapshot[T]) {
	if s.m == nil {
		s.m = map[string]*snapshot[T]{}
	}
	if len(s.m) >= s.max {
		for k, old := range s.m {
			if old.finished() {
				delete(s.m, k)
			}
		}
		if len(s.m) >= s.max {
			return // computed for its callers, not kept
		}
	}
	s.m[key] = sn
}

func (sn *snapshot[T]) finished() bool {
	select {
	case <-sn.done:
		return true
	default:
		return false
	}
}

// clear forgets every answer: the next caller gets a new one. Those under
// way still reach the callers already waiting for them.
func (s *snapshots[T]) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.m)
}
