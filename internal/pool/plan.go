package pool

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/corral-pool/corral/api"
)

// Input is what Plan reconciles: one pool's desired and observed state.
type Input struct {
	Pool    string // the pool's name: "app"
	Balance string // "shared", or "reuseport" or "sticky" (also when empty)
	Desired Desired
	// Observed is what systemd reported of the pool's units.
	Observed Observed
	// Managed marks the instances corrald may start without fighting the
	// operator even though they ran before: the ones corrald started, or
	// that a scale or the pool's target put in scope, and that have not
	// been seen active since. An inactive instance that ran before and is
	// not in Managed was stopped by someone else: Plan holds it. Nil means
	// none.
	Managed map[int]bool
	// Now is the time of the reconcile, from the caller's clock.
	Now time.Time
	// Hung marks the instances corrald's Pinger killed as hung: their next
	// exit counts as "hung" whatever the signal made of it.
	Hung map[int]bool
}

// Output is what Plan decided.
type Output struct {
	// Actions are the jobs to queue, in order: the stops of surplus
	// instances, highest index first (in reuseport mode each service
	// before its socket), then the starts, lowest index first (a socket
	// before its service).
	Actions []Action
	// Desired is Input.Desired, updated: instances the operator stopped
	// are added to Held, instances active again or above Count removed
	// from it (kept sorted; the input's slice is returned when nothing
	// changed), and Stopped cleared when the operator started the target
	// after StoppedAt.
	Desired Desired
	// Phases has the phase of every instance in Observed.Instances and of
	// every instance from 1 to Count.
	Phases map[int]api.Phase
	// Reasons says why an instance is in its phase, for instances whose
	// phase needs explaining; index 0 is about the pool as a whole (not
	// running, stopped, a failed socket).
	Reasons map[int]string
	// Wake is the earliest end of a pending backoff: reconcile again then.
	// Zero if no backoff is pending.
	Wake time.Time
	// Loops lists, ascending, the instances that entered crash loop in
	// this call.
	Loops []int
	// Exits are the exits first seen in this call.
	Exits []Exit
}

// Exit is n exits of one instance, first seen by a reconcile.
type Exit struct {
	Index int
	Class string // exitClass, or "hung" (Input.Hung)
	N     int
}

// Plan decides what corrald does about one pool (docs/corrald.md): it
// compares in.Desired with in.Observed and returns the actions that bring
// the pool to what the operator asked, without undoing what the operator
// did with systemctl. It is a pure function but for t, which it reads and
// updates (failures seen, instances running, restarts issued); t must not
// be nil. Plan is meant to be called on every change, level-triggered:
// calling it again with the same observation issues nothing new but the
// starts and stops that are still wanted.
//
// The pool runs when its target is active, or when an instance is active
// or failed that is not left over from a stop of the target: an instance
// already active when the target last went inactive (ActiveEnter before
// the target's InactiveEnter) is being, or was, stopped with it, and a
// stop that timed out and failed it is the operator's doing too. Plan
// acts only on a pool that runs and is not Stopped; otherwise it starts
// and stops nothing, holds nothing, records no failure and only reports
// phases. A Stopped pool whose target became active after StoppedAt
// (systemctl start NAME.target) is no longer Stopped.
//
// An instance i in 1..Count is, by the first rule that applies:
//
//   - active or activating: running or starting; it leaves Held (the
//     operator started it again); t.Running when active.
//   - held: left alone, whatever its state.
//   - deactivating: stopping; nothing to do until it settles.
//   - failed: the failure, identified by its InactiveEnter, is recorded
//     in t; once its backoff is over, ResetStartUnit and t.Started, else
//     backoff (or crash-loop) and Wake is the end of the backoff. A
//     restart issued for a failure is not issued again while systemd
//     reports nothing newer.
//   - inactive, it ran before (non-zero ActiveEnter) and is not Managed:
//     the operator stopped it, and it joins Held.
//   - inactive and never ran (absent from Observed, or zero ActiveEnter),
//     or Managed: StartUnit ("scale up to N" when systemd did not know
//     it, "wanted by the pool" otherwise), unless t has a backoff pending
//     for it (a start job that failed, reported with t.Failed). In
//     reuseport mode the service Requires= its socket: no socket start.
//
// An instance above Count is surplus. Active or activating, it gets
// StopUnit and, in reuseport mode, so does its socket after it (or the
// next connection would start it again). Failed or inactive, the service
// is left as it is (stopping a failed unit changes nothing) but an active
// reuseport socket of it is stopped. Its history in t is forgotten and it
// leaves Held.
//
// A failed socket (NAME.socket in shared mode; in reuseport mode the
// NAME@I.socket of an instance in 1..Count that is not held), typically
// because its TriggerLimitBurst tripped while no instance could start,
// gets ResetStartUnit once an instance of the pool is active; until then
// it is reported in Reasons[0].
func Plan(in Input, t *Tracker) Output {
	p := planner{in: in, t: t, d: in.Desired, reuseport: in.Balance != "shared",
		out: Output{Phases: map[int]api.Phase{}, Reasons: map[int]string{}}}
	p.held = map[int]bool{}
	for _, h := range in.Desired.Held {
		p.held[h] = true
	}
	o := in.Observed

	if p.d.Stopped && !p.d.StoppedAt.IsZero() && o.Target.Live() && o.Target.ActiveEnter.After(p.d.StoppedAt) {
		p.d.Stopped, p.d.StoppedAt = false, time.Time{}
	}
	runs := poolRuns(o)
	p.acting = runs && !p.d.Stopped
	switch {
	case p.d.Stopped:
		p.poolReason(fmt.Sprintf("stopped by the operator; 'corral start %s' starts it again", in.Pool))
	case !runs:
		p.poolReason(fmt.Sprintf("not running: %s.target is inactive and no instance runs", in.Pool))
	}

	p.surplus()
	for i := 1; i <= p.d.Count; i++ {
		p.wanted(i)
	}
	p.sockets()

	sort.SliceStable(p.starts, func(a, b int) bool {
		x, y := p.starts[a], p.starts[b]
		return x.i < y.i || x.i == y.i && x.socket && !y.socket
	})
	p.out.Actions = p.stops
	for _, s := range p.starts {
		p.out.Actions = append(p.out.Actions, s.a)
	}
	p.out.Desired = p.d
	p.out.Desired.Held = p.heldList()
	return p.out
}

