// Package node tests corral's Node preload, preload.js, with the real node:
// an inherited listening socket on fd 3 as systemd passes it, SIGTERM, and
// a message socket as corrald serves it. The integration suite runs it in
// real systemd with express, fastify and koa from npm.
package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// worker is a node process started as systemd starts an instance: the
// listening socket on fd 3, LISTEN_PID its own pid, the preload in
// NODE_OPTIONS.
type worker struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string // where the inherited socket listens
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{} // closed once node has exited
}

type opts struct {
	env      []string // more environment
	otherPID bool     // LISTEN_PID names another process
	unix     string   // the pool listens on this unix socket path, not 127.0.0.1:5555
}

func nodePath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: apt-get install nodejs (make deps installs it)")
	}
	return p
}

// start runs app (JavaScript source) with the preload, its pool listening
// on "127.0.0.1:5555" as CORRAL_LISTEN says, served from an inherited
// socket on a free port.
func start(t *testing.T, app string, o opts) *worker {
	t.Helper()
	node := nodePath(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "app.js")
	if err := os.WriteFile(file, []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	preload, err := filepath.Abs("preload.js")
	if err != nil {
		t.Fatal(err)
	}
	network, address, listen := "tcp", "127.0.0.1:0", "127.0.0.1:5555"
	if o.unix != "" {
		network, address, listen = "unix", o.unix, o.unix
	}
	l, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	f, err := l.(interface{ File() (*os.File, error) }).File()
	l.Close() // f holds the socket
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pid := `$$`
	if o.otherPID {
		pid = `1`
	}
	w := &worker{t: t, addr: l.Addr().String(), done: make(chan struct{})}
	w.cmd = exec.Command("/bin/sh", "-c", `export LISTEN_PID=`+pid+`; exec "$0" "$1"`, node, file)
	w.cmd.ExtraFiles = []*os.File{f}
	w.cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=app", "CORRAL_LISTEN="+listen,
		"CORRAL_STOP_TIMEOUT=5s", "NODE_OPTIONS=--require "+preload)
	w.cmd.Env = append(w.cmd.Env, o.env...)
	w.cmd.Stdout, w.cmd.Stderr = w, w
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			t.Logf("node's output:\n%s", w.output())
		}
	})
	return w
}

