package pool

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/corral-pool/corral/internal/units"
)

// Policy is how a Tracker backs off a failed instance and when it calls
// its failures a crash loop (the [restart] section of a pool file). The
// zero value of every field means its default, as DefaultPolicy returns.
type Policy struct {
	// Base is the delay after the first failure: 1s when zero. Each
	// further consecutive failure doubles the delay.
	Base time.Duration
	// Cap bounds the doubled delay, and is the delay of every retry of an
	// instance in crash loop: 5m when zero. A Cap below Base is raised to
	// Base. Jitter applies after the cap, so a delay may exceed Cap by
	// Jitter·Cap.
	Cap time.Duration
	// Jitter spreads each delay uniformly over ±Jitter of it, so that
	// instances that failed together do not restart together: 0.1 when
	// zero. A negative Jitter means none; above 1 means 1.
	Jitter float64
	// LoopFailures failures within LoopWindow put an instance in crash
	// loop: 5 when zero or negative.
	LoopFailures int
	// LoopWindow is the crash loop's window, and how long an instance must
	// stay active for its tracker to forget its failures: 5m when zero or
	// negative.
	LoopWindow time.Duration
}

// DefaultPolicy returns the policy of a pool file without a [restart]
// section (units' defaults, docs/corrald.md): 1s doubling to 5m, ±10%
// jitter, 5 failures in 5m are a crash loop.
func DefaultPolicy() Policy {
	return PolicyOf(units.Defaults().Restart)
}

// PolicyOf returns the policy of a pool file's [restart] section.
func PolicyOf(r units.Restart) Policy {
	return Policy{Base: r.Backoff, Cap: r.BackoffMax, Jitter: 0.1, LoopFailures: r.LoopFailures, LoopWindow: r.LoopWindow}
}

// withDefaults returns p with its zero fields set to DefaultPolicy's.
func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.Base <= 0 {
		p.Base = d.Base
	}
	if p.Cap <= 0 {
		p.Cap = d.Cap
	}
	p.Cap = max(p.Cap, p.Base)
	switch {
	case p.Jitter == 0:
		p.Jitter = d.Jitter
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	if p.LoopFailures <= 0 {
		p.LoopFailures = d.LoopFailures
	}
	if p.LoopWindow <= 0 {
		p.LoopWindow = d.LoopWindow
	}
	return p
}

// delay returns the delay before jitter after the n-th consecutive
// failure (n ≥ 1): min(Cap, Base·2^(n-1)), or Cap in crash loop.
func (p Policy) delay(n int, loop bool) time.Duration {
	if loop {
		return p.Cap
	}
	d := p.Base
	for k := 1; k < n; k++ {
		if d > p.Cap/2 {
			return p.Cap
		}
		d *= 2
	}
	return min(d, p.Cap)
}

// Tracker decides when corrald restarts the failed instances of one pool,
// in the shape of nomad's RestartTracker: it counts consecutive failures,
// backs off exponentially with jitter, and reports a crash loop when an
// instance fails LoopFailures times within LoopWindow. It holds no clock:
// every time comes from its caller, so a test drives it with made-up
// times.
//
// An instance's failure is identified by its InactiveEnter timestamp, so
// reporting the same observation again changes nothing: the coordinator
// can report what it sees on every reconcile.
//
// A Tracker is not safe for concurrent use: the goroutine that owns the
// pool's state owns its Tracker. Instances are numbered as in Observed;
// a Tracker knows nothing of an instance before its first Failed or
// Started.
type Tracker struct {
	p    Policy
	rand func() float64
	m    map[int]*record
}

// record is what a Tracker knows of one instance.
type record struct {
	seen bool      // a failure was recorded: last is meaningful
	last time.Time // InactiveEnter of the last failure recorded

	n        int         // consecutive failures since the history was last forgotten
	window   []time.Time // failures within LoopWindow of the last one
	loop     bool        // in crash loop; sticky until the history is forgotten
	next     time.Time   // earliest restart; zero when none is pending
	delay    time.Duration
	why      string // "failed 3 times in 2m10s (last: exit-code)"
	restarts int    // restarts corrald issued (Started)

	// restarted is true once corrald issued a restart for the failure
	// last: until systemd reports something newer, the restart is under
	// way and must not be issued again.
	restarted bool

	// nr is systemd's NRestarts of the instance as last seen (nrSeen):
	// the restarts systemd made itself (Restart=), which each follow a
	// failure that corrald may never see as "failed".
	nr     uint32
	nrSeen bool
	// halted is true while the instance is stopped by corrald for a crash
	// loop that systemd's own restarts kept going, until its backoff ends.
	halted bool
}

