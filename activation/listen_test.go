package activation

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeEnv is an environment for inheritConfig that records what is unset.
type fakeEnv struct {
	vars  map[string]string
	unset []string
}

func (e *fakeEnv) getenv(k string) string { return e.vars[k] }

func (e *fakeEnv) unsetenv(k string) error {
	delete(e.vars, k)
	e.unset = append(e.unset, k)
	return nil
}

// A source makes an open file of some kind, which the test owns.
type source func(t *testing.T) *os.File

func fileOf(t *testing.T, c interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func closeLater(t *testing.T, c io.Closer) {
	t.Cleanup(func() { c.Close() })
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	closeLater(t, l)
	return l
}

func sockPath(t *testing.T, name string) string {
	return filepath.Join(t.TempDir(), name)
}

var (
	tcpListener source = func(t *testing.T) *os.File {
		return fileOf(t, listen(t, "tcp", "127.0.0.1:0").(*net.TCPListener))
	}
	tcp6Listener source = func(t *testing.T) *os.File {
		l, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		closeLater(t, l)
		return fileOf(t, l.(*net.TCPListener))
	}
	unixListener source = func(t *testing.T) *os.File {
		return fileOf(t, listen(t, "unix", sockPath(t, "s")).(*net.UnixListener))
	}
	unixpacketListener source = func(t *testing.T) *os.File {
		return fileOf(t, listen(t, "unixpacket", sockPath(t, "p")).(*net.UnixListener))
	}
	udpSocket source = func(t *testing.T) *os.File {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, c)
		return fileOf(t, c.(*net.UDPConn))
	}
	unixgramSocket source = func(t *testing.T) *os.File {
		c, err := net.ListenPacket("unixgram", sockPath(t, "g"))
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, c)
		return fileOf(t, c.(*net.UnixConn))
	}
	connectedTCP source = func(t *testing.T) *os.File {
		l := listen(t, "tcp", "127.0.0.1:0")
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, c)
		return fileOf(t, c.(*net.TCPConn))
	}
	pipe source = func(t *testing.T) *os.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, r)
		closeLater(t, w)
		return r
	}
	regularFile source = func(t *testing.T) *os.File {
		f, err := os.CreateTemp(t.TempDir(), "f")
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, f)
		return f
	}
)

// placeFDs duplicates files to consecutive fd numbers that are free, without
// close-on-exec, as a service manager passes them, and returns the first.
// Inherited fds start at 3, but in a running test those numbers are taken.
func placeFDs(t *testing.T, files []*os.File) int {
	t.Helper()
	base := 400
	for !freeFDs(base, len(files)+1) { // +1: a free fd after them, for tests of LISTEN_FDS that is too large
		base += len(files) + 1
	}
	for i, f := range files {
		if err := unix.Dup3(int(f.Fd()), base+i, 0); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

func freeFDs(base, n int) bool {
	for fd := base; fd < base+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			return false
		}
	}
	return true
}

func cloexec(t *testing.T, fd int) bool {
	t.Helper()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatalf("fcntl(%d, F_GETFD): %v", fd, err)
	}
	return flags&unix.FD_CLOEXEC != 0
}