func (w *worker) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *worker) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// waitOutput waits until node has printed want.
func (w *worker) waitOutput(want string) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.output(), want) {
		if time.Now().After(deadline) {
			w.t.Fatalf("node did not print %q:\n%s", want, w.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit status, failing after 10s.
func (w *worker) stop() int {
	w.t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		return w.cmd.ProcessState.ExitCode()
	case <-time.After(10 * time.Second):
		w.t.Fatalf("node still runs 10s after SIGTERM:\n%s", w.output())
		return -1
	}
}

func get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestListenForms: every form of listen() of the pool's port is served on
// the inherited socket, through http and net alike.
func TestListenForms(t *testing.T) {
	for _, form := range []string{
		`server.listen(5555)`,
		`server.listen(5555, '0.0.0.0')`,
		`server.listen(5555, '::', 511, () => console.log('cb'))`,
		`server.listen({ port: 5555, host: 'localhost' })`,
		`server.listen('5555')`,
		`server.listen(Number(process.env.PORT || 5555))`,
	} {
		t.Run(form, func(t *testing.T) {
			w := start(t, `const http = require('http');
const server = http.createServer((req, res) => res.end('hello ' + process.pid));
server.on('listening', () => console.log('listening', JSON.stringify(server.address())));
`+form+`;`, opts{})
			w.waitOutput("listening")
			body, err := get("http://" + w.addr + "/")
			if want := fmt.Sprint("hello ", w.cmd.Process.Pid); err != nil || body != want {
				t.Errorf("GET: %q %v, want %q", body, err, want)
			}
			if !strings.Contains(w.output(), "corral: listen(5555) is served on systemd's socket 127.0.0.1:5555 (fd 3)") {
				t.Errorf("no line saying where listen(5555) went:\n%s", w.output())
			}
		})
	}
	t.Run("net", func(t *testing.T) {
		w := start(t, `require('net').createServer((c) => c.end('raw ' + process.pid)).listen(5555, () => console.log('listening'));`, opts{})
		w.waitOutput("listening")
		c, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if want := fmt.Sprint("raw ", w.cmd.Process.Pid); err != nil || string(b) != want {
			t.Errorf("read %q %v, want %q", b, err, want)
		}
	})
}

// TestListenUnixPath: a listen() of the pool's unix socket path is served
// on the inherited socket, and the path is not touched.
func TestListenUnixPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	w := start(t, `require('http').createServer((req, res) => res.end('unix ' + process.pid))
  .listen(process.argv[2] || '`+path+`', () => console.log('listening'));`, opts{unix: path})
	w.waitOutput("listening")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
	resp, err := c.Get("http://app/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprint("unix ", w.cmd.Process.Pid); string(body) != want {
		t.Errorf("GET: %q, want %q", body, want)
	}
	if !strings.Contains(w.output(), "is served on systemd's socket "+path+" (fd 3)") {
		t.Errorf("no line saying where listen() went:\n%s", w.output())
	}
}

// TestOtherListensUntouched: a listen() of another port binds it as
// without corral, and a process that LISTEN_PID does not name (a child of
// the instance) maps nothing.
func TestOtherListensUntouched(t *testing.T) {
	app := `const http = require('http');
const server = http.createServer((req, res) => res.end('other'));
server.listen(0, '127.0.0.1', () => console.log('port=' + server.address().port + '.'));`
	w := start(t, app, opts{})
	w.waitOutput("port=")
	port := strings.TrimSuffix(strings.SplitN(strings.SplitN(w.output(), "port=", 2)[1], "\n", 2)[0], ".")
	if port == "0" || strings.Contains(w.output(), "corral:") {
		t.Fatalf("listen(0) was touched:\n%s", w.output())
	}
	if body, err := get("http://127.0.0.1:" + port + "/"); err != nil || body != "other" {
		t.Errorf("the app's own port: %q %v", body, err)
	}

	child := start(t, `const server = require('http').createServer((req, res) => res.end('x'));
server.on('error', (e) => console.log('error ' + e.code));
server.listen(5555, '127.0.0.1', () => console.log('bound ' + JSON.stringify(server.address())));`, opts{otherPID: true})
	child.waitOutput("5555")
	if strings.Contains(child.output(), "corral:") || !strings.Contains(child.output(), `"port":5555`) && !strings.Contains(child.output(), "EADDRINUSE") {
		t.Errorf("a process LISTEN_PID does not name mapped its listen():\n%s", child.output())
	}
}

// TestSecondListenOfThePort: a second listen() of a port whose socket is
// taken (fastify's "localhost": 127.0.0.1 and ::1) gets no socket but
// works: callback, 'listening', close.
func TestSecondListenOfThePort(t *testing.T) {
	w := start(t, `const http = require('http');
const a = http.createServer((req, res) => res.end('a'));
const b = http.createServer((req, res) => res.end('b'));
a.listen(5555, '127.0.0.1', () => b.listen(5555, '::1', () => {
  console.log('b listening ' + JSON.stringify(b.address()));
  b.close(() => console.log('b closed'));
}));`, opts{})
	w.waitOutput("b closed")
	if body, err := get("http://" + w.addr + "/"); err != nil || body != "a" {
		t.Errorf("GET: %q %v, want a", body, err)
	}
	if !strings.Contains(w.output(), "listen(5555) again") {
		t.Errorf("no line about the second listen():\n%s", w.output())
	}
}

// TestDrain: on SIGTERM a request in flight is answered with Connection:
// close, an idle keep-alive connection is closed, a connection accepted
// before the stop whose request comes after it is answered, and node exits
// 0 well before CORRAL_STOP_TIMEOUT.
func TestDrain(t *testing.T) {
	w := start(t, `const http = require('http');
http.createServer((req, res) => setTimeout(() => res.end('done'), Number(new URL(req.url, 'http://x').searchParams.get('ms')) || 0))
  .listen(5555, () => console.log('listening'));`, opts{})
	w.waitOutput("listening")

	idle, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idleR := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleR, nil); err != nil {
		t.Fatal(err)
	} else {
		io.ReadAll(resp.Body)
	}

	slow, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n")
	late, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	time.Sleep(200 * time.Millisecond) // node has accepted both

	t0 := time.Now()
	w.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	fmt.Fprintf(late, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")

	for name, c := range map[string]net.Conn{"in flight": slow, "accepted before the stop": late} {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "done" || !resp.Close {
			t.Errorf("%s: %q, Connection: %q; want done with Connection: close", name, body, resp.Header.Get("Connection"))
		}
	}
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := idleR.Read(make([]byte, 1)); err == nil {
		t.Errorf("idle keep-alive connection still open (read %d bytes)", n)
	}
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("node still runs 5s after SIGTERM:\n%s", w.output())
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 || time.Since(t0) > 3*time.Second {
		t.Errorf("exit %d after %v, want 0 soon after the slow request", code, time.Since(t0))
	}
	if !strings.Contains(w.output(), "drained in") {
		t.Errorf("no drain line:\n%s", w.output())
	}
}

// TestDrainLeavesTheAppsOwnHandler: an app that handles SIGTERM itself
// finishes its own way after the drain.
func TestDrainLeavesTheAppsOwnHandler(t *testing.T) {
	w := start(t, `const server = require('http').createServer((req, res) => res.end('x')).listen(5555, () => console.log('listening'));
process.on('SIGTERM', () => setTimeout(() => { console.log('app cleanup done'); process.exit(3); }, 300));`, opts{})
	w.waitOutput("listening")
	if code := w.stop(); code != 3 || !strings.Contains(w.output(), "app cleanup done") {
		t.Errorf("exit %d, want the app's 3:\n%s", code, w.output())
	}
}

// TestDrainDefersTheAppsExit: an app whose SIGTERM handler calls
// process.exit() at once (added before its listen()) still answers the
// request in flight, then exits with the code it asked for; one that
// exits from server.close's callback exits at once after the drain.
func TestDrainDefersTheAppsExit(t *testing.T) {
	for _, tc := range []struct {
		name, handler string
		code          int
	}{
		{"exit at once", `process.on('SIGTERM', () => process.exit(4));`, 4},
		{"exit when closed", `process.on('SIGTERM', () => server.close(() => process.exit(5)));`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := start(t, `const http = require('http');
const server = http.createServer((req, res) => setTimeout(() => res.end('done'), 500));
setInterval(() => {}, 1000); // something else keeps the loop alive
`+tc.handler+`
server.listen(5555, () => console.log('listening'));`, opts{})
			w.waitOutput("listening")
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(100 * time.Millisecond)
			t0 := time.Now()
			w.cmd.Process.Signal(syscall.SIGTERM)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("the request in flight: %v", err)
			}
			if body, _ := io.ReadAll(resp.Body); string(body) != "done" {
				t.Errorf("answer %q", body)
			}
			select {
			case <-w.done:
			case <-time.After(5 * time.Second):
				t.Fatalf("still runs 5s after SIGTERM:\n%s", w.output())
			}
			if code := w.cmd.ProcessState.ExitCode(); code != tc.code || time.Since(t0) > 3*time.Second {
				t.Errorf("exit %d after %v, want %d soon after the answer", code, time.Since(t0), tc.code)
			}
		})
	}
}

