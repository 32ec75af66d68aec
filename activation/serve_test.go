package activation

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// noSignals makes Serve stop on ctx alone, so tests in this process do not
// catch the signals of others.
var noSignals = []os.Signal{}

type response struct {
	status int
	body   string
	close  bool // the response said "Connection: close"
	err    error
}

// get fetches url in the background on a client of its own.
func get(url string) <-chan response {
	ch := make(chan response, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get(url)
		if err != nil {
			ch <- response{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- response{status: resp.StatusCode, body: string(b), close: resp.Close, err: err}
	}()
	return ch
}

// slowHandler signals started, then answers "done" after delay, or nothing
// when the request is cancelled first.
func slowHandler(delay time.Duration, started chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-time.After(delay):
			fmt.Fprintln(w, "done")
		case <-r.Context().Done():
		}
	})
}

func TestServeDrain(t *testing.T) {
	tests := []struct {
		name        string
		delay       time.Duration // how long the in-flight request takes
		stopTimeout time.Duration
		wantStatus  int   // 0: the request fails
		wantErr     error // nil or what the error wraps
		wantErrText string
	}{
		{
			name:        "in-flight request finishes",
			delay:       300 * time.Millisecond,
			stopTimeout: 10 * time.Second,
			wantStatus:  http.StatusOK,
		},
		{
			name:        "deadline closes connections",
			delay:       time.Minute,
			stopTimeout: time.Second,
			wantErr:     ErrDrainTimeout,
			wantErrText: "activation: drain timed out after 900ms: closed 1 connection(s) still open",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := notifySocket(t)
			l := listen(t, "tcp", "127.0.0.1:0")
			addr := l.Addr().String()
			started := make(chan struct{}, 1)
			var states sync.Map // the ConnState hook Serve must keep calling
			srv := &http.Server{
				Handler:   slowHandler(tt.delay, started),
				ConnState: func(c net.Conn, s http.ConnState) { states.Store(s, true) },
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			served := make(chan error, 1)
			go func() {
				served <- ServeOptions{Signals: noSignals, StopTimeout: tt.stopTimeout}.Serve(ctx, srv, l)
			}()

			if got, want := recvNotify(t, sock), "READY=1\nSTATUS=serving on tcp "+addr; got != want {
				t.Errorf("first message %q, want %q", got, want)
			}
			resp := get("http://" + addr + "/")
			<-started
			stopped := time.Now()
			cancel()
			if got, want := recvNotify(t, sock), fmt.Sprintf("STOPPING=1\nSTATUS=draining, up to %v", drainBudget(tt.stopTimeout)); got != want {
				t.Errorf("message after cancel %q, want %q", got, want)
			}

			err := <-served
			took := time.Since(stopped)
			if !errors.Is(err, tt.wantErr) || (err != nil && err.Error() != tt.wantErrText) {
				t.Errorf("Serve error\n got: %v\nwant: %v", err, tt.wantErrText)
			}
			if took >= tt.stopTimeout {
				t.Errorf("Serve returned %v after the stop began, want less than the stop timeout %v", took, tt.stopTimeout)
			}
			if tt.wantErr != nil && took < drainBudget(tt.stopTimeout) {
				t.Errorf("Serve returned %v after the stop began, before the drain budget %v", took, drainBudget(tt.stopTimeout))
			}

			r := <-resp
			switch {
			case tt.wantStatus == 0 && r.err == nil:
				t.Errorf("in-flight request got %d %q, want it cut off", r.status, r.body)
			case tt.wantStatus != 0 && (r.err != nil || r.status != tt.wantStatus || r.body != "done\n" || !r.close):
				t.Errorf("in-flight request got %d %q close=%v err=%v, want %d \"done\\n\" with Connection: close", r.status, r.body, r.close, r.err, tt.wantStatus)
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("dial %s after Serve returned: connected, want the listener closed", addr)
			}
			if _, ok := states.Load(http.StateActive); !ok {
				t.Error("the server's own ConnState hook was not called")
			}
		})
	}
}

func TestServeClosesIdleConnections(t *testing.T) {
	l := listen(t, "tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- ServeOptions{Signals: noSignals, StopTimeout: time.Minute}.Serve(ctx, srv, l) }()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if resp.Close {
		t.Fatal("first response closes the connection, want keep-alive")
	}

	stopped := time.Now()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("Serve took %v with an idle keep-alive connection, want it closed at once", took)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on the idle connection = %d, %v; want EOF: closed by the server", n, err)
	}
}

