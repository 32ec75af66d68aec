package pool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

// TestSnapshotsShareOneComputation: a flood of callers costs one
// computation per key per period, a change clears it, and a caller that
// gives up does not fail the others.
func TestSnapshotsShareOneComputation(t *testing.T) {
	s := snapshots[int]{ttl: time.Hour, max: 4}
	var calls atomic.Int32
	release := make(chan struct{})
	compute := func(ctx context.Context) (int, error) {
		<-release
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return int(calls.Add(1)), nil
	}
	// One caller gives up while the computation is under way.
	quit, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { _, err := s.get(quit, "app", compute); gaveUp <- err }()
	var wg sync.WaitGroup
	got := make([]int, 200)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = s.get(context.Background(), "app", compute)
		}()
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-gaveUp; err != context.Canceled {
		t.Errorf("the caller that gave up got %v", err)
	}
	close(release)
	wg.Wait()
	for i, v := range got {
		if v != 1 {
			t.Fatalf("caller %d got computation %d, want all to share the first", i, v)
		}
	}
	if v, _ := s.get(context.Background(), "app", compute); v != 1 {
		t.Errorf("a fresh answer was computed again: %d", v)
	}
	s.clear()
	if v, _ := s.get(context.Background(), "app", compute); v != 2 {
		t.Errorf("after clear got %d, want a new computation", v)
	}
	// Stale answers are computed again.
	s.ttl = 0
	if v, _ := s.get(context.Background(), "app", compute); v != 3 {
		t.Errorf("a stale answer was reused: %d", v)
	}
	// Any number of keys (pools that do not exist) keeps at most max.
	for i := range 100 {
		s.get(context.Background(), fmt.Sprint("nope", i), func(context.Context) (int, error) { return 0, api.ErrNoPool })
	}
	s.mu.Lock()
	n := len(s.m)
	s.mu.Unlock()
	if n > 4 {
		t.Errorf("%d answers kept, want at most 4", n)
	}
}
