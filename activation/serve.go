package activation

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrDrainTimeout is returned, wrapped, by Serve when in-flight requests did
// not finish before the drain deadline and their connections were closed.
var ErrDrainTimeout = errors.New("drain timed out")

// ServeOptions configures Serve. The zero value is ready to use: it stops on
// SIGTERM or SIGINT and drains within the pool's stop timeout.
type ServeOptions struct {
	// Signals start a graceful stop, like the cancellation of ctx. Nil means
	// SIGTERM (what systemd sends) and SIGINT (Ctrl-C). A non-nil empty slice
	// means no signal: only ctx stops Serve, and the caller handles signals.
	// Serve stops catching the signals once the stop has begun, so a second
	// one takes its default action and kills the process.
	Signals []os.Signal

	// StopTimeout is the time the process has to stop once asked to, past
	// which the service manager kills it. Zero means StopTimeout(): the
	// pool's CORRAL_STOP_TIMEOUT, by default 30s. Serve drains within a bit
	// less: see Serve.
	StopTimeout time.Duration

	// NoWatchdog stops Serve from feeding the unit's watchdog: for a server
	// that feeds it itself (RunWatchdog, Watchdog), such as one whose
	// requests are long polls or WebSockets that outlast the watchdog
	// interval. See Serve.
	NoWatchdog bool
}

// Serve serves HTTP with srv until SIGTERM or SIGINT or the end of ctx, then
// drains gracefully. It is ServeOptions{}.Serve: see there.
func Serve(ctx context.Context, srv *http.Server, ls ...net.Listener) error {
	return ServeOptions{}.Serve(ctx, srv, ls...)
}

