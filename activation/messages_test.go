package activation

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/internal/message"
)

// fakeCorrald is corrald's message socket in a test: a unix listener in
// t.TempDir() whose connections the test takes one by one.
type fakeCorrald struct {
	t     *testing.T
	path  string
	conns chan *fakeConn
}

// The connections of a fakeCorrald are closed when its test ends.

// newFakeCorrald returns a fakeCorrald that listens at once.
func newFakeCorrald(t *testing.T) *fakeCorrald {
	f := newFakeCorraldAt(t, filepath.Join(t.TempDir(), "m.sock"))
	f.listen()
	return f
}

// newFakeCorraldAt returns a fakeCorrald for path that does not listen
// until its listen method is called.
func newFakeCorraldAt(t *testing.T, path string) *fakeCorrald {
	return &fakeCorrald{t: t, path: path, conns: make(chan *fakeConn, 16)}
}

func (f *fakeCorrald) listen() {
	f.t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.path, Net: "unix"})
	if err != nil {
		f.t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		closed bool
		conns  []*net.UnixConn
	)
	f.t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			f.conns <- &fakeConn{t: f.t, c: c, r: message.NewReader(c)}
		}
	}()
}

// accept returns the next connection of the worker.
func (f *fakeCorrald) accept() *fakeConn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(10 * time.Second):
		f.t.Fatal("the worker did not connect within 10s")
		return nil
	}
}

// noConnection fails if the worker connects within d.
func (f *fakeCorrald) noConnection(d time.Duration) {
	f.t.Helper()
	select {
	case <-f.conns:
		f.t.Fatalf("the worker connected again within %v", d)
	case <-time.After(d):
	}
}

// A fakeConn is corrald's end of one connection of the worker.
type fakeConn struct {
	t *testing.T
	c *net.UnixConn
	r *message.Reader
}

// send writes s, as it is.
func (c *fakeConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// ask sends the message text with id.
func (c *fakeConn) ask(id, text string) {
	c.t.Helper()
	b, err := message.Encode(message.Frame{ID: id, Message: text})
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(string(b))
}

// read returns the worker's next frame, or an error at the end of the
// connection.
func (c *fakeConn) read() (message.Frame, error) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c.r.Read()
}

// answer returns the worker's next frame.
func (c *fakeConn) answer() message.Frame {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatalf("reading the answer: %v", err)
	}
	return f
}

// eof fails unless the worker closes the connection without another frame.
func (c *fakeConn) eof() {
	c.t.Helper()
	if f, err := c.read(); err != io.EOF {
		c.t.Fatalf("read %+v, %v; want EOF", f, err)
	}
}

// testTiming is short enough for tests and makes no connection stable.
var testTiming = messageTiming{minDelay: time.Millisecond, maxDelay: 50 * time.Millisecond, stable: time.Hour, writeTimeout: 10 * time.Second}

// serving is ServeMessages running in a goroutine.
type serving struct {
	t       *testing.T
	cancel  context.CancelFunc
	done    chan error
	reports chan error // what OnConnect got
}

func startServing(t *testing.T, path string, timing messageTiming, h MessageHandler) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &serving{t: t, cancel: cancel, done: make(chan error, 1), reports: make(chan error, 1000)}
	o := MessageOptions{Path: path, timing: timing, OnConnect: func(err error) {
		select {
		case s.reports <- err:
		default: // a test that does not look at them
		}
	}}
	go func() { s.done <- o.ServeMessages(ctx, h) }()
	t.Cleanup(func() { s.stop() })
	return s
}

// stop cancels the ctx of ServeMessages and returns what it returned.
func (s *serving) stop() error {
	s.t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // for the next stop
		return err
	case <-time.After(2 * time.Second):
		s.t.Fatal("ServeMessages did not return within 2s of the end of its ctx")
		return nil
	}
}

// report returns what OnConnect got next.
func (s *serving) report() error {
	s.t.Helper()
	select {
	case err := <-s.reports:
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatal("OnConnect was not called within 10s")
		return nil
	}
}

// connected fails unless OnConnect got nil next.
func (s *serving) connected() {
	s.t.Helper()
	if err := s.report(); err != nil {
		s.t.Fatalf("OnConnect(%v), want OnConnect(nil)", err)
	}
}

