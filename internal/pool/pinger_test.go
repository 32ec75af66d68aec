package pool

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/relay"
	"github.com/corral-pool/corral/internal/units"
)

func TestWatchedObserve(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const wd = 4 * time.Second
	at := func(d time.Duration) time.Time { return start.Add(d) }
	type step struct {
		at   time.Duration
		st   api.Status
		want verdict
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"answers", []step{{1 * time.Second, api.Replied, verdictOK}, {5 * time.Second, api.Replied, verdictOK}, {9 * time.Second, api.Replied, verdictOK}}},
		{"an error answer is an answer", []step{{1 * time.Second, api.Failed, verdictOK}, {6 * time.Second, api.Failed, verdictOK}}},
		{"stops answering", []step{{1 * time.Second, api.Replied, verdictOK}, {3 * time.Second, api.NoReply, verdictOK}, {5 * time.Second, api.NoReply, verdictHung}, {6 * time.Second, api.NoReply, verdictOK}}},
		{"reached, never answers", []step{{1 * time.Second, api.NoReply, verdictOK}, {4 * time.Second, api.NoReply, verdictOK}, {5 * time.Second, api.NoReply, verdictHung}}},
		{"never connects", []step{{1 * time.Second, api.NotDelivered, verdictOK}, {4 * time.Second, api.NotDelivered, verdictUnwatched}, {8 * time.Second, api.NotDelivered, verdictOK}}},
		{"connection lost after answers", []step{{1 * time.Second, api.Replied, verdictOK}, {5 * time.Second, api.NotDelivered, verdictHung}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &watched{since: start}
			for _, s := range tc.steps {
				if got := w.observe(s.st, at(s.at), wd); got != s.want {
					t.Errorf("at %v, %s: verdict %d, want %d", s.at, s.st, got, s.want)
				}
			}
		})
	}
}

// fakePings answers pings as its answers say, by instance index.
type fakePings struct{ answers map[int]api.Status }

func (f *fakePings) Ping(_ context.Context, ts []relay.Target, _ time.Duration) ([]api.MessageResult, error) {
	var rs []api.MessageResult
	for _, t := range ts {
		rs = append(rs, api.MessageResult{Pool: t.Pool, Index: t.Index, Status: f.answers[t.Index]})
	}
	return rs, nil
}

// TestPingerKillsTheHung: an instance that stops answering for a watchdog gets its
// watchdog_signal, the others nothing, and its exit record then says "watchdog".
func TestPingerKillsTheHung(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sd := &fakeSystemd{}
	exits := t.TempDir()
	co := New(Config{Now: func() time.Time { return now }, ExitsDir: exits}, sd)
	fp := &fakePings{answers: map[int]api.Status{1: api.Replied, 2: api.Replied}}
	p := NewPinger(co, fp)
	cfg := &units.Pool{Watchdog: 4 * time.Second, WatchdogSignal: "SIGKILL", StopTimeout: time.Second}
	up := func(i int) Unit {
		return Unit{Name: InstanceName("node", i), ActiveState: "active", SubState: "running", ActiveEnter: now.Add(-time.Minute)}
	}
	pl := poolView{name: "node", cfg: cfg, count: 2, instances: map[int]Unit{1: up(1), 2: up(2)}}
	ctx := context.Background()
	p.round(ctx, pl, time.Second)
	fp.answers[2] = api.NoReply
	for k := 1; k <= 4; k++ {
		now = now.Add(time.Second)
		p.round(ctx, pl, time.Second)
	}
	jobs := strings.Join(sd.Jobs(), "\n")
	if !strings.Contains(jobs, "kill SIGKILL node@2.service") || strings.Contains(jobs, "node@1") {
		t.Fatalf("jobs after node@2 stopped answering for 4s: %q, want node@2 killed with SIGKILL alone", jobs)
	}
	// Its ExecStopPost= writes the record after the kill; the Pinger then marks it.
	path := filepath.Join(exits, "node@2.service")
	if err := os.WriteFile(path, []byte("signal killed KILL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); string(b) == "hung killed KILL\n" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Errorf("exit record after the kill: %q, want \"hung killed KILL\\n\"", b)
}

// TestPingerEscalates: a hung instance whose watchdog_signal did not end it within
// stop_timeout (no new exit record) gets SIGKILL, as PID 1's watchdog does.
func TestPingerEscalates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sd := &fakeSystemd{}
	co := New(Config{Now: func() time.Time { return now }, ExitsDir: t.TempDir()}, sd)
	fp := &fakePings{answers: map[int]api.Status{1: api.Replied, 2: api.Replied}}
	p := NewPinger(co, fp)
	cfg := &units.Pool{Watchdog: 4 * time.Second, WatchdogSignal: "SIGTERM", StopTimeout: 300 * time.Millisecond}
	up := func(i int) Unit {
		return Unit{Name: InstanceName("node", i), ActiveState: "active", SubState: "running", ActiveEnter: now.Add(-time.Minute)}
	}
	pl := poolView{name: "node", cfg: cfg, count: 2, instances: map[int]Unit{1: up(1), 2: up(2)}}
	p.round(context.Background(), pl, time.Second)
	fp.answers[1] = api.NoReply
	now = now.Add(5 * time.Second)
	p.round(context.Background(), pl, time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if j := strings.Join(sd.Jobs(), "\n"); strings.Contains(j, "kill SIGKILL node@1.service") {
			if !strings.Contains(j, "kill SIGTERM node@1.service") {
				t.Errorf("jobs %q: want SIGTERM first", j)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("jobs %q: want SIGKILL after stop_timeout", sd.Jobs())
}
