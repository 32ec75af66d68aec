// Package loop holds what the goroutines that own a resource (the
// coordinator's loop, the relay's) share: running a request in the owner
// and waiting for it.
package loop

import "context"

// Do sends f to the owning goroutine on reqs and waits until it has run, or
// until ctx is done; the owner runs each func it receives.
func Do(ctx context.Context, reqs chan<- func(), f func()) error {
	done := make(chan struct{})
	select {
	case reqs <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
