package pool

import (
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// at returns t0+d: the tests' fake clock.
func at(d time.Duration) time.Time { return t0.Add(d) }

// noJitter returns 0.5: a jitter of zero.
func noJitter() float64 { return 0.5 }

// testPolicy backs off 1s, 2s, 4s, 8s, 10s; 3 failures in 1m are a loop.
var testPolicy = Policy{Base: time.Second, Cap: 10 * time.Second, Jitter: -1, LoopFailures: 3, LoopWindow: time.Minute}

const s = time.Second

func TestTrackerFailed(t *testing.T) {
	type event struct {
		op     string        // "fail", "run", "start", "forget"
		at     time.Duration // fail: the failure's time; run: now
		since  time.Duration // run: active since
		result string        // fail
		// What fail returns: next as an offset from t0 (-1: zero time).
		next   time.Duration
		loop   bool
		reason string
	}
	tests := []struct {
		name   string
		policy Policy
		events []event
	}{
		{
			name:   "delay doubles to the cap",
			policy: Policy{Base: s, Cap: 10 * s, Jitter: -1, LoopFailures: 100, LoopWindow: time.Minute},
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s, reason: "failed (exit-code); next try in 1s"},
				{op: "fail", at: 10 * s, result: "exit-code", next: 12 * s, reason: "failed 2 times in 10s (last: exit-code); next try in 2s"},
				{op: "fail", at: 20 * s, result: "signal", next: 24 * s, reason: "failed 3 times in 20s (last: signal); next try in 4s"},
				{op: "fail", at: 30 * s, result: "exit-code", next: 38 * s, reason: "failed 4 times in 30s (last: exit-code); next try in 8s"},
				{op: "fail", at: 40 * s, result: "exit-code", next: 50 * s, reason: "failed 5 times in 40s (last: exit-code); next try in 10s"},
				{op: "fail", at: 50 * s, result: "core-dump", next: 60 * s, reason: "failed 6 times in 50s (last: core-dump); next try in 10s"},
			},
		},
		{
			name:   "the same failure seen twice counts once",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s, reason: "failed (exit-code); next try in 1s"},
				{op: "fail", at: 0, result: "exit-code", next: 1 * s, reason: "failed (exit-code); next try in 1s"},
				{op: "fail", at: 5 * s, result: "exit-code", next: 7 * s, reason: "failed 2 times in 5s (last: exit-code); next try in 2s"},
				{op: "fail", at: 5 * s, result: "exit-code", next: 7 * s, reason: "failed 2 times in 5s (last: exit-code); next try in 2s"},
			},
		},
		{
			name:   "an older observation is no failure",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 10 * s, result: "exit-code", next: 11 * s, reason: "failed (exit-code); next try in 1s"},
				{op: "fail", at: 5 * s, result: "exit-code", next: 11 * s, reason: "failed (exit-code); next try in 1s"},
			},
		},
		{
			name:   "crash loop after K failures in the window, retried at the cap",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s},
				{op: "fail", at: 1 * s, result: "exit-code", next: 3 * s},
				{op: "fail", at: 3 * s, result: "exit-code", next: 13 * s, loop: true,
					reason: "crash loop: failed 3 times in 3s (last: exit-code); next try in 10s"},
			},
		},
		{
			name:   "failures older than the window do not count",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s},
				{op: "fail", at: 30 * s, result: "exit-code", next: 32 * s},
				{op: "fail", at: 70 * s, result: "signal", next: 74 * s, reason: "failed 2 times in 40s (last: signal); next try in 4s"},
				{op: "fail", at: 85 * s, result: "signal", next: 95 * s, loop: true,
					reason: "crash loop: failed 3 times in 55s (last: signal); next try in 10s"},
			},
		},
		{
			name:   "crash loop sticks until the instance runs for the window",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s},
				{op: "fail", at: 1 * s, result: "exit-code", next: 3 * s},
				{op: "fail", at: 2 * s, result: "exit-code", next: 12 * s, loop: true},
				{op: "fail", at: 100 * s, result: "exit-code", next: 110 * s, loop: true,
					reason: "crash loop: failed 4 times in a row (last: exit-code); next try in 10s"},
				{op: "run", since: 110 * s, at: 169 * s},
				{op: "fail", at: 170 * s, result: "exit-code", next: 180 * s, loop: true},
				{op: "run", since: 180 * s, at: 240 * s},
				{op: "fail", at: 250 * s, result: "exit-code", next: 251 * s, reason: "failed (exit-code); next try in 1s"},
			},
		},
		{
			name:   "a short run keeps the history",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s},
				{op: "run", since: 1 * s, at: 30 * s},
				{op: "fail", at: 40 * s, result: "exit-code", next: 42 * s, reason: "failed 2 times in 40s (last: exit-code); next try in 2s"},
			},
		},
		{
			name:   "a restart consumes the backoff",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s},
				{op: "start"},
				{op: "fail", at: 0, result: "exit-code", next: -1, reason: "failed (exit-code)"},
				{op: "fail", at: 2 * s, result: "exit-code", next: 4 * s},
			},
		},
		{
			name:   "forget starts over but remembers the failure it saw",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, result: "exit-code", next: 1 * s},
				{op: "fail", at: 1 * s, result: "exit-code", next: 3 * s},
				{op: "forget"},
				{op: "fail", at: 1 * s, result: "exit-code", next: -1},
				{op: "fail", at: 5 * s, result: "exit-code", next: 6 * s, reason: "failed (exit-code); next try in 1s"},
			},
		},
		{
			name:   "no result",
			policy: testPolicy,
			events: []event{
				{op: "fail", at: 0, next: 1 * s, reason: "failed (unknown result); next try in 1s"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(tt.policy, noJitter)
			for n, e := range tt.events {
				switch e.op {
				case "run":
					tr.Running(1, at(e.since), at(e.at))
					continue
				case "start":
					tr.Started(1)
					continue
				case "forget":
					tr.Forget(1)
					continue
				}
				next, loop, reason := tr.Failed(1, at(e.at), e.result)
				want := at(e.next)
				if e.next < 0 {
					want = time.Time{}
				}
				if !next.Equal(want) {
					t.Errorf("event %d: next = %v, want %v", n, next, want)
				}
				if loop != e.loop {
					t.Errorf("event %d: loop = %v, want %v", n, loop, e.loop)
				}
				if e.reason != "" && reason != e.reason {
					t.Errorf("event %d: reason:\n got %q\nwant %q", n, reason, e.reason)
				}
				if got := tr.Loop(1); got != e.loop {
					t.Errorf("event %d: Loop = %v, want %v", n, got, e.loop)
				}
				if got := tr.Next(1); !got.Equal(want) {
					t.Errorf("event %d: Next = %v, want %v", n, got, want)
				}
			}
		})
	}
}

