// Package relay is corrald's side of corral's messages (docs/messages.md):
// it accepts the workers' connections on the message socket, delivers
// operators' messages to them and collects their replies.
//
// A worker connects to the socket; the relay asks Config.Identify which
// instance of which pool the connecting process belongs to, from the
// peer's pid, and keeps one channel per instance: a newer connection of the
// same instance replaces the older. Each channel and the listening socket
// go to the service manager's file descriptor store (Config.Store), so that
// a restarted corrald gets them back (Config.Inherited) and no worker sees
// its connection break.
//
// Delivery never blocks: a message is written whole to the channel's socket
// buffer, or not at all when the buffer has no room for it (the worker is
// not reading), in which case it is reported as not delivered. So the
// relay holds no message in memory: what it accepted is in the kernel,
// with the socket, and survives a restart of corrald. Messages to one
// instance are written in the order Send was called.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/loop"
	"github.com/corral-pool/corral/internal/message"
)

// ListenerName is the fd store name of the listening socket; channels are
// stored as "m/POOL@I/N".
const ListenerName = "messages"

// A Store keeps fds in the service manager's file descriptor store
// (sd_pid_notify_with_fds(3) with FDSTORE=1 and FDSTOREREMOVE=1).
type Store interface {
	Keep(ctx context.Context, name string, c syscall.Conn) error
	Forget(ctx context.Context, name string) error
}

// NotifyStore is the Store of a service under systemd: it sends FDSTORE=1
// and FDSTOREREMOVE=1 to NOTIFY_SOCKET, and does nothing without it. The
// unit needs FileDescriptorStoreMax= large enough for every channel.
type NotifyStore struct{}

// Keep stores c's fd under name.
func (NotifyStore) Keep(ctx context.Context, name string, c syscall.Conn) error {
	return activation.NotifyWithFDs(ctx, "FDSTORE=1\nFDNAME="+name, c)
}

// Forget removes the fds stored under name.
func (NotifyStore) Forget(ctx context.Context, name string) error {
	return activation.Notify(ctx, "FDSTOREREMOVE=1\nFDNAME="+name)
}

// Config configures a Relay.
type Config struct {
	// Path is the socket to listen on when none is inherited; default
	// message.SocketPath. Its directory must exist.
	Path string
	// Inherited are the fds the service manager passed (activation.FDs):
	// the relay takes the listener named ListenerName and the channels,
	// and leaves the others alone.
	Inherited []activation.FD
	// Identify returns the pool and instance of the process pid, or an
	// error saying why it is not a worker of a pool; the error is sent to
	// the process before its connection is closed. Required.
	Identify func(ctx context.Context, pid int32) (pool string, index int, err error)
	// Store keeps the fds across restarts; nil keeps nothing.
	Store Store
	// Log gets a line for each worker that connects, is replaced, is
	// refused or breaks the protocol; nil discards them.
	Log *slog.Logger
}

// A Relay carries messages. Run must be running for Send to work.
type Relay struct {
	cfg     Config
	ln      *net.UnixListener
	inherit []*channel
	reqs    chan func()
	events  chan func()
	prefix  string // of message ids, new at every start of corrald
	seq     uint64
	chanSeq uint64
	chans   map[string]*channel  // by "POOL@I"
	left    map[string]time.Time // when an instance's channel last closed, by "POOL@I"
	// wmu guards waiting and the waiters in it: the channels' readers
	// record answers there directly, without a trip through Run.
	wmu      sync.Mutex
	waiting  map[string]*waiter // by message id
	identify time.Duration
	gate     *gate     // bounds the connections being identified
	refusals *logLimit // of the lines about refused connections

	// The reader (reader.go): an epoll set of the channels' sockets, and
	// the channels by their id in it, under rmu.
	ep       *os.File
	rmu      sync.Mutex
	byID     map[uint64]*channel
	lastID   uint64 // in Run
	readDone chan struct{}
	quit     chan struct{} // closed when Run ends, so that post gives up
}

type channel struct {
	pool   string
	index  int
	pid    int32
	name   string   // in the fd store
	file   *os.File // the socket, out of the runtime's poller (reader.go)
	id     uint64   // in the reader's epoll set
	sndbuf int
	closed bool // in Run

	// The reader's alone.
	lines message.Splitter
	bad   int // lines that were not frames
}

func (ch *channel) key() string { return api.InstanceTarget(ch.pool, ch.index) }