// messages is a fake corrald message socket: it accepts one worker.
type messages struct {
	path  string
	conns chan net.Conn
}

func newMessages(t *testing.T) *messages {
	t.Helper()
	m := &messages{path: filepath.Join(t.TempDir(), "messages.sock"), conns: make(chan net.Conn, 4)}
	l, err := net.Listen("unix", m.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			m.conns <- c
		}
	}()
	return m
}

// TestMessagesAsCluster: an app written for the cluster module, with
// process.on('message') and process.send, gets corral's messages and
// answers them; a JSON object arrives parsed; an app that never listens
// for messages never connects.
func TestMessagesAsCluster(t *testing.T) {
	m := newMessages(t)
	w := start(t, `require('http').createServer((req, res) => res.end('x')).listen(5555);
process.on('message', (msg) => {
  if (msg && msg.cmd === 'later') setTimeout(() => process.send({ later: true }), 50);
  else process.send('got ' + JSON.stringify(msg) + ' as ' + typeof msg);
});`, opts{env: []string{"CORRAL_MESSAGES=" + m.path}})
	var c net.Conn
	select {
	case c = <-m.conns:
	case <-time.After(10 * time.Second):
		t.Fatalf("the worker did not connect:\n%s", w.output())
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, tc := range []struct{ id, msg, reply string }{
		{"1", "ping", `got "ping" as string`},
		{"2", `{"cmd":"stats"}`, `got {"cmd":"stats"} as object`},
		{"3", `{"cmd":"later"}`, `{"later":true}`},
		{"4", "", `got "" as string`},
	} {
		b, _ := json.Marshal(map[string]string{"id": tc.id, "message": tc.msg})
		c.Write(append(b, '\n'))
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reply to %q: %v", tc.msg, err)
		}
		var got struct{ ID, Reply, Error string }
		if err := json.Unmarshal(line, &got); err != nil || got.ID != tc.id || got.Reply != tc.reply {
			t.Errorf("reply to %q: %s, want id %s reply %q", tc.msg, line, tc.id, tc.reply)
		}
	}

	// pm2's NODE_APP_INSTANCE, from 0.
	n := start(t, `console.log('NODE_APP_INSTANCE=' + process.env.NODE_APP_INSTANCE + '.');`, opts{env: []string{"CORRAL_INSTANCE=3"}})
	n.waitOutput("NODE_APP_INSTANCE=2.")

	quiet := newMessages(t)
	w2 := start(t, `require('http').createServer((req, res) => res.end('x')).listen(5555, () => console.log('listening'));`,
		opts{env: []string{"CORRAL_MESSAGES=" + quiet.path}})
	w2.waitOutput("listening")
	select {
	case <-quiet.conns:
		t.Errorf("an app without process.on('message') connected for messages")
	case <-time.After(500 * time.Millisecond):
	}
}

