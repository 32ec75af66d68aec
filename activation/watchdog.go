package activation

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// watchdogInterval returns the unit's watchdog interval (WatchdogSec=) when
// WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this process's pid, and
// 0 when the watchdog is not enabled for the process.
func watchdogInterval() (time.Duration, error) {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("activation: watchdog: %w", err)
	}
	return interval, nil
}

// progress counts the requests of a server as its handler wrapper sees
// them begin and end. Both counts only grow: started-finished is the
// number in flight. Two atomic additions per request, no lock.
type progress struct {
	started  atomic.Uint64
	finished atomic.Uint64
}

// load returns the number of requests in flight and the number finished so
// far. It reads finished first: a request counts as started before it
// counts as finished, so in flight is never negative.
func (p *progress) load() (inFlight, finished uint64) {
	finished = p.finished.Load()
	return p.started.Load() - finished, finished
}

// hangDetector applies Serve's watchdog rule at each tick, ticksPerInterval
// times per interval: the server progresses when nothing is in flight or
// when some request finished since the previous tick. Serve feeds the
// watchdog only at a tick with progress, so the service manager kills a
// server in which requests stay in flight and none finishes for a whole
// interval, give or take a tick. Starting a request is not progress: a
// deadlocked server goes on accepting and starting requests, which block
// too. While the server drains it always progresses: the drain deadline
// bounds it.
type hangDetector struct {
	finished uint64 // count at the last tick
	stale    int    // ticks in a row without progress
}

// ticksPerInterval is how often Serve looks, per watchdog interval. A
// deadlocked server stops feeding within a tick and is killed an interval
// after its last feed: within 1¼ intervals of the deadlock.
const ticksPerInterval = 4

// hungTicks ticks in a row without progress, three quarters of an
// interval, make Serve say STATUS=hung: the kill is a quarter interval
// away. Fewer are slow requests, not worth a status line.
const hungTicks = 3

// observe records a tick that saw inFlight requests in flight and finished
// finished so far, and returns how many ticks in a row saw no progress (0:
// this one did).
func (d *hangDetector) observe(inFlight, finished uint64, draining bool) (stale int) {
	if inFlight == 0 || finished != d.finished || draining {
		d.stale = 0
	} else {
		d.stale++
	}
	d.finished = finished
	return d.stale
}

// watchdogFeeder feeds the unit's watchdog while the server progresses
// (hangDetector) and says in STATUS= when it stops feeding and why.
type watchdogFeeder struct {
	interval time.Duration
	progress *progress
	draining *atomic.Bool
	status   string // the STATUS= to restore when a stuck server recovers
}

// run sends WATCHDOG=1 at once and then at every tick that saw progress
// (hangDetector), until ctx is done. After hungTicks ticks without progress
// it sends STATUS=hung… once; if the server recovers before the service
// manager kills it, it feeds again and restores f.status. It returns the
// first error of a message, after ctx is done.
func (f *watchdogFeeder) run(ctx context.Context) error {
	var firstErr error
	send := func(state string) {
		if err := Notify(ctx, state); err != nil && ctx.Err() == nil && firstErr == nil {
			firstErr = err
		}
	}
	send(sddaemon.SdNotifyWatchdog)
	tick := time.NewTicker(max(f.interval/ticksPerInterval, time.Millisecond))
	defer tick.Stop()
	var d hangDetector
	_, d.finished = f.progress.load()
	lastProgress, hung := time.Now(), false
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return firstErr
		case now = <-tick.C:
		}
		inFlight, finished := f.progress.load()
		draining := f.draining.Load()
		stale := d.observe(inFlight, finished, draining)
		switch {
		case stale == 0 && hung && !draining: // else STATUS=draining stands
			hung = false
			send(sddaemon.SdNotifyWatchdog + "\nSTATUS=" + f.status)
		case stale == 0:
			send(sddaemon.SdNotifyWatchdog)
		case stale >= hungTicks && !hung:
			hung = true
			send("STATUS=" + hungStatus(inFlight, now.Sub(lastProgress)))
		}
		if stale == 0 {
			lastProgress = now
		}
	}
}

// hungStatus describes a stuck server for `systemctl status`.
func hungStatus(inFlight uint64, since time.Duration) string {
	noun := "requests"
	if inFlight == 1 {
		noun = "request"
	}
	return fmt.Sprintf("hung: %d %s in flight, none finished for %v", inFlight, noun, since.Round(100*time.Millisecond))
}

// watchdog returns the interval at which Serve watches the server: the
// unit's watchdog interval, or 0 when the options turn the watchdog off or
// it is not enabled for the process.
func (o ServeOptions) watchdog() (time.Duration, error) {
	if o.NoWatchdog {
		return 0, nil
	}
	return watchdogInterval()
}

// feedWatchdog runs f in a goroutine of its own, unless f.interval is 0.
// The returned stop ends the feeding, waits for the goroutine to return and
// returns the first error of a message.
func feedWatchdog(f *watchdogFeeder) (stop func() error) {
	if f.interval <= 0 {
		return func() error { return nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}
