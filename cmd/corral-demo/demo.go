package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/activation"
	"golang.org/x/sys/unix"
)

// maxBurn caps /cpu?ms=N.
const maxBurn = 10000

// config is what the command line sets.
type config struct {
	// Listen is the address to listen on when the process inherits no
	// socket; "" means none.
	Listen string
}

// A configError is a usage or configuration error: restarting the worker
// does not fix it.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func configErrorf(format string, args ...any) error {
	return &configError{fmt.Errorf(format, args...)}
}

// run serves until SIGTERM or SIGINT, or the end of ctx, and drains. It logs
// a line to stderr when it starts serving and when it has drained. Meanwhile
// it answers corrald's messages, and logs the state of that connection (see
// serveMessages).
func run(ctx context.Context, cfg config, stderr io.Writer) error {
	instance, err := activation.Instance()
	if err != nil && !errors.Is(err, activation.ErrNoInstance) {
		return &configError{err}
	}
	ls, err := activation.AllListeners()
	if err != nil {
		closeAll(ls)
		if errors.Is(err, activation.ErrNotListener) {
			return &configError{err}
		}
		return err
	}
	switch {
	case len(ls) > 0 && cfg.Listen != "":
		closeAll(ls)
		return configErrorf("-listen %s: the process also inherited sockets from systemd; drop -listen", cfg.Listen)
	case len(ls) == 0 && cfg.Listen == "":
		return configErrorf("no socket to serve on: run me under corral (systemctl start app.target) or pass -listen 127.0.0.1:8080")
	case len(ls) == 0:
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return configErrorf("-listen: %w", err)
		}
		ls = append(ls, l)
	}

	pid := os.Getpid()
	srv := &http.Server{Handler: newHandler(instance, pid), ReadHeaderTimeout: 10 * time.Second}
	addrs := make([]string, len(ls))
	for i, l := range ls {
		addrs[i] = l.Addr().Network() + " " + l.Addr().String()
	}
	fmt.Fprintf(stderr, "serving on %s as instance %d, pid %d, GOMAXPROCS %d\n",
		strings.Join(addrs, ", "), instance, pid, runtime.GOMAXPROCS(0))

	// Messages for as long as it serves, drain included.
	msgCtx, stopMessages := context.WithCancel(ctx)
	defer stopMessages()
	messagesDone := make(chan struct{})
	go func() {
		defer close(messagesDone)
		serveMessages(msgCtx, instance, stderr)
	}()
	err = activation.Serve(ctx, srv, ls...)
	stopMessages()
	<-messagesDone // before anything else goes to stderr
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "stopped: drained cleanly")
	return nil
}

// serveMessages answers corrald's messages (`corral send app@3 ping`) with
// messageHandler until ctx is done, and logs a line to stderr when it first
// connects to corrald, or cannot, and each time it loses or regains the
// connection (connLogger). Without CORRAL_MESSAGES, run by hand, it returns
// at once and says nothing.
func serveMessages(ctx context.Context, instance int, stderr io.Writer) {
	opts := activation.MessageOptions{OnConnect: connLogger(stderr)}
	if err := opts.ServeMessages(ctx, messageHandler(instance)); err != nil && !errors.Is(err, activation.ErrNoMessages) {
		fmt.Fprintf(stderr, "messages: %v\n", err)
	}
}

// messageHandler answers every message with the instance's number and the
// text it got: instance 3 got "ping".
func messageHandler(instance int) activation.MessageHandler {
	return activation.MessageHandlerFunc(func(ctx context.Context, m activation.Message) (string, error) {
		return fmt.Sprintf("instance %d got %q", instance, m.Text), nil
	})
}

// connState is the state of the connection to corrald, as connLogger last
// logged it.
type connState int

const (
	connNone   connState = iota // no attempt yet
	connNotYet                  // attempts failed, none succeeded yet
	connUp
	connDown // connected before, not now
)

// connLogger returns an activation.MessageOptions.OnConnect that logs a line
// to w on the first connection or failure to connect, and then each time
// the connection is lost or made again. Failed attempts while it is down
// are not logged: ServeMessages retries every few seconds.
func connLogger(w io.Writer) func(error) {
	state := connNone
	return func(err error) {
		switch {
		case err == nil && (state == connNone || state == connNotYet):
			fmt.Fprintln(w, "messages: connected to corrald")
		case err == nil && state == connDown:
			fmt.Fprintln(w, "messages: reconnected to corrald")
		case err != nil && state == connNone:
			fmt.Fprintf(w, "messages: cannot connect, retrying: %v\n", err)
		case err != nil && state == connUp:
			fmt.Fprintf(w, "messages: connection lost, reconnecting: %v\n", err)
		}
		switch {
		case err == nil:
			state = connUp
		case state == connNone || state == connNotYet:
			state = connNotYet
		default:
			state = connDown
		}
	}
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// newHandler serves the demo's routes for the given instance and pid.
func newHandler(instance, pid int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		text(w)
		fmt.Fprintf(w, "hello from instance %d, pid %d\n", instance, pid)
	})
	mux.HandleFunc("GET /cpu", func(w http.ResponseWriter, r *http.Request) {
		ms, err := parseMS(r.URL.Query().Get("ms"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !burn(r.Context(), time.Duration(ms)*time.Millisecond) {
			return // the client has gone
		}
		text(w)
		fmt.Fprintf(w, "burned %d ms on instance %d, pid %d\n", ms, instance, pid)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		text(w)
		io.WriteString(w, "ok\n")
	})
	return mux
}

func text(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
}

// parseMS parses the ms parameter of /cpu: a whole number from 0 to maxBurn.
func parseMS(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxBurn {
		return 0, fmt.Errorf("bad ms=%q: want /cpu?ms=N with N a whole number of milliseconds from 0 to %d", s, maxBurn)
	}
	return n, nil
}

// burn keeps a CPU busy hashing until d of CPU time has been spent on this
// request: the goroutine is locked to its OS thread, whose CPU clock counts
// only its own work, so a request costs d of CPU however many others run
// beside it or preempt it (a wall-clock deadline would count their time
// too, and make a loaded instance look faster than it is). It returns false
// if ctx ends first. Unlike Node's event loop, Go preempts the burning
// goroutine, so a busy instance still answers other requests, only slower.
func burn(ctx context.Context, d time.Duration) bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, ok := threadCPU()
	if !ok { // no thread CPU clock: fall back to wall time
		deadline := time.Now().Add(d)
		return spin(ctx, func() bool { return time.Now().Before(deadline) })
	}
	return spin(ctx, func() bool {
		now, _ := threadCPU()
		return now-start < d
	})
}

// spin hashes while more() and ctx is not done.
func spin(ctx context.Context, more func() bool) bool {
	var sum [sha256.Size]byte
	for more() {
		for range 200 {
			sum = sha256.Sum256(sum[:])
		}
		if ctx.Err() != nil {
			return false
		}
	}
	return true
}

// threadCPU returns the CPU time the calling OS thread has used.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