// New returns a relay listening on the inherited listener, or on a new
// socket at cfg.Path (a stale socket file there is replaced), readable and
// writable by everyone: the relay tells workers apart by their credentials.
func New(cfg Config) (*Relay, error) {
	if cfg.Identify == nil {
		return nil, errors.New("relay: Config.Identify is required")
	}
	if cfg.Path == "" {
		cfg.Path = message.SocketPath
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		cfg:      cfg,
		reqs:     make(chan func()),
		events:   make(chan func(), 64),
		prefix:   strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36),
		chans:    map[string]*channel{},
		left:     map[string]time.Time{},
		waiting:  map[string]*waiter{},
		identify: 5 * time.Second,
		gate:     newGate(),
		refusals: &logLimit{burst: refusalLogBurst, period: refusalLogPeriod, now: time.Now},
		byID:     map[uint64]*channel{},
		readDone: make(chan struct{}),
		quit:     make(chan struct{}),
	}
	ep, err := newEpoll()
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r.ep = ep
	for _, fd := range cfg.Inherited {
		switch {
		case fd.Name == ListenerName && fd.Listener != nil:
			if ul, ok := fd.Listener.(*net.UnixListener); ok && r.ln == nil {
				ul.SetUnlinkOnClose(false)
				r.ln = ul
			}
		case strings.HasPrefix(fd.Name, "m/") && fd.File != nil:
			ch, err := adopt(fd)
			if err != nil {
				cfg.Log.Warn("dropping an inherited message channel", "name", fd.Name, "err", err)
				if cfg.Store != nil {
					cfg.Store.Forget(context.Background(), fd.Name)
				}
				continue
			}
			r.inherit = append(r.inherit, ch)
		}
	}
	if r.ln == nil {
		if err := os.Remove(cfg.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("relay: remove stale socket: %w", err)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		ln.SetUnlinkOnClose(false) // a restarted corrald inherits it
		if err := os.Chmod(cfg.Path, 0o666); err != nil {
			ln.Close()
			return nil, fmt.Errorf("relay: %w", err)
		}
		r.ln = ln
		if cfg.Store != nil {
			if err := cfg.Store.Keep(context.Background(), ListenerName, ln); err != nil {
				cfg.Log.Warn("cannot store the message socket: workers reconnect after a restart of corrald", "err", err)
			}
		}
	}
	return r, nil
}

// adopt turns an inherited channel "m/POOL@I/N" back into a channel.
func adopt(fd activation.FD) (*channel, error) {
	parts := strings.Split(fd.Name, "/")
	if len(parts) != 3 {
		fd.File.Close()
		return nil, errors.New("malformed name")
	}
	at := strings.LastIndexByte(parts[1], '@')
	i, err := strconv.Atoi(parts[1][at+1:])
	if at <= 0 || err != nil || i < 1 {
		fd.File.Close()
		return nil, errors.New("malformed name")
	}
	var domain, typ int
	var derr, terr error
	err = withFD(fd.File, func(fd int) {
		domain, derr = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, terr = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	})
	if err != nil || derr != nil || terr != nil || domain != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		fd.File.Close()
		return nil, errors.New("not a unix stream socket")
	}
	f, err := channelFile(fd.File, fd.Name)
	if err != nil {
		return nil, err
	}
	ch := &channel{pool: parts[1][:at], index: i, name: fd.Name, file: f}
	if p, err := peerOf(f); err == nil {
		ch.pid = p.pid
		p.close()
	}
	ch.sndbuf = sendBuffer(f)
	return ch, nil
}

// Addr is the socket the relay listens on.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Run accepts workers and carries messages until ctx is done, then closes
// its copies of the sockets (the fd store keeps its own). Call it once.
func (r *Relay) Run(ctx context.Context) error {
	accepted := make(chan *net.UnixConn)
	acceptErr := make(chan error, 1)
	go func() {
		pause := 5 * time.Millisecond
		for {
			if !r.gate.slot(ctx.Done()) {
				return
			}
			c, err := r.ln.AcceptUnix()
			if err != nil {
				r.gate.done()
				if ctx.Err() == nil && (errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)) {
					// Out of fds or memory: the workers wait in the backlog.
					time.Sleep(pause)
					pause = min(2*pause, time.Second)
					continue
				}
				acceptErr <- err
				return
			}
			pause = 5 * time.Millisecond
			select {
			case accepted <- c:
			case <-ctx.Done():
				r.gate.done()
				c.Close()
				return
			}
		}
	}()
	go r.read(ctx)
	for _, ch := range r.inherit {
		r.attach(ctx, ch)
	}
	r.inherit = nil
	defer func() {
		close(r.quit)
		r.ln.Close()
		r.ep.Close() // ends the reader
		<-r.readDone
		for _, ch := range r.chans {
			ch.file.Close()
		}
		r.wmu.Lock()
		for _, w := range r.waiting {
			w.finish()
		}
		r.wmu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-acceptErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: accept: %w", err)
		case c := <-accepted:
			go r.admit(ctx, c)
		case f := <-r.events:
			f()
		case f := <-r.reqs:
			f()
		}
	}
}

// post runs f in the Run goroutine, unless ctx is done or Run ends first.
func (r *Relay) post(ctx context.Context, f func()) bool {
	select {
	case r.events <- f:
		return true
	case <-ctx.Done():
		return false
	case <-r.quit:
		return false
	}
}

