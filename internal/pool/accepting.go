package pool

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/listenq"
	"github.com/corral-pool/corral/internal/units"
)

// Acceptance tells an instance that runs but never accepts a connection
// from its socket: a worker that bound a port of its own (in its own
// network namespace) instead of serving on fd 3 looks healthy to systemd
// while its socket's queue only grows. Every Interval it reads the accept
// queues of the listening sockets from the kernel (package listenq: one
// netlink dump, no fd of theirs, no process read) and matches them to the
// pools' sockets. A queue that is not empty and has not gone down for
// After marks its instances "not accepting" in Status, and the journal
// gets one line with the likely cause and the fix.
type Acceptance struct {
	co *Coordinator
	// Interval between readings while every queue of the pools is empty
	// (2s), Busy while one is not (500ms), and how long a queue must stay
	// without going down (2s). A stuck worker is told within Interval +
	// After + Busy; idle, corrald reads the queues every Interval only.
	Interval, Busy, After time.Duration
	// Listening reads the sockets of some families: listenq.Read.
	Listening func(listenq.Families) ([]listenq.Socket, error)

	mu     sync.Mutex
	stuck  map[string]map[int]Stuck // by pool, by instance (0: every instance of a shared socket)
	queues map[string][]Queue       // the last reading, by pool

	seen map[uint32]*queueSeen // by socket inode; the Run goroutine's own
}

// Queue is the accept queue of one socket of a pool at the last reading.
type Queue struct {
	Index   int    // the instance whose socket it is; 0 for a shared socket
	Address string // as the pool file writes it
	Queued  uint32 // connections waiting to be accepted
	Backlog uint32 // how many may wait
}

// Queues returns the accept queues of pool's sockets at the last reading,
// which is at most Interval old while an instance of the pool runs.
func (a *Acceptance) Queues(pool string) []Queue {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.queues[pool])
}

// Stuck is a socket whose queue did not go down since Since.
type Stuck struct {
	Queued uint32
	Since  time.Time
}

type queueSeen struct {
	queued uint32
	since  time.Time // when it last was empty or went down
	told   bool      // the journal has its line
}

// NewAcceptance returns the acceptance check of co's pools.
func NewAcceptance(co *Coordinator) *Acceptance {
	return &Acceptance{co: co, Interval: 2 * time.Second, Busy: 500 * time.Millisecond, After: 2 * time.Second, Listening: listenq.Read,
		stuck: map[string]map[int]Stuck{}, seen: map[uint32]*queueSeen{}}
}

// Stuck returns pool's instances that do not accept, by index; index 0
// stands for every instance of a shared socket.
func (a *Acceptance) Stuck(pool string) map[int]Stuck {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.stuck[pool])
}

// Run reads the queues every Interval, or Busy while one is not empty,
// until ctx is done.
func (a *Acceptance) Run(ctx context.Context) error {
	next := time.NewTimer(a.Interval)
	defer next.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-next.C:
		}
		busy, err := a.check(ctx)
		if err != nil && !warned {
			a.co.cfg.Log.Warn("cannot read the listening sockets' queues: instances that accept nothing go unnoticed", "err", err)
			warned = true
		}
		if busy {
			next.Reset(a.Busy)
		} else {
			next.Reset(a.Interval)
		}
	}
}

// poolSockets is what check needs of one pool.
type poolSockets struct {
	name    string
	listen  []units.Listen
	shared  bool
	sockets map[int]Unit // live socket units by instance (0 when shared)
	running map[int]bool // instances that run
}

// check takes one reading and updates the verdicts; busy is true when a
// socket of a running pool has connections waiting.
func (a *Acceptance) check(ctx context.Context) (busy bool, err error) {
	var pools []poolSockets
	if err := a.co.do(ctx, func(ps poolSet) {
		for name, p := range ps {
			if p.cfg == nil || p.desired.Stopped {
				continue
			}
			s := poolSockets{name: name, listen: p.cfg.Listen, shared: p.cfg.Balance == units.BalanceShared,
				sockets: map[int]Unit{}, running: map[int]bool{}}
			for i, u := range p.observed.Sockets {
				if u.Up() {
					s.sockets[i] = u
				}
			}
			for i, u := range p.observed.Instances {
				if u.Up() {
					s.running[i] = true
				}
			}
			pools = append(pools, s)
		}
	}); err != nil {
		return false, err
	}
	// Only the families the pools listen on, and nothing while no
	// instance runs: idle, this is all corrald does each second.
	var fs listenq.Families
	for _, p := range pools {
		if len(p.running) > 0 {
			fs |= families(p.listen)
		}
	}
	var socks []listenq.Socket
	if fs != 0 {
		var err error
		if socks, err = a.Listening(fs); err != nil {
			return false, err
		}
	}
	now := a.co.cfg.Now()
	byAddr := map[string][]listenq.Socket{}
	alive := map[uint32]bool{}
	for _, s := range socks {
		byAddr[s.Addr] = append(byAddr[s.Addr], s)
		alive[s.Inode] = true
		a.observe(s, now)
	}
	for ino := range a.seen {
		if !alive[ino] {
			delete(a.seen, ino)
		}
	}
	stuck := map[string]map[int]Stuck{}
	queues := map[string][]Queue{}
	for _, p := range pools {
		m, waiting := a.verdicts(p, byAddr, now)
		if len(m) > 0 {
			stuck[p.name] = m
		}
		busy = busy || waiting
		for _, l := range p.listen {
			owners := a.owners(p, kernelAddrs(l, byAddr), byAddr)
			for _, i := range slices.Sorted(maps.Keys(owners)) {
				queues[p.name] = append(queues[p.name], Queue{Index: i, Address: l.Address, Queued: owners[i].Queued, Backlog: owners[i].Backlog})
			}
		}
	}
	a.mu.Lock()
	a.stuck, a.queues = stuck, queues
	a.mu.Unlock()
	return busy, nil
}