func TestServeCancelledBeforeStart(t *testing.T) {
	notifySocket(t)
	l := listen(t, "tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := (ServeOptions{Signals: noSignals}).Serve(ctx, &http.Server{}, l); err != nil {
		t.Errorf("Serve with a cancelled ctx = %v, want nil: the stop was asked for", err)
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("%v still accepts after Serve returned", l.Addr())
	}
}

func TestServeErrors(t *testing.T) {
	closed := listen(t, "tcp", "127.0.0.1:0")
	closed.Close()
	tests := []struct {
		name    string
		notify  string // NOTIFY_SOCKET; "" to unset it
		ls      []net.Listener
		wantErr string
		wantIs  error
	}{
		{
			name:    "no listener",
			wantErr: "activation: serve: no inherited listener (LISTEN_PID is not set); pass listeners to Serve or run it under a socket unit",
			wantIs:  ErrNoListener,
		},
		{
			name:    "accept fails",
			ls:      []net.Listener{closed},
			wantErr: "activation: serve on tcp " + closed.Addr().String() + ": accept tcp " + closed.Addr().String() + ": use of closed network connection",
		},
		{
			name:    "READY=1 fails",
			notify:  "/nonexistent/notify",
			ls:      []net.Listener{listen(t, "tcp", "127.0.0.1:0")},
			wantErr: "activation: notify READY=1: dial unixgram /nonexistent/notify: connect: no such file or directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tt.notify)
			done := make(chan error, 1)
			go func() { done <- ServeOptions{Signals: noSignals}.Serve(t.Context(), &http.Server{}, tt.ls...) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return")
			}
			// The STOPPING=1 that follows a failed READY=1 fails the same way.
			first, _, _ := strings.Cut(fmt.Sprint(err), "\n")
			if err == nil || first != tt.wantErr || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Errorf("Serve error\n got: %v\nwant: %s", err, tt.wantErr)
			}
			for _, l := range tt.ls {
				if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
					c.Close()
					t.Errorf("%v still accepts after Serve returned", l.Addr())
				}
			}
		})
	}
}

// TestHelperInherit runs the package in a process that inherits fds the way
// systemd passes them and checks what FDs, Listeners, AllListeners and
// Listener make of them.
func TestHelperInherit(t *testing.T) {
	tcpFile, tcpAddr := listenerFile(t, "tcp", "127.0.0.1:0")
	unixFile, unixAddr := listenerFile(t, "unix", sockPath(t, "s"))
	udpFile := udpSocket(t)
	unset := map[string]string{"LISTEN_PID": "<unset>", "LISTEN_FDS": "<unset>", "LISTEN_FDNAMES": "<unset>", "LISTEN_PIDFDID": "<unset>"}

	tests := []struct {
		name    string
		pid     listenPIDFor
		files   []*os.File
		fdnames string
		want    helperReport
		dial    []net.Addr // listeners that should answer with their name
		answers []string
	}{
		{
			name:    "tcp and unix",
			files:   []*os.File{tcpFile, unixFile},
			fdnames: "app:app",
			want: helperReport{
				FDs:         []helperFD{{3, "app", "tcp listener", true, true}, {4, "app", "unix listener", true, true}},
				Env:         unset,
				Names:       map[string]int{"app": 2},
				ListenerErr: `activation: no inherited listener named "nope" (have: app); is the pool's socket unit running?`,
				Same:        true,
			},
			dial:    []net.Addr{tcpAddr, unixAddr},
			answers: []string{"app", "app"},
		},
		{
			name:    "a udp socket",
			files:   []*os.File{tcpFile, udpFile},
			fdnames: "web:metrics",
			want: helperReport{
				FDs:         []helperFD{{3, "web", "tcp listener", true, true}, {4, "metrics", "udp socket", false, true}},
				Env:         unset,
				Names:       map[string]int{"web": 1},
				AllErr:      `activation: inherited fd 4 "metrics" (udp socket): not a listening stream socket; take it with FDs or pass only ListenStream= sockets`,
				ListenerErr: `activation: no inherited listener named "nope" (have: web); is the pool's socket unit running?`,
				Same:        true,
			},
			dial:    []net.Addr{tcpAddr},
			answers: []string{"web"},
		},
		{
			name:    "LISTEN_PID of another process",
			pid:     parentPID,
			files:   []*os.File{tcpFile},
			fdnames: "app",
			want: helperReport{
				Env:   unset,
				Names: map[string]int{},
				ListenerErr: fmt.Sprintf(`activation: no inherited listener named "nope" (have: none; LISTEN_PID=%d is another process, this is `,
					os.Getpid()),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, stdout := startHelper(t, "fds", tt.pid, tt.files,
				"LISTEN_FDS="+strconv.Itoa(len(tt.files)), "LISTEN_FDNAMES="+tt.fdnames, "LISTEN_PIDFDID=1")
			var got helperReport
			if err := json.NewDecoder(stdout).Decode(&got); err != nil {
				t.Fatalf("reading the helper's report: %v", err)
			}
			if tt.pid == parentPID && strings.HasPrefix(got.ListenerErr, tt.want.ListenerErr) {
				got.ListenerErr = tt.want.ListenerErr // the rest names the helper's pid
			}
			if !slices.Equal(got.FDs, tt.want.FDs) || !maps.Equal(got.Env, tt.want.Env) || !maps.Equal(got.Names, tt.want.Names) ||
				got.AllErr != tt.want.AllErr || got.ListenerErr != tt.want.ListenerErr || got.Same != tt.want.Same {
				t.Errorf("helper report\n got: %+v\nwant: %+v", got, tt.want)
			}
			for i, a := range tt.dial {
				c, err := net.Dial(a.Network(), a.String())
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				c.Close()
				if got := strings.TrimSpace(string(b)); err != nil || got != tt.answers[i] {
					t.Errorf("dial %v: answer %q, %v; want %q from the helper", a, got, err, tt.answers[i])
				}
			}
			if code := waitExit(t, cmd); code != 0 {
				t.Errorf("helper exit status %d, want 0", code)
			}
		})
	}
}