// listenerFD returns the fd number a listener holds.
func listenerFD(t *testing.T, l net.Listener) int {
	t.Helper()
	sc, err := l.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := sc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestInherit(t *testing.T) {
	type wantFD struct {
		name, kind string
		listener   bool
	}
	tests := []struct {
		name    string
		sources []source
		fdnames string
		want    []wantFD
	}{
		{
			name:    "tcp and unix",
			sources: []source{tcpListener, unixListener},
			fdnames: "app:app",
			want:    []wantFD{{"app", "tcp listener", true}, {"app", "unix listener", true}},
		},
		{
			name:    "unnamed",
			sources: []source{tcpListener},
			want:    []wantFD{{"unknown", "tcp listener", true}},
		},
		{
			name:    "ipv6",
			sources: []source{tcp6Listener},
			fdnames: "v6",
			want:    []wantFD{{"v6", "tcp listener", true}},
		},
		{
			name:    "every kind",
			sources: []source{tcpListener, unixpacketListener, udpSocket, unixgramSocket, connectedTCP, pipe, regularFile},
			fdnames: "web:pkt:udp:gram:conn:pipe:file",
			want: []wantFD{
				{"web", "tcp listener", true},
				{"pkt", "unixpacket listener", true},
				{"udp", "udp socket", false},
				{"gram", "unixgram socket", false},
				{"conn", "connected tcp socket; Accept=yes?", false},
				{"pipe", "FIFO", false},
				{"file", "regular file", false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := make([]*os.File, len(tt.sources))
			for i, s := range tt.sources {
				files[i] = s(t)
			}
			base := placeFDs(t, files)
			env := &fakeEnv{vars: map[string]string{
				"LISTEN_PID":     "99",
				"LISTEN_FDS":     strconv.Itoa(len(files)),
				"LISTEN_FDNAMES": tt.fdnames,
				"LISTEN_PIDFDID": "12345",
				"OTHER":          "kept",
			}}
			in, err := inherit(inheritConfig{pid: 99, firstFD: base, getenv: env.getenv, unsetenv: env.unsetenv})
			if err != nil {
				t.Fatalf("inherit: %v", err)
			}
			t.Cleanup(func() { closeFDs(in.fds, len(in.fds)) })

			if !slices.Equal(env.unset, listenEnv) {
				t.Errorf("unset %q, want %q", env.unset, listenEnv)
			}
			if env.vars["OTHER"] != "kept" {
				t.Errorf("OTHER = %q after inherit, want it kept", env.vars["OTHER"])
			}
			if len(in.fds) != len(tt.want) {
				t.Fatalf("got %d fds %v, want %d", len(in.fds), in.fds, len(tt.want))
			}
			for i, w := range tt.want {
				f := in.fds[i]
				got := wantFD{f.Name, f.kind, f.Listener != nil}
				if got != w || f.Num != base+i {
					t.Errorf("fd %d: got %+v num %d, want %+v num %d", i, got, f.Num, w, base+i)
				}
				if (f.File == nil) == (f.Listener == nil) {
					t.Errorf("%v: Listener %v and File %v: want exactly one set", f, f.Listener, f.File)
				}
				if f.File != nil {
					if int(f.File.Fd()) != f.Num || !cloexec(t, f.Num) {
						t.Errorf("%v: File fd %d close-on-exec %v, want fd %d close-on-exec", f, f.File.Fd(), cloexec(t, int(f.File.Fd())), f.Num)
					}
					continue
				}
				if _, err := unix.FcntlInt(uintptr(f.Num), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
					t.Errorf("%v: original fd still open (%v), want it closed after dup", f, err)
				}
				if fd := listenerFD(t, f.Listener); !cloexec(t, fd) {
					t.Errorf("%v: listener fd %d is not close-on-exec", f, fd)
				}
				checkAccepts(t, f.Listener)
			}
		})
	}
}

// checkAccepts proves that l is a working listener.
func checkAccepts(t *testing.T, l net.Listener) {
	t.Helper()
	c, err := net.Dial(l.Addr().Network(), l.Addr().String())
	if err != nil {
		t.Errorf("dial %v: %v", l.Addr(), err)
		return
	}
	defer c.Close()
	a, err := l.Accept()
	if err != nil {
		t.Errorf("accept on %v: %v", l.Addr(), err)
		return
	}
	a.Close()
}

func TestInheritErrorsTouchNothing(t *testing.T) {
	files := []*os.File{tcpListener(t)}
	base := placeFDs(t, files)
	t.Cleanup(func() { unix.Close(base) })

	tests := []struct {
		name    string
		vars    map[string]string
		wantErr string
	}{
		{
			name:    "fd not open",
			vars:    map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "2"},
			wantErr: "activation: LISTEN_FDS=2, but fd " + strconv.Itoa(base+1) + ": not open",
		},
		{
			name:    "malformed",
			vars:    map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"},
			wantErr: "activation: LISTEN_FDNAMES has 2 names for LISTEN_FDS=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := &fakeEnv{vars: tt.vars}
			in, err := inherit(inheritConfig{pid: 1, firstFD: base, getenv: env.getenv, unsetenv: env.unsetenv})
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("inherit = %v, %v\n got error: %v\nwant error: %s", in, err, err, tt.wantErr)
			}
			if !slices.Equal(env.unset, listenEnv) {
				t.Errorf("unset %q, want %q", env.unset, listenEnv)
			}
			if cloexec(t, base) {
				t.Errorf("fd %d was made close-on-exec, want it untouched", base)
			}
		})
	}
}

