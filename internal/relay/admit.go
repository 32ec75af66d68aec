package relay

import (
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/internal/rate"
)

// The message socket is open to every local user, so what one connection
// costs corrald is bounded: identification reads /proc (no call to PID 1),
// at most maxAdmitting connections are being identified at once (the others
// wait in the listen backlog), at most maxAdmittingPerUID of them from one
// user (the rest are closed at once, without a word, so that a worker
// retries soon), and refusals are logged at most refusalLogBurst times a
// refusalLogPeriod. Connections are accepted at most acceptRate a second
// (acceptBurst at once, a whole large pool starting): beyond that they wait
// in the backlog, and a storm of them costs corrald a few percent of a core,
// not the time it owes to broadcasts (at 1000 a second, 18% of a core).
const (
	acceptRate         = 200
	acceptBurst        = 1024
	maxAdmitting       = 64
	maxAdmittingPerUID = 16
	refusalLogBurst    = 10
	refusalLogPeriod   = time.Minute
)

// gate bounds the connections being identified, by user.
type gate struct {
	pace  rate.Bucket // the accepting goroutine's alone
	slots chan struct{}
	mu    sync.Mutex
	byUID map[uint32]int
}

func newGate() *gate {
	return &gate{pace: rate.Bucket{Rate: acceptRate, Burst: acceptBurst}, slots: make(chan struct{}, maxAdmitting), byUID: map[uint32]int{}}
}

// slot waits for a free identification slot and for the accept rate;
// done returns the slot. Only the accepting goroutine calls it.
func (g *gate) slot(quit <-chan struct{}) bool {
	if wait := g.pace.Take(time.Now()); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-quit:
			t.Stop()
			return false
		}
	}
	select {
	case g.slots <- struct{}{}:
		return true
	case <-quit:
		return false
	}
}

func (g *gate) done() { <-g.slots }

// enter counts a connection of uid under identification, or says no when
// that user already has maxAdmittingPerUID.
func (g *gate) enter(uid uint32) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byUID[uid] >= maxAdmittingPerUID {
		return false
	}
	g.byUID[uid]++
	return true
}

func (g *gate) leave(uid uint32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byUID[uid]--; g.byUID[uid] <= 0 {
		delete(g.byUID, uid)
	}
}

// logLimit lets through burst lines a period, then counts the others and
// says how many it held back with the next line let through.
type logLimit struct {
	burst  int
	period time.Duration
	now    func() time.Time

	mu      sync.Mutex
	start   time.Time
	n       int
	dropped int
}

// allow reports whether a line may be logged now, and how many were held
// back since the last one that was.
func (l *logLimit) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.start) >= l.period {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}

// warn logs msg through the limit.
func (l *logLimit) warn(log *slog.Logger, msg string, args ...any) {
	ok, dropped := l.allow()
	if !ok {
		return
	}
	if dropped > 0 {
		args = append(args, "not_logged", dropped)
	}
	log.Warn(msg, args...)
}

// peer is who connected: their pid and uid when they connected, and a
// pidfd for that process (-1 if the kernel gives none).
type peer struct {
	pid   int32
	uid   uint32
	pidfd int
}

// peerOf returns the credentials of the process that connected c. The
// pidfd comes from SO_PEERPIDFD (Linux 6.5), which names the very process
// that connected; on older kernels from pidfd_open of its pid, which a
// process that exits at once and whose pid is reused could mislead.
func peerOf(c syscall.Conn) (peer, error) {
	p := peer{pidfd: -1}
	var cred *unix.Ucred
	var cerr error
	if err := withFD(c, func(fd int) {
		cred, cerr = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr != nil {
			return
		}
		if n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			p.pidfd = n
		}
	}); err != nil {
		return p, err
	}
	if cerr != nil {
		return p, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	p.pid, p.uid = cred.Pid, cred.Uid
	if p.pidfd < 0 && p.pid > 0 {
		if fd, err := unix.PidfdOpen(int(p.pid), 0); err == nil {
			p.pidfd = fd
		}
	}
	return p, nil
}

// exited reports whether the peer's process has ended: a pidfd reads
// ready then. A process still there after its identification was the one
// identified: its pid cannot have been reused meanwhile. Without a pidfd,
// the process is asked with signal 0.
func (p peer) exited() bool {
	if p.pidfd < 0 {
		return unix.Kill(int(p.pid), 0) == unix.ESRCH
	}
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
}

func (p peer) close() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
	}
}
