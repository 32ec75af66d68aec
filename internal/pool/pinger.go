package pool

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/relay"
	"github.com/corral-pool/corral/internal/units"
)

// Pings reaches the workers with corrald's watchdog ping: a *relay.Relay.
type Pings interface {
	Ping(ctx context.Context, targets []relay.Target, wait time.Duration) ([]api.MessageResult, error)
}

// Pinger is the watchdog of the workers that cannot feed PID 1's: pools with watchdog whose
// readiness is "simple" (Node through corral's preload, Python). Four times per watchdog
// it pings each running instance over the message socket (message.Frame.Ping); corral's
// Node preload answers from the event loop, package activation from its message reader,
// and a worker that handles messages itself answers it as any message. An instance whose
// worker was reached and then gives no answer for a whole watchdog is hung: the Pinger
// sends it watchdog_signal, says so in the journal ("hung: no answer for 10s"), and
// systemd restarts it as any crash (Restart=). Its exit record then says "hung", so
// that corral list and status give that cause. A worker that never connects for messages
// cannot be watched: the journal says so, once per life. While corrald is stopped nobody
// pings: only PID 1's watchdog (readiness = "notify") works then.
type Pinger struct {
	co    *Coordinator
	pings Pings
	log   *slog.Logger
	// Tick is how often the Pinger looks for pools due a ping: 250ms.
	Tick time.Duration

	next  map[string]time.Time // by pool: when its next ping round is due
	lives map[string]*watched  // by unit
}

// watched is one life of an instance, as the Pinger sees it.
type watched struct {
	since  time.Time // the life's ActiveEnter
	seen   time.Time // its worker's last answer, or the first ping it was sent; zero: never reached
	told   bool      // the journal says it is not watched
	killed bool
}

// NewPinger returns the watchdog of co's pools through pings, nil when corrald carries no
// messages.
func NewPinger(co *Coordinator, pings Pings) *Pinger {
	return &Pinger{co: co, pings: pings, log: co.cfg.Log, Tick: 250 * time.Millisecond,
		next: map[string]time.Time{}, lives: map[string]*watched{}}
}

// Run pings the pools that ask for it until ctx is done.
func (p *Pinger) Run(ctx context.Context) error {
	every(ctx, p.Tick, p.look, func(err error) { p.log.Warn("watchdog: look at the pools", "err", err) })
	return nil
}

// look sends the ping rounds that are due, and kills the hung instances.
func (p *Pinger) look(ctx context.Context) (int, error) {
	pools, err := p.co.views(ctx, func(cfg *units.Pool) bool {
		return cfg.Watchdog > 0 && cfg.Readiness != units.ReadinessNotify
	})
	if err != nil {
		return 0, err
	}
	live, watching := map[string]bool{}, map[string]bool{}
	for _, pl := range pools {
		watching[pl.name] = true
		for _, i := range pl.running() {
			live[pl.instances[i].Name] = true
		}
		now := p.co.cfg.Now()
		if now.Before(p.next[pl.name]) {
			continue
		}
		w := pl.cfg.Watchdog
		p.next[pl.name] = now.Add(w / 4)
		p.round(ctx, pl, min(w/4, 2*time.Second))
	}
	for u := range p.lives {
		if !live[u] {
			delete(p.lives, u)
		}
	}
	for n := range p.next {
		if !watching[n] {
			delete(p.next, n)
		}
	}
	return len(pools), nil
}

// round pings the running instances of pl, waiting up to wait for the answers, and acts on
// what they say.
func (p *Pinger) round(ctx context.Context, pl poolView, wait time.Duration) {
	var targets []relay.Target
	for _, i := range pl.running() {
		targets = append(targets, relay.Target{Pool: pl.name, Index: i})
	}
	if len(targets) == 0 {
		return
	}
	rs, err := p.pings.Ping(ctx, targets, wait)
	if err != nil {
		p.log.Warn("watchdog: ping", "pool", pl.name, "err", err)
		return
	}
	now := p.co.cfg.Now()
	for _, r := range rs {
		u, ok := pl.instances[r.Index]
		if r.Pool != pl.name || !ok {
			continue
		}
		w := p.lives[u.Name]
		if w == nil || !w.since.Equal(u.ActiveEnter) {
			w = &watched{since: u.ActiveEnter}
			p.lives[u.Name] = w
		}
		switch verdict := w.observe(r.Status, now, pl.cfg.Watchdog); verdict {
		case verdictHung:
			p.kill(ctx, pl, r.Index, u, now.Sub(w.seen))
		case verdictUnwatched:
			p.log.Warn("watchdog: not watched: its worker is not connected to corral's message socket, so it cannot answer pings; use readiness = \"notify\" with a worker that sends WATCHDOG=1, or corral's Node preload (docs/health.md)",
				"pool", pl.name, "instance", r.Index)
		}
	}
}

