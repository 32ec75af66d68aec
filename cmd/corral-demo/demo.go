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
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-pool/corral/activation"
	"golang.org/x/sys/unix"
)

// maxBurn caps /cpu?ms=N, maxAlloc /alloc?mb=N.
const (
	maxBurn  = 10000
	maxAlloc = 4096
)

// config is what the command line sets.
type config struct {
	// Listen is the address to listen on when the process inherits no
	// socket; "" means none.
	Listen string

	// Faults turns the fault endpoints on: /hang, /alloc, /free, /sick
	// and /well.
	Faults bool
	// Sick, with Faults, starts the worker sick: /health answers 500
	// until GET /well.
	Sick bool
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
	srv := &http.Server{Handler: newHandler(instance, pid, cfg.faults()), ReadHeaderTimeout: 10 * time.Second}
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

// faults returns the state of the fault endpoints, nil without them.
func (c config) faults() *faultState {
	if !c.Faults {
		return nil
	}
	f := new(faultState)
	f.sick.Store(c.Sick)
	return f
}

// newHandler serves the demo's routes for the given instance and pid, and
// the fault endpoints if faults is not nil (see faultState.handler).
func newHandler(instance, pid int, faults *faultState) http.Handler {
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
	if faults == nil {
		return mux
	}
	return faults.handler(mux)
}

// faultState is what the fault endpoints share.
type faultState struct {
	// gate is the process-wide mutex: every request takes it for a moment,
	// /hang takes it for good. passed, which it guards, stands for the
	// shared state that such a mutex guards in a real server.
	gate   sync.Mutex
	passed uint64 // requests that went through the gate

	sick atomic.Bool // /health answers 500

	mu      sync.Mutex // guards held and heldMiB
	held    [][]byte   // what /alloc allocated, kept until /free
	heldMiB int
}

// handler adds the fault endpoints to mux and makes every request pass
// f's gate first:
//
//	GET /hang        takes the gate and never lets go: every request hangs
//	GET /alloc?mb=N  allocates N MiB more (1 to maxAlloc), resident, and
//	                 keeps it; answers with the total held
//	GET /free        drops what /alloc holds and returns it to the system
//	GET /sick        /health answers 500 from now on
//	GET /well        /health answers ok again
func (f *faultState) handler(mux *http.ServeMux) http.Handler {
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		f.gate.Lock() // the request passed the gate: it is free
		f.gate.Lock() // the mutex is held, by this very goroutine: a deadlock
	})
	mux.HandleFunc("GET /alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, err := parseMB(r.URL.Query().Get("mb"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		text(w)
		fmt.Fprintf(w, "holding %d MiB\n", f.alloc(mb))
	})
	mux.HandleFunc("GET /free", func(w http.ResponseWriter, r *http.Request) {
		text(w)
		fmt.Fprintf(w, "freed %d MiB, holding 0 MiB\n", f.free())
	})
	mux.HandleFunc("GET /sick", func(w http.ResponseWriter, r *http.Request) {
		f.sick.Store(true)
		text(w)
		io.WriteString(w, "sick: /health answers 500 until GET /well\n")
	})
	mux.HandleFunc("GET /well", func(w http.ResponseWriter, r *http.Request) {
		f.sick.Store(false)
		text(w)
		io.WriteString(w, "well: /health answers ok\n")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.gate.Lock()
		f.passed++
		f.gate.Unlock()
		if r.URL.Path == "/health" && f.sick.Load() {
			http.Error(w, "sick (GET /well heals it)", http.StatusInternalServerError)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// alloc allocates mb MiB, writes to every page of it so that it is
// resident, not just reserved, keeps it and returns the MiB now held.
func (f *faultState) alloc(mb int) int {
	b := make([]byte, mb<<20)
	for i, page := 0, os.Getpagesize(); i < len(b); i += page {
		b[i] = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = append(f.held, b)
	f.heldMiB += mb
	return f.heldMiB
}

// free drops what alloc keeps, returns the memory to the system and says
// how many MiB that was.
func (f *faultState) free() int {
	f.mu.Lock()
	mb := f.heldMiB
	f.held, f.heldMiB = nil, 0
	f.mu.Unlock()
	debug.FreeOSMemory()
	return mb
}

func text(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
}

// parseMS parses the ms parameter of /cpu: a whole number from 0 to maxBurn.
func parseMS(s string) (int, error) {
	return parseParam("ms", s, "/cpu?ms=N with N a whole number of milliseconds", 0, maxBurn)
}

// parseMB parses the mb parameter of /alloc: a whole number from 1 to
// maxAlloc.
func parseMB(s string) (int, error) {
	return parseParam("mb", s, "/alloc?mb=N with N a whole number of MiB", 1, maxAlloc)
}

// parseParam parses s, the value of the query parameter name, as a whole
// number from lo to hi; the error says what is wanted.
func parseParam(name, s, want string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("bad %s=%q: want %s from %d to %d", name, s, want, lo, hi)
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
