package relay

import (
	"context"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/internal/message"
)

// The channels stay out of the Go runtime's network poller. The poller
// registers every socket for writability as well as for reading, and a unix
// socket reports writability each time its peer reads: each message a
// worker read would wake corrald for nothing. Instead, each channel's socket
// is kept in blocking mode (so that os.NewFile leaves it alone), used only
// with MSG_DONTWAIT, and registered for reading only in an epoll set of the
// relay's, which the runtime's poller watches on behalf of a single reader
// goroutine. That goroutine reads every channel that has something, and
// records all the answers it found under one lock: with 64 instances the
// replies of a broadcast come in a few batches instead of 64 wakeups.

// channelFile returns a file of c's socket that the runtime's poller does
// not watch, and closes c: the socket stays open through the file.
func channelFile(c interface {
	syscall.Conn
	Close() error
}, name string) (*os.File, error) {
	dup := -1
	var derr error
	if err := withFD(c, func(fd int) {
		dup, derr = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	c.Close()
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	// O_NONBLOCK belongs to the socket, which c shared: clear it, so that
	// os.NewFile does not hand the file to the poller.
	if err := unix.SetNonblock(dup, false); err != nil {
		unix.Close(dup)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(dup), name), nil
}

// withFD runs f with c's fd, which stays open meanwhile; it fails once c
// is closed.
func withFD(c syscall.Conn, f func(fd int)) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return raw.Control(func(fd uintptr) { f(int(fd)) })
}

// control runs f with ch's fd; it fails once the channel is closed.
func (ch *channel) control(f func(fd int)) error { return withFD(ch.file, f) }

// newEpoll returns an epoll set, nonblocking so that the runtime's poller
// watches it: it reads as ready when one of its sockets is.
func newEpoll() (*os.File, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), "relay-epoll"), nil
}

// watch adds ch to the reader's epoll set, for reading only.
func (r *Relay) watch(ch *channel) error {
	r.rmu.Lock()
	r.byID[ch.id] = ch
	r.rmu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(uint32(ch.id)), Pad: int32(uint32(ch.id >> 32))}
	return r.epollCtl(unix.EPOLL_CTL_ADD, ch, &ev)
}

// unwatch removes ch from the reader's epoll set.
func (r *Relay) unwatch(ch *channel) {
	r.rmu.Lock()
	delete(r.byID, ch.id)
	r.rmu.Unlock()
	r.epollCtl(unix.EPOLL_CTL_DEL, ch, nil)
}

func (r *Relay) epollCtl(op int, ch *channel, ev *unix.EpollEvent) error {
	var cerr error
	if err := withFD(r.ep, func(epfd int) {
		if err := ch.control(func(fd int) { cerr = unix.EpollCtl(epfd, op, fd, ev) }); err != nil {
			cerr = err // the channel is closed
		}
	}); err != nil {
		return err
	}
	return os.NewSyscallError("epoll_ctl", cerr)
}

// An answer is a frame with an id, read from a channel.
type answer struct {
	ch *channel
	f  message.Frame
}

// reads is how many reads of a channel one round of the reader makes at
// most, so that a worker that writes without end cannot starve the others:
// what is left is read in the next round.
const reads = 4

// read reads every channel with something to read until the epoll set is
// closed, which Run does when it ends. It is the only goroutine that reads
// the channels; their ends are handed to Run, which drops them.
func (r *Relay) read(ctx context.Context) {
	defer close(r.readDone)
	raw, err := r.ep.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, 64<<10)
	var answers []answer
	for {
		n := 0
		var werr error
		err := raw.Read(func(epfd uintptr) bool {
			n, werr = unix.EpollWait(int(epfd), events, 0)
			return n > 0 || (werr != nil && werr != unix.EINTR)
		})
		if err != nil || werr != nil {
			return // closed: Run is done
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			r.rmu.Lock()
			ch := r.byID[id]
			r.rmu.Unlock()
			if ch == nil {
				continue
			}
			// Each channel's answers are handed over before the next
			// channel is read: a reply is cut to what is kept at once,
			// so 128 replies of 200 KiB are never all in memory.
			answers = r.readChannel(ctx, ch, buf, answers[:0])
			if len(answers) == 0 {
				continue
			}
			r.wmu.Lock()
			for _, a := range answers {
				if w := r.waiting[a.f.ID]; w != nil {
					w.answer(a.ch, a.f)
				}
				// else no one waits: not asked for, too late, or sent before a restart
			}
			r.wmu.Unlock()
			clear(answers)
		}
	}
}

// readChannel reads what ch has, up to reads times buf, and appends the
// answers it finds. At the end of the stream, or when the socket fails, it
// stops watching ch and asks Run to drop it.
func (r *Relay) readChannel(ctx context.Context, ch *channel, buf []byte, answers []answer) []answer {
	var rerr error
	for range reads {
		n := 0
		if err := ch.control(func(fd int) {
			for {
				n, _, rerr = unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
				if rerr != unix.EINTR {
					return
				}
			}
		}); err != nil {
			return answers // dropped by Run meanwhile
		}
		if rerr == unix.EAGAIN {
			return answers
		}
		if rerr == nil && n == 0 {
			rerr = io.EOF
		}
		if rerr != nil {
			break
		}
		ch.lines.Write(buf[:n])
		for {
			f, ok, err := ch.lines.Next()
			if !ok {
				break
			}
			if err != nil {
				ch.bad++
				if ch.bad <= 3 {
					r.post(ctx, func() {
						r.cfg.Log.Warn("a worker sent a line that is not a message frame; ignored", "instance", ch.key(), "err", err)
					})
				}
				continue
			}
			if f.ID != "" {
				answers = append(answers, answer{ch, f})
			}
		}
		if n < len(buf) {
			return answers // all there was, most likely: epoll says if not
		}
	}
	if rerr == nil {
		return answers // more to read: the set still reports it
	}
	// The worker went away: stop reporting its hang-up, and let Run drop it.
	r.unwatch(ch)
	r.post(ctx, func() {
		if !ch.closed {
			if rerr == io.EOF {
				r.cfg.Log.Info("worker disconnected from messages", "instance", ch.key(), "pid", ch.pid)
			} else {
				r.cfg.Log.Info("worker disconnected from messages", "instance", ch.key(), "pid", ch.pid, "err", rerr)
			}
		}
		r.drop(ctx, ch)
	})
	return answers
}
