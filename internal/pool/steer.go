package pool

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/listenq"
	"github.com/corral-pool/corral/internal/loop"
	"github.com/corral-pool/corral/internal/steer"
	"github.com/corral-pool/corral/internal/units"
)

// Steerer keeps a steering program (package steer) on the sockets of every
// pool whose instances each have one (balance = "reuseport" or "sticky",
// steering = true): a new connection goes only to an instance that serves,
// one that is up, not leaving for a reload, not cordoned and accepting.
// The others keep their sockets and queues; only new connections go
// elsewhere. Without BPF here (Off), pools run as plain reuseport.
//
// The maps of each socket group outlive corrald in systemd's fd store, so
// that a restarted corrald finds its sockets in them; the listening sockets
// themselves are PID 1's, taken with pidfd_getfd(2) only to be put in a
// map and closed at once.
type Steerer struct {
	co  *Coordinator
	acc *Acceptance
	// Interval is how often the sockets are looked at without a signal:
	// 5s. A state change of an instance comes at once (Kick).
	Interval time.Duration
	// Store keeps the maps across restarts; nil keeps nothing.
	Store FDStore
	// Listening reads the listening sockets and their queues
	// (listenq.Listening): Leave waits on the leaving instance's.
	Listening func() ([]listenq.Socket, error)

	off     error                // why steering is off; nil when on
	kernel  *steer.Exits         // the kernel's word of deaths; nil when off
	owner   *steer.Owner         // PID 1
	kept    map[string]*ebpf.Map // maps from the fd store, by name, until taken
	kick    chan struct{}
	reqs    chan func()
	mu      sync.Mutex
	leaving map[string]map[int]int // by pool: instances out of the table for a reload, counted
	stands  map[string]map[int]int // by pool: the spares in rotation, by instance, with the one each stands for

	groups map[groupKey]*sgroup // owned by Run
	warned map[string]string    // the last problem logged, by group and slot; Run's
	// The main processes of the instances in a table, watched with a
	// pidfd: an exit takes the instance out at once, before systemd's
	// signal reaches corrald. Run's.
	watch map[uint32]exitWatch
	dead  map[uint32]bool // exited, until no instance has that pid
	exits chan uint32
}

// FDStore keeps fds across restarts of corrald (relay.NotifyStore).
type FDStore interface {
	Keep(ctx context.Context, name string, c syscall.Conn) error
	Forget(ctx context.Context, name string) error
}

type groupKey struct{ pool, addr string }

// exitWatch is the instance whose main process a watch waits on.
type exitWatch struct {
	pool   string
	i      int
	cancel context.CancelFunc
}

// sgroup is the steering of one address of a pool.
type sgroup struct {
	g     *steer.Group
	pid   map[int]uint32 // main process it was found in
	ino   map[int]uint64 // the socket's inode, by slot
	last  uint64         // the inode of a socket of the group, put last
	mode  steer.Mode
	table []uint32
	pids  map[int]uint32 // by slot in the table or standby: its main process, in the table too
	slots []int          // in the table
	// The table's inputs (rotation): the slots of the pool's rotation
	// (below regular; the others are spares), the slots that serve, and
	// their main processes.
	regular int
	serving []int
	spids   map[int]uint32
	stand   map[int]int // the spares in the table, by the slot each stands for
	standby []int       // the spares out of the table, standbys of its buckets
	inited  bool
	// attached: this corrald's program is on the group's sockets (a
	// restarted corrald finds its predecessor's there).
	attached bool
}