// lost returns the error OnConnect got next, failing if it was nil.
func (s *serving) lost() error {
	s.t.Helper()
	err := s.report()
	if err == nil {
		s.t.Fatal("OnConnect(nil), want an error")
	}
	return err
}

// testHandler answers "got" and the text, quoted, except for a few texts.
func testHandler(ctx context.Context, m Message) (string, error) {
	switch m.Text {
	case "fail":
		return "", errors.New("cannot fail")
	case "empty error":
		return "", errors.New("")
	case "empty reply":
		return "", nil
	case "huge reply":
		return strings.Repeat("x", message.MaxText+1), nil
	case "huge error":
		return "", errors.New(strings.Repeat("e", message.MaxText+1))
	case "binary reply":
		return "\xff\xfe", nil
	case "longest reply":
		return strings.Repeat("x", message.MaxText), nil
	}
	if len(m.Text) > 100 {
		return "got " + strconv.Itoa(len(m.Text)) + " bytes", nil
	}
	return "got " + strconv.Quote(m.Text), nil
}

func TestServeMessagesAnswers(t *testing.T) {
	tooLarge := message.CheckText(strings.Repeat("x", message.MaxText+1)).Error()
	tests := []struct {
		text string
		want message.Frame
	}{
		{"ping", message.Frame{ID: "1", Reply: `got "ping"`}},
		{"", message.Frame{ID: "1", Reply: `got ""`}},
		{"ünï\ncode\t\"quoted\"", message.Frame{ID: "1", Reply: `got "ünï\ncode\t\"quoted\""`}},
		{strings.Repeat("y", message.MaxText), message.Frame{ID: "1", Reply: "got 65536 bytes"}},
		{"longest reply", message.Frame{ID: "1", Reply: strings.Repeat("x", message.MaxText)}},
		{"fail", message.Frame{ID: "1", Error: "cannot fail"}},
		{"empty error", message.Frame{ID: "1", Error: "failed (the worker's handler returned an error without text)"}},
		{"empty reply", message.Frame{ID: "1"}},
		{"huge reply", message.Frame{ID: "1", Error: "the worker's reply cannot be sent: " + tooLarge}},
		{"huge error", message.Frame{ID: "1", Error: "the worker's error cannot be sent: " + tooLarge}},
		{"binary reply", message.Frame{ID: "1", Error: "the worker's reply cannot be sent: " + message.CheckText("\xff").Error()}},
	}
	corrald := newFakeCorrald(t)
	startServing(t, corrald.path, testTiming, MessageHandlerFunc(testHandler))
	c := corrald.accept()
	for i, tt := range tests {
		id := "5f3c-" + strconv.Itoa(i)
		c.ask(id, tt.text)
		got, want := c.answer(), tt.want
		want.ID = id
		if got != want {
			t.Errorf("message %.40q\n got: %+v\nwant: %+v", tt.text, got, want)
		}
	}
}

// The Message the handler gets, and its ctx.
func TestServeMessagesHandlerArgs(t *testing.T) {
	corrald := newFakeCorrald(t)
	got := make(chan Message, 1)
	var ctxDone atomic.Bool
	s := startServing(t, corrald.path, testTiming, MessageHandlerFunc(func(ctx context.Context, m Message) (string, error) {
		got <- m
		<-ctx.Done() // cancelled with the ctx of ServeMessages
		ctxDone.Store(true)
		return "too late", nil
	}))
	c := corrald.accept()
	c.ask("5f3c-17", "flush-cache")
	if m := <-got; m != (Message{ID: "5f3c-17", Text: "flush-cache"}) {
		t.Errorf("handler got %+v, want {ID:5f3c-17 Text:flush-cache}", m)
	}
	if err := s.stop(); err != nil {
		t.Errorf("ServeMessages = %v, want nil", err)
	}
	if !ctxDone.Load() {
		t.Error("ServeMessages returned before its handler")
	}
	c.eof() // no answer after the end of ctx
}

