package child

import (
	"fmt"
	"net"
	"testing"
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
