package netns

import (
	"context"
	"testing"
	"time"
)

// NewTimeout bounds New in NewT.
const NewTimeout = 30 * time.Second

// NewT makes a Host for a test, or fails the test with t.Fatal: an integration test that
// cannot get its network must fail, not skip. New is bounded by NewTimeout. Close runs in
// t.Cleanup, so a Host made before an sdbox box (sdbox.New) outlives it.
func NewT(t testing.TB, opts Options) *Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), NewTimeout)
	defer cancel()
	h, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return h
}
