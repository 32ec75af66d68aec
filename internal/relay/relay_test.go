package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
)

// fakeStore records the fd store: a dup of each fd by name.
type fakeStore struct {
	mu  sync.Mutex
	fds map[string]*os.File
	log []string
}

func newFakeStore() *fakeStore { return &fakeStore{fds: map[string]*os.File{}} }

func (s *fakeStore) Keep(_ context.Context, name string, c syscall.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var dup int
	raw.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fds[name] = os.NewFile(uintptr(dup), name)
	s.log = append(s.log, "keep "+name)
	return nil
}

func (s *fakeStore) Forget(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.fds[name]; f != nil {
		f.Close()
		delete(s.fds, name)
	}
	s.log = append(s.log, "forget "+name)
	return nil
}

func (s *fakeStore) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.fds {
		out = append(out, n)
	}
	return out
}

// inherited turns the store into what a restarted process gets.
func (s *fakeStore) inherited(t *testing.T) []activation.FD {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []activation.FD
	for name, f := range s.fds {
		fd := activation.FD{Name: name}
		if name == ListenerName {
			l, err := net.FileListener(f)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			fd.Listener = l
		} else {
			fd.File = f
		}
		out = append(out, fd)
	}
	s.fds = map[string]*os.File{}
	return out
}

// harness runs a relay whose Identify hands out the identities the test
// queues before each dial (every connection comes from the test's pid).
type harness struct {
	t      *testing.T
	r      *Relay
	ids    chan string
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, ids: make(chan string, 16)}
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "messages.sock")
	}
	cfg.Identify = func(ctx context.Context, pid int32) (string, int, error) {
		if pid != int32(os.Getpid()) {
			return "", 0, fmt.Errorf("pid %d is not the test's", pid)
		}
		select {
		case id := <-h.ids:
			if id == "" {
				return "", 0, errors.New("not an instance of a corral pool")
			}
			at := strings.IndexByte(id, '@')
			var i int
			fmt.Sscan(id[at+1:], &i)
			return id[:at], i, nil
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

// worker is a fake worker's connection.
type worker struct {
	t    *testing.T
	conn *net.UnixConn
	rd   *message.Reader
}

// connect dials as instance id and waits until the relay has the channel.
func (h *harness) connect(id string) *worker {
	h.t.Helper()
	h.ids <- id
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.r.Addr(), Net: "unix"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	at := strings.IndexByte(id, '@')
	var i int
	fmt.Sscan(id[at+1:], &i)
	h.waitConnected(id[:at], i, true)
	return &worker{t: h.t, conn: c, rd: message.NewReader(c)}
}

func (h *harness) waitConnected(pool string, i int, want bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := h.r.Connected(context.Background(), pool)
		if err != nil {
			h.t.Fatal(err)
		}
		if m[i] == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s@%d connected = %v after 5s, want %v", pool, i, m[i], want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *worker) read() message.Frame {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := w.rd.Read()
	if err != nil {
		w.t.Fatalf("worker read: %v", err)
	}
	return f
}

func (w *worker) answer(f message.Frame) {
	w.t.Helper()
	b, err := message.Encode(f)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.conn.Write(b); err != nil {
		w.t.Fatal(err)
	}
}

// echo answers every message as the demo does, until the connection ends.
func (w *worker) echo(name string) {
	go func() {
		for {
			f, err := w.rd.Read()
			if err != nil {
				return
			}
			b, _ := message.Encode(message.Frame{ID: f.ID, Reply: fmt.Sprintf("%s got %.20s", name, f.Message)})
			if _, err := w.conn.Write(b); err != nil {
				return
			}
		}
	}()
}

func targets(pool string, n int) []Target {
	var ts []Target
	for i := 1; i <= n; i++ {
		ts = append(ts, Target{Pool: pool, Index: i})
	}
	return ts
}

func summary(rs []api.MessageResult) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s %s %q %q\n", r.Instance(), r.Status, r.Reply[:min(len(r.Reply), 40)], r.Detail)
	}
	return b.String()
}

