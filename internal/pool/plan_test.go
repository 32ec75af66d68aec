package pool

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

// Units of the pool "app" as systemd would report them.

func target(state string, activeEnter, inactiveEnter time.Time) Unit {
	return Unit{Name: "app.target", LoadState: "loaded", ActiveState: state, ActiveEnter: activeEnter, InactiveEnter: inactiveEnter}
}

// upTarget is a target active for an hour.
var upTarget = target("active", at(-time.Hour), time.Time{})

func running(i int, since time.Time) Unit {
	return Unit{Name: InstanceName("app", i), LoadState: "loaded", ActiveState: "active", SubState: "running",
		Result: "success", ActiveEnter: since, MainPID: uint32(100 + i)}
}

func failedAt(i int, ran, failed time.Time, result string) Unit {
	return Unit{Name: InstanceName("app", i), LoadState: "loaded", ActiveState: "failed", SubState: "failed",
		Result: result, ActiveEnter: ran, InactiveEnter: failed}
}

func stoppedAt(i int, ran, stopped time.Time) Unit {
	return Unit{Name: InstanceName("app", i), LoadState: "loaded", ActiveState: "inactive", SubState: "dead",
		Result: "success", ActiveEnter: ran, InactiveEnter: stopped}
}

// restartedAt is u after systemd restarted it itself n times (NRestarts),
// the last exit at inactive with exit-code.
func restartedAt(u Unit, n uint32, inactive time.Time) Unit {
	u.NRestarts, u.InactiveEnter = n, inactive
	if n > 0 {
		u.Result = "exit-code"
	}
	return u
}

// neverRan is an instance the target wants that never started.
func neverRan(i int) Unit {
	return Unit{Name: InstanceName("app", i), LoadState: "loaded", ActiveState: "inactive", SubState: "dead", Result: "success"}
}

func withState(u Unit, active, sub string) Unit {
	u.ActiveState, u.SubState = active, sub
	return u
}

func socket(i int, state, result string) Unit {
	sub := map[string]string{"active": "listening", "failed": "failed", "inactive": "dead"}[state]
	return Unit{Name: SocketName("app", i), LoadState: "loaded", ActiveState: state, SubState: sub, Result: result}
}

// instances builds Observed.Instances from units named app@I.service.
func instances(us ...Unit) map[int]Unit {
	m := map[int]Unit{}
	for _, u := range us {
		_, i, ok := api.ParseInstance(u.Name)
		if !ok {
			panic(u.Name)
		}
		m[i] = u
	}
	return m
}

// listening returns active reuseport sockets 1..n.
func listening(n int) map[int]Unit {
	m := map[int]Unit{}
	for i := 1; i <= n; i++ {
		m[i] = socket(i, "active", "success")
	}
	return m
}

func actionStrings(as []Action) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Kind.String()+" "+a.Unit)
	}
	return out
}

// planWant is what a test checks of an Output. Nil phases are not
// checked; reasons are substrings of the reasons of their index.
type planWant struct {
	actions []string
	reasons []string // "I: substring"
	phases  map[int]api.Phase
	held    []int
	stopped bool
	wake    time.Time
	loops   []int
}

