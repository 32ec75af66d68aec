package child

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTail(t *testing.T) {
	tl := NewTail(10)
	for i := 0; i < 5; i++ {
		fmt.Fprintf(tl, "line %d\n", i)
	}
	if got := tl.String(); got != " 3\nline 4\n" {
		t.Errorf("Tail(10) after 5 lines = %q, want the last 10 bytes %q", got, " 3\nline 4\n")
	}
	big := NewTail(4)
	if n, err := big.Write([]byte("abcdefgh")); n != 8 || err != nil {
		t.Errorf("Write = %d, %v; want 8, nil (a Tail takes everything)", n, err)
	}
	if got := big.String(); got != "efgh" {
		t.Errorf("Tail(4) after one long write = %q, want %q", got, "efgh")
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", p, err)
	}
	l.Close()
}

// TestStartStop: a child stops on its signal; one that exited before Stop
// is an error that says so.
func TestStartStop(t *testing.T) {
	p, err := Start("sleeper", t.TempDir(), "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	q, err := Start("sayer", t.TempDir(), "sh", "-c", "echo bye")
	if err != nil {
		t.Fatal(err)
	}
	<-q.Exited
	if err := q.Stop(syscall.SIGTERM, time.Second); err == nil || !strings.Contains(err.Error(), "sayer") || !strings.Contains(err.Error(), "exited before Close") || !strings.Contains(err.Error(), "bye") {
		t.Errorf("Stop after its exit: %v", err)
	}
	if _, err := Start("nothing", t.TempDir(), "/nonexistent/prog"); err == nil || !strings.Contains(err.Error(), "nothing: start /nonexistent/prog") {
		t.Errorf("Start of a missing program: %v", err)
	}
}
