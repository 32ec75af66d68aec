package listenq

import (
	"encoding/binary"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// find returns the socket at addr, failing the test if there is none.
func find(t *testing.T, addr string) Socket {
	t.Helper()
	socks, err := Listening()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("no listening socket %s in %v", addr, socks)
	return Socket{}
}

// TestQueued: connections that nobody accepts are counted in the queue of
// their listening socket, for TCP over IPv4 and IPv6 and for unix sockets,
// and leave it when accepted.
func TestQueued(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
		{"unix", filepath.Join(t.TempDir(), "q.sock")},
	} {
		t.Run(tc.network, func(t *testing.T) {
			l, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			addr := l.Addr().String()
			if s := find(t, addr); s.Queued != 0 || s.Backlog == 0 || s.Inode == 0 {
				t.Errorf("idle: %+v, want nothing queued, a backlog and an inode", s)
			}
			for range 3 {
				c, err := net.Dial(tc.network, addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for find(t, addr).Queued != 3 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if s := find(t, addr); s.Queued != 3 {
				t.Errorf("3 connections not accepted: %+v", s)
			}
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if s := find(t, addr); s.Queued != 2 {
				t.Errorf("after one accept: %+v, want 2 queued", s)
			}
		})
	}
}

// TestEveryAddress: a socket on every address (as systemd binds ":8080")
// is "[::]:port".
func TestEveryAddress(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s := find(t, net.JoinHostPort("::", itoa(port)))
	if s.Addr != "[::]:"+itoa(port) {
		t.Errorf("%+v", s)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// FuzzParse: whatever the kernel (or a bug) sends, parse neither panics nor
// returns a socket without an address.
func FuzzParse(f *testing.F) {
	msg := make([]byte, sizeofNlmsg+sizeofInetMsg)
	binary.NativeEndian.PutUint32(msg, uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg[sizeofNlmsg], msg[sizeofNlmsg+1] = unix.AF_INET, tcpListen
	f.Add(msg, uint8(unix.AF_INET))
	f.Add(msg, uint8(unix.AF_UNIX))
	f.Fuzz(func(t *testing.T, b []byte, family uint8) {
		_, socks, _ := parse(b, 1, family, tcpListen)
		for _, s := range socks {
			if s.Addr == "" {
				t.Errorf("a socket without an address: %+v", s)
			}
		}
	})
}

// BenchmarkListening: one reading of every listening socket.
func BenchmarkListening(b *testing.B) {
	for b.Loop() {
		if _, err := Listening(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadIPv4: what corrald reads each second for pools on IPv4
// addresses.
func BenchmarkReadIPv4(b *testing.B) {
	for b.Loop() {
		if _, err := Read(IPv4); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEstablished: the connections a listening socket accepted are counted
// at its address until they close, for TCP over IPv4 and IPv6 and for unix
// sockets; the clients' own ends are at other addresses.
func TestEstablished(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		fs            Families
	}{
		{"tcp4", "127.0.0.1:0", IPv4},
		{"tcp6", "[::1]:0", IPv6},
		{"unix", filepath.Join(t.TempDir(), "e.sock"), Unix},
	} {
		t.Run(tc.network, func(t *testing.T) {
			l, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			addr := l.Addr().String()
			count := func() int {
				socks, err := Established(tc.fs)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, s := range socks {
					if s.Addr == addr {
						n++
					}
				}
				return n
			}
			if n := count(); n != 0 {
				t.Fatalf("idle: %d established at %s", n, addr)
			}
			var conns []net.Conn
			for range 2 {
				c, err := net.Dial(tc.network, addr)
				if err != nil {
					t.Fatal(err)
				}
				s, err := l.Accept()
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c, s)
			}
			if n := count(); n != 2 {
				t.Errorf("2 accepted: %d established at %s", n, addr)
			}
			for _, c := range conns {
				c.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for count() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := count(); n != 0 {
				t.Errorf("all closed: %d established at %s", n, addr)
			}
		})
	}
}
