package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNoListener is returned, wrapped, by Listener when no inherited listener
// has the name asked for, and by Serve when it has no listener to serve on.
var ErrNoListener = errors.New("no inherited listener")

// ErrNotListener is returned, wrapped, by Listeners, AllListeners and Listener
// when an inherited fd is not a listening stream socket: a datagram socket, an
// accepted connection (a socket unit with Accept=yes), a FIFO or a file.
// Such fds stay open; FDs hands them out as files.
var ErrNotListener = errors.New("not a listening stream socket")

// An FD is one file descriptor the service manager passed to the process.
// Exactly one of Listener and File is set.
type FD struct {
	// Num is the fd number the process was started with: 3 for the first
	// (SD_LISTEN_FDS_START), 4 for the second, and so on. Listener and File
	// may use another number: see FDs.
	Num int

	// Name is the fd's name from LISTEN_FDNAMES (FileDescriptorName= of the
	// socket unit; corral names every fd of a pool after the pool), or
	// "unknown" when LISTEN_FDNAMES is not set, as sd_listen_fds_with_names(3)
	// does.
	Name string

	// Listener is the fd as a *net.TCPListener or *net.UnixListener when it is
	// a listening TCP, unix stream or unix seqpacket socket, else nil.
	Listener net.Listener

	// File is the fd when it is anything else, else nil.
	File *os.File

	kind string // what the fd is, for messages: "tcp listener", "udp socket", "FIFO"
}

// String describes the fd for messages: `fd 3 "app" (tcp listener 127.0.0.1:8080)`.
func (f FD) String() string {
	s := fmt.Sprintf("fd %d %q (%s", f.Num, f.Name, f.kind)
	if f.Listener != nil {
		s += " " + f.Listener.Addr().String()
	}
	return s + ")"
}

// inheritance is what the process inherited: fds, or why there are none.
type inheritance struct {
	fds    []FD
	reason string // why fds is empty, for messages: "LISTEN_FDS is not set"
}

// inherited reads the process's fds once, on first use.
var inherited = sync.OnceValues(func() (*inheritance, error) {
	return inherit(inheritConfig{
		pid:      os.Getpid(),
		firstFD:  listenFDsStart,
		getenv:   os.Getenv,
		unsetenv: os.Unsetenv,
	})
})

// FDs returns every fd the service manager passed to the process, in fd
// order, following sd_listen_fds(3): the fds are those of LISTEN_FDS and
// LISTEN_FDNAMES when LISTEN_PID is this process's pid. It returns no fds and
// a nil error when the process inherited none.
//
// The fds are read once per process, by the first call to FDs, Listeners,
// AllListeners, Listener or Serve; later calls return the same values (FDs
// returns a new slice each time). The first call also unsets LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PIDFDID, so that child processes do
// not take the fds for theirs, and marks every inherited fd close-on-exec.
// Call it before starting child processes. All these functions are safe for
// concurrent use.
//
// Listening stream sockets become net.Listeners; the original fd is closed
// and the listener holds a duplicate with another number (net.FileListener).
// Every other fd is returned as an *os.File with its original number. The
// caller owns both and closes them: closing a listener in the worker does
// not close the service manager's copy of the socket (see the package
// documentation), and does not remove a unix socket's file.
//
// An error means a malformed environment (LISTEN_FDS is not a number,
// LISTEN_FDNAMES does not have one name per fd) or an fd of LISTEN_FDS that
// is not open. Then no fd is returned, and no fd is closed or changed. If the
// error comes later, while turning the fds into listeners (out of fds, say),
// every inherited fd is closed.
func FDs() ([]FD, error) {
	in, err := inherited()
	if err != nil {
		return nil, err
	}
	return slices.Clone(in.fds), nil
}

// Listeners returns the inherited listeners by name (see FDs), each name's in
// fd order. It returns an empty map and a nil error when the process
// inherited no fds.
//
// If some inherited fds are not listening stream sockets, Listeners returns
// the listeners and an error wrapping ErrNotListener that names those fds;
// they stay open, and FDs returns them. The caller owns the listeners.
func Listeners() (map[string][]net.Listener, error) {
	in, err := inherited()
	if err != nil {
		return nil, err
	}
	m := make(map[string][]net.Listener)
	for _, f := range in.fds {
		if f.Listener != nil {
			m[f.Name] = append(m[f.Name], f.Listener)
		}
	}
	return m, in.notListeners()
}

// AllListeners returns every inherited listener, whatever its name, in fd
// order (see FDs): all a worker needs to serve on every address of its pool.
// It returns no listeners and a nil error when the process inherited no fds.
//
// If some inherited fds are not listening stream sockets, AllListeners
// returns the listeners and an error wrapping ErrNotListener that names those
// fds; they stay open, and FDs returns them. The caller owns the listeners.
func AllListeners() ([]net.Listener, error) {
	in, err := inherited()
	if err != nil {
		return nil, err
	}
	var ls []net.Listener
	for _, f := range in.fds {
		if f.Listener != nil {
			ls = append(ls, f.Listener)
		}
	}
	return ls, in.notListeners()
}

// Listener returns the first inherited listener named name (see FDs), the
// one with the lowest fd number. Every call returns the same listener; the
// caller owns it.
//
// When there is none, the error wraps ErrNoListener, or ErrNotListener if an
// fd of that name is not a listening stream socket, and says what the
// process did inherit, for example:
//
//	activation: no inherited listener named "x" (have: app); is the pool's socket unit running?
func Listener(name string) (net.Listener, error) {
	in, err := inherited()
	if err != nil {
		return nil, err
	}
	return in.listener(name)
}