func TestTrackerDueStartedRestarts(t *testing.T) {
	tr := NewTracker(testPolicy, noJitter)
	check := func(step string, now time.Time, wantDue bool, wantRestarts int) {
		t.Helper()
		if got := tr.Due(1, now); got != wantDue {
			t.Errorf("%s: Due = %v, want %v", step, got, wantDue)
		}
		if got := tr.Restarts(1); got != wantRestarts {
			t.Errorf("%s: Restarts = %d, want %d", step, got, wantRestarts)
		}
	}
	check("unknown instance", t0, true, 0)
	tr.Failed(1, t0, "exit-code")
	check("backing off", at(999*time.Millisecond), false, 0)
	check("backoff over", at(s), true, 0)
	tr.Started(1)
	check("restarted", at(s), true, 1)
	if !tr.awaiting(1, t0) {
		t.Errorf("restart not under way after Started")
	}
	if tr.awaiting(1, at(2*s)) {
		t.Errorf("restart still under way when systemd reports a newer state")
	}
	tr.Failed(1, at(2*s), "exit-code")
	check("second failure", at(3*s), false, 1)
	if tr.awaiting(1, at(2*s)) {
		t.Errorf("restart under way after a new failure")
	}
	tr.Started(1)
	tr.Running(1, at(5*s), at(6*s))
	check("running", at(6*s), true, 2)
	if tr.awaiting(1, at(2*s)) {
		t.Errorf("restart under way while running")
	}
	tr.Running(1, at(5*s), at(5*s+time.Minute))
	check("ran for the window: restarts stay", at(6*s), true, 2)
	tr.Forget(1)
	check("forgotten", at(6*s), true, 0)
	if tr.Restarts(2) != 0 || tr.Loop(2) || !tr.Next(2).IsZero() {
		t.Errorf("instance 2 has a history it never had")
	}
	tr.Running(2, t0, at(time.Hour)) // unknown: no effect, no panic
	tr.Forget(2)
}

