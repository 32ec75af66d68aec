package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/internal/message"
)

// With CORRAL_DEMO_TEST_MAIN=1 the test binary is corral-demo itself: the
// end-to-end tests re-execute it as the worker.
func TestMain(m *testing.M) {
	if os.Getenv("CORRAL_DEMO_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestHandler(t *testing.T) {
	const badMS = "want /cpu?ms=N with N a whole number of milliseconds from 0 to 10000\n"
	tests := []struct {
		method, target string
		wantStatus     int
		wantBody       string // "" to skip the check
		minTime        time.Duration
	}{
		{"GET", "/", 200, "hello from instance 3, pid 42\n", 0},
		{"HEAD", "/", 200, "", 0},
		{"GET", "/health", 200, "ok\n", 0},
		{"GET", "/cpu?ms=0", 200, "burned 0 ms on instance 3, pid 42\n", 0},
		{"GET", "/cpu?ms=30", 200, "burned 30 ms on instance 3, pid 42\n", 30 * time.Millisecond},
		{"GET", "/cpu", 400, `bad ms="": ` + badMS, 0},
		{"GET", "/cpu?ms=abc", 400, `bad ms="abc": ` + badMS, 0},
		{"GET", "/cpu?ms=-1", 400, `bad ms="-1": ` + badMS, 0},
		{"GET", "/cpu?ms=10001", 400, `bad ms="10001": ` + badMS, 0},
		{"GET", "/cpu?ms=1.5", 400, `bad ms="1.5": ` + badMS, 0},
		{"POST", "/", 405, "", 0},
		{"GET", "/nope", 404, "", 0},
		// The fault endpoints exist only with DEMO_FAULTS=1.
		{"GET", "/hang", 404, "", 0},
		{"GET", "/alloc?mb=1", 404, "", 0},
		{"GET", "/free", 404, "", 0},
	}
	h := newHandler(3, 42, nil)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rec := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			took := time.Since(start)
			if rec.Code != tt.wantStatus || (tt.wantBody != "" && rec.Body.String() != tt.wantBody) {
				t.Errorf("%s %s\n got: %d %q\nwant: %d %q", tt.method, tt.target, rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
			if took < tt.minTime {
				t.Errorf("%s %s took %v, want at least %v of burning", tt.method, tt.target, took, tt.minTime)
			}
			if ct := rec.Header().Get("Content-Type"); rec.Code < 300 && ct != "text/plain; charset=utf-8" {
				t.Errorf("%s %s Content-Type %q, want text/plain; charset=utf-8", tt.method, tt.target, ct)
			}
		})
	}
}

// TestFaultAlloc: /alloc holds more with each call, resident, until /free.
func TestFaultAlloc(t *testing.T) {
	const badMB = "want /alloc?mb=N with N a whole number of MiB from 1 to 4096\n"
	h := newHandler(3, 42, new(faultState))
	rssBefore := residentMiB(t)
	for _, tt := range []struct {
		target     string
		wantStatus int
		wantBody   string
	}{
		{"/alloc?mb=1", 200, "holding 1 MiB\n"},
		{"/alloc?mb=63", 200, "holding 64 MiB\n"},
		{"/alloc", 400, `bad mb="": ` + badMB},
		{"/alloc?mb=0", 400, `bad mb="0": ` + badMB},
		{"/alloc?mb=4097", 400, `bad mb="4097": ` + badMB},
		{"/alloc?mb=lots", 400, `bad mb="lots": ` + badMB},
		{"/health", 200, "ok\n"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tt.target, nil))
		if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
			t.Errorf("GET %s\n got: %d %q\nwant: %d %q", tt.target, rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
		}
	}
	// Every page was written to: the 64 MiB are resident.
	if grew := residentMiB(t) - rssBefore; grew < 60 {
		t.Errorf("resident memory grew by %d MiB after /alloc of 64 MiB, want at least 60", grew)
	}
	for _, tt := range []struct{ target, want string }{
		{"/free", "freed 64 MiB, holding 0 MiB\n"},
		{"/free", "freed 0 MiB, holding 0 MiB\n"},
		{"/alloc?mb=2", "holding 2 MiB\n"},
		{"/free", "freed 2 MiB, holding 0 MiB\n"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tt.target, nil))
		if rec.Code != 200 || rec.Body.String() != tt.want {
			t.Errorf("GET %s\n got: %d %q\nwant: 200 %q", tt.target, rec.Code, rec.Body.String(), tt.want)
		}
	}
}

