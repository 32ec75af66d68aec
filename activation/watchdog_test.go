package activation

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHangDetector(t *testing.T) {
	type tick struct {
		inFlight, finished uint64
		draining           bool
		fed                bool // whether the tick feeds the watchdog
	}
	tests := []struct {
		name  string
		ticks []tick
	}{
		{"idle", []tick{{0, 0, false, true}, {0, 0, false, true}, {0, 0, false, true}}},
		{"busy, requests finishing", []tick{{4, 10, false, true}, {4, 25, false, true}, {5, 31, false, true}, {3, 40, false, true}}},
		{"requests in flight, none finishing", []tick{{0, 7, false, true}, {2, 7, false, false}, {2, 7, false, false}, {3, 7, false, false}}},
		{"starting requests is no progress", []tick{{0, 7, false, true}, {1, 7, false, false}, {5, 7, false, false}, {9, 7, false, false}}},
		{"a request finished since the last tick", []tick{{1, 7, false, true}, {1, 8, false, true}, {1, 8, false, false}, {1, 9, false, true}, {1, 9, false, false}}},
		{"recovers when a request finishes", []tick{{0, 7, false, true}, {2, 7, false, false}, {2, 7, false, false}, {1, 8, false, true}, {1, 8, false, false}}},
		{"recovers when nothing is in flight", []tick{{0, 7, false, true}, {2, 7, false, false}, {2, 7, false, false}, {0, 7, false, true}}},
		{"always fed while draining", []tick{{0, 7, false, true}, {2, 7, false, false}, {2, 7, true, true}, {2, 7, true, true}, {2, 7, true, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d hangDetector
			for i, tk := range tt.ticks {
				if got := d.observe(tk.inFlight, tk.finished, tk.draining) == 0; got != tk.fed {
					t.Errorf("tick %d (%d in flight, %d finished, draining %v): fed = %v, want %v", i, tk.inFlight, tk.finished, tk.draining, got, tk.fed)
				}
			}
		})
	}
}

func TestHungStatus(t *testing.T) {
	if got, want := hungStatus(1, 1234*time.Millisecond), "hung: 1 request in flight, none finished for 1.2s"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := hungStatus(3, 30*time.Second), "hung: 3 requests in flight, none finished for 30s"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// testInterval is the watchdog interval of the Serve tests: WATCHDOG=1
// every 100ms.
const testInterval = 200 * time.Millisecond

// note is a message to the service manager and when it came.
type note struct {
	at  time.Time
	msg string
}

func (n note) String() string { return n.msg }

// watchdogSocket fakes a unit with WatchdogSec=testInterval for this
// process: NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. It returns the
// messages that arrive, as they arrive.
func watchdogSocket(t *testing.T) <-chan note {
	t.Helper()
	sock := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(testInterval.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	notes := make(chan note, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- note{time.Now(), string(buf[:n])}
		}
	}()
	return notes
}

// notesFor returns the messages that come within d.
func notesFor(notes <-chan note, d time.Duration) []note {
	var got []note
	timeout := time.After(d)
	for {
		select {
		case n := <-notes:
			got = append(got, n)
		case <-timeout:
			return got
		}
	}
}

// nextNote returns the next message for which match is true, and those
// that came before it, or fails the test after 10s.
func nextNote(t *testing.T, notes <-chan note, match func(string) bool) (note, []note) {
	t.Helper()
	var skipped []note
	timeout := time.After(10 * time.Second)
	for {
		select {
		case n := <-notes:
			if match(n.msg) {
				return n, skipped
			}
			skipped = append(skipped, n)
		case <-timeout:
			t.Fatal("no such message in 10s")
		}
	}
}

func feeds(notes []note) int {
	n := 0
	for _, m := range notes {
		if strings.HasPrefix(m.msg, "WATCHDOG=1") {
			n++
		}
	}
	return n
}

// startServe serves h on a fresh listener with opts until the returned
// stop, which checks that Serve returned nil, that its watchdog goroutine
// is gone and that no WATCHDOG=1 comes after.
func startServe(t *testing.T, opts ServeOptions, h http.Handler, notes <-chan note) (addr string, stop func()) {
	t.Helper()
	l := listen(t, "tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	opts.Signals = noSignals
	go func() { served <- opts.Serve(ctx, &http.Server{Handler: h}, l) }()
	return l.Addr().String(), func() {
		t.Helper()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Serve did not return")
		}
		checkStopped(t, notes)
	}
}

// checkStopped checks, once Serve has returned, that its watchdog
// goroutine is gone and that no WATCHDOG=1 comes after what it sent.
func checkStopped(t *testing.T, notes <-chan note) {
	t.Helper()
	if g := feederGoroutines(); g != "" {
		t.Errorf("the watchdog goroutine runs on after Serve returned:\n%s", g)
	}
	// Datagrams queue in the order they are sent: what comes after the
	// mark was sent after Serve returned.
	if err := Notify(t.Context(), "X-TEST=returned"); err != nil {
		t.Fatal(err)
	}
	nextNote(t, notes, func(m string) bool { return m == "X-TEST=returned" })
	if late := notesFor(notes, 3*testInterval); len(late) > 0 {
		t.Errorf("messages after Serve returned: %q, want none", late)
	}
}

// feederGoroutines returns the stacks of the goroutines that run Serve's
// watchdog, "" when there are none. It gives an exiting goroutine a second.
func feederGoroutines() string {
	var found string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		found = ""
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "watchdogFeeder") || strings.Contains(g, "feedWatchdog") {
				found += g + "\n\n"
			}
		}
		if found == "" {
			return ""
		}
	}
	return found
}