type verdict int

const (
	verdictOK verdict = iota
	verdictHung
	verdictUnwatched
)

// observe records the outcome of a ping at now and says what to do: a worker reached
// before that gave no answer for watchdog is hung, once; one never reached in watchdog
// since its start is unwatched, said once.
func (w *watched) observe(st api.Status, now time.Time, watchdog time.Duration) verdict {
	switch st {
	case api.Replied, api.Failed:
		w.seen = now
	case api.NoReply, api.Delivered:
		if w.seen.IsZero() {
			w.seen = now // reached: the clock starts
		}
	}
	switch {
	case w.killed:
		return verdictOK
	case !w.seen.IsZero() && now.Sub(w.seen) >= watchdog:
		w.killed = true
		return verdictHung
	case w.seen.IsZero() && !w.told && now.Sub(w.since) >= watchdog:
		w.told = true
		return verdictUnwatched
	}
	return verdictOK
}

// kill sends instance i of pl its watchdog signal, and has its exit record say
// "hung" once the instance's ExecStopPost= wrote it.
func (p *Pinger) kill(ctx context.Context, pl poolView, i int, u Unit, silent time.Duration) {
	sig := unix.SignalNum(pl.cfg.WatchdogSignal)
	if sig == 0 {
		sig = unix.SIGABRT
	}
	reason := fmt.Sprintf("hung: no answer for %s (watchdog = %q)", fmtDuration(silent), pl.cfg.Watchdog.String())
	p.log.Warn("watchdog: killing a hung instance", "pool", pl.name, "instance", i, "reason", reason, "signal", unix.SignalName(sig))
	record := ""
	var before time.Time
	if dir := p.co.cfg.ExitsDir; dir != "" {
		record = filepath.Join(dir, u.Name)
		if st, err := os.Lstat(record); err == nil {
			before = st.ModTime()
		}
	}
	// Its exit counts as "hung", whatever the signal makes of it.
	p.co.hung.add(u.Name)
	if err := p.co.sd.Kill(ctx, u.Name, sig); err != nil {
		p.log.Error("watchdog: kill", "pool", pl.name, "instance", i, "err", err)
		return
	}
	if record != "" {
		go func() {
			// Like PID 1's watchdog: SIGKILL if the signal did not end it within
			// stop_timeout (a hung worker may catch SIGTERM in the loop that hangs).
			done := markHung(ctx, record, before, pl.cfg.StopTimeout)
			if !done && sig != unix.SIGKILL && ctx.Err() == nil {
				p.log.Warn("watchdog: the hung instance outlived stop_timeout: SIGKILL", "pool", pl.name, "instance", i)
				if err := p.co.sd.Kill(ctx, u.Name, unix.SIGKILL); err != nil {
					p.log.Error("watchdog: kill", "pool", pl.name, "instance", i, "err", err)
				}
			}
			if done || markHung(ctx, record, before, 10*time.Second) {
				p.co.Dirty(pl.name) // corrald read the record as the shell wrote it
			}
		}()
	}
	p.co.Dirty(pl.name)
}

// markHung waits, up to timeout, until the exit record at path is written again (its
// modification time was before, zero if there was none), then rewrites its result as
// "hung": the exit was corrald's watchdog's doing, not a crash. It reports whether it did.
func markHung(ctx context.Context, path string, before time.Time, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		// A record being written may read empty for a moment: wait for a whole one.
		if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && !st.ModTime().Equal(before) {
			if line, ok := readExit(path); ok {
				if _, code, status, ok := units.ParseExit(line); ok {
					tmp := path + ".watchdog"
					return os.WriteFile(tmp, []byte("hung "+code+" "+status+"\n"), 0o644) == nil && os.Rename(tmp, path) == nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