func samePhases(a, b map[int]api.Phase) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func checkPlan(t *testing.T, in Input, out Output, w planWant) {
	t.Helper()
	if got := actionStrings(out.Actions); !slices.Equal(got, w.actions) {
		t.Errorf("actions:\n got %q\nwant %q", got, w.actions)
	}
	if w.phases != nil && !samePhases(out.Phases, w.phases) {
		t.Errorf("phases:\n got %v\nwant %v", out.Phases, w.phases)
	}
	if !slices.Equal(out.Desired.Held, w.held) {
		t.Errorf("held: got %v, want %v", out.Desired.Held, w.held)
	}
	if out.Desired.Stopped != w.stopped {
		t.Errorf("stopped: got %v, want %v", out.Desired.Stopped, w.stopped)
	}
	if out.Desired.Count != in.Desired.Count || out.Desired.Auto != in.Desired.Auto || out.Desired.Scaled != in.Desired.Scaled {
		t.Errorf("desired changed: got %+v, in %+v", out.Desired, in.Desired)
	}
	if !out.Wake.Equal(w.wake) {
		t.Errorf("wake: got %v, want %v", out.Wake, w.wake)
	}
	if !slices.Equal(out.Loops, w.loops) {
		t.Errorf("loops: got %v, want %v", out.Loops, w.loops)
	}
	for _, r := range w.reasons {
		var i int
		var sub string
		if _, err := fmt.Sscanf(r, "%d:", &i); err != nil {
			t.Fatalf("bad reason spec %q", r)
		}
		sub = strings.TrimSpace(r[strings.IndexByte(r, ':')+1:])
		if !strings.Contains(out.Reasons[i], sub) {
			t.Errorf("reason %d:\n got %q\nwant it to contain %q", i, out.Reasons[i], sub)
		}
	}
	for _, a := range out.Actions {
		if a.Reason == "" {
			t.Errorf("action %v has no reason", a)
		}
	}
}