// NewSteerer returns the steering of co's pools. inherited are the fds
// corrald started with: the maps a previous corrald stored are among them.
// It probes BPF and PID 1's sockets once; Off says what failed.
func NewSteerer(co *Coordinator, acc *Acceptance, inherited []activation.FD) *Steerer {
	s := &Steerer{co: co, acc: acc, Interval: 5 * time.Second, Listening: listenq.Listening, kick: make(chan struct{}, 1), reqs: make(chan func()),
		leaving: map[string]map[int]int{}, stands: map[string]map[int]int{}, groups: map[groupKey]*sgroup{}, warned: map[string]string{}, kept: map[string]*ebpf.Map{},
		watch: map[uint32]exitWatch{}, dead: map[uint32]bool{}, exits: make(chan uint32, 64)}
	if s.kernel, s.off = steer.NewExits(); s.off == nil {
		if g, err := steer.NewGroup(s.kernel); err != nil {
			s.off = err
			s.kernel.Close()
			s.kernel = nil
		} else {
			g.Close()
		}
	}
	if s.off == nil {
		if s.owner, s.off = steer.OpenOwner(1); s.off == nil {
			s.off = probeTake(s.owner)
		}
	}
	for _, fd := range inherited {
		if !strings.HasPrefix(fd.Name, steerFDPrefix) || fd.File == nil {
			continue
		}
		// The map takes a copy: the File keeps its own fd.
		if dup, err := unix.FcntlInt(fd.File.Fd(), unix.F_DUPFD_CLOEXEC, 3); s.off == nil && err == nil {
			if m, err := ebpf.NewMapFromFD(dup); err == nil {
				s.kept[fd.Name] = m
			}
		}
		fd.File.Close()
	}
	return s
}

// probeTake takes a copy of one of o's sockets, as steering does, and
// says why it cannot.
func probeTake(o *steer.Owner) error {
	fds, err := steer.SocketFDs(1)
	for ino := range fds {
		fd, err := o.Take(ino)
		if err != nil {
			return fmt.Errorf("%w: %v (corrald needs CAP_SYS_PTRACE and the pidfd_getfd system call to take PID 1's sockets)", steer.ErrUnavailable, err)
		}
		unix.Close(fd)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v (corrald needs CAP_SYS_PTRACE to read PID 1's fds)", steer.ErrUnavailable, err)
	}
	return nil
}

// Off returns why steering is off on this host, or nil.
func (s *Steerer) Off() error {
	if s == nil {
		return api.ErrNoSteering
	}
	return s.off
}

// Stands returns the spares (spares =) of pool in the steering's table,
// by instance, with the instance each stands for.
func (s *Steerer) Stands(pool string) map[int]int {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.stands[pool])
}