// TestFaultSick: /sick makes /health answer 500 until /well; a worker
// started with DEMO_SICK=1 (Sick) is sick from its first request; without
// the faults, /sick is 404 and /health stays ok.
func TestFaultSick(t *testing.T) {
	get := func(h http.Handler, target string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		return rec.Code, rec.Body.String()
	}
	type step struct {
		target string
		code   int
		body   string
	}
	for _, tt := range []struct {
		name  string
		cfg   config
		steps []step
	}{
		{"well", config{Faults: true}, []step{
			{"/health", 200, "ok\n"},
			{"/sick", 200, "sick: /health answers 500 until GET /well\n"},
			{"/health", 500, "sick (GET /well heals it)\n"},
			{"/", 200, "hello from instance 3, pid 42\n"},
			{"/well", 200, "well: /health answers ok\n"},
			{"/health", 200, "ok\n"},
		}},
		{"started sick", config{Faults: true, Sick: true}, []step{
			{"/health", 500, "sick (GET /well heals it)\n"},
			{"/well", 200, "well: /health answers ok\n"},
			{"/health", 200, "ok\n"},
		}},
		{"no faults", config{Sick: true}, []step{
			{"/sick", 404, "404 page not found\n"},
			{"/health", 200, "ok\n"},
		}},
	} {
		h := newHandler(3, 42, tt.cfg.faults())
		for _, s := range tt.steps {
			if code, body := get(h, s.target); code != s.code || body != s.body {
				t.Errorf("%s: GET %s: %d %q, want %d %q", tt.name, s.target, code, body, s.code, s.body)
			}
		}
	}
}

// residentMiB returns the resident memory of the process (VmRSS).
func residentMiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no resident memory to measure: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS: %q: %v", v, err)
			}
			return kb >> 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestFaultHang runs the worker with DEMO_FAULTS=1 and a watchdog:
// after /hang no request is answered, the watchdog is no longer fed, and
// SIGTERM still ends the worker within its stop timeout.
func TestFaultHang(t *testing.T) {
	notifyPath, notify := notifySocket(t)
	w := startWorker(t, nil, []string{"DEMO_FAULTS=1", "CORRAL_STOP_TIMEOUT=2s",
		"NOTIFY_SOCKET=" + notifyPath, "WATCHDOG_USEC=200000"}, "-listen", "127.0.0.1:0")
	m := regexp.MustCompile(`^serving on tcp (127\.0\.0\.1:\d+) `).FindStringSubmatch(w.line(t))
	if m == nil {
		t.Fatal("no address in the worker's first line")
	}
	base := "http://" + m[1]
	if got := getBody(t, base+"/health"); got != "ok\n" {
		t.Errorf("GET /health before /hang: %q, want ok", got)
	}

	// /hang answers nothing; every request after it hangs too.
	for _, tt := range []struct {
		path    string
		timeout time.Duration
	}{{"/hang", time.Second}, {"/", 300 * time.Millisecond}, {"/health", 300 * time.Millisecond}} {
		c := &http.Client{Timeout: tt.timeout}
		if resp, err := c.Get(base + tt.path); err == nil {
			resp.Body.Close()
			t.Errorf("GET %s after /hang: %s, want no answer within %v", tt.path, resp.Status, tt.timeout)
		}
	}

	// Serve stops feeding the watchdog and says why, maybe before the
	// requests after /hang came.
	buf := make([]byte, 512)
	hung := regexp.MustCompile(`^STATUS=hung: [1-3] requests? in flight, none finished for [0-9.]+m?s$`)
	for {
		notify.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("waiting for STATUS=hung: %v", err)
		}
		if msg := string(buf[:n]); strings.HasPrefix(msg, "STATUS=") {
			if !hung.MatchString(msg) {
				t.Errorf("status %q, want STATUS=hung: N requests in flight, …", msg)
			}
			break
		}
	}

	// The drain times out on the hung requests and says so.
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got, want := w.line(t), "corral-demo: activation: drain timed out after 1.8s: closed 3 connection(s) still open"; got != want {
		t.Errorf("last line\n got: %q\nwant: %q", got, want)
	}
	if code := w.wait(t); code != exitError {
		t.Errorf("exit status %d, want %d", code, exitError)
	}
}

