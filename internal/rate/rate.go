// Package rate is a token bucket: how corrald bounds what any local user
// may make it do (connections to the message socket, reads over the bus).
package rate

import "time"

// A Bucket holds up to Burst tokens and gains Rate a second. It is not safe
// for concurrent use.
type Bucket struct {
	Rate, Burst float64
	tokens      float64
	last        time.Time
}

func (b *Bucket) fill(now time.Time) {
	if b.last.IsZero() {
		b.tokens = b.Burst
	} else {
		b.tokens = min(b.Burst, b.tokens+now.Sub(b.last).Seconds()*b.Rate)
	}
	b.last = now
}

// Allow takes a token if there is one.
func (b *Bucket) Allow(now time.Time) bool {
	b.fill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Take takes a token, borrowing it if none is left, and returns how long
// to wait before using it.
func (b *Bucket) Take(now time.Time) time.Duration {
	b.fill(now)
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.Rate * float64(time.Second))
}