// Messages are handled one at a time, in the order they came, even when
// many arrive at once.
func TestServeMessagesOrder(t *testing.T) {
	const n = 2000
	corrald := newFakeCorrald(t)
	var running, overlaps atomic.Int32
	startServing(t, corrald.path, testTiming, MessageHandlerFunc(func(ctx context.Context, m Message) (string, error) {
		if running.Add(1) != 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		return m.Text, nil
	}))
	c := corrald.accept()
	var all strings.Builder
	for i := range n {
		b, _ := message.Encode(message.Frame{ID: strconv.Itoa(i), Message: "m" + strconv.Itoa(i)})
		all.Write(b)
	}
	go func() { // in one go, while the answers are read
		if _, err := io.WriteString(c.c, all.String()); err != nil {
			t.Error(err)
		}
	}()
	for i := range n {
		want := message.Frame{ID: strconv.Itoa(i), Reply: "m" + strconv.Itoa(i)}
		if got := c.answer(); got != want {
			t.Fatalf("answer %d\n got: %+v\nwant: %+v", i, got, want)
		}
	}
	if k := overlaps.Load(); k > 0 {
		t.Errorf("the handler ran %d times while it was running already", k)
	}
}

// Lines that are not messages are ignored, and the connection goes on.
func TestServeMessagesIgnores(t *testing.T) {
	corrald := newFakeCorrald(t)
	var calls atomic.Int32
	startServing(t, corrald.path, testTiming, MessageHandlerFunc(func(ctx context.Context, m Message) (string, error) {
		calls.Add(1)
		return testHandler(ctx, m)
	}))
	c := corrald.accept()
	c.send("not json\n" +
		"[1,2]\n" +
		"\"a string\"\n" +
		"null\n" +
		"{}\n" +
		"\n" +
		`{"unknown":1}` + "\n" +
		`{"id":"r","reply":"an answer, not a message"}` + "\n" +
		`{"id":"e","error":"an answer, not a message"}` + "\n" +
		`{"id":"x","message":7}` + "\n" +
		"{" + strings.Repeat(" ", message.MaxLine) + "}\n" +
		`{"id":"1","message":"ping","later":{"field":true}}` + "\n")
	if got, want := c.answer(), (message.Frame{ID: "1", Reply: `got "ping"`}); got != want {
		t.Errorf("answer\n got: %+v\nwant: %+v", got, want)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want 1", n)
	}
	c.ask("2", "pong")
	if got, want := c.answer(), (message.Frame{ID: "2", Reply: `got "pong"`}); got != want {
		t.Errorf("answer\n got: %+v\nwant: %+v", got, want)
	}
}

// When corrald closes the connection, ServeMessages connects again.
func TestServeMessagesReconnects(t *testing.T) {
	corrald := newFakeCorrald(t)
	s := startServing(t, corrald.path, testTiming, MessageHandlerFunc(testHandler))
	for i := range 3 {
		c := corrald.accept()
		s.connected()
		c.ask(strconv.Itoa(i), "ping")
		if got, want := c.answer(), (message.Frame{ID: strconv.Itoa(i), Reply: `got "ping"`}); got != want {
			t.Errorf("connection %d: answer\n got: %+v\nwant: %+v", i, got, want)
		}
		c.c.Close()
		if err, want := s.lost(), "activation: messages: corrald closed the connection"; err.Error() != want {
			t.Errorf("OnConnect(%q), want OnConnect(%q)", err, want)
		}
	}
	corrald.accept()
	s.connected()
}

// A line corrald had not finished when the connection ended is dropped.
func TestServeMessagesUnfinishedLine(t *testing.T) {
	for name, tail := range map[string]string{
		"cut":        `{"id":"2","message":"ha`,
		"no newline": `{"id":"2","message":"whole but unended"}`,
	} {
		t.Run(name, func(t *testing.T) {
			corrald := newFakeCorrald(t)
			var mu sync.Mutex
			var got []string
			s := startServing(t, corrald.path, testTiming, MessageHandlerFunc(func(ctx context.Context, m Message) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, m.Text)
				return "ok", nil
			}))
			c := corrald.accept()
			s.connected()
			c.send(`{"id":"1","message":"first"}` + "\n" + tail)
			c.c.CloseWrite() // the worker reads EOF; its answers still arrive
			if f := c.answer(); f != (message.Frame{ID: "1", Reply: "ok"}) {
				t.Errorf("answer %+v, want {ID:1 Reply:ok}", f)
			}
			c.eof()
			s.lost()
			corrald.accept()
			s.connected()
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != "first" {
				t.Errorf("the handler got %q, want [first]", got)
			}
		})
	}
}