// Serve serves HTTP with srv on the listeners ls, or, if ls is empty, on
// every inherited listener (AllListeners), until one of o.Signals arrives or
// ctx is done. Then it drains:
//
//  1. It sends STOPPING=1; from now on every response carries
//     "Connection: close", so keep-alive clients leave with the answer to
//     their next request.
//  2. It stops accepting: it closes the listeners. The service manager keeps
//     its own copy of each socket, so other instances go on accepting and new
//     connections wait in the kernel's queue.
//  3. It waits, up to a second, until every connection it accepted has sent
//     its first request. http.Server.Shutdown drops a request that it reads
//     after the shutdown began, without an answer: a client that connected
//     just before the stop would see its connection closed.
//  4. It waits, up to 2s (or a quarter of the drain budget), for the
//     keep-alive connections to leave that way; closing an idle one at once
//     could cut a request the client is sending at that moment.
//  5. It closes the idle connections left and waits for in-flight requests
//     to finish (http.Server.Shutdown).
//
// The drain has until o.StopTimeout minus a safety margin, 10% of it or 1s,
// whichever is smaller (29s of 30s, 4.5s of 5s), so that the process exits
// before the service manager kills it. At that deadline Serve closes the
// remaining connections (http.Server.Close) and returns an error wrapping
// ErrDrainTimeout that says how many there were. Serve does not wait for
// handlers to return after that, nor for hijacked connections ever.
//
// Once it serves, Serve sends READY=1 (with STATUS= naming the addresses).
// If that fails, it drains at once and returns the error. Without
// NOTIFY_SOCKET the messages are skipped (see Notify).
//
// When the unit has a watchdog (WatchdogSec=, which sets WATCHDOG_USEC for
// the process) and o.NoWatchdog is false, Serve feeds it, but only while
// the server makes progress, so that the service manager kills a server
// whose handlers deadlock and keeps a busy one. Four times per interval it
// looks, and sends WATCHDOG=1 if nothing is in flight or a request finished
// since the last look (a request that starts is no progress: a deadlocked
// server still starts requests, which block too). A server in which
// requests stay in flight and none finishes for a whole interval is killed:
// within 1¼ intervals of a deadlock. After three quarters of an interval
// without progress Serve sends, once, STATUS=hung: N requests in flight,
// none finished for Xs, which `systemctl status` shows. Should a request
// finish before the kill, Serve feeds again and restores the STATUS=serving
// line. While it drains, Serve feeds the watchdog regardless: the drain
// deadline bounds the drain. The limit of the rule: a server whose
// only requests in flight are long polls, streams or WebSockets longer than
// the interval, with no shorter request finishing meanwhile, looks stuck and
// is killed. Such a server should have no watchdog, or set o.NoWatchdog and
// feed it itself with RunWatchdog or Watchdog.
//
// Serve returns nil after a complete drain, whether a signal or ctx started
// it. It returns an error when it has nothing to serve on (wrapping
// ErrNoListener), when an inherited fd is not a listener (ErrNotListener),
// when accepting on a listener fails, or when a message to the service
// manager fails; after an accept error it also drains first. In every case
// it has closed all the listeners and stopped srv by the time it returns.
// A malformed WATCHDOG_USEC or WATCHDOG_PID is an error before serving; a
// WATCHDOG=1 or STATUS= that fails does not stop Serve, which returns the
// first such error with the others. Serve has stopped feeding the watchdog
// by the time it returns.
//
// Serve takes over srv: it sets srv.ConnState, calling any hook already set,
// and turns srv's keep-alives off when the drain begins. srv must not be
// serving yet and, as any http.Server after Shutdown, cannot serve again.
// For TLS, wrap the listeners with tls.NewListener.
func (o ServeOptions) Serve(ctx context.Context, srv *http.Server, ls ...net.Listener) error {
	ls, err := serveListeners(ls)
	if err != nil {
		return err
	}
	defer closeAll(ls)
	interval, err := o.watchdog()
	if err != nil {
		return err
	}

	stop := o.StopTimeout
	if stop <= 0 {
		stop = StopTimeout()
	}
	budget := drainBudget(stop)
	draining, conns, prog := instrument(srv)
	stopCtx, stopSignals := o.stopContext(ctx)
	defer stopSignals()

	var closing atomic.Bool // Serve closes the listeners itself
	errc, addrs := serveEach(srv, ls, &closing)
	running := len(ls)
	status := "serving on " + strings.Join(addrs, ", ")
	stopWatchdog := feedWatchdog(&watchdogFeeder{interval: interval, progress: prog, draining: draining, status: status})

	var errs []error
	// A READY=1 that fails because ctx ended is no error: the stop is due.
	if err := Notify(ctx, "READY=1\nSTATUS="+status); err != nil && ctx.Err() == nil {
		errs = append(errs, err)
	} else {
		select {
		case <-stopCtx.Done():
		case err := <-errc:
			running--
			errs = append(errs, err)
		}
	}
	stopSignals()

	// The drain runs on its own clock: ctx may be what asked for it.
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	draining.Store(true)
	errs = append(errs, Notify(drainCtx, fmt.Sprintf("STOPPING=1\nSTATUS=draining, up to %v", budget)))

	// Stop accepting, and let every accepted connection deliver its first
	// request before Shutdown, which would drop it unanswered.
	closing.Store(true)
	closeAll(ls)
	for waiting := true; waiting && running > 0; {
		select {
		case err := <-errc: // every connection it accepted is tracked now
			running--
			errs = append(errs, err)
		case <-drainCtx.Done():
			waiting = false
		}
	}
	errs = append(errs, shutdown(drainCtx, srv, conns, budget))
	for ; running > 0; running-- {
		errs = append(errs, <-errc)
	}
	errs = append(errs, stopWatchdog())
	return errors.Join(errs...)
}

// serveListeners returns ls, or the inherited listeners when ls is empty.
func serveListeners(ls []net.Listener) ([]net.Listener, error) {
	if len(ls) > 0 {
		return ls, nil
	}
	ls, err := AllListeners()
	if err != nil {
		closeAll(ls)
		return nil, err
	}
	if len(ls) == 0 {
		in, _ := inherited()
		return nil, fmt.Errorf("activation: serve: %w (%s); pass listeners to Serve or run it under a socket unit", ErrNoListener, in.reason)
	}
	return ls, nil
}

// instrument wraps srv's handler and connection hook: while draining is
// set, every response says "Connection: close", so that a keep-alive
// client is told to leave with the answer to its next request instead of
// having its idle connection closed under a request it may be sending at
// that moment; conns tracks each connection's state; and prog counts the
// requests that start and finish, for the watchdog.
func instrument(srv *http.Server) (*atomic.Bool, *connTracker, *progress) {
	draining := new(atomic.Bool)
	prog := new(progress)
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prog.started.Add(1)
		defer prog.finished.Add(1) // also when the handler panics
		h.ServeHTTP(&drainWriter{ResponseWriter: w, draining: draining}, r)
	})
	conns := &connTracker{states: make(map[net.Conn]http.ConnState)}
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		conns.set(c, s)
		if hook != nil {
			hook(c, s)
		}
	}
	return draining, conns, prog
}