// Kick tells the Steerer that an instance of a pool may have changed.
// It never blocks.
func (s *Steerer) Kick() {
	if s == nil {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// leaveDrain bounds how long Leave waits for the leaving instance to
// accept what its queue holds: one that does not accept (hung, or its
// program never listens) is stopped after it, its queue then waiting for
// its replacement.
const leaveDrain = time.Second

// Leave takes instance i of pool out of the table until Return, and
// returns once the kernel has the new table and the instance has accepted
// the connections already in its sockets' queues (for at most
// leaveDrain): a reload stops it next, and a program stops accepting when
// it is told to stop, so that those would otherwise wait for its
// replacement. (A client's handshake still in flight as the table changed
// may yet land in the queue, and waits as before.)
func (s *Steerer) Leave(ctx context.Context, pool string, i int) {
	if s == nil || s.off != nil {
		return
	}
	s.mu.Lock()
	if s.leaving[pool] == nil {
		s.leaving[pool] = map[int]int{}
	}
	s.leaving[pool][i]++
	s.mu.Unlock()
	var inos []uint64
	loop.Do(ctx, s.reqs, func() {
		s.refresh(ctx)
		inos = s.queuesOf(pool, i)
	})
	if s.Listening != nil && len(inos) > 0 {
		awaitEmpty(ctx, s.Listening, inos, leaveDrain)
	}
}

// queuesOf returns the inodes of the sockets of instance i of pool whose
// queues its process may yet accept: only one that runs does, so with
// none there is nothing to wait for. Run's.
func (s *Steerer) queuesOf(pool string, i int) []uint64 {
	var inos []uint64
	for key, g := range s.groups {
		pid := g.pid[i-1]
		if ino, ok := g.ino[i-1]; ok && key.pool == pool && pid != 0 && !s.dead[pid] && unix.Kill(int(pid), 0) == nil {
			inos = append(inos, ino)
		}
	}
	return inos
}

// awaitEmpty waits until the accept queue of each socket of inos is empty,
// read with read every 2 ms, for at most limit, and reports whether they
// emptied. A socket that read does not list (closed) counts as empty.
func awaitEmpty(ctx context.Context, read func() ([]listenq.Socket, error), inos []uint64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		socks, err := read()
		if err != nil {
			return false
		}
		empty := true
		for _, so := range socks {
			if so.Queued > 0 && slices.Contains(inos, uint64(so.Inode)) {
				empty = false
				break
			}
		}
		if empty {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Return ends a Leave: the instance is back in the table once it serves.
func (s *Steerer) Return(pool string, i int) {
	if s == nil || s.off != nil {
		return
	}
	s.mu.Lock()
	if s.leaving[pool][i]--; s.leaving[pool][i] <= 0 {
		delete(s.leaving[pool], i)
	}
	s.mu.Unlock()
	s.Kick()
}

// Run keeps the programs and tables until ctx is done. Off, it logs why
// once, and once for each pool that asks for what only steering gives.
func (s *Steerer) Run(ctx context.Context) {
	if s.off != nil {
		s.co.cfg.Log.Warn("steering in the kernel is off: pools with a socket per instance run as plain reuseport, and corral cordon, balance = \"sticky\" and spares do not work", "reason", s.off.Error())
		s.warnOff(ctx)
		return
	}
	if err := s.kernel.Tracing(); err != nil {
		s.co.cfg.Log.Warn("steering learns that an instance died only once its process has exited, milliseconds later: new connections in between wait for its replacement", "reason", err.Error())
	}
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	ready := time.NewTimer(time.Hour)
	defer ready.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.reqs:
			f()
			continue
		case pid := <-s.exits:
			s.exited(pid)
			continue
		case <-s.kick:
		case <-tick.C:
		case <-ready.C:
		}
		if next := s.refresh(ctx); !next.IsZero() {
			ready.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// warnOff says once in the journal of each pool that asks for what only
// steering gives, as pools come and change, until ctx is done.
func (s *Steerer) warnOff(ctx context.Context) {
	said := map[string]bool{}
	for {
		s.co.do(ctx, func(ps poolSet) {
			for name, p := range ps {
				if p.cfg == nil || !p.cfg.Steering || !p.cfg.Balance.PerInstance() {
					continue
				}
				if p.cfg.Balance == units.BalanceSticky && !said[name+" sticky"] {
					said[name+" sticky"] = true
					s.co.cfg.Log.Warn("balance = \"sticky\" needs steering in the kernel: the pool runs as plain reuseport, a client's connections spread over its instances", "pool", name)
				}
				if p.cfg.Spares > 0 && !said[name+" spares"] {
					said[name+" spares"] = true
					s.co.cfg.Log.Warn("spares needs steering in the kernel to keep them out of rotation: they take connections as the other instances do", "pool", name, "spares", p.cfg.Spares)
				}
			}
		})
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
	}
}

// Cordon takes instance POOL@I (target) out of the steering's table: it
// keeps its connections and gets no new one, across restarts of corrald,
// until Uncordon. It returns once the kernel has the new table.
func (s *Steerer) Cordon(ctx context.Context, target string) error {
	return s.cordon(ctx, "cordon", target, func(p *poolState, pool string, i int) error {
		if slices.Contains(p.desired.Cordoned, i) {
			return nil
		}
		others := 0
		for _, j := range (poolView{cfg: p.cfg, count: p.desired.Count, instances: p.observed.Instances}).running() {
			if j != i && !slices.Contains(p.desired.Cordoned, j) {
				others++
			}
		}
		if others == 0 {
			return fmt.Errorf("%w: cordoning %s would leave no instance taking new connections: uncordon or start another first (to take the host out of a balancer, corral drain %s)",
				api.ErrBadArgument, target, pool)
		}
		p.desired.Cordoned = append(p.desired.Cordoned, i)
		slices.Sort(p.desired.Cordoned)
		return nil
	})
}

// Uncordon puts a cordoned instance back in the table once it serves.
func (s *Steerer) Uncordon(ctx context.Context, target string) error {
	return s.cordon(ctx, "uncordon", target, func(p *poolState, _ string, i int) error {
		p.desired.Cordoned = slices.DeleteFunc(p.desired.Cordoned, func(j int) bool { return j == i })
		if len(p.desired.Cordoned) == 0 {
			p.desired.Cordoned = nil
		}
		return nil
	})
}

// cordon checks target for cmd, runs f on its pool and refreshes.
func (s *Steerer) cordon(ctx context.Context, cmd, target string, f func(p *poolState, pool string, i int) error) error {
	pool, i, err := api.ParseTarget(target)
	if err != nil {
		return err
	}
	if i == 0 {
		return fmt.Errorf("%w: %s takes one instance, such as %s", api.ErrBadArgument, cmd, api.InstanceTarget(pool, 1))
	}
	if err := s.Off(); err != nil {
		return fmt.Errorf("%w: %v", api.ErrNoSteering, err)
	}
	if err := s.co.withPool(ctx, pool, func(p *poolState) error {
		switch {
		case !p.cfg.Balance.PerInstance():
			return fmt.Errorf("%w: %s has balance = \"shared\": its instances take connections from one socket, so none can be kept from new ones; set balance = \"reuseport\"", api.ErrBadArgument, pool)
		case !p.cfg.Steering:
			return fmt.Errorf("%w: %s sets steering = false in %s: remove it to cordon", api.ErrBadArgument, pool, p.cfg.Path)
		case i > p.desired.Count:
			return fmt.Errorf("%w %s: %s has instances 1 to %d", api.ErrNoInstance, target, pool, p.desired.Count)
		}
		return f(p, pool, i)
	}); err != nil {
		return err
	}
	action := "cordoned: no new connections"
	if cmd == "uncordon" {
		action = "uncordoned: new connections again"
	}
	s.co.cfg.Log.Info(action, "pool", pool, "instance", i)
	return loop.Do(ctx, s.reqs, func() { s.refresh(ctx) })
}

const steerFDPrefix = "steer,"

// steered is one pool as refresh needs it.
type steered struct {
	poolView
	cordoned []int
}

// refresh makes every group's sockets and table follow the pools, and
// returns when an instance that runs will have had its ready_delay (zero:
// none waits).
func (s *Steerer) refresh(ctx context.Context) (next time.Time) {
	var pools []steered
	if err := s.co.do(ctx, func(ps poolSet) {
		for name, p := range ps {
			if p.cfg != nil && p.cfg.Balance.PerInstance() && p.cfg.Steering {
				pools = append(pools, steered{poolView{name: name, cfg: p.cfg, count: p.desired.Count, instances: maps.Clone(p.observed.Instances)}, slices.Clone(p.desired.Cordoned)})
			}
		}
	}); err != nil {
		return
	}
	var fs listenq.Families
	for _, p := range pools {
		fs |= families(p.cfg.Listen)
	}
	byAddr := map[string][]listenq.Socket{}
	if fs != 0 {
		socks, err := listenq.Read(fs)
		if err != nil {
			s.warn(groupKey{}, 0, fmt.Errorf("read the listening sockets: %w", err))
			return
		}
		for _, so := range socks {
			byAddr[so.Addr] = append(byAddr[so.Addr], so)
		}
	}
	seen := map[groupKey]bool{}
	live := map[uint32]exitWatch{}
	now := s.co.cfg.Now()
	for _, p := range pools {
		serving, wake := s.serving(p, now)
		if !wake.IsZero() && (next.IsZero() || wake.Before(next)) {
			next = wake
		}
		mode := steer.ModeHash
		if p.cfg.Balance == units.BalanceSticky {
			mode = steer.ModeSticky
		}
		for _, l := range p.cfg.Listen {
			if l.Unix {
				continue
			}
			key := groupKey{p.name, l.Address}
			seen[key] = true
			g := s.group(ctx, key)
			if g == nil {
				continue
			}
			listening := map[uint64]bool{}
			for _, so := range byAddr[kernelAddrs(l, byAddr)] {
				listening[uint64(so.Inode)] = true
			}
			var slots []int
			pids := map[int]uint32{}
			for _, i := range serving {
				if s.fill(key, g, p, i, listening) {
					slots = append(slots, i-1)
					pids[i-1] = p.instances[i].MainPID
				}
			}
			s.set(key, g, mode, regular(p), slots, pids)
			for _, slot := range slices.Concat(g.slots, g.standby) {
				if pid := pids[slot]; pid != 0 {
					live[pid] = exitWatch{pool: p.name, i: slot + 1}
				}
			}
		}
	}
	s.watchExits(ctx, live, pools)
	defer s.publish()
	for key, g := range s.groups {
		if !seen[key] {
			// Steering off for the pool (steering = false, another
			// balance, the pool gone): the program leaves its sockets,
			// which the kernel's hash serves again.
			if g.last != 0 {
				fd, err := s.owner.Take(g.last)
				if err == nil {
					err = steer.Detach(fd)
					unix.Close(fd)
				}
				s.co.cfg.Log.Info("steering ends: the kernel's hash picks the instance of each new connection", "pool", key.pool, "address", key.addr, "detached", err == nil, "err", err)
			}
			g.g.Close()
			if s.Store != nil {
				s.Store.Forget(ctx, storeName(key, "socks"))
				s.Store.Forget(ctx, storeName(key, "table"))
			}
			delete(s.groups, key)
		}
	}
	return next
}

// regular is how many of p's instances are in its rotation, the others
// its spares: at least one.
func regular(p steered) int {
	if p.cfg == nil {
		return p.count
	}
	return units.InRotation(p.count, p.cfg.Spares)
}

// set makes g's table from the slots that serve (serving, sorted, with
// the main process of each in pids), those below regular in rotation and
// the others spares (rotation), if it changed.
func (s *Steerer) set(key groupKey, g *sgroup, mode steer.Mode, regular int, serving []int, pids map[int]uint32) {
	g.regular, g.serving, g.spids = regular, serving, pids
	table, slots, stand, standby := rotation(regular, serving)
	in := map[int]uint32{}
	for _, slot := range slices.Concat(slots, standby) {
		in[slot] = pids[slot]
	}
	if g.inited && g.mode == mode && slices.Equal(g.table, table) && maps.Equal(g.pids, in) {
		return
	}
	if err := g.g.Set(mode, table, in); err != nil {
		s.warn(key, 0, err)
		return
	}
	g.mode, g.table, g.pids, g.slots, g.stand, g.standby, g.inited = mode, table, in, slots, stand, standby, true
}

// rotation lays out a table over serving, the slots that may take new
// connections, sorted: those below regular are the pool's rotation, the
// others its spares. The table spreads the buckets over the rotation's
// slots, those that do not serve included, and gives those of each that
// does not serve to a spare that does, the first to the first: a spare
// takes the place of one instance, its share and its sticky clients, and
// gives them back when it returns. With no spare left, the rotation's
// serving slots share the rest. slots are the slots in the table; stand
// the spares among them, by the slot each stands for. The spares left,
// standby, are the standbys of the table's buckets, the slots of the
// table in turn: the kernel sends a bucket to its standby from the moment
// its slot's process starts to die until the table changes.
func rotation(regular int, serving []int) (table []uint32, slots []int, stand map[int]int, standby []int) {
	var members, spares []int
	for _, slot := range serving {
		if slot < regular {
			members = append(members, slot)
		} else {
			spares = append(spares, slot)
		}
	}
	stand = map[int]int{}
	for slot := 0; slot < regular && len(spares) > 0; slot++ {
		if !slices.Contains(members, slot) {
			stand[slot], spares = spares[0], spares[1:]
		}
	}
	slots = slices.Clone(members)
	for slot, spare := range stand {
		members = append(members, slot)
		slots = append(slots, spare)
	}
	table = steer.Table(members)
	for b, v := range table {
		if spare, ok := stand[int(v)-1]; ok && v != 0 {
			table[b] = uint32(spare) + 1
		}
	}
	slices.Sort(slots)
	if len(spares) > 0 {
		for b, v := range table {
			if slot, _ := steer.Slots(v); slot >= 0 {
				table[b] = steer.Entry(slot, spares[slices.Index(slots, slot)%len(spares)])
			}
		}
	}
	return table, slots, stand, spares
}

// publish keeps, for Stands, the spares in each pool's tables.
func (s *Steerer) publish() {
	stands := map[string]map[int]int{}
	for key, g := range s.groups {
		if stands[key.pool] == nil {
			stands[key.pool] = map[int]int{}
		}
		maps.Copy(stands[key.pool], g.stands())
	}
	s.mu.Lock()
	s.stands = stands
	s.mu.Unlock()
}

// stands returns the spares of g in its table, by instance, with the
// instance each stands for.
func (g *sgroup) stands() map[int]int {
	out := map[int]int{}
	for slot, spare := range g.stand {
		out[spare+1] = slot + 1
	}
	return out
}

// watchExits watches the main processes of live (the instances in a
// table, by pid), in the kernel (Exits) and with a pidfd, and stops
// watching the others; it forgets the exits of pids no instance of pools
// has any more.
func (s *Steerer) watchExits(ctx context.Context, live map[uint32]exitWatch, pools []steered) {
	for _, pid := range s.kernel.Watched() {
		if _, ok := live[pid]; !ok {
			s.kernel.Forget(pid)
		}
	}
	for pid := range live {
		if err := s.kernel.Watch(pid); err != nil {
			s.warn(groupKey{}, 0, err)
		}
	}
	for pid, w := range s.watch {
		if _, ok := live[pid]; !ok {
			w.cancel()
			delete(s.watch, pid)
		}
	}
	for pid, w := range live {
		if _, ok := s.watch[pid]; ok || pid == 0 {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w.cancel = cancel
		s.watch[pid] = w
		go func() {
			if steer.WaitExit(wctx, int(pid)) == nil {
				select {
				case s.exits <- pid:
				case <-wctx.Done():
				}
			}
		}()
	}
	held := map[uint32]bool{}
	for _, p := range pools {
		for _, u := range p.instances {
			held[u.MainPID] = true
		}
	}
	for pid := range s.dead {
		if !held[pid] {
			delete(s.dead, pid)
		}
	}
}

// exited takes the instance whose main process pid exited out of its
// pool's tables at once; systemd's signal and the next refresh follow.
func (s *Steerer) exited(pid uint32) {
	w, ok := s.watch[pid]
	if !ok {
		return
	}
	s.dead[pid] = true
	w.cancel()
	delete(s.watch, pid)
	for key, g := range s.groups {
		if key.pool == w.pool && g.inited && slices.Contains(g.serving, w.i-1) {
			serving := slices.DeleteFunc(slices.Clone(g.serving), func(x int) bool { return x == w.i-1 })
			s.set(key, g, g.mode, g.regular, serving, g.spids)
		}
	}
	s.publish()
}

// serving are the instances of p that may take new connections, in order:
// up, not leaving for a reload, not cordoned, accepting, and, without
// readiness = "notify", up for ready_delay (the program may not listen
// yet: until then its new connections would wait). wake is when the next
// of those will have been, or zero.
func (s *Steerer) serving(p steered, now time.Time) (out []int, wake time.Time) {
	s.mu.Lock()
	leaving := s.leaving[p.name]
	for _, i := range p.running() {
		pid := p.instances[i].MainPID
		if leaving[i] == 0 && !slices.Contains(p.cordoned, i) && !s.dead[pid] && !(s.kernel != nil && s.kernel.Dying(pid)) {
			out = append(out, i)
		}
	}
	s.mu.Unlock()
	stuck := s.acc.Stuck(p.name)
	out = slices.DeleteFunc(out, func(i int) bool {
		if _, ok := stuck[i]; ok {
			return true
		}
		if p.cfg == nil || p.cfg.Readiness == units.ReadinessNotify || p.cfg.ReadyDelay <= 0 {
			return false
		}
		if at := p.instances[i].ActiveEnter.Add(p.cfg.ReadyDelay); at.After(now) {
			if wake.IsZero() || at.Before(wake) {
				wake = at
			}
			return true
		}
		return false
	})
	return out, wake
}

// group returns the group of key, made or taken from the fd store.
func (s *Steerer) group(ctx context.Context, key groupKey) *sgroup {
	if g := s.groups[key]; g != nil {
		return g
	}
	var g *steer.Group
	socks, table := s.kept[storeName(key, "socks")], s.kept[storeName(key, "table")]
	delete(s.kept, storeName(key, "socks"))
	delete(s.kept, storeName(key, "table"))
	if socks != nil && table != nil {
		g, _ = steer.OpenGroup(socks, table, s.kernel)
	}
	stored := g != nil
	if g == nil {
		if socks != nil {
			socks.Close()
		}
		if table != nil {
			table.Close()
		}
		var err error
		if g, err = steer.NewGroup(s.kernel); err != nil {
			s.warn(key, 0, err)
			return nil
		}
	}
	// New maps replace any under their names in the store; those that
	// came from it are there already.
	if s.Store != nil && !stored {
		socks, table := g.Maps()
		for name, m := range map[string]*ebpf.Map{"socks": socks, "table": table} {
			s.Store.Forget(ctx, storeName(key, name))
			if err := keepMap(ctx, s.Store, storeName(key, name), m); err != nil {
				s.warn(key, 0, fmt.Errorf("keep the maps across restarts: %w", err))
			}
		}
	}
	sg := &sgroup{g: g, pid: map[int]uint32{}, ino: map[int]uint64{}}
	s.groups[key] = sg
	return sg
}

// storeName names a map of key in the fd store: FDNAME= refuses ':' and
// '/'.
func storeName(key groupKey, m string) string {
	return steerFDPrefix + key.pool + "," + strings.ReplaceAll(key.addr, ":", "_") + "," + m
}

// keepMap stores a copy of m's fd under name.
func keepMap(ctx context.Context, st FDStore, name string, m *ebpf.Map) error {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return st.Keep(ctx, name, f)
}

// fill makes sure slot i-1 of g holds the socket at the group's address
// that instance i of p serves on (the one of listening, the inodes of the
// sockets at that address, its main process holds), and reports whether it
// does.
func (s *Steerer) fill(key groupKey, g *sgroup, p steered, i int, listening map[uint64]bool) bool {
	u := p.instances[i]
	if u.MainPID == 0 {
		return false
	}
	if g.pid[i-1] == u.MainPID && g.attached {
		if _, ok := g.g.Cookie(i - 1); ok {
			return true
		}
	}
	ino, err := steer.FindSocket(int(u.MainPID), func(n uint64) bool { return listening[n] })
	if err != nil {
		s.warn(key, i, err)
		return false
	}
	if ino == 0 {
		s.warn(key, i, fmt.Errorf("its main process %d holds no socket listening there: only the kernel's hash sends it connections", u.MainPID))
		return false
	}
	fd, err := s.owner.Take(ino)
	if err != nil {
		s.warn(key, i, err)
		return false
	}
	defer unix.Close(fd)
	// The slot may hold it already, put there by a corrald before a
	// restart: putting it again would be refused.
	// A group kept from before a restart has the old program on its
	// sockets: this one takes its place.
	if c, ok := g.g.Cookie(i - 1); !ok || !sameCookie(fd, c) {
		if err := g.g.Put(i-1, fd); err != nil {
			s.warn(key, i, err)
			return false
		}
	} else if !g.attached {
		if err := g.g.Attach(fd); err != nil {
			s.warn(key, i, err)
			return false
		}
	}
	g.pid[i-1], g.ino[i-1], g.last, g.attached = u.MainPID, ino, ino, true
	delete(s.warned, fmt.Sprint(key, i))
	return true
}

func sameCookie(fd int, c uint64) bool {
	own, err := steer.SocketCookie(fd)
	return err == nil && own == c
}

// warn logs a problem of key's slot for instance i (0: the group) once
// until it changes.
func (s *Steerer) warn(key groupKey, i int, err error) {
	id := fmt.Sprint(key, i)
	if s.warned[id] == err.Error() {
		return
	}
	s.warned[id] = err.Error()
	label := key.pool
	if i > 0 {
		label = instanceLabel(key.pool, i)
	}
	s.co.cfg.Log.Warn("steering: "+label+" "+key.addr+": "+err.Error(), "pool", key.pool)
}