// After corrald refuses the connection, ServeMessages waits the longest
// delay before it tries again.
func TestServeMessagesRefused(t *testing.T) {
	corrald := newFakeCorrald(t)
	timing := testTiming
	timing.maxDelay = 300 * time.Millisecond
	s := startServing(t, corrald.path, timing, MessageHandlerFunc(testHandler))
	for range 2 {
		c := corrald.accept()
		s.connected()
		start := time.Now()
		c.send(`{"error":"pid 42 is not an instance of a corral pool"}` + "\n")
		c.c.Close()
		err := s.lost()
		if !errors.Is(err, ErrMessagesRefused) || !strings.Contains(err.Error(), "pid 42 is not an instance of a corral pool") {
			t.Errorf("OnConnect(%v), want an error wrapping ErrMessagesRefused with corrald's reason", err)
		}
		corrald.noConnection(timing.maxDelay - time.Since(start) - 20*time.Millisecond)
	}
	c := corrald.accept()
	s.connected()
	c.ask("1", "ping")
	if got := c.answer(); got.Reply != `got "ping"` {
		t.Errorf("answer %+v, want a reply", got)
	}
}

// While corrald is down, connecting fails, and ServeMessages tries again
// until it is back.
func TestServeMessagesCorraldDown(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string) // makes path fail to connect
		errno syscall.Errno
	}{
		{"no socket", func(t *testing.T, path string) {}, syscall.ENOENT},
		{"nobody listening", func(t *testing.T, path string) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
		}, syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.sock")
			tt.setup(t, path)
			s := startServing(t, path, testTiming, MessageHandlerFunc(testHandler))
			for range 3 {
				err := s.lost()
				if !errors.Is(err, tt.errno) || !strings.Contains(err.Error(), "is corrald running?") {
					t.Fatalf("OnConnect(%v), want an error wrapping %v that asks whether corrald runs", err, tt.errno)
				}
			}
			os.Remove(path)
			corrald := newFakeCorraldAt(t, path)
			corrald.listen()
			c := corrald.accept()
			for s.report() != nil { // failures until it connected
			}
			c.ask("1", "ping")
			if got := c.answer(); got.Reply != `got "ping"` {
				t.Errorf("answer %+v, want a reply", got)
			}
		})
	}
}

// An answer that corrald does not read in time costs the connection.
func TestServeMessagesWriteTimeout(t *testing.T) {
	corrald := newFakeCorrald(t)
	timing := testTiming
	timing.writeTimeout = 200 * time.Millisecond
	s := startServing(t, corrald.path, timing, MessageHandlerFunc(func(ctx context.Context, m Message) (string, error) {
		return strings.Repeat("r", message.MaxText), nil
	}))
	c := corrald.accept()
	s.connected()
	for i := range 200 { // 13 MB of answers: more than any socket buffer
		c.ask(strconv.Itoa(i), "big")
	}
	// corrald reads nothing.
	if err := s.lost(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("OnConnect(%v), want an error wrapping os.ErrDeadlineExceeded", err)
	}
	corrald.accept()
	s.connected()
}

func TestServeMessagesStops(t *testing.T) {
	t.Run("connected", func(t *testing.T) {
		corrald := newFakeCorrald(t)
		s := startServing(t, corrald.path, testTiming, MessageHandlerFunc(testHandler))
		c := corrald.accept()
		s.connected()
		if err := s.stop(); err != nil {
			t.Errorf("ServeMessages = %v, want nil", err)
		}
		c.eof()
		select {
		case err := <-s.reports:
			t.Errorf("OnConnect(%v) after the end of ctx", err)
		default:
		}
	})
	t.Run("waiting to reconnect", func(t *testing.T) {
		timing := testTiming
		timing.minDelay = time.Hour
		s := startServing(t, filepath.Join(t.TempDir(), "none.sock"), timing, MessageHandlerFunc(testHandler))
		s.lost()
		if err := s.stop(); err != nil {
			t.Errorf("ServeMessages = %v, want nil", err)
		}
	})
	t.Run("ctx done before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var reports atomic.Int32
		o := MessageOptions{Path: filepath.Join(t.TempDir(), "none.sock"), OnConnect: func(error) { reports.Add(1) }}
		if err := o.ServeMessages(ctx, MessageHandlerFunc(testHandler)); err != nil {
			t.Errorf("ServeMessages = %v, want nil", err)
		}
		if n := reports.Load(); n > 0 {
			t.Errorf("OnConnect called %d times, want none", n)
		}
	})
}

