package loop

import (
	"context"
	"errors"
	"testing"
)

func TestDo(t *testing.T) {
	reqs := make(chan func())
	go func() {
		for f := range reqs {
			f()
		}
	}()
	defer close(reqs)
	n := 0
	if err := Do(context.Background(), reqs, func() { n++ }); err != nil || n != 1 {
		t.Fatalf("Do = %v, ran %d times", err, n)
	}
	// An owner that does not take the request: Do gives up with ctx.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Do(ctx, make(chan func()), func() {}); !errors.Is(err, context.Canceled) {
		t.Errorf("Do with a done ctx = %v", err)
	}
}
