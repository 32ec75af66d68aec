package rate

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	b := Bucket{Rate: 10, Burst: 3}
	now := time.Unix(0, 0)
	for i := range 3 {
		if w := b.Take(now); w != 0 {
			t.Errorf("take %d of the burst waits %v", i, w)
		}
	}
	if w := b.Take(now); w != 100*time.Millisecond {
		t.Errorf("beyond the burst: wait %v, want 100ms", w)
	}
	if w := b.Take(now.Add(time.Second)); w != 0 {
		t.Errorf("a second later: wait %v, want 0", w)
	}
	a := Bucket{Rate: 10, Burst: 2}
	for i, want := range []bool{true, true, false} {
		if got := a.Allow(now); got != want {
			t.Errorf("allow %d: %v, want %v", i, got, want)
		}
	}
	if !a.Allow(now.Add(100 * time.Millisecond)) {
		t.Error("no token 100ms later at 10 a second")
	}
}