// ServeMessages takes the socket from CORRAL_MESSAGES, and without it
// returns ErrNoMessages at once.
func TestServeMessagesEnv(t *testing.T) {
	t.Setenv(message.EnvSocket, "")
	os.Unsetenv(message.EnvSocket)
	err := ServeMessages(t.Context(), MessageHandlerFunc(testHandler))
	if !errors.Is(err, ErrNoMessages) {
		t.Errorf("ServeMessages without %s = %v, want an error wrapping ErrNoMessages", message.EnvSocket, err)
	}
	if err == nil || !strings.Contains(err.Error(), "CORRAL_MESSAGES is not set") {
		t.Errorf("ServeMessages = %v, want an error saying CORRAL_MESSAGES is not set", err)
	}

	corrald := newFakeCorrald(t)
	t.Setenv(message.EnvSocket, corrald.path)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeMessages(ctx, MessageHandlerFunc(testHandler)) }()
	c := corrald.accept()
	c.ask("1", "ping")
	if got := c.answer(); got.Reply != `got "ping"` {
		t.Errorf("answer %+v, want a reply", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeMessages = %v, want nil", err)
	}
}

func TestServeMessagesNilHandler(t *testing.T) {
	o := MessageOptions{Path: "/nonexistent/m.sock"}
	if err := o.ServeMessages(t.Context(), nil); err == nil {
		t.Error("ServeMessages with a nil handler = nil, want an error")
	}
}

func TestBackoff(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		lived   time.Duration
		refused bool
		want    time.Duration
	}
	failed := func(want time.Duration) step { return step{want: want} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"failures double up to the maximum", []step{
			failed(100 * ms), failed(200 * ms), failed(400 * ms), failed(800 * ms), failed(1600 * ms),
			failed(3200 * ms), failed(5000 * ms), failed(5000 * ms),
		}},
		{"short connections count as failures", []step{
			{lived: 9 * time.Second, want: 100 * ms}, {lived: time.Second, want: 200 * ms}, {lived: 0, want: 400 * ms},
		}},
		{"a stable connection starts again from the minimum", []step{
			failed(100 * ms), failed(200 * ms), failed(400 * ms),
			{lived: 10 * time.Second, want: 100 * ms}, failed(200 * ms),
			{lived: time.Hour, want: 100 * ms},
		}},
		{"a refusal waits the maximum, and so does what follows", []step{
			{lived: ms, refused: true, want: 5 * time.Second}, failed(5 * time.Second),
			{lived: ms, refused: true, want: 5 * time.Second},
			{lived: time.Minute, want: 100 * ms}, failed(200 * ms),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backoff{timing: messageTiming{}.orDefaults()}
			for i, s := range tt.steps {
				if got := b.next(s.lived, s.refused); got != s.want {
					t.Errorf("step %d: next(%v, %v) = %v, want %v", i, s.lived, s.refused, got, s.want)
				}
			}
		})
	}
}

// TestPingAnsweredWithoutTheHandler: corrald's watchdog ping gets "pong"
// from ServeMessages itself; the handler never sees it.
func TestPingAnsweredWithoutTheHandler(t *testing.T) {
	corrald := newFakeCorrald(t)
	called := make(chan Message, 1)
	startServing(t, corrald.path, testTiming, MessageHandlerFunc(func(_ context.Context, m Message) (string, error) {
		called <- m
		return "handled", nil
	}))
	c := corrald.accept()
	line, err := message.PingTemplate().Line("p-1")
	if err != nil {
		t.Fatal(err)
	}
	c.send(string(line))
	if got, want := c.answer(), (message.Frame{ID: "p-1", Reply: message.PingReply}); got != want {
		t.Errorf("answer to a ping: %+v, want %+v", got, want)
	}
	select {
	case m := <-called:
		t.Errorf("the handler got the ping: %+v", m)
	default:
	}
}
