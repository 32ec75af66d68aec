package steer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Owner takes copies of the sockets another process holds, found by their
// inode: corrald takes the listening sockets systemd (PID 1) holds for the
// instances, which it cannot open itself. It needs CAP_SYS_PTRACE over
// the process (pidfd_getfd(2)).
type Owner struct {
	pid   int
	pidfd int
	fds   map[uint64]int // socket inode → the owner's fd, as last read
	// cached: the last take used fds as they were, not read afresh.
	cached bool
}

// OpenOwner opens the process pid (1 for systemd).
func OpenOwner(pid int) (*Owner, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: pidfd_open(%d): %v", ErrUnavailable, pid, err)
	}
	return &Owner{pid: pid, pidfd: fd, fds: map[uint64]int{}}, nil
}

// Close releases o.
func (o *Owner) Close() error { return unix.Close(o.pidfd) }

// Take returns a new fd of the owner's socket whose inode is ino. The
// caller closes it. The owner's fd numbers are read again when they
// changed (systemd renumbers its fds when it reloads).
func (o *Owner) Take(ino uint64) (int, error) {
	fd, err := o.take(ino)
	if err != nil && o.cached {
		fd, err = o.take(ino)
	}
	return fd, err
}

func (o *Owner) take(ino uint64) (int, error) {
	fd, ok := o.fds[ino]
	o.cached = ok
	if !ok {
		var err error
		if o.fds, err = SocketFDs(o.pid); err != nil {
			return -1, err
		}
		if fd, ok = o.fds[ino]; !ok {
			return -1, fmt.Errorf("steer: process %d holds no socket with inode %d", o.pid, ino)
		}
	}
	n, err := unix.PidfdGetfd(o.pidfd, fd, 0)
	if err != nil {
		delete(o.fds, ino)
		return -1, fmt.Errorf("steer: pidfd_getfd(%d, %d): %w", o.pid, fd, err)
	}
	// The fd may have been closed and reused since it was read.
	if got, err := Inode(n); err != nil || got != ino {
		unix.Close(n)
		delete(o.fds, ino)
		return -1, fmt.Errorf("steer: process %d's fd %d is no longer socket %d", o.pid, fd, ino)
	}
	return n, nil
}

// SocketFDs reads the sockets process pid holds: fd by socket inode.
func SocketFDs(pid int) (map[uint64]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("steer: %w", err)
	}
	out := map[uint64]int{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ino, ok := SocketInode(dir + "/" + e.Name()); ok {
			out[ino] = fd
		}
	}
	return out, nil
}

// SocketInode reads the inode of the socket a /proc/PID/fd/N link names.
func SocketInode(link string) (uint64, bool) {
	t, err := os.Readlink(link)
	if err != nil || !strings.HasPrefix(t, "socket:[") || !strings.HasSuffix(t, "]") {
		return 0, false
	}
	ino, err := strconv.ParseUint(t[len("socket:["):len(t)-1], 10, 64)
	return ino, err == nil
}

// Inode returns the inode of the socket fd.
func Inode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// FindSocket returns the inode of the first socket process pid holds for
// which want is true, looking at each of its fds with pidfd_getfd(2)
// (CAP_SYS_PTRACE; reading /proc/PID/fd of another user's process would
// need CAP_DAC_READ_SEARCH too). It returns 0 when there is none.
func FindSocket(pid int, want func(ino uint64) bool) (uint64, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("steer: pidfd_open(%d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	size := fdTableSize(pid)
	for fd := 0; fd < size; fd++ {
		n, err := unix.PidfdGetfd(pidfd, fd, 0)
		if errors.Is(err, unix.EBADF) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("steer: pidfd_getfd(%d, %d): %w", pid, fd, err)
		}
		ino, err := Inode(n)
		unix.Close(n)
		if err == nil && want(ino) {
			return ino, nil
		}
	}
	return 0, nil
}

// fdTableSize reads the size of process pid's fd table (FDSize in
// /proc/PID/status, which anyone may read); 1024 when unknown.
func fdTableSize(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 1024
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "FDSize:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				return min(n, 1<<16)
			}
		}
	}
	return 1024
}

// WaitExit returns nil once process pid has exited (at once if it is gone
// already), or ctx's error. It holds a pidfd, which the runtime's poller
// waits on: no thread is blocked.
func WaitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("steer: pidfd_open(%d): %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	// A pidfd becomes readable when its process exits. The first call
	// only waits: poll(2) tells whether it is readable already.
	err = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(p, 0)
		return n > 0
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
