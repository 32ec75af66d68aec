// Package wait polls a condition in a test until it holds or time runs out, for the
// integration suite and the VM tier.
package wait

import (
	"testing"
	"time"
)

// For polls cond every 100ms until it returns nil, or fails t with what, the timeout and
// cond's last error.
func For(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}
