package activation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket listens where NOTIFY_SOCKET points, as the service manager
// does, and returns the socket to read messages from.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// recvNotify returns the next message on c, or fails the test after 5s.
func recvNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("waiting for a message on NOTIFY_SOCKET: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	tests := []struct {
		name string
		send func(context.Context) error
		want string
	}{
		{"Ready", Ready, "READY=1"},
		{"Stopping", Stopping, "STOPPING=1"},
		{"Watchdog", Watchdog, "WATCHDOG=1"},
		{"Status", func(ctx context.Context) error { return Status(ctx, "serving 3 requests") }, "STATUS=serving 3 requests"},
		{"Status one line", func(ctx context.Context) error { return Status(ctx, "a\nREADY=1\r\nb") }, "STATUS=a READY=1 b"},
		{"Notify", func(ctx context.Context) error { return Notify(ctx, "RELOADING=1\nMONOTONIC_USEC=1") }, "RELOADING=1\nMONOTONIC_USEC=1"},
	}
	sock := notifySocket(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(t.Context()); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got := recvNotify(t, sock); got != tt.want {
				t.Errorf("%s sent %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := fmt.Sprintf("@corral-activation-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if err := Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := recvNotify(t, c); got != "READY=1" {
		t.Errorf("sent %q, want READY=1", got)
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	for name, send := range map[string]func(context.Context) error{"Ready": Ready, "Stopping": Stopping, "Watchdog": Watchdog} {
		if err := send(t.Context()); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET = %v, want nil", name, err)
		}
	}
}

func TestNotifyErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		socket  string
		ctx     context.Context
		wantErr string
	}{
		{"relative", "run/notify", t.Context(), `activation: notify READY=1: NOTIFY_SOCKET="run/notify": want an absolute path or an @abstract name`},
		{"missing", "/nonexistent/notify", t.Context(), "activation: notify READY=1: dial unixgram /nonexistent/notify: connect: no such file or directory"},
		{"cancelled", "/nonexistent/notify", cancelled, "activation: notify READY=1: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tt.socket)
			err := Ready(tt.ctx)
			if err == nil || err.Error() != tt.wantErr || (tt.ctx.Err() != nil && !errors.Is(err, tt.ctx.Err())) {
				t.Errorf("Ready with NOTIFY_SOCKET=%q\n got: %v\nwant: %s", tt.socket, err, tt.wantErr)
			}
		})
	}
}

func TestRunWatchdog(t *testing.T) {
	sock := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "20000") // 20ms: a message every 10ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- RunWatchdog(ctx) }()
	for range 3 {
		if got := recvNotify(t, sock); got != "WATCHDOG=1" {
			t.Fatalf("RunWatchdog sent %q, want WATCHDOG=1", got)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("3 messages took %v, want about 20ms", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunWatchdog after cancel = %v, want nil", err)
	}
}

func TestRunWatchdogDisabled(t *testing.T) {
	tests := []struct {
		name, usec, pid string
		wantErr         bool
	}{
		{name: "unset"},
		{name: "other pid", usec: "1000", pid: "1"},
		{name: "malformed", usec: "soon", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			done := make(chan error, 1)
			go func() { done <- RunWatchdog(t.Context()) }()
			select {
			case err := <-done:
				if (err != nil) != tt.wantErr {
					t.Errorf("RunWatchdog with WATCHDOG_USEC=%q WATCHDOG_PID=%q = %v, want error %v", tt.usec, tt.pid, err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("RunWatchdog did not return at once with the watchdog disabled")
			}
		})
	}
}

// TestNotifyIsSafeForConcurrentUse: messages sent at once each arrive
// whole, none lost or mixed with another.
func TestNotifyIsSafeForConcurrentUse(t *testing.T) {
	sock := notifySocket(t)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- Status(t.Context(), strconv.Itoa(i)) }()
	}
	got := map[string]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		got[recvNotify(t, sock)] = true
	}
	for i := range n {
		if want := "STATUS=" + strconv.Itoa(i); !got[want] {
			t.Errorf("received %v: %q missing", got, want)
		}
	}
}

// TestNotifyWithFDs: the fds travel as SCM_RIGHTS and still work on the
// other side; the caller's own fd stays open; abstract names work too.
func TestNotifyWithFDs(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		var sock *net.UnixConn
		if abstract {
			name := fmt.Sprintf("@corral-fds-test-%d-%d", os.Getpid(), time.Now().UnixNano())
			c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			t.Setenv("NOTIFY_SOCKET", name)
			sock = c
		} else {
			sock = notifySocket(t)
		}
		a, b, err := socketPair()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		if err := NotifyWithFDs(t.Context(), "FDSTORE=1\nFDNAME=chan", a); err != nil {
			t.Fatal(err)
		}
		buf, oob := make([]byte, 4096), make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, oobn, _, _, err := sock.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME=chan" {
			t.Errorf("state %q", got)
		}
		fds := parseRights(t, oob[:oobn])
		if len(fds) != 1 {
			t.Fatalf("%d fds received, want 1", len(fds))
		}
		got := os.NewFile(uintptr(fds[0]), "received")
		defer got.Close()
		// What is written on the received copy comes out of b; a is still ours.
		if _, err := got.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write([]byte("y")); err != nil {
			t.Fatalf("the caller's fd: %v", err)
		}
		p := make([]byte, 2)
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.ReadFull(b, p); n != 2 || string(p) != "xy" {
			t.Errorf("read %q, %v; want xy", p[:n], err)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := NotifyWithFDs(t.Context(), "FDSTORE=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, _ := net.FileConn(f)
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1]), nil
}

func parseRights(t *testing.T, oob []byte) []int {
	t.Helper()
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, f...)
	}
	return fds
}
