// Package child holds what the test packages that run a program as a child
// process (test/haproxy, test/prom) share: a writer that keeps the tail of
// the child's output for an error message, a free loopback port for the
// child to listen on, and its stop by PID.
package child

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Tail keeps the last Max bytes written to it: give it as a child's Stdout
// and Stderr, and String has what the child said last. Safe for concurrent
// use. The zero value keeps nothing; set Max.
type Tail struct {
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

// NewTail returns a Tail that keeps the last n bytes.
func NewTail(n int) *Tail { return &Tail{Max: n} }

// Write keeps p, dropping what is older than the last Max bytes.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.Max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

// String is what was kept.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago, for a
// child to listen on. Another process may take it before the child does.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop ends the child cmd, named name in errors, whose exited is closed
// when it has exited: sig, then SIGKILL if it has not exited within
// timeout. It is an error that the child had exited before (output is what
// it said) or outlives SIGKILL by timeout.
func Stop(name string, cmd *exec.Cmd, exited <-chan struct{}, sig syscall.Signal, timeout time.Duration, output func() string) error {
	select {
	case <-exited:
		return fmt.Errorf("%s %d exited before Close (%s): %s", name, cmd.Process.Pid, cmd.ProcessState, output())
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s %d did not exit on SIGKILL within %v", name, cmd.Process.Pid, timeout)
	}
}