func TestBroadcastReplies(t *testing.T) {
	h := start(t, Config{})
	for i := 1; i <= 4; i++ {
		if i == 3 {
			continue
		}
		h.connect(fmt.Sprintf("app@%d", i)).echo(fmt.Sprint(i))
	}
	ts := targets("app", 4)
	ts[2].Down = "it is not running (backoff)"
	rs, err := h.r.Broadcast(context.Background(), "app", ts, "ping", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := `app@1 replied "1 got ping" ""
app@2 replied "2 got ping" ""
app@3 not-delivered "" "it is not running (backoff)"
app@4 replied "4 got ping" ""
`
	if got := summary(rs); got != want {
		t.Errorf("results:\n%s\nwant:\n%s", got, want)
	}

	// Without waiting: delivered, and the relay does not keep the ids.
	rs, err = h.r.Send(context.Background(), targets("app", 1), "pong", 0)
	if err != nil || summary(rs) != "app@1 delivered \"\" \"\"\n" {
		t.Errorf("Send without wait: %v\n%s", err, summary(rs))
	}
}

func TestBroadcastAddsConnectedInstances(t *testing.T) {
	h := start(t, Config{})
	h.connect("app@1").echo("1")
	h.connect("app@7").echo("7") // started by hand, above the count
	h.connect("other@1").echo("o")
	rs, err := h.r.Broadcast(context.Background(), "app", targets("app", 2), "x", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := `app@1 replied "1 got x" ""
app@2 not-delivered "" "its worker is not connected to corral's message socket: it does not read messages (docs/messages.md)"
app@7 replied "7 got x" ""
`
	if got := summary(rs); got != want {
		t.Errorf("results:\n%s\nwant:\n%s", got, want)
	}
}

func TestOrderAndErrors(t *testing.T) {
	h := start(t, Config{})
	w := h.connect("app@1")
	for i := range 200 {
		if _, err := h.r.Send(context.Background(), targets("app", 1), fmt.Sprint(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		if f := w.read(); f.Message != fmt.Sprint(i) || !f.IsMessage() {
			t.Fatalf("message %d: got %+v", i, f)
		}
	}

	// An error answer, a second answer ignored, an answer to another id ignored.
	done := make(chan []api.MessageResult)
	go func() {
		rs, _ := h.r.Send(context.Background(), targets("app", 1), "boom", 5*time.Second)
		done <- rs
	}()
	f := w.read()
	w.answer(message.Frame{ID: "nope", Reply: "stray"})
	w.answer(message.Frame{ID: f.ID, Error: "unknown command"})
	w.answer(message.Frame{ID: f.ID, Reply: "late"})
	if got := summary(<-done); got != "app@1 error \"unknown command\" \"\"\n" {
		t.Errorf("results: %s", got)
	}
}

func TestNoReplyAndWorkerGone(t *testing.T) {
	h := start(t, Config{})
	h.connect("app@1") // reads nothing, answers nothing
	w2 := h.connect("app@2")
	start := time.Now()
	rs, err := h.r.Send(context.Background(), targets("app", 1), "x", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(rs); got != "app@1 no-reply \"\" \"no reply within 200ms\"\n" {
		t.Errorf("results: %s", got)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Errorf("Send took %v, want about the wait", took)
	}

	// A worker that goes away before it answers ends the wait at once.
	done := make(chan []api.MessageResult)
	go func() {
		rs, _ := h.r.Send(context.Background(), []Target{{Pool: "app", Index: 2}}, "x", time.Minute)
		done <- rs
	}()
	w2.read()
	w2.conn.Close()
	select {
	case rs := <-done:
		if got := summary(rs); got != "app@2 no-reply \"\" \""+gone+"\"\n" {
			t.Errorf("results: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send still waits for a worker that went away")
	}
	h.waitConnected("app", 2, false)
}

// A worker that never reads fills its queue; then it is reported, and
// neither the relay nor its siblings wait for it.
func TestStuckWorker(t *testing.T) {
	h := start(t, Config{})
	stuck := h.connect("app@1")
	h.connect("app@2").echo("2")
	big := strings.Repeat("x", message.MaxText)
	var full []api.MessageResult
	for i := range 1000 {
		rs, err := h.r.Send(context.Background(), targets("app", 1), big, 0)
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status == api.NotDelivered {
			full = rs
			t.Logf("queue full after %d messages of 64 KiB", i)
			break
		}
	}
	if full == nil || full[0].Detail != errQueueFull.Error() {
		t.Fatalf("a worker that does not read: %s", summary(full))
	}
	start := time.Now()
	rs, err := h.r.Broadcast(context.Background(), "app", targets("app", 2), big, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := "app@1 not-delivered \"\" \"" + errQueueFull.Error() + "\"\napp@2 replied \"2 got " + big[:20] + "\" \"\"\n"
	if got := summary(rs); got != want {
		t.Errorf("results:\n%s\nwant:\n%s", got, want)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("broadcast took %v beside a stuck worker", took)
	}
	// Every frame the stuck worker eventually reads is whole.
	stuck.conn.SetReadDeadline(time.Now().Add(time.Second))
	n := 0
	for {
		f, err := stuck.rd.Read()
		if err != nil {
			break
		}
		if f.Message != big {
			t.Fatalf("frame %d cut: %d bytes", n, len(f.Message))
		}
		n++
	}
	if n == 0 {
		t.Error("the stuck worker had nothing queued")
	}
}

func TestTooLarge(t *testing.T) {
	h := start(t, Config{})
	for _, text := range []string{strings.Repeat("x", message.MaxText+1), strings.Repeat("\x01", message.MaxText), "\xff"} {
		if _, err := h.r.Send(context.Background(), targets("app", 1), text, 0); err == nil {
			t.Errorf("Send of %d bytes: no error", len(text))
		}
	}
}

func TestRefusedAndReplaced(t *testing.T) {
	h := start(t, Config{})
	h.ids <- ""
	c, err := net.Dial("unix", h.r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := message.NewReader(c).Read()
	if err != nil || f.Error != "not an instance of a corral pool" {
		t.Errorf("refusal: %+v, %v", f, err)
	}

	old := h.connect("app@1")
	neu := h.connect("app@1")
	neu.echo("new")
	old.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(old.conn).ReadByte(); err == nil {
		t.Error("the replaced connection is still open")
	}
	rs, _ := h.r.Send(context.Background(), targets("app", 1), "x", 5*time.Second)
	if got := summary(rs); got != "app@1 replied \"new got x\" \"\"\n" {
		t.Errorf("results: %s", got)
	}
}

// A restarted relay gets its listener and channels back from the store:
// workers keep their connections, and what was written before the restart
// is still there.
func TestRestartKeepsChannels(t *testing.T) {
	store := newFakeStore()
	path := filepath.Join(t.TempDir(), "messages.sock")
	h1 := start(t, Config{Path: path, Store: store})
	w := h1.connect("app@1")
	if _, err := h1.r.Send(context.Background(), targets("app", 1), "before", 0); err != nil {
		t.Fatal(err)
	}
	h1.stop()
	if got := strings.Join(store.names(), " "); !strings.Contains(got, ListenerName) || !strings.Contains(got, "m/app@1/") {
		t.Fatalf("store after stop: %s", got)
	}

	h2 := start(t, Config{Path: path, Store: store, Inherited: store.inherited(t)})
	h2.waitConnected("app", 1, true)
	if f := w.read(); f.Message != "before" {
		t.Errorf("after the restart the worker read %+v", f)
	}
	w.echo("1")
	rs, err := h2.r.Send(context.Background(), targets("app", 1), "after", 5*time.Second)
	if err != nil || summary(rs) != "app@1 replied \"1 got after\" \"\"\n" {
		t.Errorf("after restart: %v %s", err, summary(rs))
	}
	// New workers still connect to the inherited listener.
	h2.connect("app@2").echo("2")
	rs, _ = h2.r.Send(context.Background(), []Target{{Pool: "app", Index: 2}}, "x", 5*time.Second)
	if summary(rs) != "app@2 replied \"2 got x\" \"\"\n" {
		t.Errorf("new worker after restart: %s", summary(rs))
	}
}

// A worker that writes without end, lines that are frames or not, does not
// keep the relay from reading the others' answers.
func TestFloodingWorker(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	h := start(t, Config{Log: slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))})
	flood := h.connect("app@1")
	h.connect("app@2").echo("2")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		junk := []byte(strings.Repeat(`{"id":"nobody-1","reply":"x"}`+"\n", 100) + "not json\n")
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := flood.conn.Write(junk); err != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	for range 20 {
		rs, err := h.r.Send(context.Background(), []Target{{Pool: "app", Index: 2}}, "ping", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status != api.Replied {
			t.Fatalf("app@2 beside a flooding app@1: %s", summary(rs))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "not a message frame"); n < 1 || n > 3 {
		t.Errorf("%d warnings about the flooding worker's bad lines; want 1 to 3:\n%s", n, logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRepliesAreBounded: a reply is kept up to the documented 64 KiB, a NUL
// in it (which no D-Bus string holds, voiding the whole result) is
// replaced, and the replies to one message are kept up to MaxReplies in all,
// each cut noted in Detail.
func TestRepliesAreBounded(t *testing.T) {
	h := start(t, Config{})
	big, nul := h.connect("app@1"), h.connect("app@2")
	go func() {
		f := big.read()
		// Written by hand: message.Encode refuses what a worker should not send.
		fmt.Fprintf(big.conn, "{\"id\":%q,\"reply\":\"%s\"}\n", f.ID, strings.Repeat("a", 200<<10))
	}()
	go func() {
		f := nul.read()
		fmt.Fprintf(nul.conn, "{\"id\":%q,\"error\":\"a\\u0000b\"}\n", f.ID)
	}()
	rs, err := h.r.Broadcast(context.Background(), "app", targets("app", 2), "ping", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; r.Status != api.Replied || len(r.Reply) != message.MaxText ||
		r.Detail != "cut to the first 65536 of its 204800 bytes: replies are at most 64 KiB" {
		t.Errorf("app@1: %s, %d bytes, %q", r.Status, len(r.Reply), r.Detail)
	}
	if r := rs[1]; r.Status != api.Failed || r.Reply != "a\uFFFDb" || r.Detail != "NUL bytes replaced by U+FFFD" {
		t.Errorf("app@2: %s %q %q", r.Status, r.Reply, r.Detail)
	}

	w := &waiter{kept: MaxReplies - 10}
	kept, note := w.keep(strings.Repeat("é", 20)) // 2 bytes each
	if kept != strings.Repeat("é", 5) || !strings.Contains(note, "kept up to 4 MiB in all") {
		t.Errorf("past MaxReplies: %q, %q", kept, note)
	}
	if kept, note := w.keep("more"); kept != "" || note == "" {
		t.Errorf("after MaxReplies: %q, %q", kept, note)
	}
}