// TestServeWatchdogIdle: an idle server feeds the watchdog.
func TestServeWatchdogIdle(t *testing.T) {
	notes := watchdogSocket(t)
	_, stop := startServe(t, ServeOptions{}, http.NotFoundHandler(), notes)
	got := notesFor(notes, 5*testInterval)
	stop()
	checkFed(t, "an idle server", got, 5)
}

// checkFed checks that got, what came in the given number of intervals,
// holds about a WATCHDOG=1 every half interval and no STATUS= but READY's.
func checkFed(t *testing.T, what string, got []note, intervals int) {
	t.Helper()
	// A slow machine may lose a few ticks.
	if n := feeds(got); n < 4*intervals/5 {
		t.Errorf("%d WATCHDOG=1 in %d intervals of %s, want about %d: %q", n, intervals, what, 2*intervals, got)
	}
	for _, n := range got {
		if strings.Contains(n.msg, "STATUS=") && !strings.HasPrefix(n.msg, "READY=1\n") {
			t.Errorf("%s: %q, want no STATUS=", what, n.msg)
		}
	}
}

// TestServeWatchdogBusy: a server that always has requests in flight,
// each taking half an interval, is fed while they keep finishing, and
// never says it hangs.
func TestServeWatchdogBusy(t *testing.T) {
	notes := watchdogSocket(t)
	addr, stop := startServe(t, ServeOptions{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(testInterval / 2)
	}), notes)
	done := make(chan struct{})
	var clients sync.WaitGroup
	for range 4 {
		clients.Go(func() {
			for {
				select {
				case <-done:
					return
				case r := <-get("http://" + addr + "/"):
					if r.err != nil || r.status != http.StatusOK {
						t.Errorf("busy server: %d %v", r.status, r.err)
						return
					}
				}
			}
		})
	}
	got := notesFor(notes, 8*testInterval)
	close(done)
	clients.Wait()
	stop()
	checkFed(t, "a busy server", got, 8)
}

