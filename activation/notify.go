package activation

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notify sends state to the service manager over the socket named by
// NOTIFY_SOCKET, as sd_notify(3) does: one datagram of newline-separated
// assignments such as "READY=1" or "STATUS=draining".
//
// When NOTIFY_SOCKET is unset or empty, Notify does nothing and returns nil:
// the process runs by hand, or under a unit that is not Type=notify (a pool
// with readiness = "simple"). Callers need not check for that case. Notify
// leaves NOTIFY_SOCKET set for later messages; with NotifyAccess=main, which
// corral sets, systemd ignores messages from child processes anyway.
//
// NOTIFY_SOCKET must be an absolute path or an abstract socket name starting
// with "@". Notify gives up when ctx is done, and returns an error naming the
// message if the socket cannot be reached or written. It is safe for
// concurrent use.
func Notify(ctx context.Context, state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if err := notify(ctx, addr, state); err != nil {
		msg, _, _ := strings.Cut(state, "\n")
		return fmt.Errorf("activation: notify %s: %w", msg, err)
	}
	return nil
}

// NotifyWithFDs sends state as Notify does, with the fds of conns attached
// (SCM_RIGHTS), as sd_pid_notify_with_fds(3). With "FDSTORE=1" and
// "FDNAME=name" the service manager keeps a copy of each fd in the unit's
// file descriptor store (FileDescriptorStoreMax= must leave room) and passes
// them back, named, in LISTEN_FDS and LISTEN_FDNAMES when the service starts
// again without having been stopped: after a crash, or systemctl restart.
// It also removes a stored fd by itself when the fd reports POLLHUP or
// POLLERR, such as a connection whose peer closed.
//
// conns are *os.File, *net.UnixConn, *net.UnixListener and the like; their
// fds are duplicated for the send, so the callers keep theirs, in the mode
// they were in. See Notify for the case without NOTIFY_SOCKET and errors.
func NotifyWithFDs(ctx context.Context, state string, conns ...syscall.Conn) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	fds := make([]int, 0, len(conns))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, c := range conns {
		raw, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("activation: notify with fds: %w", err)
		}
		var dup int
		var derr error
		if err := raw.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			return fmt.Errorf("activation: notify with fds: %w", err)
		}
		if derr != nil {
			return fmt.Errorf("activation: notify with fds: dup: %w", derr)
		}
		fds = append(fds, dup)
	}
	if err := notifyFDs(ctx, addr, state, unix.UnixRights(fds...)); err != nil {
		msg, _, _ := strings.Cut(state, "\n")
		return fmt.Errorf("activation: notify %s: %w", msg, err)
	}
	return nil
}

// notifyFDs sends state with the ancillary data oob. Go's net package
// refuses control data on a connected datagram socket, so it uses an
// unconnected one, with a send timeout from ctx (5s without a deadline).
func notifyFDs(ctx context.Context, addr, state string, oob []byte) error {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or an @abstract name", addr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return err
	}
	return unix.Sendmsg(fd, []byte(state), oob, &unix.SockaddrUnix{Name: addr}, 0)
}

func notify(ctx context.Context, addr, state string) error {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or an @abstract name", addr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixgram", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A datagram socket blocks while the receiver's queue is full.
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write([]byte(state)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

// Ready sends READY=1: the process has started and serves. With a pool's
// readiness = "notify", systemd considers the instance started only then.
// See Notify for the case without NOTIFY_SOCKET and for errors.
func Ready(ctx context.Context) error {
	return Notify(ctx, sddaemon.SdNotifyReady)
}

// Stopping sends STOPPING=1: the process has begun to stop.
// See Notify for the case without NOTIFY_SOCKET and for errors.
func Stopping(ctx context.Context) error {
	return Notify(ctx, sddaemon.SdNotifyStopping)
}

// Status sends STATUS=s, a one-line description of the process's state
// that `systemctl status` shows. Newlines in s become spaces, since each
// line of a message is one assignment.
// See Notify for the case without NOTIFY_SOCKET and for errors.
func Status(ctx context.Context, s string) error {
	return Notify(ctx, "STATUS="+oneLine(s))
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// Watchdog sends WATCHDOG=1, which resets the unit's watchdog timer
// (WatchdogSec=). RunWatchdog sends it on time.
// See Notify for the case without NOTIFY_SOCKET and for errors.
func Watchdog(ctx context.Context) error {
	return Notify(ctx, sddaemon.SdNotifyWatchdog)
}

// RunWatchdog keeps the unit's watchdog fed until ctx is done, whatever
// the process is doing (Serve feeds it only while its server makes
// progress; see ServeOptions.NoWatchdog): when
// WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process's pid) it
// sends WATCHDOG=1 at once and then every half of that interval. It blocks;
// run it in its own goroutine.
//
// RunWatchdog returns nil at once when the watchdog is not enabled for the
// process, and nil when ctx is done. It returns an error when
// WATCHDOG_USEC or WATCHDOG_PID is malformed or a message cannot be sent;
// the service manager then kills the process when the interval passes.
func RunWatchdog(ctx context.Context) error {
	interval, err := watchdogInterval()
	if err != nil {
		return err
	}
	if interval <= 0 {
		return nil
	}
	t := time.NewTicker(max(interval/2, time.Millisecond))
	defer t.Stop()
	for {
		if err := Watchdog(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