// planner is the working state of one Plan call.
type planner struct {
	in        Input
	t         *Tracker
	d         Desired
	reuseport bool
	acting    bool // the pool runs and is not stopped: Plan may act
	held      map[int]bool
	stops     []Action
	starts    []start
	out       Output
}

// starting reports whether this plan starts instance i's service.
func (p *planner) starting(i int) bool {
	for _, st := range p.starts {
		if st.i == i && !st.socket {
			return true
		}
	}
	return false
}

// start is a start action and what it sorts by: its index, then sockets
// before services.
type start struct {
	i      int
	socket bool
	a      Action
}

// poolRuns reports whether the pool runs (see Plan).
func poolRuns(o Observed) bool {
	if o.Target.Live() {
		return true
	}
	if o.Target.ActiveState == "deactivating" {
		return false
	}
	stopped := o.Target.InactiveEnter
	for _, u := range o.Instances {
		if (u.Live() || u.Failed()) && (stopped.IsZero() || u.ActiveEnter.After(stopped)) {
			return true
		}
	}
	return false
}

func (p *planner) poolReason(s string) {
	if r := p.out.Reasons[0]; r != "" {
		s = r + "; " + s
	}
	p.out.Reasons[0] = s
}

func (p *planner) phase(i int, ph api.Phase, reason string) {
	p.out.Phases[i] = ph
	if reason != "" {
		p.out.Reasons[i] = reason
	}
}

func (p *planner) wake(at time.Time) {
	if p.out.Wake.IsZero() || at.Before(p.out.Wake) {
		p.out.Wake = at
	}
}