// do runs f in the Run goroutine and waits for it.
func (r *Relay) do(ctx context.Context, f func()) error { return loop.Do(ctx, r.reqs, f) }

// admit identifies a new connection, off the Run goroutine, then attaches
// it. It holds one of the gate's slots, and gives it back.
func (r *Relay) admit(ctx context.Context, c *net.UnixConn) {
	defer r.gate.done()
	refuse := func(why string) {
		if b, err := message.Encode(message.Frame{Error: why}); err == nil {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write(b)
		}
		c.Close()
	}
	p, err := peerOf(c)
	if err != nil {
		r.refusals.warn(r.cfg.Log, "refused a connection to the message socket", "err", err)
		refuse("corrald cannot tell who you are: " + err.Error())
		return
	}
	defer p.close()
	pid := p.pid
	if !r.gate.enter(p.uid) {
		c.Close()
		r.refusals.warn(r.cfg.Log, "closed a connection to the message socket: too many of this user's are being identified", "uid", p.uid, "pid", pid)
		return
	}
	ictx, cancel := context.WithTimeout(ctx, r.identify)
	pool, index, err := r.cfg.Identify(ictx, pid)
	cancel()
	r.gate.leave(p.uid)
	if err == nil && p.exited() {
		err = fmt.Errorf("process %d exited while corrald identified it", pid)
	}
	if err != nil {
		r.refusals.warn(r.cfg.Log, "refused a connection to the message socket", "pid", pid, "uid", p.uid, "err", err)
		refuse(err.Error())
		return
	}
	f, err := channelFile(c, api.InstanceTarget(pool, index))
	if err != nil {
		r.refusals.warn(r.cfg.Log, "refused a connection to the message socket", "pid", pid, "err", err)
		return
	}
	ch := &channel{pool: pool, index: index, pid: pid, file: f, sndbuf: setSendBuffer(f)}
	if !r.post(ctx, func() {
		r.chanSeq++
		ch.name = fmt.Sprintf("m/%s/%d", ch.key(), r.chanSeq)
		if r.cfg.Store != nil {
			if err := r.cfg.Store.Keep(ctx, ch.name, ch.file); err != nil {
				r.cfg.Log.Warn("cannot store a message channel: its worker reconnects after a restart of corrald", "instance", ch.key(), "err", err)
			}
		}
		r.attach(ctx, ch)
		r.cfg.Log.Info("worker connected for messages", "instance", ch.key(), "pid", pid)
	}) {
		f.Close()
	}
}

// attach makes ch its instance's channel and starts reading it. In Run.
func (r *Relay) attach(ctx context.Context, ch *channel) {
	if old := r.chans[ch.key()]; old != nil {
		r.cfg.Log.Info("a newer connection replaces the message channel", "instance", ch.key(), "old_pid", old.pid, "pid", ch.pid)
		r.drop(ctx, old)
	}
	r.chans[ch.key()] = ch
	delete(r.left, ch.key())
	if ch.seqOf() >= r.chanSeq {
		r.chanSeq = ch.seqOf()
	}
	r.lastID++
	ch.id = r.lastID
	if err := r.watch(ch); err != nil {
		r.cfg.Log.Warn("cannot watch a message channel: its worker reconnects", "instance", ch.key(), "err", err)
		r.drop(ctx, ch)
	}
}

func (ch *channel) seqOf() uint64 {
	n, _ := strconv.ParseUint(ch.name[strings.LastIndexByte(ch.name, '/')+1:], 10, 64)
	return n
}

// drop closes ch and forgets it. In Run.
func (r *Relay) drop(ctx context.Context, ch *channel) {
	if ch.closed {
		return
	}
	ch.closed = true
	if r.chans[ch.key()] == ch {
		delete(r.chans, ch.key())
		r.left[ch.key()] = time.Now()
	}
	// The store's copy would keep the connection open.
	if r.cfg.Store != nil {
		r.cfg.Store.Forget(ctx, ch.name)
	}
	r.unwatch(ch)
	ch.file.Close()
	r.wmu.Lock()
	for _, w := range r.waiting {
		w.lost(ch)
	}
	r.wmu.Unlock()
}

// wantSendBuffer is what the relay asks of each channel's send buffer: the
// kernel doubles it, to 1 MiB, capped at twice net.core.wmem_max (416 KiB
// with Debian's default). That is what a worker that does not read can
// have queued: a few thousand short messages, or 6 to 15 of 64 KiB.
const wantSendBuffer = 512 << 10

func setSendBuffer(c syscall.Conn) int {
	withFD(c, func(fd int) { unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, wantSendBuffer) })
	return sendBuffer(c)
}

func sendBuffer(c syscall.Conn) int {
	n := 0
	withFD(c, func(fd int) { n, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF) })
	return n
}