func TestPlan(t *testing.T) {
	old := at(-10 * time.Minute)
	tests := []struct {
		name    string
		balance string
		desired Desired
		obs     Observed
		managed map[int]bool
		setup   func(*Tracker)
		want    planWant
	}{
		{
			name:    "steady state",
			desired: Desired{Count: 2},
			obs:     Observed{Target: upTarget, Sockets: listening(2), Instances: instances(running(1, old), running(2, old))},
			want:    planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseRunning}},
		},
		{
			name:    "scale up 2 to 4",
			desired: Desired{Count: 4, Scaled: true},
			obs:     Observed{Target: upTarget, Sockets: listening(2), Instances: instances(running(1, old), running(2, old))},
			want: planWant{
				actions: []string{"start app@3.service", "start app@4.service"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseRunning, 3: api.PhaseStarting, 4: api.PhaseStarting},
				reasons: []string{"3: scale up to 4"},
			},
		},
		{
			name:    "instances the target wants but never ran are started",
			desired: Desired{Count: 3},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), neverRan(2), neverRan(3))},
			want: planWant{
				actions: []string{"start app@2.service", "start app@3.service"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting, 3: api.PhaseStarting},
				reasons: []string{"2: wanted by the pool"},
			},
		},
		{
			name:    "scale down 4 to 1, reuseport: services and their sockets, highest first",
			balance: "reuseport",
			desired: Desired{Count: 1, Scaled: true},
			obs: Observed{Target: upTarget, Sockets: listening(4),
				Instances: instances(running(1, old), running(2, old), running(3, old), running(4, old))},
			want: planWant{
				actions: []string{
					"stop app@4.service", "stop app@4.socket",
					"stop app@3.service", "stop app@3.socket",
					"stop app@2.service", "stop app@2.socket",
				},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseSurplus, 3: api.PhaseSurplus, 4: api.PhaseSurplus},
				reasons: []string{"2: above the desired count 1"},
			},
		},
		{
			name:    "scale down 4 to 1, shared: services only",
			balance: "shared",
			desired: Desired{Count: 1, Scaled: true},
			obs: Observed{Target: upTarget, Sockets: map[int]Unit{0: socket(0, "active", "success")},
				Instances: instances(running(1, old), running(2, old), running(3, old), running(4, old))},
			want: planWant{
				actions: []string{"stop app@4.service", "stop app@3.service", "stop app@2.service"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseSurplus, 3: api.PhaseSurplus, 4: api.PhaseSurplus},
			},
		},
		{
			name:    "surplus: restarting one stopped, failed one left failed, a leftover socket closed",
			desired: Desired{Count: 1},
			obs: Observed{Target: upTarget, Sockets: listening(4),
				Instances: instances(running(1, old),
					withState(failedAt(2, old, at(-s), "exit-code"), "activating", "auto-restart"),
					failedAt(3, old, at(-s), "exit-code"),
					stoppedAt(4, old, at(-s)))},
			want: planWant{
				actions: []string{
					"stop app@4.socket",
					"stop app@3.socket",
					"stop app@2.service", "stop app@2.socket",
				},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseSurplus, 3: api.PhaseStopped, 4: api.PhaseStopped},
				reasons: []string{"3: failed (exit-code); above the desired count 1"},
			},
		},
		{
			name:    "held instances above the count are dropped",
			desired: Desired{Count: 2, Held: []int{2, 3}},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), stoppedAt(2, old, old), stoppedAt(3, old, old))},
			want: planWant{
				held:   []int{2},
				phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseHeld, 3: api.PhaseStopped},
			},
		},
		{
			name:    "an instance the operator stopped is held, not restarted",
			desired: Desired{Count: 3},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), stoppedAt(2, old, at(-s)), running(3, old))},
			want: planWant{
				held:    []int{2},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseHeld, 3: api.PhaseRunning},
				reasons: []string{"2: 'corral start app@2'"},
			},
		},
		{
			name:    "a held instance stays stopped",
			desired: Desired{Count: 2, Held: []int{2}},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), stoppedAt(2, old, at(-s)))},
			want:    planWant{held: []int{2}, phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseHeld}},
		},
		{
			name:    "a held instance that failed stays held",
			desired: Desired{Count: 2, Held: []int{2}},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), failedAt(2, old, at(-s), "exit-code"))},
			want:    planWant{held: []int{2}, phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseHeld}},
		},
		{
			name:    "a held instance the operator started is no longer held",
			desired: Desired{Count: 3, Held: []int{2, 3}},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), running(2, at(-s)), stoppedAt(3, old, old))},
			want:    planWant{held: []int{3}, phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseRunning, 3: api.PhaseHeld}},
		},
		{
			name:    "an instance corrald started that ran before is started, not held",
			desired: Desired{Count: 2},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), stoppedAt(2, old, at(-s)))},
			managed: map[int]bool{2: true},
			want: planWant{
				actions: []string{"start app@2.service"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting},
			},
		},
		{
			name:    "a stopped pool: nothing started, nothing recorded",
			desired: Desired{Count: 3, Stopped: true},
			obs: Observed{Target: target("inactive", old, at(-time.Minute)),
				Instances: instances(failedAt(1, at(-2*time.Minute), at(-s), "exit-code"), stoppedAt(2, old, at(-time.Minute)))},
			want: planWant{
				stopped: true,
				phases:  map[int]api.Phase{1: api.PhaseStopped, 2: api.PhaseStopped, 3: api.PhaseStopped},
				reasons: []string{"0: stopped by the operator; 'corral start app'", "1: failed (exit-code)"},
			},
		},
		{
			name:    "a stopped pool does not stop surplus or start wanted instances",
			desired: Desired{Count: 2, Stopped: true, StoppedAt: at(-time.Hour)},
			obs:     Observed{Target: upTarget, Sockets: listening(3), Instances: instances(running(1, old), running(3, old))},
			want: planWant{
				stopped: true,
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStopped, 3: api.PhaseSurplus},
			},
		},
		{
			name:    "a stopped pool whose target the operator started again runs",
			desired: Desired{Count: 2, Stopped: true, StoppedAt: at(-10 * time.Minute)},
			obs:     Observed{Target: target("active", at(-time.Minute), at(-10*time.Minute)), Instances: instances(running(1, at(-time.Minute)))},
			want: planWant{
				actions: []string{"start app@2.service"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting},
			},
		},
		{
			name:    "a pool not running: nothing to do",
			desired: Desired{Count: 2},
			obs:     Observed{Target: target("inactive", time.Time{}, time.Time{}), Instances: instances(neverRan(1), neverRan(2))},
			want: planWant{
				phases:  map[int]api.Phase{1: api.PhaseStopped, 2: api.PhaseStopped},
				reasons: []string{"0: not running: app.target is inactive"},
			},
		},
		{
			name:    "a pool whose target the operator stopped: its instances are not held",
			desired: Desired{Count: 2},
			obs: Observed{Target: target("inactive", old, at(-time.Minute)),
				Instances: instances(stoppedAt(1, old, at(-time.Minute)), stoppedAt(2, old, at(-time.Minute)))},
			want: planWant{phases: map[int]api.Phase{1: api.PhaseStopped, 2: api.PhaseStopped}},
		},
		{
			name:    "an instance failed by the target's stop (timeout) is not restarted",
			desired: Desired{Count: 2},
			obs: Observed{Target: target("inactive", old, at(-time.Minute)),
				Instances: instances(failedAt(1, old, at(-30*s), "timeout"), stoppedAt(2, old, at(-time.Minute)))},
			want: planWant{phases: map[int]api.Phase{1: api.PhaseStopped, 2: api.PhaseStopped}},
		},
		{
			name:    "while the target stops, instances still stopping are not a running pool",
			desired: Desired{Count: 2},
			obs: Observed{Target: target("inactive", old, at(-s)),
				Instances: instances(running(1, old), stoppedAt(2, old, at(0)))},
			want: planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStopped}},
		},
		{
			name:    "a target stopping is not a running pool",
			desired: Desired{Count: 2},
			obs: Observed{Target: target("deactivating", old, time.Time{}),
				Instances: instances(running(1, old), stoppedAt(2, old, at(0)))},
			want: planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStopped}},
		},
		{
			name:    "a surplus instance already stopping is left to stop",
			desired: Desired{Count: 1},
			obs: Observed{Target: upTarget, Sockets: listening(1),
				Instances: instances(running(1, old), withState(running(2, old), "deactivating", "stop-sigterm"))},
			want: planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseSurplus}},
		},
		{
			name:    "a stopped pool with a failed socket says both",
			balance: "shared",
			desired: Desired{Count: 1, Stopped: true},
			obs: Observed{Target: target("inactive", old, at(-time.Minute)), Sockets: map[int]Unit{0: socket(0, "failed", "")},
				Instances: instances(stoppedAt(1, old, at(-time.Minute)))},
			want: planWant{stopped: true, phases: map[int]api.Phase{1: api.PhaseStopped},
				reasons: []string{"0: stopped by the operator; 'corral start app' starts it again; app.socket failed (trigger limit?)"}},
		},
		{
			name:    "an instance started on its own runs the pool",
			desired: Desired{Count: 3},
			obs: Observed{Target: target("inactive", time.Time{}, time.Time{}),
				Instances: instances(neverRan(1), neverRan(2), running(3, at(-s)))},
			want: planWant{
				actions: []string{"start app@1.service", "start app@2.service"},
				phases:  map[int]api.Phase{1: api.PhaseStarting, 2: api.PhaseStarting, 3: api.PhaseRunning},
			},
		},
		{
			name:    "an instance started after the target stopped runs the pool",
			desired: Desired{Count: 2},
			obs: Observed{Target: target("inactive", old, at(-time.Hour)),
				Instances: instances(running(1, at(-s)), stoppedAt(2, old, at(-time.Hour)))},
			want: planWant{held: []int{2}, phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseHeld}},
		},
		{
			name:    "a failed instance of a never-started target runs the pool",
			desired: Desired{Count: 1},
			obs: Observed{Target: target("inactive", time.Time{}, time.Time{}),
				Instances: instances(failedAt(1, at(-time.Minute), at(-time.Minute), "exit-code"))},
			want: planWant{
				actions: []string{"reset-failed+start app@1.service"},
				phases:  map[int]api.Phase{1: api.PhaseStarting},
				reasons: []string{"1: restart after failure 1: failed (exit-code)"},
			},
		},
		{
			name:    "a failed instance backs off",
			desired: Desired{Count: 2},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old), failedAt(2, old, at(-500*time.Millisecond), "exit-code"))},
			want: planWant{
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseBackoff},
				wake:    at(500 * time.Millisecond),
				reasons: []string{"2: failed (exit-code); next try in 500ms"},
			},
		},
		{
			name:    "wake is the earliest backoff",
			desired: Desired{Count: 3},
			obs: Observed{Target: upTarget, Instances: instances(running(1, old),
				failedAt(2, old, at(-500*time.Millisecond), "exit-code"),
				failedAt(3, old, at(-800*time.Millisecond), "signal"))},
			want: planWant{
				phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseBackoff, 3: api.PhaseBackoff},
				wake:   at(200 * time.Millisecond),
			},
		},
		{
			name:    "systemd restarting an instance itself",
			desired: Desired{Count: 2},
			obs: Observed{Target: upTarget, Instances: instances(running(1, old),
				withState(failedAt(2, old, at(-s), "exit-code"), "activating", "auto-restart"))},
			want: planWant{
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting},
				reasons: []string{"2: systemd restarts it"},
			},
		},
		{
			name:    "an instance stopping",
			desired: Desired{Count: 2},
			obs: Observed{Target: upTarget, Instances: instances(running(1, old),
				withState(running(2, old), "deactivating", "stop-sigterm"))},
			want: planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStopping}},
		},
		{
			name:    "a failed shared socket is restarted once an instance runs",
			balance: "shared",
			desired: Desired{Count: 2},
			obs: Observed{Target: upTarget, Sockets: map[int]Unit{0: socket(0, "failed", "trigger-limit-hit")},
				Instances: instances(running(1, old), running(2, old))},
			want: planWant{
				actions: []string{"reset-failed+start app.socket"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseRunning},
			},
		},
		{
			name:    "a failed socket is reported while no instance runs",
			balance: "shared",
			desired: Desired{Count: 1},
			obs: Observed{Target: upTarget, Sockets: map[int]Unit{0: socket(0, "failed", "trigger-limit-hit")},
				Instances: instances(failedAt(1, old, at(-100*time.Millisecond), "exit-code"))},
			want: planWant{
				phases:  map[int]api.Phase{1: api.PhaseBackoff},
				wake:    at(900 * time.Millisecond),
				reasons: []string{"0: app.socket failed (trigger-limit-hit); corrald restarts it once an instance of the pool runs"},
			},
		},
		{
			name:    "reuseport: stops first, then starts by index, a socket before its service",
			desired: Desired{Count: 3},
			obs: Observed{Target: upTarget,
				Sockets: map[int]Unit{1: socket(1, "active", "success"), 2: socket(2, "failed", ""), 3: socket(3, "active", ""), 4: socket(4, "active", "")},
				Instances: instances(running(1, old), failedAt(2, old, at(-time.Minute), "exit-code"), neverRan(3),
					running(4, old))},
			want: planWant{
				actions: []string{
					"stop app@4.service", "stop app@4.socket",
					"reset-failed+start app@2.socket", "reset-failed+start app@2.service",
					"start app@3.service",
				},
				phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting, 3: api.PhaseStarting, 4: api.PhaseSurplus},
			},
		},
		{
			name:    "reuseport: a failed socket stays down while its own instance backs off",
			desired: Desired{Count: 2},
			obs: Observed{Target: upTarget, Sockets: map[int]Unit{1: socket(1, "active", ""), 2: socket(2, "failed", "service-start-limit-hit")},
				Instances: instances(running(1, old), failedAt(2, old, at(0), "exit-code"))},
			want: planWant{
				phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseBackoff},
				wake:   at(s),
				reasons: []string{"0: app@2.socket failed (service-start-limit-hit); corrald restarts it with its instance",
					"2: failed (exit-code); next try in 1s"},
			},
		},
		{
			name:    "a held instance's failed socket is left alone",
			desired: Desired{Count: 2, Held: []int{2}},
			obs: Observed{Target: upTarget, Sockets: map[int]Unit{1: socket(1, "active", ""), 2: socket(2, "failed", "")},
				Instances: instances(running(1, old), stoppedAt(2, old, old))},
			want: planWant{held: []int{2}, phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseHeld}},
		},
		{
			name:    "a failed start job backs off an instance corrald starts",
			desired: Desired{Count: 2},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old))},
			setup:   func(tr *Tracker) { tr.Failed(2, at(-s/2), "start job: dependency") },
			want: planWant{
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseBackoff},
				wake:    at(s / 2),
				reasons: []string{"2: failed (start job: dependency); next try in 500ms"},
			},
		},
		{
			name:    "after a failed start job's backoff, the start counts as a restart",
			desired: Desired{Count: 2},
			obs:     Observed{Target: upTarget, Instances: instances(running(1, old))},
			setup:   func(tr *Tracker) { tr.Failed(2, at(-2*s), "start job: dependency") },
			want: planWant{
				actions: []string{"start app@2.service"},
				phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting},
				reasons: []string{"2: scale up to 2 after failed (start job: dependency)"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(testPolicy, noJitter)
			if tt.setup != nil {
				tt.setup(tr)
			}
			in := Input{Pool: "app", Balance: tt.balance, Desired: tt.desired, Observed: tt.obs, Managed: tt.managed, Now: t0}
			if in.Balance == "" {
				in.Balance = "reuseport"
			}
			heldBefore := slices.Clone(tt.desired.Held)
			out := Plan(in, tr)
			checkPlan(t, in, out, tt.want)
			if !slices.Equal(tt.desired.Held, heldBefore) {
				t.Errorf("Plan changed the input's Held: %v, was %v", tt.desired.Held, heldBefore)
			}
		})
	}
}

