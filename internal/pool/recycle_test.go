package pool

import (
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/internal/units"
)

func TestRecycleDue(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	up := func(i int, age time.Duration) Unit {
		return Unit{Name: InstanceName("app", i), ActiveState: "active", SubState: "running", ActiveEnter: now.Add(-age)}
	}
	pool := func(cfg units.Pool, ins ...Unit) poolView {
		p := poolView{name: "app", cfg: &cfg, count: len(ins), instances: map[int]Unit{}}
		for k, u := range ins {
			p.instances[k+1] = u
		}
		return p
	}
	aged := units.Pool{RecycleAfter: time.Hour, MaxUnavailable: 1}
	r := &Recycler{Sustain: 10 * time.Second, above: map[string]time.Time{}} // a Sustain of its own

	if i, why, _ := r.due(pool(aged, up(1, 30*time.Minute), up(2, 2*time.Hour), up(3, 3*time.Hour)), nil, now); i != 3 || !strings.Contains(why, "past recycle_after = 1h0m0s") {
		t.Errorf("age: due = %d %q, want instance 3, the most past its age", i, why)
	}
	if i, _, _ := r.due(pool(aged, up(1, 30*time.Minute), up(2, 50*time.Minute)), nil, now); i != 0 {
		t.Errorf("no instance past its age: due = %d", i)
	}
	if i, _, _ := r.due(pool(aged, up(1, 3*time.Hour)), nil, now); i != 0 {
		t.Errorf("the last running instance: due = %d, want none", i)
	}
	down := Unit{Name: "app@2.service", ActiveState: "activating"}
	if i, _, _ := r.due(pool(aged, up(1, 3*time.Hour), down, up(3, 3*time.Hour)), nil, now); i != 0 {
		t.Errorf("one instance down with max_unavailable = 1: due = %d, want none", i)
	}
	wide := aged
	wide.MaxUnavailable = 2
	if i, _, _ := r.due(pool(wide, up(1, 3*time.Hour), down, up(3, 2*time.Hour)), nil, now); i != 1 {
		t.Errorf("one instance down with max_unavailable = 2: due = %d, want 1", i)
	}

	// Jitter: within [0, jitter), fixed for one life.
	jit := units.Pool{RecycleAfter: time.Hour, RecycleJitter: 10 * time.Minute, MaxUnavailable: 1}
	u := up(1, 0)
	j := jitterOf(u, jit.RecycleJitter)
	if j < 0 || j >= 10*time.Minute || j != jitterOf(u, jit.RecycleJitter) {
		t.Errorf("jitterOf = %v, want a fixed value in [0, 10m)", j)
	}
	spread := map[time.Duration]bool{}
	for i := 1; i <= 8; i++ {
		spread[jitterOf(up(i, 0), time.Hour)] = true
	}
	if len(spread) < 8 {
		t.Errorf("8 instances started together share jitters: %v", spread)
	}

	// Memory: at or above memory_high for Sustain.
	hi := units.Pool{MemoryHigh: "100M", MemoryHighBytes: 100 << 20, MaxUnavailable: 1}
	p := pool(hi, up(1, time.Minute), up(2, time.Minute))
	mem := map[int]memSample{1: {50 << 20, 0}, 2: {120 << 20, 0}}
	if i, _, _ := r.due(p, mem, now); i != 0 {
		t.Errorf("memory above for 0s: due = %d, want none yet", i)
	}
	if i, why, _ := r.due(p, mem, now.Add(11*time.Second)); i != 2 || !strings.Contains(why, "memory 120.0 MiB at or above memory_high = 100M for 11s") {
		t.Errorf("memory above for 11s: due = %d %q, want 2", i, why)
	}
	mem[2] = memSample{90 << 20, 0}
	r.due(p, mem, now.Add(12*time.Second)) // below: the wait starts over
	mem[2] = memSample{120 << 20, 0}
	if i, _, _ := r.due(p, mem, now.Add(13*time.Second)); i != 0 {
		t.Errorf("memory went below and back: due = %d, want the wait to start over", i)
	}

	// Pressure: below memory_high but stalled at least Stall percent, for Sustain.
	r.Stall = 20
	r.above = map[string]time.Time{}
	p = pool(hi, up(1, time.Minute), up(2, time.Minute))
	mem = map[int]memSample{1: {50 << 20, 35}, 2: {50 << 20, 5}}
	r.due(p, mem, now)
	if i, why, byMemory := r.due(p, mem, now.Add(11*time.Second)); i != 1 || !byMemory || !strings.Contains(why, "stalled on memory 35% of the last 10s (memory.pressure) for 11s") {
		t.Errorf("stalled for 11s: due = %d %q %v, want 1 for its memory", i, why, byMemory)
	}
	// memory_high as a share of RAM: only the stalls count.
	share := units.Pool{MemoryHigh: "10%", MaxUnavailable: 1}
	r.above = map[string]time.Time{}
	sp := pool(share, up(1, time.Minute), up(2, time.Minute))
	big := map[int]memSample{1: {900 << 20, 0}, 2: {50 << 20, 40}}
	r.due(sp, big, now)
	if i, why, _ := r.due(sp, big, now.Add(11*time.Second)); i != 2 || !strings.Contains(why, "stalled on memory 40%") {
		t.Errorf("memory_high = 10%%: due = %d %q, want 2, the stalled one, not the big one", i, why)
	}
	mem[1] = memSample{50 << 20, -1} // unreadable: not sick
	if i, _, _ := r.due(p, mem, now.Add(12*time.Second)); i != 0 {
		t.Errorf("pressure unknown: due = %d, want none", i)
	}
}
