package relay

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/corral-pool/corral/internal/message"
)

// lockedBuffer is a log destination for several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestConnectionFlood: any local user may connect to the message socket.
// A storm of connections from one user is identified at most
// maxAdmittingPerUID at a time (the rest are closed at once), refusals are
// logged at most refusalLogBurst times, and a worker still gets in after.
func TestConnectionFlood(t *testing.T) {
	var now, peak atomic.Int32
	release := make(chan struct{})
	var logs lockedBuffer
	cfg := Config{
		Path: filepath.Join(t.TempDir(), "messages.sock"),
		Log:  slog.New(slog.NewTextHandler(&logs, nil)),
		Identify: func(ctx context.Context, pid int32) (string, int, error) {
			n := now.Add(1)
			defer now.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			select {
			case <-release:
				return "app", 1, nil
			case <-ctx.Done():
				return "", 0, ctx.Err()
			}
		},
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	const storm = 300
	var conns []net.Conn
	for range storm {
		c, err := net.Dial("unix", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Those beyond the per-user bound are closed without a frame.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil && !os.IsTimeout(err) {
			closed++
		}
	}
	if p := peak.Load(); p > maxAdmittingPerUID {
		t.Errorf("%d connections of one user identified at once, want at most %d", p, maxAdmittingPerUID)
	}
	if closed < storm-maxAdmittingPerUID {
		t.Errorf("%d of %d connections closed at once, want at least %d", closed, storm, storm-maxAdmittingPerUID)
	}
	if n := strings.Count(logs.String(), "\n"); n > refusalLogBurst {
		t.Errorf("%d log lines for the storm, want at most %d:\n%s", n, refusalLogBurst, logs.String())
	}
	for _, c := range conns {
		c.Close()
	}
	close(release)

	// A worker that connects now is admitted. The storm's connections
	// still in the backlog are identified as app@1 too, and one admitted
	// after the worker replaces its channel before it closes; so the
	// worker retries, as activation does, until it holds the channel.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		for try := time.Now().Add(time.Second); time.Now().Before(try); time.Sleep(5 * time.Millisecond) {
			if m, _ := r.Connected(context.Background(), "app"); m[1] {
				c.Close()
				return
			}
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("a worker connecting after the storm was not admitted")
		}
	}
}

// TestExitedDuringIdentification: a process that is gone once identified
// is refused: its pid may have been reused by the process identified.
func TestExitedDuringIdentification(t *testing.T) {
	var logs lockedBuffer
	path := filepath.Join(t.TempDir(), "messages.sock")
	child := make(chan *exec.Cmd, 1)
	r, err := New(Config{
		Path: path,
		Log:  slog.New(slog.NewTextHandler(&logs, nil)),
		Identify: func(ctx context.Context, pid int32) (string, int, error) {
			cmd := <-child
			cmd.Wait() // the process that connected is gone now
			return "app", 1, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// A child connects, holds the connection in a grandchild that outlives
	// it, and exits.
	cmd := exec.Command("python3", "-c", `
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
if os.fork() == 0:
    time.sleep(3); os._exit(0)
os._exit(0)
`, path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child <- cmd
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "exited while corrald identified it") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal of an exited process; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m, _ := r.Connected(context.Background(), "app"); m[1] {
		t.Error("the connection of an exited process was admitted")
	}
}

func TestLogLimit(t *testing.T) {
	at := time.Unix(0, 0)
	l := logLimit{burst: 2, period: time.Minute, now: func() time.Time { return at }}
	for i, want := range []bool{true, true, false, false, false} {
		if ok, held := l.allow(); ok != want || held != 0 {
			t.Errorf("line %d: %v, %d held back; want %v, 0", i, ok, held, want)
		}
	}
	at = at.Add(time.Minute)
	if ok, held := l.allow(); !ok || held != 3 {
		t.Errorf("next period: %v, %d held back; want true, 3", ok, held)
	}
}

// FuzzKeepReply: a worker's reply is kept without NUL, within
// message.MaxText and what is left of MaxReplies, cut on a character
// boundary, and with a note whenever it was changed.
func FuzzKeepReply(f *testing.F) {
	f.Add("ok", 0)
	f.Add("a\x00b", 0)
	f.Add(strings.Repeat("é", 40000), MaxReplies-70000)
	f.Fuzz(func(t *testing.T, text string, kept int) {
		w := &waiter{kept: min(max(kept, 0), MaxReplies)}
		before := w.kept
		got, note := w.keep(text)
		if strings.IndexByte(got, 0) >= 0 {
			t.Fatal("a NUL was kept")
		}
		if len(got) > message.MaxText || before+len(got) > MaxReplies || w.kept != before+len(got) {
			t.Fatalf("kept %d bytes after %d", len(got), before)
		}
		if got != text && note == "" {
			t.Fatal("the reply was changed without a note")
		}
		if utf8.ValidString(text) && !utf8.ValidString(got) {
			t.Fatal("a valid reply was cut inside a character")
		}
	})
}
