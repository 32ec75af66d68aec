package pool

import (
	"maps"
	"sync"
)

// unitSet is a set of unit names, safe for concurrent use.
type unitSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *unitSet) add(unit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]bool{}
	}
	s.m[unit] = true
}

func (s *unitSet) remove(unit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, unit)
}

// instances returns the instances of o whose unit is in s; nil if none.
func (s *unitSet) instances(o Observed) map[int]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[int]bool
	for i, u := range o.Instances {
		if s.m[u.Name] {
			if out == nil {
				out = map[int]bool{}
			}
			out[i] = true
		}
	}
	return out
}

// Tally counts what happened to the pools since corrald started, for the
// metrics: the exits of instances by systemd's result, the reloads by
// outcome, the messages by what became of them and the recycles by cause.
// The components add to it as things happen; it is safe for concurrent use.
type Tally struct {
	mu     sync.Mutex
	counts map[TallyKey]uint64
}

// TallyKey names one counter: Kind is "exit", "reload", "message" or
// "recycle", and What its outcome ("oom-kill", "failed", "replied", "age"…).
type TallyKey struct {
	Kind, Pool, What string
}

// The kinds of TallyKey.
const (
	TallyExit    = "exit"
	TallyReload  = "reload"
	TallyDeploy  = "deploy"
	TallyMessage = "message"
	TallyRecycle = "recycle"
)

// Add adds n to the counter of kind, pool and what.
func (t *Tally) Add(kind, pool, what string, n uint64) {
	if t == nil || n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = map[TallyKey]uint64{}
	}
	t.counts[TallyKey{kind, pool, what}] += n
}

// Counts returns a copy of every counter.
func (t *Tally) Counts() map[TallyKey]uint64 {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

// exitClass names how an instance last ended, for counting: systemd's
// SERVICE_RESULT from the exit record ("exit-code", "signal", "core-dump",
// "oom-kill", "watchdog", "timeout"…, or "hung" when corrald's Pinger killed
// it), else the unit's Result; "unknown" when neither says.
func exitClass(u Unit) string {
	switch {
	case u.ExitResult != "" && u.ExitResult != "success":
		return u.ExitResult
	case u.Result != "" && u.Result != "success":
		return u.Result
	}
	return "unknown"
}
