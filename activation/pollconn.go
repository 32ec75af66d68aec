package activation

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A pollConn is the unix stream connection of ServeMessages. It does not
// hand its socket to the Go runtime's network poller, which registers every
// descriptor for writability as well as for reading: on a unix socket the
// kernel reports writability each time the peer reads, so every answer
// corrald read would wake the worker's process once more, for nothing (at
// 64 instances on 2 cores, a good part of a broadcast's latency). Instead
// the socket sits alone in an epoll instance of its own, registered for
// reading only (and for writing only while a write waits for room), and it
// is that epoll instance the runtime's poller watches.
//
// One goroutine reads, writes and closes; Interrupt may be called from any
// goroutine, also while a read or write waits, which then fails.
type pollConn struct {
	sock int      // the socket, nonblocking
	ep   *os.File // an epoll instance that holds sock, in the runtime's poller
	raw  syscall.RawConn
}

// dialPoll connects to the unix stream socket at path, waiting at most
// timeout while the listener's queue is full.
func dialPoll(path string, timeout time.Duration) (*pollConn, error) {
	opErr := func(call string, err error) error {
		return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: os.NewSyscallError(call, err)}
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opErr("socket", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err = unix.Connect(sock, &unix.SockaddrUnix{Name: path})
		// A nonblocking unix connect fails with EAGAIN while the
		// listener's queue is full, and cannot be waited for with poll.
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
		if time.Now().After(deadline) {
			err = unix.ETIMEDOUT
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		unix.Close(sock)
		return nil, opErr("connect", err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(sock)
		return nil, opErr("epoll_create1", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(sock)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, sock, &ev); err != nil {
		unix.Close(sock)
		unix.Close(epfd)
		return nil, opErr("epoll_ctl", err)
	}
	// Nonblocking, so that os.NewFile puts it in the runtime's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(sock)
		unix.Close(epfd)
		return nil, opErr("fcntl", err)
	}
	c := &pollConn{sock: sock, ep: os.NewFile(uintptr(epfd), "epoll")}
	if c.raw, err = c.ep.SyscallConn(); err != nil {
		c.Close()
		return nil, opErr("epoll", err)
	}
	return c, nil
}

// Read reads like read(2), waiting for data without a deadline. It returns
// io.EOF at the end of the stream, and an error once Interrupt is called.
func (c *pollConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	werr := c.raw.Read(func(uintptr) bool {
		for {
			n, err = unix.Read(c.sock, p)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	})
	switch {
	case werr != nil:
		return 0, werr
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// WriteAll writes all of p before deadline, or fails.
func (c *pollConn) WriteAll(p []byte, deadline time.Time) error {
	var err error
	write := func() bool { // reports whether it is done, or failed
		for len(p) > 0 {
			var n int
			n, err = unix.Write(c.sock, p)
			switch {
			case err == unix.EINTR:
			case err == unix.EAGAIN:
				return false
			case err != nil:
				return true
			default:
				p = p[n:]
			}
		}
		return true
	}
	if write() {
		return os.NewSyscallError("write", err) // nil if err is nil
	}
	// No room for the rest: wait until there is, watching for writability
	// meanwhile.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT, Fd: int32(c.sock)}
	if err := c.ctl(&ev); err != nil {
		return err
	}
	defer func() {
		ev.Events = unix.EPOLLIN | unix.EPOLLRDHUP
		c.ctl(&ev)
	}()
	c.ep.SetReadDeadline(deadline)
	defer c.ep.SetReadDeadline(time.Time{})
	if werr := c.raw.Read(func(uintptr) bool { return write() }); werr != nil {
		return werr
	}
	return os.NewSyscallError("write", err)
}

// ctl changes the events the epoll instance watches on the socket.
func (c *pollConn) ctl(ev *unix.EpollEvent) error {
	var err error
	if cerr := c.raw.Control(func(epfd uintptr) {
		err = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_MOD, c.sock, ev)
	}); cerr != nil {
		return cerr
	}
	return os.NewSyscallError("epoll_ctl", err)
}

// Interrupt makes a read or write in progress, and every later one that
// waits, fail. It may be called from any goroutine, any number of times.
func (c *pollConn) Interrupt() { c.ep.Close() }

// Close closes the connection. It is called once, by the goroutine that
// reads and writes, when it is done with them.
func (c *pollConn) Close() error {
	c.Interrupt()
	return unix.Close(c.sock)
}