func FuzzParseMS(f *testing.F) {
	for _, s := range []string{"", "0", "10000", "10001", "-1", "+5", "1e3", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseMS(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("parseMS(%q) error %q is not one line", s, err)
			}
			return
		}
		if n < 0 || n > maxBurn {
			t.Fatalf("parseMS(%q) = %d, out of 0..%d", s, n, maxBurn)
		}
	})
}

func TestBurnStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if burn(ctx, 10*time.Second) {
		t.Error("burn with a cancelled context = true, want false")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("burn with a cancelled context took %v", took)
	}
}

// notifySocket listens as the service manager does for the messages of a
// worker, which it names in NOTIFY_SOCKET.
func notifySocket(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

// worker is corral-demo running as a process of its own.
type worker struct {
	cmd   *exec.Cmd
	lines chan string // its stderr, line by line; closed at EOF
}

// startWorker runs the test binary as corral-demo with args, fds 3, 4, … from
// files, and env on top of the test's environment without GOMAXPROCS and the
// CORRAL_ and LISTEN_ variables. Like systemd, it sets LISTEN_PID to the
// worker's pid when it passes files.
func startWorker(t *testing.T, files []*os.File, env []string, args ...string) *worker {
	t.Helper()
	var cmd *exec.Cmd
	if len(files) > 0 {
		script := `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`
		cmd = exec.CommandContext(t.Context(), "/bin/sh", append([]string{"-c", script, os.Args[0]}, args...)...)
	} else {
		cmd = exec.CommandContext(t.Context(), os.Args[0], args...)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "GOMAXPROCS" && k != "NOTIFY_SOCKET" && !strings.HasPrefix(k, "CORRAL_") && !strings.HasPrefix(k, "LISTEN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CORRAL_DEMO_TEST_MAIN=1", "GORACE=atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			w.lines <- s.Text()
		}
		close(w.lines)
	}()
	return w
}

// line returns the worker's next line of stderr, or "" at EOF.
func (w *worker) line(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line from the worker in 10s")
		return ""
	}
}

// wait returns the worker's exit status once it has written its last line.
func (w *worker) wait(t *testing.T) int {
	t.Helper()
	for range w.lines {
	}
	err := w.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode()
	default:
		t.Fatalf("worker: %v", err)
		return -1
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v, want 200", url, resp.StatusCode, b, err)
	}
	return string(b)
}

// TestUnderCorral runs the worker as corral's units do: an inherited
// listener, CORRAL_* and NOTIFY_SOCKET, stopped with SIGTERM.
func TestUnderCorral(t *testing.T) {
	tests := []struct {
		name       string
		gomaxprocs string // GOMAXPROCS in the environment; "" for none
		want       int    // GOMAXPROCS the worker runs with
	}{
		{name: "one core", want: 1},
		{name: "operator's GOMAXPROCS", gomaxprocs: "2", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notifyPath, notify := notifySocket(t)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			f, err := l.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()

			env := []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=app", "CORRAL_POOL=app", "CORRAL_INSTANCE=3",
				"CORRAL_STOP_TIMEOUT=5s", "NOTIFY_SOCKET=" + notifyPath}
			if tt.gomaxprocs != "" {
				env = append(env, "GOMAXPROCS="+tt.gomaxprocs)
			}
			w := startWorker(t, []*os.File{f}, env)
			pid := w.cmd.Process.Pid

			want := fmt.Sprintf("serving on tcp %s as instance 3, pid %d, GOMAXPROCS %d", l.Addr(), pid, tt.want)
			if got := w.line(t); got != want {
				t.Errorf("first line\n got: %q\nwant: %q", got, want)
			}
			buf := make([]byte, 512)
			notify.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := notify.Read(buf)
			if err != nil || !strings.HasPrefix(string(buf[:n]), "READY=1\n") {
				t.Fatalf("first message on NOTIFY_SOCKET %q, %v; want READY=1", buf[:n], err)
			}

			base := "http://" + l.Addr().String()
			for path, want := range map[string]string{
				"/":           fmt.Sprintf("hello from instance 3, pid %d\n", pid),
				"/cpu?ms=50":  fmt.Sprintf("burned 50 ms on instance 3, pid %d\n", pid),
				"/health":     "ok\n",
				"/cpu?ms=0":   fmt.Sprintf("burned 0 ms on instance 3, pid %d\n", pid),
				"/?unrelated": fmt.Sprintf("hello from instance 3, pid %d\n", pid),
			} {
				if got := getBody(t, base+path); got != want {
					t.Errorf("GET %s\n got: %q\nwant: %q", path, got, want)
				}
			}

			w.stopCleanly(t, syscall.SIGTERM)
		})
	}
}