// stopContext is ctx, also done on the options' stop signals.
func (o ServeOptions) stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	sigs := o.Signals
	if sigs == nil {
		sigs = []os.Signal{syscall.SIGTERM, os.Interrupt}
	}
	if len(sigs) == 0 {
		return ctx, func() {}
	}
	return signal.NotifyContext(ctx, sigs...)
}

// serveEach serves srv on every listener; each sends its end on errc,
// nil when it ended because srv shut down or Serve closed the listeners
// (closing).
func serveEach(srv *http.Server, ls []net.Listener, closing *atomic.Bool) (chan error, []string) {
	errc := make(chan error, len(ls))
	addrs := make([]string, len(ls))
	for i, l := range ls {
		addrs[i] = l.Addr().Network() + " " + l.Addr().String()
		go func() {
			err := srv.Serve(l)
			if err == nil || errors.Is(err, http.ErrServerClosed) || closing.Load() && errors.Is(err, net.ErrClosed) {
				errc <- nil
				return
			}
			errc <- fmt.Errorf("activation: serve on %s: %w", addrs[i], err)
		}()
	}
	return errc, addrs
}

// shutdown ends the drain within drainCtx: it waits for accepted
// connections to settle and idle keep-alive connections to leave, then
// shuts srv down, closing what is still open when the budget is spent.
func shutdown(drainCtx context.Context, srv *http.Server, conns *connTracker, budget time.Duration) error {
	settleCtx, settled := context.WithTimeout(drainCtx, newConnGrace)
	conns.waitNoneNew(settleCtx)
	settled()
	// Keep-alive connections leave with their next answer; those that stay
	// idle are closed by Shutdown after idleGrace.
	idleCtx, idled := context.WithTimeout(drainCtx, min(idleGrace, budget/4))
	conns.waitNone(idleCtx)
	idled()
	srv.SetKeepAlivesEnabled(false)
	err := srv.Shutdown(drainCtx)
	switch {
	case err == nil:
		return nil
	case drainCtx.Err() == nil:
		return fmt.Errorf("activation: shutdown: %w", err)
	}
	n := conns.open()
	srv.Close()
	return fmt.Errorf("activation: %w after %v: closed %d connection(s) still open", ErrDrainTimeout, budget, n)
}

// newConnGrace bounds how long a drain waits for accepted connections to
// send their first request; idleGrace how long keep-alive connections have
// to send one more request, answered with "Connection: close", before idle
// ones are closed (a quarter of the drain budget if that is less).
const (
	newConnGrace = time.Second
	idleGrace    = 2 * time.Second
)

// drainBudget is how long Serve may drain when the process has stop to
// stop: stop less 10% of it or 1s, whichever is smaller.
func drainBudget(stop time.Duration) time.Duration {
	return stop - min(stop/10, time.Second)
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// connTracker follows the connections of an http.Server through its
// ConnState hook.
type connTracker struct {
	mu     sync.Mutex
	states map[net.Conn]http.ConnState
}

func (t *connTracker) set(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(t.states, c)
	default:
		t.states[c] = s
	}
}

// waitNoneNew returns once no connection is in StateNew (accepted, no
// request read yet), or when ctx is done.
func (t *connTracker) waitNoneNew(ctx context.Context) {
	t.waitUntil(ctx, func() bool { return t.count(http.StateNew) == 0 })
}

// waitNone returns once the server holds no connection, or when ctx is
// done.
func (t *connTracker) waitNone(ctx context.Context) {
	t.waitUntil(ctx, func() bool { return t.open() == 0 })
}

func (t *connTracker) waitUntil(ctx context.Context, done func() bool) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *connTracker) count(s http.ConnState) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, st := range t.states {
		if st == s {
			n++
		}
	}
	return n
}

// open returns the number of connections the server still holds.
func (t *connTracker) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.states)
}

// drainWriter adds "Connection: close" to a response whose header is
// written while Serve drains, so that a response in flight when the drain
// began also ends its connection.
type drainWriter struct {
	http.ResponseWriter
	draining *atomic.Bool
	wrote    bool
}

func (w *drainWriter) mark() {
	if !w.wrote {
		w.wrote = true
		if w.draining.Load() {
			w.Header().Set("Connection", "close")
		}
	}
}

func (w *drainWriter) WriteHeader(code int) {
	w.mark()
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(b []byte) (int, error) {
	w.mark()
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher when the underlying writer does.
func (w *drainWriter) Flush() {
	w.mark()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker when the underlying writer does.
func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