// observe follows one socket's queue: it is stuck from the first reading
// that found it not empty, or that found it shorter than the one before.
func (a *Acceptance) observe(s listenq.Socket, now time.Time) {
	q := a.seen[s.Inode]
	if q == nil {
		a.seen[s.Inode] = &queueSeen{queued: s.Queued, since: now}
		return
	}
	if s.Queued == 0 || q.queued == 0 || s.Queued < q.queued {
		q.since = now
	}
	q.queued = s.Queued
}

// verdicts matches a pool's sockets to the kernel's and returns the
// instances whose socket is stuck, logging each change once; waiting is
// true when a socket of a running instance has connections queued.
func (a *Acceptance) verdicts(p poolSockets, byAddr map[string][]listenq.Socket, now time.Time) (out map[int]Stuck, waiting bool) {
	out = map[int]Stuck{}
	for _, l := range p.listen {
		for i, s := range a.owners(p, kernelAddrs(l, byAddr), byAddr) {
			q := a.seen[s.Inode]
			runs := p.running[i] || i == 0 && len(p.running) > 0
			if q == nil || !runs {
				continue
			}
			label := instanceLabel(p.name, i)
			waiting = waiting || q.queued > 0
			if q.queued == 0 || now.Sub(q.since) < a.After {
				if q.told {
					q.told = false
					a.co.cfg.Log.Info(label+" accepts connections again", "pool", p.name, "socket", l.Address)
				}
				continue
			}
			if old, ok := out[i]; !ok || s.Queued > old.Queued {
				out[i] = Stuck{Queued: s.Queued, Since: q.since}
			}
			if !q.told {
				q.told = true
				a.co.cfg.Log.Warn(fmt.Sprintf("%s accepts no connections: %d wait in the queue of its socket %s and it has taken none for %s",
					label, s.Queued, l.Address, now.Sub(q.since).Round(time.Second)),
					"pool", p.name, "likely", "the worker listens on a port of its own (in its private network) instead of the socket systemd passes it as fd 3",
					"fix", "serve on the inherited socket (docs/workers.md); a Node app: keep node_preload on and exec node itself")
			}
		}
	}
	return out, waiting
}

// owners pairs the kernel's sockets at addr with the pool's instances.
// A shared pool has one socket, index 0. With reuseport every instance has
// its own, all at the same address: systemd made them in the order its
// socket units became active, and the kernel numbers sockets in the order
// they are made, so the two orders pair them. When the counts differ (a
// socket unit is starting or stopping) nothing is paired this time.
func (a *Acceptance) owners(p poolSockets, addr string, byAddr map[string][]listenq.Socket) map[int]listenq.Socket {
	socks := byAddr[addr]
	if p.shared {
		if len(socks) == 1 && len(p.sockets) == 1 {
			return map[int]listenq.Socket{0: socks[0]}
		}
		return nil
	}
	if len(socks) != len(p.sockets) || len(socks) == 0 {
		return nil
	}
	socks = slices.Clone(socks)
	slices.SortFunc(socks, func(x, y listenq.Socket) int { return cmp.Compare(x.Inode, y.Inode) })
	idx := slices.Collect(maps.Keys(p.sockets))
	slices.SortFunc(idx, func(x, y int) int {
		return cmp.Or(p.sockets[x].ActiveEnter.Compare(p.sockets[y].ActiveEnter), cmp.Compare(x, y))
	})
	out := map[int]listenq.Socket{}
	for k, i := range idx {
		out[i] = socks[k]
	}
	return out
}

// families are the socket families of a pool's addresses.
func families(ls []units.Listen) listenq.Families {
	var fs listenq.Families
	for _, l := range ls {
		switch {
		case l.Unix:
			fs |= listenq.Unix
		case strings.HasPrefix(l.Address, ":"):
			fs |= listenq.IPv4 | listenq.IPv6 // [::] dual-stack, or 0.0.0.0 without IPv6
		case strings.HasPrefix(l.Address, "["):
			fs |= listenq.IPv6
		default:
			fs |= listenq.IPv4
		}
	}
	return fs
}

// kernelAddrs is how the kernel names the socket systemd opens for l:
// ":8080" (every address) is "[::]:8080", or "0.0.0.0:8080" on a host
// without IPv6.
func kernelAddrs(l units.Listen, byAddr map[string][]listenq.Socket) string {
	if l.Unix || !strings.HasPrefix(l.Address, ":") {
		return l.Address
	}
	if v6 := "[::]" + l.Address; len(byAddr[v6]) > 0 {
		return v6
	}
	return "0.0.0.0" + l.Address
}

// instanceLabel names instance i of pool, or the pool for 0.
func instanceLabel(pool string, i int) string {
	if i == 0 {
		return pool
	}
	return api.InstanceTarget(pool, i)
}
