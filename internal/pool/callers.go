package pool

import (
	"context"
	"fmt"
	"os/user"
	"strconv"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/rate"
)

// callers tells who calls corrald over the bus and what each may do:
// root and the corral group change pools; a worker messages only its own
// pool; any local user reads, at a bounded rate.
type callers struct {
	conn    *godbus.Conn
	workers *Workers
	group   func() (uint32, bool) // the corral group's gid, if it exists

	// senders caches who sent messages: a unique bus name is never reused
	// and its credentials do not change, so a client that sends many
	// messages is looked up once.
	mu      sync.Mutex
	senders map[godbus.Sender]sender
	reads   map[uint32]*rate.Bucket // the read rate of each user (under mu)
	slowed  chan struct{}           // answers held by slowDown
}

// message lets a caller send to pool: one who may change pools, and, if
// it is a worker, only to its own pool.
func (s *callers) message(ctx context.Context, from godbus.Sender, pool string) *godbus.Error {
	who := s.sender(ctx, from)
	if who.denied != nil {
		return who.denied
	}
	if who.pool != "" && who.pool != pool {
		return refuse(api.ErrOtherPool, fmt.Sprintf("process %d is a worker of pool %s: a worker may message only its own pool, not %s", who.pid, who.pool, pool))
	}
	return nil
}

// Reads (ListPools, ListInstances) are open to every local user, and
// encoding the instances of a large pool costs corrald about 0.35 ms of CPU
// (128 instances). A user other than root gets readRate a second
// (readBurst at once); beyond that, an error that says to slow down.
const (
	readRate  = 50
	readBurst = 100
)

// read lets the user behind from read, at the read rate but root.
func (s *callers) read(ctx context.Context, from godbus.Sender) *godbus.Error {
	who := s.sender(ctx, from)
	if !who.known {
		return denied("corrald cannot tell who is calling, so it does not answer; try again")
	}
	if who.uid == 0 {
		return nil
	}
	if s.readAllowed(who.uid) {
		return nil
	}
	s.slowDown()
	return refuse(api.ErrFailed, fmt.Sprintf("uid %d asked corrald more than %d times a second for pools or instances: wait a moment and ask again", who.uid, readRate))
}

// readAllowed takes a token from uid's read bucket.
func (s *callers) readAllowed(uid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads == nil || len(s.reads) >= maxSenders {
		s.reads = map[uint32]*rate.Bucket{}
	}
	b := s.reads[uid]
	if b == nil {
		b = &rate.Bucket{Rate: readRate, Burst: readBurst}
		s.reads[uid] = b
	}
	return b.Allow(time.Now())
}

// slowDown holds the answer to a call over the read rate for slowDownFor,
// so that a caller who asks again at once, as fast as corrald answers,
// makes few calls a second: each costs corrald its decoding and encoding
// even when the answer is "slow down". At most maxSlowed answers are held
// (a goroutine each); beyond that they go at once.
func (s *callers) slowDown() {
	select {
	case s.slowed <- struct{}{}:
		time.Sleep(slowDownFor)
		<-s.slowed
	default:
	}
}

const (
	slowDownFor = 100 * time.Millisecond
	maxSlowed   = 256
)

// sender is who a caller is, as the bus and /proc say.
type sender struct {
	denied *godbus.Error
	uid    uint32
	known  bool // the bus said who it is: uid is set
	pid    uint32
	pool   string // the pool whose worker it is, or ""
}

// maxSenders bounds the cache of senders; it is emptied when full.
const maxSenders = 1024

// sender identifies a caller of Broadcast or Send: may it change pools,
// and is it a worker of a pool?
func (s *callers) sender(ctx context.Context, from godbus.Sender) sender {
	s.mu.Lock()
	who, ok := s.senders[from]
	s.mu.Unlock()
	if ok {
		return who
	}
	creds, e := s.credentials(from)
	if e != nil {
		return sender{denied: e} // not cached: the bus may answer next time
	}
	who.denied = s.allowed(creds)
	who.uid, who.known = creds["UnixUserID"].Value().(uint32)
	if who.denied == nil {
		pid, _ := creds["ProcessID"].Value().(uint32)
		var err error
		who.pid = pid
		if who.pool, err = s.workers.Pool(ctx, pid); err != nil {
			// Not kept: the lookup may work next time. Who it is
			// is known, which is all that reads need.
			return sender{uid: who.uid, known: who.known, denied: denied("corrald cannot tell whether the caller is a worker of a pool, so it refuses the message: " + err.Error())}
		}
	}
	s.mu.Lock()
	if s.senders == nil || len(s.senders) >= maxSenders {
		s.senders = map[godbus.Sender]sender{}
	}
	s.senders[from] = who
	s.mu.Unlock()
	return who
}

// change lets root and members of the corral group change pools. The
// bus policy says the same; corrald acts as root, so it checks too.
func (s *callers) change(sender godbus.Sender) *godbus.Error {
	creds, e := s.credentials(sender)
	if e != nil {
		return e
	}
	return s.allowed(creds)
}

// credentials asks the bus who sender is.
func (s *callers) credentials(sender godbus.Sender) (map[string]godbus.Variant, *godbus.Error) {
	var creds map[string]godbus.Variant
	err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionCredentials", 0, string(sender)).Store(&creds)
	if err != nil {
		return nil, denied("cannot identify the caller: " + err.Error())
	}
	return creds, nil
}

func (s *callers) allowed(creds map[string]godbus.Variant) *godbus.Error {
	uid, ok := creds["UnixUserID"].Value().(uint32)
	if ok && uid == 0 {
		return nil
	}
	if gid, ok := s.group(); ok {
		if gids, ok := creds["UnixGroupIDs"].Value().([]uint32); ok {
			for _, g := range gids {
				if g == gid {
					return nil
				}
			}
		}
	}
	return denied("only root and members of the " + api.Group + " group may change pools")
}

func corralGID() (uint32, bool) {
	g, err := user.LookupGroup(api.Group)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), err == nil
}