func TestInheritNone(t *testing.T) {
	env := &fakeEnv{vars: map[string]string{"LISTEN_PID": "7", "LISTEN_FDS": "1"}}
	in, err := inherit(inheritConfig{pid: 8, firstFD: 1 << 20, getenv: env.getenv, unsetenv: env.unsetenv})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.fds) != 0 || in.reason != "LISTEN_PID=7 is another process, this is 8" {
		t.Errorf("got fds %v reason %q, want none because of LISTEN_PID", in.fds, in.reason)
	}
	if !slices.Equal(env.unset, listenEnv) {
		t.Errorf("unset %q, want %q: the variables were for another process", env.unset, listenEnv)
	}
}

func TestListenerMessages(t *testing.T) {
	tcp := listen(t, "tcp", "127.0.0.1:0")
	unixl := listen(t, "unix", sockPath(t, "s"))
	web := FD{Num: 3, Name: "app", Listener: tcp, kind: "tcp listener"}
	admin := FD{Num: 4, Name: "admin", Listener: unixl, kind: "unix listener"}
	udp := FD{Num: 5, Name: "metrics", File: os.Stdin, kind: "udp socket"}

	tests := []struct {
		name    string
		in      inheritance
		ask     string
		want    net.Listener
		wantIs  error
		wantErr string
	}{
		{name: "found", in: inheritance{fds: []FD{web, admin}}, ask: "admin", want: unixl},
		{name: "first of name", in: inheritance{fds: []FD{web, {Num: 4, Name: "app", Listener: unixl}}}, ask: "app", want: tcp},
		{
			name: "missing", in: inheritance{fds: []FD{web, admin, udp}}, ask: "x", wantIs: ErrNoListener,
			wantErr: `activation: no inherited listener named "x" (have: app, admin); is the pool's socket unit running?`,
		},
		{
			name: "nothing inherited", in: inheritance{reason: "LISTEN_PID is not set"}, ask: "app", wantIs: ErrNoListener,
			wantErr: `activation: no inherited listener named "app" (have: none; LISTEN_PID is not set); is the pool's socket unit running?`,
		},
		{
			name: "only other fds", in: inheritance{fds: []FD{udp}}, ask: "app", wantIs: ErrNoListener,
			wantErr: `activation: no inherited listener named "app" (have: none; fd 5 "metrics" (udp socket)); is the pool's socket unit running?`,
		},
		{
			name: "not a listener", in: inheritance{fds: []FD{web, udp}}, ask: "metrics", wantIs: ErrNotListener,
			wantErr: `activation: inherited fd 5 "metrics" (udp socket): not a listening stream socket`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.listener(tt.ask)
			if got != tt.want {
				t.Errorf("listener(%q) = %v, want %v", tt.ask, got, tt.want)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("listener(%q) error = %v, want nil", tt.ask, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, tt.wantIs) {
				t.Errorf("listener(%q) error\n got: %v\nwant: %s (is %v)", tt.ask, err, tt.wantErr, tt.wantIs)
			}
		})
	}

	in := inheritance{fds: []FD{web, udp}}
	err := in.notListeners()
	want := `activation: inherited fd 5 "metrics" (udp socket): not a listening stream socket; take it with FDs or pass only ListenStream= sockets`
	if err == nil || err.Error() != want || !errors.Is(err, ErrNotListener) {
		t.Errorf("notListeners()\n got: %v\nwant: %s", err, want)
	}
	if s := web.String(); !strings.HasPrefix(s, `fd 3 "app" (tcp listener 127.0.0.1:`) {
		t.Errorf("FD.String() = %q, want the number, name, kind and address", s)
	}
}