// TestPlanSequence runs Plan again and again with one tracker, as the
// coordinator does.
func TestPlanSequence(t *testing.T) {
	old := at(-10 * time.Minute)
	type step struct {
		now       time.Duration
		instances map[int]Unit
		managed   map[int]bool
		want      planWant
		restarts  int // of instance 1
	}
	tests := []struct {
		name  string
		count int
		steps []step
	}{
		{
			name: "a failure backs off, then is restarted once, and counted once", count: 2,
			steps: []step{
				{now: 0, instances: instances(failedAt(1, old, at(0), "exit-code"), running(2, old)),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseBackoff, 2: api.PhaseRunning}, wake: at(s),
						reasons: []string{"1: failed (exit-code); next try in 1s"}}},
				{now: s / 2, instances: instances(failedAt(1, old, at(0), "exit-code"), running(2, old)),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseBackoff, 2: api.PhaseRunning}, wake: at(s),
						reasons: []string{"1: failed (exit-code); next try in 500ms"}}},
				{now: s, instances: instances(failedAt(1, old, at(0), "exit-code"), running(2, old)),
					want: planWant{actions: []string{"reset-failed+start app@1.service"},
						phases:  map[int]api.Phase{1: api.PhaseStarting, 2: api.PhaseRunning},
						reasons: []string{"1: restart after failure 1: failed (exit-code)"}},
					restarts: 1},
				// The same observation again: the restart is under way.
				{now: s + 1, instances: instances(failedAt(1, old, at(0), "exit-code"), running(2, old)),
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseStarting, 2: api.PhaseRunning}},
					restarts: 1},
				// Reset, not yet started: inactive, and corrald's own.
				{now: s + 2, instances: instances(withState(failedAt(1, old, at(0), "success"), "inactive", "dead"), running(2, old)),
					managed:  map[int]bool{1: true},
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseStarting, 2: api.PhaseRunning}},
					restarts: 1},
				{now: 2 * s, instances: instances(failedAt(1, at(s+3), at(2*s), "signal"), running(2, old)),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseBackoff, 2: api.PhaseRunning}, wake: at(4 * s),
						reasons: []string{"1: failed 2 times in 2s (last: signal); next try in 2s"}},
					restarts: 1},
				{now: 4 * s, instances: instances(failedAt(1, at(s+3), at(2*s), "signal"), running(2, old)),
					want: planWant{actions: []string{"reset-failed+start app@1.service"},
						phases: map[int]api.Phase{1: api.PhaseStarting, 2: api.PhaseRunning}},
					restarts: 2},
				{now: 5 * s, instances: instances(running(1, at(4*s+1)), running(2, old)),
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseRunning}},
					restarts: 2},
			},
		},
		{
			name: "crash loop after 3 failures in the window, reported once", count: 1,
			steps: []step{
				{now: s, instances: instances(failedAt(1, old, at(0), "exit-code")),
					want:     planWant{actions: []string{"reset-failed+start app@1.service"}, phases: map[int]api.Phase{1: api.PhaseStarting}},
					restarts: 1},
				{now: 3 * s, instances: instances(failedAt(1, at(s), at(s), "exit-code")),
					want:     planWant{actions: []string{"reset-failed+start app@1.service"}, phases: map[int]api.Phase{1: api.PhaseStarting}},
					restarts: 2},
				{now: 5 * s, instances: instances(failedAt(1, at(3*s), at(5*s), "exit-code")),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseCrashLoop}, wake: at(15 * s), loops: []int{1},
						reasons: []string{"1: crash loop: failed 3 times in 5s (last: exit-code); next try in 10s"}},
					restarts: 2},
				{now: 6 * s, instances: instances(failedAt(1, at(3*s), at(5*s), "exit-code")),
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseCrashLoop}, wake: at(15 * s)},
					restarts: 2},
				{now: 15 * s, instances: instances(failedAt(1, at(3*s), at(5*s), "exit-code")),
					want: planWant{actions: []string{"reset-failed+start app@1.service"}, phases: map[int]api.Phase{1: api.PhaseCrashLoop},
						reasons: []string{"1: restart after failure 3: crash loop"}},
					restarts: 3},
				{now: 16 * s, instances: instances(running(1, at(15*s))),
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseRunning}, reasons: []string{"1: crash loop"}},
					restarts: 3},
				// Up for the window: the loop is over.
				{now: 75 * s, instances: instances(running(1, at(15*s))),
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseRunning}},
					restarts: 3},
				{now: 80 * s, instances: instances(failedAt(1, at(15*s), at(80*s), "exit-code")),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseBackoff}, wake: at(81 * s),
						reasons: []string{"1: failed (exit-code); next try in 1s"}},
					restarts: 3},
			},
		},
		{
			// A worker that dies every few seconds: systemd restarts it
			// itself (Restart=) and never gives up, so the unit is never
			// seen failed; its NRestarts counts the failures.
			name: "a crash loop of systemd's own restarts is stopped and backed off", count: 1,
			steps: []step{
				{now: 0, instances: instances(restartedAt(running(1, old), 0, time.Time{})),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseRunning}}},
				{now: 3 * s, instances: instances(restartedAt(running(1, at(2*s+1)), 1, at(2*s))),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseRunning}}},
				{now: 6 * s, instances: instances(restartedAt(withState(running(1, at(2*s+1)), "activating", "auto-restart"), 3, at(5*s))),
					want: planWant{actions: []string{"stop app@1.service"}, phases: map[int]api.Phase{1: api.PhaseCrashLoop},
						wake: at(15 * s), loops: []int{1},
						reasons: []string{"1: crash loop: failed 3 times in 3s (last: exit-code); systemd restarted it 2 time(s) since the last look: stopped, next try in 9s"}}},
				// Stopped by corrald, not by an operator: not held.
				{now: 7 * s, instances: instances(restartedAt(stoppedAt(1, at(2*s+1), at(6*s)), 3, at(6*s))),
					want: planWant{phases: map[int]api.Phase{1: api.PhaseCrashLoop}, wake: at(15 * s),
						reasons: []string{"1: crash loop: failed 3 times in 3s (last: exit-code); stopped by corrald, next try in 8s"}}},
				{now: 15 * s, instances: instances(restartedAt(stoppedAt(1, at(2*s+1), at(6*s)), 3, at(6*s))),
					want: planWant{actions: []string{"start app@1.service"}, phases: map[int]api.Phase{1: api.PhaseCrashLoop},
						reasons: []string{"1: crash loop: failed 3 times in 3s (last: exit-code); backoff over, start again"}},
					restarts: 1},
				// systemd counts again from 0 after a start of corrald's.
				{now: 16 * s, instances: instances(restartedAt(running(1, at(15*s)), 0, at(6*s))),
					want:     planWant{phases: map[int]api.Phase{1: api.PhaseRunning}, reasons: []string{"1: crash loop"}},
					restarts: 1},
				// Still in crash loop: the next restart of systemd's is stopped too.
				{now: 19 * s, instances: instances(restartedAt(running(1, at(18*s+1)), 1, at(18*s))),
					want:     planWant{actions: []string{"stop app@1.service"}, phases: map[int]api.Phase{1: api.PhaseCrashLoop}, wake: at(28 * s)},
					restarts: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(testPolicy, noJitter)
			d := Desired{Count: tt.count}
			for n, st := range tt.steps {
				in := Input{Pool: "app", Balance: "reuseport", Desired: d, Now: at(st.now), Managed: st.managed,
					Observed: Observed{Target: upTarget, Instances: st.instances}}
				out := Plan(in, tr)
				t.Run(fmt.Sprint("step ", n), func(t *testing.T) {
					checkPlan(t, in, out, st.want)
					if got := tr.Restarts(1); got != st.restarts {
						t.Errorf("restarts of 1: got %d, want %d", got, st.restarts)
					}
				})
				d = out.Desired
			}
		})
	}
}