// NewTracker returns a tracker applying p (zero fields take their
// defaults). rand returns a number in [0, 1) for the jitter; nil means
// math/rand/v2's Float64.
func NewTracker(p Policy, rand func() float64) *Tracker {
	if rand == nil {
		rand = randFloat
	}
	return &Tracker{p: p.withDefaults(), rand: rand, m: map[int]*record{}}
}

var randFloat = rand.Float64

// Policy returns the policy the tracker applies, defaults filled in.
func (t *Tracker) Policy() Policy { return t.p }

func (t *Tracker) get(i int) *record {
	r := t.m[i]
	if r == nil {
		r = &record{}
		t.m[i] = r
	}
	return r
}

// Failed records that instance i failed at time at (the unit's
// InactiveEnter) with systemd's result ("exit-code", "signal"…). It
// returns when corrald may restart i, whether i is in crash loop, and a
// reason for humans such as "failed 3 times in 2m10s (last: exit-code);
// next try in 4s".
//
// Failed is idempotent: at identifies the failure, and a failure at or
// before the last one recorded for i changes nothing; Failed then returns
// what it returned for that failure (a zero time once the restart was
// issued or the history forgotten).
//
// The n-th consecutive failure delays the next restart by
// min(Cap, Base·2^(n-1)), jittered; the LoopFailures-th failure within
// LoopWindow puts i in crash loop, where every retry waits Cap, until i
// stays active for LoopWindow (Running) or is forgotten (Forget).
func (t *Tracker) Failed(i int, at time.Time, result string) (next time.Time, loop bool, reason string) {
	r := t.get(i)
	if r.seen && !at.After(r.last) {
		return r.next, r.loop, r.reason()
	}
	r.seen, r.last, r.restarted = true, at, false
	t.count(r, at, 1)
	r.delay = t.jitter(t.p.delay(r.n, r.loop))
	r.next = at.Add(r.delay)
	r.why = r.describe(result)
	return r.next, r.loop, r.reason()
}

// newFailure reports whether a failure of i at at is one Failed has not
// recorded yet.
func (t *Tracker) newFailure(i int, at time.Time) bool {
	r := t.get(i)
	return !r.seen || at.After(r.last)
}

// Restarted records systemd's own restarts of instance i (Restart=):
// its NRestarts counter n, and the time (InactiveEnter) and result of the
// last exit. The first n seen is a baseline, and so is a smaller one
// (systemd starts counting again after a start that is not its own);
// each increase counts as that many failures, within LoopWindow as
// Failed counts one, so that a worker that dies every few seconds is a
// crash loop although systemd never gives up on it. It returns how many
// failures it counted and whether i is in crash loop; in crash loop, the
// backoff (Cap) runs from at.
func (t *Tracker) Restarted(i int, n uint32, at time.Time, result string) (counted int, loop bool) {
	r := t.get(i)
	if !r.nrSeen || n <= r.nr {
		r.nrSeen, r.nr = true, n
		return 0, r.loop
	}
	counted, r.nr = int(n-r.nr), n
	t.count(r, at, counted)
	if at.After(r.last) {
		r.seen, r.last = true, at
	}
	r.why = r.describe(result)
	if r.loop {
		r.delay = t.jitter(t.p.delay(r.n, true))
		r.next = at.Add(r.delay)
	}
	return counted, r.loop
}

// count adds k failures at at to r: its consecutive failures, and its
// window, from which failures older than LoopWindow drop; LoopFailures in
// the window are a crash loop.
func (t *Tracker) count(r *record, at time.Time, k int) {
	r.n += k
	cut := at.Add(-t.p.LoopWindow)
	keep := r.window[:0]
	for _, f := range r.window {
		if f.After(cut) {
			keep = append(keep, f)
		}
	}
	r.window = keep
	for range k {
		r.window = append(r.window, at)
	}
	if len(r.window) >= t.p.LoopFailures {
		r.loop = true
	}
}

// Halt records that corrald stopped instance i to back off a crash loop
// systemd's restarts kept going: it is corrald's own stop, not an
// operator's, and i is started again when its backoff ends.
func (t *Tracker) Halt(i int) { t.get(i).halted = true }

// halted reports whether instance i is stopped by Halt.
func (t *Tracker) halted(i int) bool {
	r := t.m[i]
	return r != nil && r.halted
}