func TestTrackerJitter(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
		rand   float64
		want   time.Duration
	}{
		{"lowest", 0.1, 0, 9 * s},
		{"middle", 0.1, 0.5, 10 * s},
		{"highest", 0.1, 0.75, 10500 * time.Millisecond},
		{"default is 10%", 0, 0, 9 * s},
		{"negative is none", -1, 0, 10 * s},
		{"above 1 is 1", 5, 0.25, 5 * s},
		{"out of range rand is ignored", 0.1, 7, 10 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(Policy{Base: 10 * s, Jitter: tt.jitter}, func() float64 { return tt.rand })
			next, _, _ := tr.Failed(1, t0, "exit-code")
			if got := next.Sub(t0); got != tt.want {
				t.Errorf("delay = %v, want %v", got, tt.want)
			}
		})
	}
	// The default random source keeps within ±10%.
	tr := NewTracker(Policy{Base: 10 * s}, nil)
	for i := 1; i <= 100; i++ {
		next, _, _ := tr.Failed(i, t0, "exit-code")
		if d := next.Sub(t0); d < 9*s || d > 11*s {
			t.Fatalf("delay %v outside 10s±10%%", d)
		}
	}
}

func TestPolicyDefaults(t *testing.T) {
	def := DefaultPolicy()
	tests := []struct {
		name string
		in   Policy
		want Policy
	}{
		{"zero is the default", Policy{}, def},
		{"defaults as documented", Policy{}, Policy{Base: s, Cap: 5 * time.Minute, Jitter: 0.1, LoopFailures: 5, LoopWindow: 5 * time.Minute}},
		{"set fields stay", Policy{Base: 2 * s, Cap: time.Minute, Jitter: 0.2, LoopFailures: 3, LoopWindow: time.Hour},
			Policy{Base: 2 * s, Cap: time.Minute, Jitter: 0.2, LoopFailures: 3, LoopWindow: time.Hour}},
		{"cap below base", Policy{Base: 10 * s, Cap: s}, Policy{Base: 10 * s, Cap: 10 * s, Jitter: 0.1, LoopFailures: 5, LoopWindow: 5 * time.Minute}},
		{"negatives", Policy{Base: -1, Cap: -1, Jitter: -0.5, LoopFailures: -1, LoopWindow: -1},
			Policy{Base: s, Cap: 5 * time.Minute, Jitter: 0, LoopFailures: 5, LoopWindow: 5 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewTracker(tt.in, nil).Policy(); got != tt.want {
				t.Errorf("policy:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPolicyDelay(t *testing.T) {
	p := Policy{Base: s, Cap: time.Duration(math.MaxInt64)}.withDefaults()
	if got := p.delay(1000, false); got != p.Cap {
		t.Errorf("delay after 1000 failures = %v, want the cap %v", got, p.Cap)
	}
	p = DefaultPolicy()
	want := []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 64 * s, 128 * s, 256 * s, 300 * s, 300 * s}
	var got []time.Duration
	for n := 1; n <= len(want); n++ {
		got = append(got, p.delay(n, false))
	}
	if !slices.Equal(got, want) {
		t.Errorf("delays:\n got %v\nwant %v", got, want)
	}
	if got := p.delay(1, true); got != p.Cap {
		t.Errorf("delay in crash loop = %v, want the cap", got)
	}
}

func TestFmtDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{250700 * time.Microsecond, "251ms"},
		{1234567 * time.Microsecond, "1.2s"},
		{4*s + 10*time.Millisecond, "4s"},
		{130*s + 400*time.Millisecond, "2m10s"},
	}
	for _, tt := range tests {
		if got := fmtDuration(tt.in); got != tt.want {
			t.Errorf("fmtDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