// surplus handles the instances above Count, highest first.
func (p *planner) surplus() {
	o := p.in.Observed
	var idx []int
	for i := range o.Instances {
		if i > p.d.Count {
			idx = append(idx, i)
		}
	}
	if p.reuseport {
		for i := range o.Sockets {
			if i > p.d.Count && !slices.Contains(idx, i) {
				idx = append(idx, i)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(idx)))
	why := fmt.Sprintf("scale down to %d", p.d.Count)
	for _, i := range idx {
		delete(p.held, i)
		p.t.Forget(i)
		if u, ok := o.Instances[i]; ok {
			switch {
			case u.Live():
				p.phase(i, api.PhaseSurplus, "above the desired count "+fmt.Sprint(p.d.Count))
				if p.acting {
					p.stops = append(p.stops, Action{StopUnit, InstanceName(p.in.Pool, i), why})
				}
			case u.ActiveState == "deactivating":
				p.phase(i, api.PhaseSurplus, "above the desired count "+fmt.Sprint(p.d.Count))
			case u.Failed():
				p.phase(i, api.PhaseStopped, fmt.Sprintf("failed (%s); above the desired count %d", result(u), p.d.Count))
			default:
				p.phase(i, api.PhaseStopped, "")
			}
		}
		if s, ok := o.Sockets[i]; ok && p.reuseport && p.acting && s.Live() {
			p.stops = append(p.stops, Action{StopUnit, SocketName(p.in.Pool, i), why + ": close its socket"})
		}
	}
}

// wanted handles instance i in 1..Count.
func (p *planner) wanted(i int) {
	u, known := p.in.Observed.Instances[i]
	now := p.in.Now
	switch {
	case u.Live() && p.restartLoop(i, u):
	case u.Live():
		delete(p.held, i)
		reason := ""
		switch {
		case p.t.Loop(i):
			reason = p.t.why(i) + "; up again"
		case u.Exit != "" && p.t.failures(i) > 0:
			reason = "restarted; last exit: " + u.Exit
		}
		switch {
		case u.Up():
			p.t.Running(i, u.ActiveEnter, now)
			p.phase(i, api.PhaseRunning, reason)
		case u.SubState == "auto-restart":
			p.phase(i, api.PhaseStarting, "systemd restarts it (Restart=)")
		default:
			p.phase(i, api.PhaseStarting, reason)
		}
	case p.held[i]:
		p.phase(i, api.PhaseHeld, p.heldReason(i))
	case u.ActiveState == "deactivating":
		p.phase(i, api.PhaseStopping, "")
	case !p.acting:
		reason := ""
		if u.Failed() {
			reason = "failed (" + result(u) + ")"
		}
		p.phase(i, api.PhaseStopped, reason)
	case u.Failed():
		p.failed(i, u)
	case p.t.awaiting(i, u.InactiveEnter):
		p.phase(i, api.PhaseStarting, "start issued; waiting for systemd")
	case p.t.halted(i) && !p.t.Due(i, now):
		next := p.t.Next(i)
		p.wake(next)
		p.phase(i, api.PhaseCrashLoop, p.t.why(i)+"; stopped by corrald, next try in "+fmtDuration(next.Sub(now)))
	case p.t.halted(i):
		why := "crash loop: " + strings.TrimPrefix(p.t.why(i), "crash loop: ") + "; backoff over, start again"
		p.t.Started(i)
		p.starts = append(p.starts, start{i, false, Action{StartUnit, InstanceName(p.in.Pool, i), why}})
		p.phase(i, api.PhaseCrashLoop, why)
	case known && !u.ActiveEnter.IsZero() && !p.in.Managed[i]:
		p.held[i] = true
		p.phase(i, api.PhaseHeld, p.heldReason(i))
	case !p.t.Due(i, now):
		next := p.t.Next(i)
		p.wake(next)
		p.phase(i, api.PhaseBackoff, p.t.why(i)+"; next try in "+fmtDuration(next.Sub(now)))
	default:
		why := "wanted by the pool"
		if !known {
			why = fmt.Sprintf("scale up to %d", p.d.Count)
		}
		if !p.t.Next(i).IsZero() {
			why += " after " + p.t.why(i)
			p.t.Started(i)
		}
		p.starts = append(p.starts, start{i, false, Action{StartUnit, InstanceName(p.in.Pool, i), why}})
		p.phase(i, api.PhaseStarting, why)
	}
}

// restartLoop counts the restarts systemd made of a live instance i
// itself, and when they make a crash loop (a worker that dies every few
// seconds never trips systemd's start limit), stops i and backs it off as
// a failed one: it reports whether it did.
func (p *planner) restartLoop(i int, u Unit) bool {
	wasLoop := p.t.Loop(i)
	// Once systemd has started the next life, the unit's Result is that
	// life's ("success"); Exit, from the record ExecStopPost= wrote,
	// keeps the cause; without it, the journal has it.
	last := u.Exit
	if last == "" && u.Result != "success" {
		last = u.Result
	}
	if last == "" {
		last = "an exit systemd restarted; 'corral logs " + p.in.Pool + "' says why"
	}
	counted, loop := p.t.Restarted(i, u.NRestarts, u.InactiveEnter, last)
	p.exited(i, u, counted)
	if counted == 0 || !loop || !p.acting {
		return false
	}
	if !wasLoop {
		p.out.Loops = append(p.out.Loops, i)
	}
	next := p.t.Next(i)
	p.t.Halt(i)
	p.wake(next)
	why := fmt.Sprintf("%s; systemd restarted it %d time(s) since the last look: stopped, next try in %s",
		p.t.why(i), counted, fmtDuration(next.Sub(p.in.Now)))
	p.stops = append(p.stops, Action{StopUnit, InstanceName(p.in.Pool, i), why})
	p.phase(i, api.PhaseCrashLoop, why)
	return true
}

// exited counts n exits of instance i, u, first seen now.
func (p *planner) exited(i int, u Unit, n int) {
	if n <= 0 {
		return
	}
	class := exitClass(u)
	if p.in.Hung[i] {
		class = "hung"
	}
	p.out.Exits = append(p.out.Exits, Exit{i, class, n})
}

// failed handles a failed instance i in 1..Count of an acting pool.
func (p *planner) failed(i int, u Unit) {
	now := p.in.Now
	wasLoop := p.t.Loop(i)
	if p.t.newFailure(i, u.InactiveEnter) {
		p.exited(i, u, 1)
	}
	next, loop, _ := p.t.Failed(i, u.InactiveEnter, result(u))
	if loop && !wasLoop {
		p.out.Loops = append(p.out.Loops, i)
	}
	ph := api.PhaseBackoff
	if loop {
		ph = api.PhaseCrashLoop
	}
	switch {
	case p.t.awaiting(i, u.InactiveEnter):
		if !loop {
			ph = api.PhaseStarting
		}
		p.phase(i, ph, p.t.why(i)+"; restart issued, waiting for systemd")
	case !next.IsZero() && now.Before(next):
		p.wake(next)
		p.phase(i, ph, p.t.why(i)+"; next try in "+fmtDuration(next.Sub(now)))
	default:
		why := fmt.Sprintf("restart after failure %d: %s", p.t.failures(i), p.t.why(i))
		if p.t.failures(i) == 0 {
			// The history was forgotten (scale, operator): restart now.
			why = "restart: failed (" + result(u) + ")"
		}
		p.t.Started(i)
		p.starts = append(p.starts, start{i, false, Action{ResetStartUnit, InstanceName(p.in.Pool, i), why}})
		if !loop {
			ph = api.PhaseStarting
		}
		p.phase(i, ph, why)
	}
}

// sockets resets the failed sockets once an instance runs again.
func (p *planner) sockets() {
	o := p.in.Observed
	var idx []int
	for i, s := range o.Sockets {
		if !s.Failed() {
			continue
		}
		if (p.reuseport && i >= 1 && i <= p.d.Count && !p.held[i]) || (!p.reuseport && i == 0) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	sort.Ints(idx)
	anyUp := false
	for _, u := range o.Instances {
		anyUp = anyUp || u.Up()
	}
	for _, i := range idx {
		s := o.Sockets[i]
		res := s.Result
		if res == "" || res == "success" {
			res = "trigger limit?"
		}
		// A reuseport socket comes back only with its own instance: open
		// while that cannot run, it would queue its share of the
		// connections for nobody.
		ready := anyUp
		if p.reuseport {
			ready = o.Instances[i].Up() || p.starting(i)
		}
		if p.acting && ready {
			p.starts = append(p.starts, start{i, true, Action{ResetStartUnit, SocketName(p.in.Pool, i),
				"socket failed (" + res + "); an instance runs again"}})
			continue
		}
		when := "once an instance of the pool runs"
		if p.reuseport {
			when = "with its instance"
		}
		p.poolReason(fmt.Sprintf("%s failed (%s); corrald restarts it %s", SocketName(p.in.Pool, i), res, when))
	}
}

func (p *planner) heldReason(i int) string {
	return fmt.Sprintf("stopped by the operator; 'corral start %s@%d' starts it again", p.in.Pool, i)
}

// heldList returns the held instances, sorted; the input's slice when
// nothing changed.
func (p *planner) heldList() []int {
	var l []int
	for h := range p.held {
		if h >= 1 && h <= p.d.Count {
			l = append(l, h)
		}
	}
	sort.Ints(l)
	in := slices.Clone(p.in.Desired.Held)
	sort.Ints(in)
	if slices.Equal(l, slices.Compact(in)) {
		return p.in.Desired.Held
	}
	return l
}

// result returns the cause of u's last exit for humans: Exit, else
// systemd's Result.
func result(u Unit) string {
	if u.Exit != "" {
		return u.Exit
	}
	if u.Result == "" {
		return "unknown result"
	}
	return u.Result
}