// TestByHand runs the worker without corral, on -listen.
func TestByHand(t *testing.T) {
	w := startWorker(t, nil, nil, "-listen", "127.0.0.1:0")
	first := w.line(t)
	m := regexp.MustCompile(`^serving on tcp (127\.0\.0\.1:\d+) as instance 0, pid (\d+), GOMAXPROCS 1$`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q, want serving on tcp 127.0.0.1:PORT as instance 0, pid P, GOMAXPROCS 1", first)
	}
	if got, want := getBody(t, "http://"+m[1]+"/"), "hello from instance 0, pid "+m[2]+"\n"; got != want {
		t.Errorf("GET /\n got: %q\nwant: %q", got, want)
	}
	if pid, _ := strconv.Atoi(m[2]); pid != w.cmd.Process.Pid {
		t.Errorf("logged pid %d, want %d", pid, w.cmd.Process.Pid)
	}
	// Without DEMO_FAULTS=1 there are no fault endpoints.
	for _, path := range []string{"/hang", "/alloc?mb=1", "/free"} {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s without DEMO_FAULTS: %s, want 404", path, resp.Status)
		}
	}
	w.stopCleanly(t, os.Interrupt)
}

func TestUsageErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	tests := []struct {
		name  string
		files []*os.File
		env   []string
		args  []string
		want  string // the one line on stderr
	}{
		{
			name: "nothing to serve on",
			want: "corral-demo: no socket to serve on: run me under corral (systemctl start app.target) or pass -listen 127.0.0.1:8080",
		},
		{
			name:  "-listen and inherited sockets",
			files: []*os.File{f},
			env:   []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=app"},
			args:  []string{"-listen", "127.0.0.1:0"},
			want:  "corral-demo: -listen 127.0.0.1:0: the process also inherited sockets from systemd; drop -listen",
		},
		{
			name: "bad instance",
			env:  []string{"CORRAL_INSTANCE=first"},
			args: []string{"-listen", "127.0.0.1:0"},
			want: `corral-demo: activation: CORRAL_INSTANCE="first": want an instance number from 1 up`,
		},
		{
			name: "bad -listen",
			args: []string{"-listen", "nowhere"},
			want: "corral-demo: -listen: listen tcp: address nowhere: missing port in address",
		},
		{
			name: "argument",
			args: []string{"serve"},
			want: `corral-demo: unexpected argument "serve"; see corral-demo -h`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWorker(t, tt.files, tt.env, tt.args...)
			var lines []string
			for l := range w.lines {
				lines = append(lines, l)
			}
			if code := w.wait(t); code != exitConfig {
				t.Errorf("exit status %d, want %d", code, exitConfig)
			}
			if len(lines) != 1 || lines[0] != tt.want {
				t.Errorf("stderr\n got: %q\nwant: %q", lines, tt.want)
			}
		})
	}
}

// stopCleanly sends sig and checks that the worker drains and exits 0.
func (w *worker) stopCleanly(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if got, want := w.line(t), "stopped: drained cleanly"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if code := w.wait(t); code != exitOK {
		t.Errorf("exit status %d, want %d", code, exitOK)
	}
}