func (in *inheritance) listener(name string) (net.Listener, error) {
	var others []FD
	for _, f := range in.fds {
		if f.Name != name {
			continue
		}
		if f.Listener != nil {
			return f.Listener, nil
		}
		others = append(others, f)
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("activation: inherited %s: %w", describe(others), ErrNotListener)
	}
	return nil, fmt.Errorf("activation: %w named %q (have: %s); is the pool's socket unit running?", ErrNoListener, name, in.have())
}

// have lists the names of the inherited listeners for messages, or says why
// there are none.
func (in *inheritance) have() string {
	var names []string
	for _, f := range in.fds {
		if f.Listener != nil && !slices.Contains(names, f.Name) {
			names = append(names, f.Name)
		}
	}
	switch {
	case len(names) > 0:
		return strings.Join(names, ", ")
	case len(in.fds) > 0:
		return "none; " + describe(in.fds)
	default:
		return "none; " + in.reason
	}
}

// notListeners reports the inherited fds that are not listeners, or nil.
func (in *inheritance) notListeners() error {
	var bad []FD
	for _, f := range in.fds {
		if f.Listener == nil {
			bad = append(bad, f)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("activation: inherited %s: %w; take it with FDs or pass only ListenStream= sockets", describe(bad), ErrNotListener)
}

func describe(fds []FD) string {
	s := make([]string, len(fds))
	for i, f := range fds {
		s[i] = f.String()
	}
	return strings.Join(s, ", ")
}

// inheritConfig is the process state inherit reads, injectable for tests.
type inheritConfig struct {
	pid      int // the process's pid, compared with LISTEN_PID
	firstFD  int // the fd number of the first inherited fd, SD_LISTEN_FDS_START
	getenv   func(key string) string
	unsetenv func(key string) error
}

// inherit reads the socket activation environment, unsets it and turns the
// fds it names into listeners and files. See FDs for the contract.
func inherit(c inheritConfig) (*inheritance, error) {
	names, reason, err := parseListenEnv(c.pid, c.getenv("LISTEN_PID"), c.getenv("LISTEN_FDS"), c.getenv("LISTEN_FDNAMES"))
	n := c.getenv("LISTEN_FDS")
	for _, k := range listenEnv {
		if uerr := c.unsetenv(k); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("activation: %w", err)
	}

	// Look at every fd before changing any: if LISTEN_FDS is wrong, the fds
	// past the real ones may be the Go runtime's own.
	fds := make([]FD, len(names))
	listening := make([]bool, len(names))
	for i, name := range names {
		num := c.firstFD + i
		kind, ok, err := classify(num)
		if err != nil {
			return nil, fmt.Errorf("activation: LISTEN_FDS=%s, but fd %d: %w", n, num, err)
		}
		fds[i] = FD{Num: num, Name: name, kind: kind}
		listening[i] = ok
	}

	for i := range fds {
		unix.CloseOnExec(fds[i].Num)
	}
	for i := range fds {
		f := &fds[i]
		file := os.NewFile(uintptr(f.Num), f.Name)
		if !listening[i] {
			f.File = file
			continue
		}
		l, err := net.FileListener(file)
		file.Close()
		if err != nil {
			closeFDs(fds, i+1)
			return nil, fmt.Errorf("activation: inherited fd %d %q (%s): %w", f.Num, f.Name, f.kind, err)
		}
		f.Listener = l
	}
	return &inheritance{fds: fds, reason: reason}, nil
}

// closeFDs closes every fd of fds: those before from were turned into
// listeners and files, the others are still raw fd numbers.
func closeFDs(fds []FD, from int) {
	for i, f := range fds {
		switch {
		case i >= from:
			unix.Close(f.Num)
		case f.File != nil:
			f.File.Close()
		case f.Listener != nil:
			f.Listener.Close()
		}
	}
}

// classify says what fd is, and whether net.FileListener can serve it.
func classify(fd int) (kind string, listening bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		if errors.Is(err, unix.EBADF) {
			return "", false, errors.New("not open")
		}
		return "", false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
	case unix.S_IFIFO:
		return "FIFO", false, nil
	case unix.S_IFREG:
		return "regular file", false, nil
	case unix.S_IFCHR:
		return "character device", false, nil
	case unix.S_IFDIR:
		return "directory", false, nil
	default:
		return "file", false, nil
	}

	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return "", false, err
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "", false, err
	}
	accepting, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return "", false, err
	}

	var proto string
	switch {
	case (domain == unix.AF_INET || domain == unix.AF_INET6) && typ == unix.SOCK_STREAM:
		proto = "tcp"
	case (domain == unix.AF_INET || domain == unix.AF_INET6) && typ == unix.SOCK_DGRAM:
		proto = "udp"
	case domain == unix.AF_UNIX && typ == unix.SOCK_STREAM:
		proto = "unix"
	case domain == unix.AF_UNIX && typ == unix.SOCK_SEQPACKET:
		proto = "unixpacket"
	case domain == unix.AF_UNIX && typ == unix.SOCK_DGRAM:
		proto = "unixgram"
	default:
		return "socket of family " + strconv.Itoa(domain) + " type " + strconv.Itoa(typ), false, nil
	}
	switch {
	case proto == "udp" || proto == "unixgram":
		return proto + " socket", false, nil
	case accepting == 0:
		return "connected " + proto + " socket; Accept=yes?", false, nil
	default:
		return proto + " listener", true, nil
	}
}