// jitter spreads d over ±Jitter of it.
func (t *Tracker) jitter(d time.Duration) time.Duration {
	if t.p.Jitter == 0 {
		return d
	}
	f := t.rand()
	if f < 0 || f >= 1 {
		f = 0.5
	}
	return time.Duration(float64(d) * (1 + t.p.Jitter*(2*f-1)))
}

// describe says why the instance is backing off, without the delay.
func (r *record) describe(result string) string {
	if result == "" {
		result = "unknown result"
	}
	span := fmtDuration(r.last.Sub(r.window[0]))
	switch count := len(r.window); {
	case r.loop && count > 1:
		return fmt.Sprintf("crash loop: failed %d times in %s (last: %s)", count, span, result)
	case r.loop:
		return fmt.Sprintf("crash loop: failed %d times in a row (last: %s)", r.n, result)
	case count > 1:
		return fmt.Sprintf("failed %d times in %s (last: %s)", count, span, result)
	default:
		return "failed (" + result + ")"
	}
}

func (r *record) reason() string {
	if r.why == "" {
		return ""
	}
	if r.next.IsZero() {
		return r.why
	}
	return r.why + "; next try in " + fmtDuration(r.delay)
}

// Running records that instance i is active since since (its
// ActiveEnter) at now: no restart is pending, and when it has been active
// for LoopWindow its failures, backoff and crash loop are forgotten. The
// count of restarts stays. A zero since forgets nothing.
func (t *Tracker) Running(i int, since, now time.Time) {
	r := t.m[i]
	if r == nil {
		return
	}
	r.restarted, r.next, r.halted = false, time.Time{}, false
	if !since.IsZero() && now.Sub(since) >= t.p.LoopWindow {
		r.n, r.window, r.loop, r.delay, r.why = 0, nil, false, 0, ""
	}
}

// Due reports whether corrald may restart instance i at now: no backoff
// is pending, or it is over.
func (t *Tracker) Due(i int, now time.Time) bool {
	r := t.m[i]
	return r == nil || r.next.IsZero() || !now.Before(r.next)
}

// Next returns when the pending backoff of instance i ends; zero if none
// is pending (never failed, restarted, running or forgotten).
func (t *Tracker) Next(i int) time.Time {
	if r := t.m[i]; r != nil {
		return r.next
	}
	return time.Time{}
}

// Loop reports whether instance i is in crash loop.
func (t *Tracker) Loop(i int) bool {
	r := t.m[i]
	return r != nil && r.loop
}

// Forget drops the history of instance i: failures, backoff, crash loop
// and restarts, as when i is scaled away or the operator acts on it. The
// failure last seen stays seen, so reporting it again does not count it
// anew.
func (t *Tracker) Forget(i int) {
	if r := t.m[i]; r != nil {
		*r = record{seen: r.seen, last: r.last, nr: r.nr, nrSeen: r.nrSeen}
	}
}

// Restarts returns how many restarts corrald issued for instance i since
// it was last forgotten.
func (t *Tracker) Restarts(i int) int {
	if r := t.m[i]; r != nil {
		return r.restarts
	}
	return 0
}

// Started records that corrald issued a start of instance i after a
// backoff: it counts a restart, consumes the backoff (Next returns zero)
// and marks the restart as under way until systemd reports a newer state
// of i (Failed with a newer failure, or Running).
func (t *Tracker) Started(i int) {
	r := t.get(i)
	r.restarts++
	r.restarted, r.halted = true, false
	r.next = time.Time{}
}

// awaiting reports whether a restart of instance i is under way: corrald
// issued it and systemd has reported nothing newer than the failure it
// answered. inactiveEnter is the unit's current InactiveEnter.
func (t *Tracker) awaiting(i int, inactiveEnter time.Time) bool {
	r := t.m[i]
	return r != nil && r.restarted && !inactiveEnter.After(r.last)
}

// failures returns the number of consecutive failures of instance i.
func (t *Tracker) failures(i int) int {
	if r := t.m[i]; r != nil {
		return r.n
	}
	return 0
}

// why returns why instance i is backing off, without the delay: "failed
// (exit-code)"; empty if it has no failures on record.
func (t *Tracker) why(i int) string {
	if r := t.m[i]; r != nil {
		return r.why
	}
	return ""
}

// fmtDuration rounds d for humans: "4s", "1.5s", "2m10s", "250ms".
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Millisecond)
	}
	return d.String()
}