// TestPlanScaleCycle scales a failed instance away and back: its history
// is forgotten, and it is restarted at once.
func TestPlanScaleCycle(t *testing.T) {
	old := at(-10 * time.Minute)
	tr := NewTracker(testPolicy, noJitter)
	obs := Observed{Target: upTarget, Instances: instances(running(1, old), failedAt(2, old, at(0), "exit-code"))}
	in := Input{Pool: "app", Desired: Desired{Count: 2}, Observed: obs, Now: at(0)}
	checkPlan(t, in, Plan(in, tr), planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseBackoff}, wake: at(s)})

	in.Desired.Count, in.Now = 1, at(s/2)
	checkPlan(t, in, Plan(in, tr), planWant{phases: map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStopped}})

	in.Desired.Count = 2
	checkPlan(t, in, Plan(in, tr), planWant{
		actions: []string{"reset-failed+start app@2.service"},
		phases:  map[int]api.Phase{1: api.PhaseRunning, 2: api.PhaseStarting},
		reasons: []string{"2: restart: failed (exit-code)"},
	})
}

func TestPlanHeldUnchanged(t *testing.T) {
	// When nothing changes, the input's Held comes back as it was, so the
	// coordinator's comparison sees no change and does not save.
	for _, held := range [][]int{nil, {}, {2}} {
		in := Input{Pool: "app", Desired: Desired{Count: 2, Held: held}, Now: t0,
			Observed: Observed{Target: upTarget, Instances: instances(running(1, t0), stoppedAt(2, t0, t0))}}
		if len(held) == 0 {
			in.Observed.Instances[2] = running(2, t0)
		}
		out := Plan(in, NewTracker(testPolicy, noJitter))
		if (out.Desired.Held == nil) != (held == nil) || !slices.Equal(out.Desired.Held, held) {
			t.Errorf("held %#v came back as %#v", held, out.Desired.Held)
		}
	}
}