func TestMessageHandler(t *testing.T) {
	tests := []struct {
		instance int
		text     string
		want     string
	}{
		{3, "ping", `instance 3 got "ping"`},
		{1, "", `instance 1 got ""`},
		{0, "flush-cache", `instance 0 got "flush-cache"`},
		{12, "two\nlines \"quoted\"", `instance 12 got "two\nlines \"quoted\""`},
		{2, "héllo", `instance 2 got "héllo"`},
	}
	for _, tt := range tests {
		h := messageHandler(tt.instance)
		got, err := h.ServeMessage(t.Context(), activation.Message{ID: "5f3c-17", Text: tt.text})
		if got != tt.want || err != nil {
			t.Errorf("instance %d, message %q\n got: %q, %v\nwant: %q, <nil>", tt.instance, tt.text, got, err, tt.want)
		}
	}
}

func TestConnLogger(t *testing.T) {
	down := errors.New("activation: messages: corrald closed the connection")
	nosock := errors.New("activation: messages: dial unix /run/corral/messages.sock: connect: no such file or directory")
	tests := []struct {
		name    string
		reports []error // what OnConnect gets, nil for connected
		want    string
	}{
		{"connected", []error{nil}, "messages: connected to corrald\n"},
		{"lost and back", []error{nil, down, nosock, nosock, nil, down, nil},
			"messages: connected to corrald\n" +
				"messages: connection lost, reconnecting: " + down.Error() + "\n" +
				"messages: reconnected to corrald\n" +
				"messages: connection lost, reconnecting: " + down.Error() + "\n" +
				"messages: reconnected to corrald\n"},
		{"corrald down at start", []error{nosock, nosock, nosock, nil, down, nosock, nil},
			"messages: cannot connect, retrying: " + nosock.Error() + "\n" +
				"messages: connected to corrald\n" +
				"messages: connection lost, reconnecting: " + down.Error() + "\n" +
				"messages: reconnected to corrald\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			report := connLogger(&b)
			for _, err := range tt.reports {
				report(err)
			}
			if b.String() != tt.want {
				t.Errorf("log\n got: %q\nwant: %q", b.String(), tt.want)
			}
		})
	}
}

// TestMessages runs the worker with a stand-in for corrald's message
// socket: it answers messages, logs the state of the connection and
// reconnects when corrald closes it.
func TestMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages.sock")
	corrald, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer corrald.Close()
	accept := func() (net.Conn, *message.Reader) {
		t.Helper()
		corrald.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := corrald.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, message.NewReader(c)
	}
	ask := func(c net.Conn, r *message.Reader, id, text, want string) {
		t.Helper()
		b, _ := message.Encode(message.Frame{ID: id, Message: text})
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := r.Read()
		if got := (message.Frame{ID: id, Reply: want}); f != got || err != nil {
			t.Errorf("answer to %q\n got: %+v, %v\nwant: %+v", text, f, err, got)
		}
	}

	w := startWorker(t, nil, []string{"CORRAL_INSTANCE=3", "CORRAL_MESSAGES=" + path}, "-listen", "127.0.0.1:0")
	if first := w.line(t); !strings.HasPrefix(first, "serving on tcp 127.0.0.1:") {
		t.Errorf("first line %q, want serving on tcp 127.0.0.1:…", first)
	}
	c, r := accept()
	if got, want := w.line(t), "messages: connected to corrald"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	ask(c, r, "5f3c-17", "ping", `instance 3 got "ping"`)
	ask(c, r, "5f3c-18", "flush \"all\"", `instance 3 got "flush \"all\""`)

	c.Close()
	if got, want := w.line(t), "messages: connection lost, reconnecting: activation: messages: corrald closed the connection"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	c, r = accept()
	if got, want := w.line(t), "messages: reconnected to corrald"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	ask(c, r, "5f3c-19", "pong", `instance 3 got "pong"`)

	w.stopCleanly(t, syscall.SIGTERM)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := r.Read(); err != io.EOF {
		t.Errorf("after the stop, corrald read %+v, %v; want EOF", f, err)
	}
}
