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

// Process is a program run as a child of the test, in its own process
// group (the terminal's Ctrl-C is for the test) and killed if the test
// dies.
type Process struct {
	Name   string // in errors: "haproxy"
	PID    int
	Out    *Tail         // the last 64 KiB of its stdout and stderr
	Exited chan struct{} // closed when it has exited

	cmd *exec.Cmd
}

// Start starts argv in dir as a child named name.
func Start(name, dir string, argv ...string) (*Process, error) {
	p := &Process{Name: name, Out: NewTail(64 << 10), Exited: make(chan struct{}), cmd: exec.Command(argv[0], argv[1:]...)}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	p.PID = p.cmd.Process.Pid
	go func() {
		_ = p.cmd.Wait()
		close(p.Exited)
	}()
	return p, nil
}

// State says how it exited, once Exited is closed.
func (p *Process) State() string { return p.cmd.ProcessState.String() }

// Stop ends it: sig, then SIGKILL if it has not exited within timeout. It
// is an error that it had exited before (with what it said) or that it
// outlives SIGKILL by timeout.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) error {
	select {
	case <-p.Exited:
		return fmt.Errorf("%s %d exited before Close (%s): %s", p.Name, p.PID, p.State(), p.Out)
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.Exited:
		return nil
	case <-time.After(timeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.Exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s %d did not exit on SIGKILL within %v", p.Name, p.PID, timeout)
	}
}