// TestWatchdogPing: with CORRAL_WATCHDOG the preload connects for messages
// although the app listens for none, and answers corrald's pings from the
// event loop: while the loop is blocked, no answer comes.
func TestWatchdogPing(t *testing.T) {
	m := newMessages(t)
	w := start(t, `require('http').createServer((req, res) => res.end('x')).listen(5555);
setTimeout(() => { const end = Date.now() + 3000; while (Date.now() < end); }, 1500);`,
		opts{env: []string{"CORRAL_MESSAGES=" + m.path, "CORRAL_WATCHDOG=2s"}})
	var c net.Conn
	select {
	case c = <-m.conns:
	case <-time.After(10 * time.Second):
		t.Fatalf("the worker with a watchdog did not connect:\n%s", w.output())
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ping := func(id string, within time.Duration) (string, error) {
		c.Write([]byte(`{"id":"` + id + `","message":"ping","ping":true}` + "\n"))
		c.SetReadDeadline(time.Now().Add(within))
		return r.ReadString('\n')
	}
	if line, err := ping("p1", 2*time.Second); err != nil || line != `{"id":"p1","reply":"pong"}`+"\n" {
		t.Fatalf("ping before the block: %q, %v; want pong", line, err)
	}
	time.Sleep(2 * time.Second) // the loop blocks from 1.5s to 4.5s
	if line, err := ping("p2", time.Second); err == nil {
		t.Errorf("ping while the event loop is blocked: answered %q, want no answer", line)
	}
	if line, err := ping("p3", 5*time.Second); err != nil || !strings.Contains(line, `"reply":"pong"`) {
		t.Errorf("ping after the block: %q, %v; want pong", line, err)
	}
}