// TestHelperServeSIGTERM stops a worker the way systemd does, with SIGTERM,
// while a request is in flight.
func TestHelperServeSIGTERM(t *testing.T) {
	tests := []struct {
		name        string
		delay       string // HELPER_DELAY: how long the in-flight request takes
		stopTimeout string // CORRAL_STOP_TIMEOUT
		wantStatus  int    // 0: the request fails
		wantExit    int
	}{
		{name: "drains", delay: "300ms", stopTimeout: "10s", wantStatus: http.StatusOK, wantExit: 0},
		{name: "deadline", delay: "1m", stopTimeout: "1s", wantExit: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := notifySocket(t)
			file, addr := listenerFile(t, "tcp", "127.0.0.1:0")
			cmd, _ := startHelper(t, "serve", helperPID, []*os.File{file},
				"LISTEN_FDS=1", "LISTEN_FDNAMES=app", "HELPER_DELAY="+tt.delay, "CORRAL_STOP_TIMEOUT="+tt.stopTimeout)
			if got := recvNotify(t, sock); !strings.HasPrefix(got, "READY=1\n") {
				t.Fatalf("first message %q, want READY=1", got)
			}
			resp := get("http://" + addr.String() + "/slow")
			if got := recvNotify(t, sock); got != "STATUS=handling" {
				t.Fatalf("message %q, want STATUS=handling from the handler", got)
			}
			stopped := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if got := recvNotify(t, sock); !strings.HasPrefix(got, "STOPPING=1\n") {
				t.Errorf("message after SIGTERM %q, want STOPPING=1", got)
			}
			r := <-resp
			if code := waitExit(t, cmd); code != tt.wantExit {
				t.Errorf("helper exit status %d, want %d", code, tt.wantExit)
			}
			stop, _ := time.ParseDuration(tt.stopTimeout)
			if took := time.Since(stopped); took > stop {
				t.Errorf("helper exited %v after SIGTERM, want within the stop timeout %v", took, stop)
			}
			switch {
			case tt.wantStatus == 0 && r.err == nil:
				t.Errorf("in-flight request got %d %q, want it cut off", r.status, r.body)
			case tt.wantStatus != 0 && (r.err != nil || r.status != tt.wantStatus || r.body != "done\n"):
				t.Errorf("in-flight request got %d %q err=%v, want %d \"done\\n\"", r.status, r.body, r.err, tt.wantStatus)
			}

			// The worker closed its fd, not the socket: this process still
			// holds a copy, as systemd does, and new connections queue on it.
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err != nil {
				t.Errorf("dial %v after the worker exited: %v, want the socket still listening", addr, err)
			} else {
				c.Close()
			}
		})
	}
}

// TestServeAnswersConnectionAcceptedBeforeStop: a client that connected
// before the stop but sends its request after the drain began is answered,
// not dropped (http.Server.Shutdown alone closes such a connection without
// a response, which clients see as EOF).
func TestServeAnswersConnectionAcceptedBeforeStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted <- struct{}{}
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeOptions{Signals: noSignals, StopTimeout: 5 * time.Second}.Serve(ctx, srv, ln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted
	cancel()                          // the drain begins…
	time.Sleep(50 * time.Millisecond) // …and is under way when the request comes
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request on a connection accepted before the stop: %v, want an answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" || !resp.Close {
		t.Errorf("got %d %q close=%v, want 200 \"ok\" with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