// TestServeWatchdogHung: when every request blocks, the feeding stops
// within about an interval and STATUS= says why; when they finish, it
// resumes and the serving status comes back.
func TestServeWatchdogHung(t *testing.T) {
	notes := watchdogSocket(t)
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	addr, stop := startServe(t, ServeOptions{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}), notes)
	nextNote(t, notes, func(m string) bool { return strings.HasPrefix(m, "READY=1") })
	if n := feeds(notesFor(notes, 9*testInterval/4)); n == 0 { // between two ticks
		t.Error("no WATCHDOG=1 before the requests")
	}
	resps := make([]<-chan response, 3)
	for i := range resps {
		resps[i] = get("http://" + addr + "/")
	}
	for range resps {
		<-started
	}
	blocked := time.Now()

	hung, before := nextNote(t, notes, func(m string) bool { return strings.HasPrefix(m, "STATUS=") })
	fed := 0
	for _, n := range before {
		if n.at.After(blocked) && n.msg == "WATCHDOG=1" {
			fed++
		}
	}
	if !regexp.MustCompile(`^STATUS=hung: 3 requests in flight, none finished for [0-9.]+m?s$`).MatchString(hung.msg) {
		t.Errorf("status %q, want STATUS=hung: 3 requests in flight, none finished for …", hung.msg)
	}
	// One tick sees the requests in flight and feeds, the next one stops;
	// a second feed may be one sent as they started.
	t.Logf("%q %v after every request blocked, %d WATCHDOG=1 between", hung.msg, hung.at.Sub(blocked).Round(time.Millisecond), fed)
	if took := hung.at.Sub(blocked); took > 5*testInterval || fed > 2 {
		t.Errorf("STATUS=hung %v after every request blocked, with %d WATCHDOG=1 before it; want about one interval and at most 2", took, fed)
	}
	if got := notesFor(notes, 4*testInterval); len(got) > 0 {
		t.Errorf("messages while hung: %q, want none", got)
	}

	close(release)
	back, _ := nextNote(t, notes, func(m string) bool { return m != "WATCHDOG=1" })
	if want := "WATCHDOG=1\nSTATUS=serving on tcp " + addr; back.msg != want {
		t.Errorf("once the requests finished: %q, want %q", back.msg, want)
	}
	for _, r := range resps {
		if r := <-r; r.err != nil || r.status != http.StatusOK {
			t.Errorf("released request: %d %v", r.status, r.err)
		}
	}
	stop()
}

// TestServeWatchdogDrain: the drain feeds the watchdog even while requests
// are stuck in it.
func TestServeWatchdogDrain(t *testing.T) {
	notes := watchdogSocket(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	l := listen(t, "tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	})}
	go func() { served <- ServeOptions{Signals: noSignals, StopTimeout: time.Minute}.Serve(ctx, srv, l) }()
	resp := get("http://" + l.Addr().String() + "/")
	<-started
	nextNote(t, notes, func(m string) bool { return strings.HasPrefix(m, "STATUS=hung") })
	cancel()
	nextNote(t, notes, func(m string) bool { return strings.HasPrefix(m, "STOPPING=1") })
	checkFed(t, "a drain", notesFor(notes, 5*testInterval), 5) // STATUS=draining stands
	close(release)
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	<-resp
	checkStopped(t, notes)
}

// TestServeNoWatchdog: with NoWatchdog, Serve leaves the watchdog alone.
func TestServeNoWatchdog(t *testing.T) {
	notes := watchdogSocket(t)
	_, stop := startServe(t, ServeOptions{NoWatchdog: true}, http.NotFoundHandler(), notes)
	got := notesFor(notes, 5*testInterval)
	stop()
	if n := feeds(got); n > 0 || len(got) != 1 || !strings.HasPrefix(got[0].msg, "READY=1") {
		t.Errorf("messages with NoWatchdog: %q, want READY=1 alone", got)
	}
}

func TestServeWatchdogMalformed(t *testing.T) {
	notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "soon")
	l := listen(t, "tcp", "127.0.0.1:0")
	err := ServeOptions{Signals: noSignals}.Serve(t.Context(), &http.Server{}, l)
	if err == nil || !strings.HasPrefix(err.Error(), "activation: watchdog: ") {
		t.Errorf("Serve with WATCHDOG_USEC=soon = %v, want activation: watchdog: …", err)
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("%v still accepts after Serve returned", l.Addr())
	}
}

// nopWriter is a ResponseWriter that keeps nothing, so that a benchmark
// measures the wrapper and not the recording.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkInstrumentedHandler measures what Serve's wrapper adds to each
// request: "bare" is the handler alone, "instrumented" the same handler as
// Serve runs it; "parallel" runs it on every P at once.
func BenchmarkInstrumentedHandler(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := &http.Server{Handler: h}
	instrument(srv)
	req := httptest.NewRequest("GET", "/", nil)
	for _, bb := range []struct {
		name string
		h    http.Handler
	}{{"bare", h}, {"instrumented", srv.Handler}} {
		b.Run(bb.name, func(b *testing.B) {
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				bb.h.ServeHTTP(w, req)
			}
		})
		b.Run(bb.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &nopWriter{h: http.Header{}}
				for pb.Next() {
					bb.h.ServeHTTP(w, req)
				}
			})
		})
	}
}
