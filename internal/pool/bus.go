package pool

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/rate"
)

// server is the exported object: it checks the caller, then asks the
// coordinator.
type server struct {
	conn  *godbus.Conn
	parts Parts
	group func() (uint32, bool) // the corral group's gid, if it exists

	// senders caches who sent messages: a unique bus name is never reused
	// and its credentials do not change, so a client that sends many
	// messages is looked up once.
	mu      sync.Mutex
	senders map[godbus.Sender]sender

	// The answers to the calls open to every local user, kept a moment,
	// and the rate at which each user may call them (under mu).
	reads        map[uint32]*rate.Bucket
	slowed       chan struct{} // answers held by slowDown
	poolList     snapshots[[]api.PoolInfo]
	instanceList snapshots[[]api.InstanceInfo]
}

// Reads (ListPools, ListInstances) are open to every local user, and
// encoding the instances of a large pool costs corrald about 0.35 ms of CPU
// (128 instances). A user other than root gets readRate a second
// (readBurst at once); beyond that, an error that says to slow down.
const (
	readRate  = 50
	readBurst = 100
)

// mayRead applies the read rate to the user behind from.
func (s *server) mayRead(ctx context.Context, from godbus.Sender) *godbus.Error {
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
func (s *server) readAllowed(uid uint32) bool {
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
func (s *server) slowDown() {
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

// changed forgets the kept answers after a call that changes pools.
func (s *server) changed() {
	s.poolList.clear()
	s.instanceList.clear()
}

type sender struct {
	denied *godbus.Error
	uid    uint32
	known  bool // the bus said who it is: uid is set
	pid    uint32
	pool   string // the pool whose worker it is, or ""
}

// maxSenders bounds the cache of senders; it is emptied when full.
const maxSenders = 1024

const callTimeout = 5 * time.Minute // bounds the calls that change pools, but Reload

func (s *server) ListPools(from godbus.Sender) ([]api.PoolInfo, *godbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e := s.mayRead(ctx, from); e != nil {
		return nil, e
	}
	out, err := s.poolList.get(ctx, "", s.parts.Status.ListPools)
	return out, busError(err)
}

func (s *server) ListInstances(from godbus.Sender, pool string) ([]api.InstanceInfo, *godbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e := s.mayRead(ctx, from); e != nil {
		return nil, e
	}
	out, err := s.instanceList.get(ctx, pool, func(ctx context.Context) ([]api.InstanceInfo, error) {
		return s.parts.Status.ListInstances(ctx, pool)
	})
	return out, busError(err)
}

func (s *server) Scale(sender godbus.Sender, pool, spec string) (uint32, *godbus.Error) {
	if e := s.authorize(sender); e != nil {
		return 0, e
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	n, err := s.parts.Coordinator.Scale(ctx, pool, spec)
	s.changed()
	return n, busError(err)
}

func (s *server) Start(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.parts.Coordinator.Start)
}

func (s *server) Stop(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.parts.Coordinator.Stop)
}

func (s *server) Restart(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.parts.Coordinator.Restart)
}

func (s *server) Reload(sender godbus.Sender, pool string) *godbus.Error {
	if e := s.authorize(sender); e != nil {
		return e
	}
	return busError(s.reload(pool, func(st api.ReloadStep) {
		s.conn.Emit(api.ObjectPath, api.Interface+"."+api.ReloadProgress, api.ReloadStepBody(st)...)
	}))
}

// reload runs a rolling reload for a caller of Reload. It has no call
// timeout: a large pool takes longer than callTimeout (64 instances of 10 s
// each), and a deadline would leave it half reloaded. Each restart is
// bounded by the coordinator's JobTimeout, so the whole is bounded by the
// pool's size. A caller that goes away does not stop it, as a systemd job
// goes on when systemctl is interrupted.
func (s *server) reload(pool string, progress func(api.ReloadStep)) error {
	defer s.changed()
	return s.parts.Reloader.Reload(context.Background(), pool, progress)
}

func (s *server) Apply(sender godbus.Sender) ([]api.Change, *godbus.Error) {
	if e := s.authorize(sender); e != nil {
		return nil, e
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	report, err := s.parts.Applier.Apply(ctx)
	s.changed()
	if err != nil && len(report) == 0 {
		return nil, busError(err)
	}
	return report, nil
}

func (s *server) Broadcast(sender godbus.Sender, pool, text string, waitUSec uint64) ([]api.MessageWire, *godbus.Error) {
	return s.message(sender, pool, func(ctx context.Context, wait time.Duration) ([]api.MessageResult, error) {
		return s.parts.Router.Broadcast(ctx, pool, text, wait)
	}, waitUSec)
}

func (s *server) Send(sender godbus.Sender, target, text string, waitUSec uint64) ([]api.MessageWire, *godbus.Error) {
	pool, _, _ := strings.Cut(target, "@")
	return s.message(sender, pool, func(ctx context.Context, wait time.Duration) ([]api.MessageResult, error) {
		return s.parts.Router.Send(ctx, target, text, wait)
	}, waitUSec)
}

// message checks the caller as for changes, and that a worker messages
// only its own pool, then delivers.
func (s *server) message(from godbus.Sender, pool string, deliver func(context.Context, time.Duration) ([]api.MessageResult, error), waitUSec uint64) ([]api.MessageWire, *godbus.Error) {
	wait := time.Duration(min(waitUSec, uint64(api.MaxWait/time.Microsecond))) * time.Microsecond
	ctx, cancel := context.WithTimeout(context.Background(), wait+30*time.Second)
	defer cancel()
	who := s.sender(ctx, from)
	if who.denied != nil {
		return nil, who.denied
	}
	if who.pool != "" && who.pool != pool {
		return nil, refuse(api.ErrOtherPool, fmt.Sprintf("process %d is a worker of pool %s: a worker may message only its own pool, not %s", who.pid, who.pool, pool))
	}
	rs, err := deliver(ctx, wait)
	if err != nil {
		return nil, busError(err)
	}
	out := make([]api.MessageWire, len(rs))
	for i, r := range rs {
		out[i] = r.Wire()
	}
	return out, nil
}

func (s *server) act(sender godbus.Sender, target string, f func(context.Context, string) error) *godbus.Error {
	if e := s.authorize(sender); e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err := f(ctx, target)
	s.changed()
	return busError(err)
}

// sender identifies a caller of Broadcast or Send: may it change pools,
// and is it a worker of a pool?
func (s *server) sender(ctx context.Context, from godbus.Sender) sender {
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
		if who.pool, err = s.parts.Workers.Pool(ctx, pid); err != nil {
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

// authorize lets root and members of the corral group change pools. The
// bus policy says the same; corrald acts as root, so it checks too.
func (s *server) authorize(sender godbus.Sender) *godbus.Error {
	creds, e := s.credentials(sender)
	if e != nil {
		return e
	}
	return s.allowed(creds)
}

// credentials asks the bus who sender is.
func (s *server) credentials(sender godbus.Sender) (map[string]godbus.Variant, *godbus.Error) {
	var creds map[string]godbus.Variant
	err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionCredentials", 0, string(sender)).Store(&creds)
	if err != nil {
		return nil, denied("cannot identify the caller: " + err.Error())
	}
	return creds, nil
}

func (s *server) allowed(creds map[string]godbus.Variant) *godbus.Error {
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

// denied refuses a call.
func denied(msg string) *godbus.Error { return refuse(api.ErrDenied, msg) }

// refuse answers a call with the error name of sentinel and msg.
func refuse(sentinel error, msg string) *godbus.Error {
	return godbus.NewError(api.ErrorName(sentinel), []any{msg})
}

// busError answers a call with err under the error name of the sentinel it
// wraps.
func busError(err error) *godbus.Error {
	if err == nil {
		return nil
	}
	return godbus.NewError(api.ErrorName(err), []any{err.Error()})
}

// ErrNameTaken is returned by Export when another process owns BusName.
var ErrNameTaken = errors.New("the bus name " + api.BusName + " is owned by another process (is corrald already running?)")

// Export serves corrald's API on conn as BusName at ObjectPath, each call
// checked, then forwarded to the component of parts that owns it; and it
// forwards the coordinator's events as signals until ctx is done.
func Export(ctx context.Context, conn *godbus.Conn, parts Parts) error {
	c := parts.Coordinator
	s := &server{conn: conn, parts: parts, group: corralGID,
		slowed:       make(chan struct{}, maxSlowed),
		poolList:     snapshots[[]api.PoolInfo]{ttl: snapshotTTL, max: 1},
		instanceList: snapshots[[]api.InstanceInfo]{ttl: snapshotTTL, max: 256}}
	if err := conn.Export(s, api.ObjectPath, api.Interface); err != nil {
		return fmt.Errorf("pool: export: %w", err)
	}
	xml := introspect.IntrospectDeclarationString + "<node>" + api.Introspection + introspect.IntrospectDataString + "</node>"
	if err := conn.Export(introspect.Introspectable(xml), api.ObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("pool: export introspection: %w", err)
	}
	reply, err := conn.RequestName(api.BusName, godbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("pool: request %s: %w", api.BusName, err)
	}
	if reply != godbus.RequestNameReplyPrimaryOwner && reply != godbus.RequestNameReplyAlreadyOwner {
		return ErrNameTaken
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-c.Events():
				if e.CrashLoop {
					conn.Emit(api.ObjectPath, api.Interface+".CrashLoop", e.Pool, uint32(e.Index), e.Reason)
				} else {
					conn.Emit(api.ObjectPath, api.Interface+".InstanceChanged", e.Pool, uint32(e.Index), string(e.Phase))
				}
			}
		}
	}()
	return nil
}
