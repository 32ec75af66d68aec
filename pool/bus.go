package pool

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/corral-pool/corral/message"
	"github.com/corral-pool/corral/rate"
	"github.com/corral-pool/corral/relay"
)

// D-Bus error names of the API.
const (
	errNoPool     = "org.corral.Corral1.Error.NoSuchPool"
	errNoInstance = "org.corral.Corral1.Error.NoSuchInstance"
	errBadSpec    = "org.corral.Corral1.Error.BadSpec"
	errDenied     = "org.corral.Corral1.Error.Denied"
	errFailed     = "org.corral.Corral1.Error.Failed"
	errReload     = "org.corral.Corral1.Error.ReloadStopped"
	errInvalid    = "org.corral.Corral1.Error.InvalidConfig"
	errBadMessage = "org.corral.Corral1.Error.BadMessage"
	errNoMessages = "org.corral.Corral1.Error.NoMessages"
	errOtherPool  = "org.corral.Corral1.Error.OtherPool"
)

// Group is the group whose members may change pools besides root.
const Group = "corral"

// poolWire and instanceWire are PoolInfo and InstanceInfo as they travel:
// the field order is the D-Bus signature.
type poolWire struct {
	Name, State      string
	Desired, Running uint32
	Balance, File    string
	Listen           []string
}

type instanceWire struct {
	Pool                          string
	Index                         uint32
	Unit, Phase, ActiveState, Sub string
	PID                           uint32
	SinceUSec                     uint64
	Restarts                      uint32
	MemoryBytes, CPUNSec          uint64
	Reason                        string
	Messages                      bool
}

// server is the exported object: it checks the caller, then asks the
// coordinator.
type server struct {
	conn  *godbus.Conn
	api   API
	coord *Coordinator
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
	poolList     snapshots[[]poolWire]
	instanceList snapshots[[]instanceWire]
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
		return godbus.NewError(errDenied, []any{"corrald cannot tell who is calling, so it does not answer; try again"})
	}
	if who.uid == 0 {
		return nil
	}
	if s.readAllowed(who.uid) {
		return nil
	}
	s.slowDown()
	return godbus.NewError(errFailed, []any{fmt.Sprintf("uid %d asked corrald more than %d times a second for pools or instances: wait a moment and ask again", who.uid, readRate)})
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

func (s *server) ListPools(from godbus.Sender) ([]poolWire, *godbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e := s.mayRead(ctx, from); e != nil {
		return nil, e
	}
	out, err := s.poolList.get(ctx, "", func(ctx context.Context) ([]poolWire, error) {
		ps, err := s.api.ListPools(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]poolWire, len(ps))
		for i, p := range ps {
			out[i] = poolWire{p.Name, p.State, p.Desired, p.Running, p.Balance, p.File, append([]string{}, p.Listen...)}
		}
		return out, nil
	})
	return out, busError(err)
}

func (s *server) ListInstances(from godbus.Sender, pool string) ([]instanceWire, *godbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e := s.mayRead(ctx, from); e != nil {
		return nil, e
	}
	out, err := s.instanceList.get(ctx, pool, func(ctx context.Context) ([]instanceWire, error) {
		is, err := s.api.ListInstances(ctx, pool)
		if err != nil {
			return nil, err
		}
		out := make([]instanceWire, len(is))
		for i, x := range is {
			out[i] = instanceWire{x.Pool, x.Index, x.Unit, x.Phase, x.ActiveState, x.SubState, x.PID, x.SinceUSec,
				x.Restarts, x.MemoryBytes, x.CPUNSec, x.Reason, x.Messages}
		}
		return out, nil
	})
	return out, busError(err)
}

func (s *server) Scale(sender godbus.Sender, pool, spec string) (uint32, *godbus.Error) {
	if e := s.authorize(sender); e != nil {
		return 0, e
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	n, err := s.api.Scale(ctx, pool, spec)
	s.changed()
	return n, busError(err)
}

func (s *server) Start(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.api.Start)
}

func (s *server) Stop(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.api.Stop)
}

func (s *server) Restart(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.api.Restart)
}

func (s *server) Reload(sender godbus.Sender, pool string) *godbus.Error {
	if e := s.authorize(sender); e != nil {
		return e
	}
	return busError(s.reload(pool, func(st ReloadStep) {
		s.conn.Emit(ObjectPath, Interface+".ReloadProgress", st.Pool, uint32(st.Index), st.Phase,
			uint64(st.Took.Microseconds()), st.Err, uint32(st.Done), uint32(st.Total))
	}))
}

// reload runs a rolling reload for a caller of Reload. It has no call
// timeout: a large pool takes longer than callTimeout (64 instances of 10 s
// each), and a deadline would leave it half reloaded. Each restart is
// bounded by the coordinator's JobTimeout, so the whole is bounded by the
// pool's size. A caller that goes away does not stop it, as a systemd job
// goes on when systemctl is interrupted.
func (s *server) reload(pool string, progress func(ReloadStep)) error {
	defer s.changed()
	return s.coord.Reload(context.Background(), pool, progress)
}

type changeWire struct{ Pool, Action, Detail string }

func (s *server) Apply(sender godbus.Sender) ([]changeWire, *godbus.Error) {
	if e := s.authorize(sender); e != nil {
		return nil, e
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	report, err := s.coord.Apply(ctx)
	s.changed()
	out := make([]changeWire, len(report))
	for i, c := range report {
		out[i] = changeWire(c)
	}
	if err != nil && len(report) == 0 {
		return nil, busError(err)
	}
	return out, nil
}

// messageWire is a MessageResult as it travels.
type messageWire struct {
	Pool                  string
	Index                 uint32
	Status, Reply, Detail string
}

func (s *server) Broadcast(sender godbus.Sender, pool, text string, waitUSec uint64) ([]messageWire, *godbus.Error) {
	return s.message(sender, pool, func(ctx context.Context, wait time.Duration) ([]MessageResult, error) {
		return s.coord.Broadcast(ctx, pool, text, wait)
	}, waitUSec)
}

func (s *server) Send(sender godbus.Sender, target, text string, waitUSec uint64) ([]messageWire, *godbus.Error) {
	pool, _, _ := strings.Cut(target, "@")
	return s.message(sender, pool, func(ctx context.Context, wait time.Duration) ([]MessageResult, error) {
		return s.coord.Send(ctx, target, text, wait)
	}, waitUSec)
}

// message checks the caller as for changes, and that a worker messages
// only its own pool, then delivers.
func (s *server) message(from godbus.Sender, pool string, deliver func(context.Context, time.Duration) ([]MessageResult, error), waitUSec uint64) ([]messageWire, *godbus.Error) {
	wait := time.Duration(min(waitUSec, uint64(relay.MaxWait/time.Microsecond))) * time.Microsecond
	ctx, cancel := context.WithTimeout(context.Background(), wait+30*time.Second)
	defer cancel()
	who := s.sender(ctx, from)
	if who.denied != nil {
		return nil, who.denied
	}
	if who.pool != "" && who.pool != pool {
		return nil, godbus.NewError(errOtherPool, []any{fmt.Sprintf("process %d is a worker of pool %s: a worker may message only its own pool, not %s", who.pid, who.pool, pool)})
	}
	rs, err := deliver(ctx, wait)
	if err != nil {
		return nil, busError(err)
	}
	out := make([]messageWire, len(rs))
	for i, r := range rs {
		out[i] = messageWire{r.Pool, uint32(r.Index), string(r.Status), r.Reply, r.Detail}
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
		if who.pool, err = s.coord.callerPool(ctx, pid); err != nil {
			// Not kept: the lookup may work next time. Who it is
			// is known, which is all that reads need.
			return sender{uid: who.uid, known: who.known, denied: godbus.NewError(errDenied, []any{"corrald cannot tell whether the caller is a worker of a pool, so it refuses the message: " + err.Error()})}
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
		return nil, godbus.NewError(errDenied, []any{"cannot identify the caller: " + err.Error()})
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
	return godbus.NewError(errDenied, []any{"only root and members of the " + Group + " group may change pools"})
}

func corralGID() (uint32, bool) {
	g, err := user.LookupGroup(Group)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), err == nil
}

func busError(err error) *godbus.Error {
	if err == nil {
		return nil
	}
	name := errFailed
	switch {
	case errors.Is(err, ErrNoPool):
		name = errNoPool
	case errors.Is(err, ErrNoInstance):
		name = errNoInstance
	case errors.Is(err, ErrBadSpec):
		name = errBadSpec
	case errors.Is(err, ErrDenied):
		name = errDenied
	case errors.Is(err, ErrReload):
		name = errReload
	case errors.Is(err, ErrInvalidConfig):
		name = errInvalid
	case errors.Is(err, message.ErrTooLarge), errors.Is(err, message.ErrNotText), errors.Is(err, message.ErrEmpty):
		name = errBadMessage
	case errors.Is(err, ErrNoMessages):
		name = errNoMessages
	}
	return godbus.NewError(name, []any{err.Error()})
}

const introspectIface = `<interface name="` + Interface + `">
  <method name="ListPools"><arg name="pools" type="a(ssuussas)" direction="out"/></method>
  <method name="ListInstances"><arg name="pool" type="s" direction="in"/><arg name="instances" type="a(sussssututtsb)" direction="out"/></method>
  <method name="Scale"><arg name="pool" type="s" direction="in"/><arg name="spec" type="s" direction="in"/><arg name="count" type="u" direction="out"/></method>
  <method name="Start"><arg name="target" type="s" direction="in"/></method>
  <method name="Stop"><arg name="target" type="s" direction="in"/></method>
  <method name="Restart"><arg name="target" type="s" direction="in"/></method>
  <method name="Reload"><arg name="pool" type="s" direction="in"/></method>
  <method name="Apply"><arg name="changes" type="a(sss)" direction="out"/></method>
  <method name="Broadcast"><arg name="pool" type="s" direction="in"/><arg name="message" type="s" direction="in"/><arg name="wait_usec" type="t" direction="in"/><arg name="results" type="a(susss)" direction="out"/></method>
  <method name="Send"><arg name="instance" type="s" direction="in"/><arg name="message" type="s" direction="in"/><arg name="wait_usec" type="t" direction="in"/><arg name="results" type="a(susss)" direction="out"/></method>
  <signal name="InstanceChanged"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="phase" type="s"/></signal>
  <signal name="CrashLoop"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="reason" type="s"/></signal>
  <signal name="ReloadProgress"><arg name="pool" type="s"/><arg name="index" type="u"/><arg name="phase" type="s"/><arg name="took_usec" type="t"/><arg name="error" type="s"/><arg name="done" type="u"/><arg name="total" type="u"/></signal>
</interface>`

// ErrNameTaken is returned by Export when another process owns BusName.
var ErrNameTaken = errors.New("the bus name " + BusName + " is owned by another process (is corrald already running?)")

// Export serves api on conn as BusName at ObjectPath, and forwards the
// coordinator's events as signals until ctx is done.
func Export(ctx context.Context, conn *godbus.Conn, c *Coordinator) error {
	s := &server{conn: conn, api: c, coord: c, group: corralGID,
		slowed:       make(chan struct{}, maxSlowed),
		poolList:     snapshots[[]poolWire]{ttl: snapshotTTL, max: 1},
		instanceList: snapshots[[]instanceWire]{ttl: snapshotTTL, max: 256}}
	if err := conn.Export(s, ObjectPath, Interface); err != nil {
		return fmt.Errorf("pool: export: %w", err)
	}
	xml := introspect.IntrospectDeclarationString + "<node>" + introspectIface + introspect.IntrospectDataString + "</node>"
	if err := conn.Export(introspect.Introspectable(xml), ObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("pool: export introspection: %w", err)
	}
	reply, err := conn.RequestName(BusName, godbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("pool: request %s: %w", BusName, err)
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
					conn.Emit(ObjectPath, Interface+".CrashLoop", e.Pool, uint32(e.Index), e.Reason)
				} else {
					conn.Emit(ObjectPath, Interface+".InstanceChanged", e.Pool, uint32(e.Index), string(e.Phase))
				}
			}
		}
	}()
	return nil
}

// Client is API over D-Bus, for the corral command.
type Client struct {
	conn *godbus.Conn
	obj  godbus.BusObject
}

// Dial connects to corrald on the system bus. The connection is private to
// the Client; Close it.
func Dial(ctx context.Context) (*Client, error) {
	conn, err := godbus.ConnectSystemBus(godbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: cannot reach the system bus: %v", ErrNotRunning, err)
	}
	return &Client{conn: conn, obj: conn.Object(BusName, ObjectPath)}, nil
}

// Close closes the client's connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context, method string, out any, args ...any) error {
	call := c.obj.CallWithContext(ctx, Interface+"."+method, 0, args...)
	if call.Err != nil {
		return clientError(call.Err)
	}
	if out == nil {
		return nil
	}
	return storeReply(method, call.Body, out)
}

// storeReply stores the body of method's reply in out, a pointer. A body of
// another shape comes from a corrald of another version: after an upgrade
// that could not restart it, for one.
func storeReply(method string, body []any, out any) error {
	if err := godbus.Store(body, out); err != nil {
		return fmt.Errorf("corrald's answer to %s is not the %s this corral expects: corrald runs another version of corral; restart it with 'sudo systemctl restart corral'",
			method, godbus.SignatureOfType(reflect.TypeOf(out).Elem()))
	}
	return nil
}

func clientError(err error) error {
	var e godbus.Error
	if !errors.As(err, &e) {
		var pe *godbus.Error
		if !errors.As(err, &pe) {
			return err
		}
		e = *pe
	}
	msg := e.Error()
	sentinel := ErrJobFailed
	switch e.Name {
	case errNoPool:
		sentinel = ErrNoPool
	case errNoInstance:
		sentinel = ErrNoInstance
	case errBadSpec:
		sentinel = ErrBadSpec
	case errReload:
		sentinel = ErrReload
	case errInvalid:
		sentinel = ErrInvalidConfig
	case errBadMessage:
		sentinel = ErrBadMessage
	case errNoMessages:
		sentinel = ErrNoMessages
	case errOtherPool:
		sentinel = ErrOtherPool
	case errDenied, "org.freedesktop.DBus.Error.AccessDenied":
		sentinel = ErrDenied
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		sentinel = ErrNotRunning
	}
	return &remoteError{sentinel, msg}
}

// remoteError is an error corrald returned: its message is corrald's, and
// errors.Is finds the sentinel it stands for.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// ListPools implements API.
func (c *Client) ListPools(ctx context.Context) ([]PoolInfo, error) {
	var ws []poolWire
	if err := c.call(ctx, "ListPools", &ws); err != nil {
		return nil, err
	}
	out := make([]PoolInfo, len(ws))
	for i, w := range ws {
		out[i] = PoolInfo(w)
	}
	return out, nil
}

// ListInstances implements API.
func (c *Client) ListInstances(ctx context.Context, pool string) ([]InstanceInfo, error) {
	var ws []instanceWire
	if err := c.call(ctx, "ListInstances", &ws, pool); err != nil {
		return nil, err
	}
	out := make([]InstanceInfo, len(ws))
	for i, w := range ws {
		out[i] = InstanceInfo{w.Pool, w.Index, w.Unit, w.Phase, w.ActiveState, w.Sub, w.PID, w.SinceUSec,
			w.Restarts, w.MemoryBytes, w.CPUNSec, w.Reason, w.Messages}
	}
	return out, nil
}

// Scale implements API.
func (c *Client) Scale(ctx context.Context, pool, spec string) (uint32, error) {
	var n uint32
	err := c.call(ctx, "Scale", &n, pool, spec)
	return n, err
}

// Start implements API.
func (c *Client) Start(ctx context.Context, target string) error {
	return c.call(ctx, "Start", nil, target)
}

// Stop implements API.
func (c *Client) Stop(ctx context.Context, target string) error {
	return c.call(ctx, "Stop", nil, target)
}

// Restart implements API.
func (c *Client) Restart(ctx context.Context, target string) error {
	return c.call(ctx, "Restart", nil, target)
}

// Broadcast implements API.
func (c *Client) Broadcast(ctx context.Context, pool, text string, wait time.Duration) ([]MessageResult, error) {
	return c.message(ctx, "Broadcast", pool, text, wait)
}

// Send implements API.
func (c *Client) Send(ctx context.Context, target, text string, wait time.Duration) ([]MessageResult, error) {
	return c.message(ctx, "Send", target, text, wait)
}

func (c *Client) message(ctx context.Context, method, to, text string, wait time.Duration) ([]MessageResult, error) {
	var ws []messageWire
	if err := c.call(ctx, method, &ws, to, text, uint64(max(wait, 0)/time.Microsecond)); err != nil {
		return nil, err
	}
	out := make([]MessageResult, len(ws))
	for i, w := range ws {
		out[i] = MessageResult{Pool: w.Pool, Index: int(w.Index), Status: relay.Status(w.Status), Reply: w.Reply, Detail: w.Detail}
	}
	return out, nil
}

// Reload asks corrald for a rolling reload of pool and calls progress for
// each step it reports (ReloadProgress signals), until the reload is over.
func (c *Client) Reload(ctx context.Context, pool string, progress func(ReloadStep)) error {
	match := []godbus.MatchOption{godbus.WithMatchSender(BusName), godbus.WithMatchInterface(Interface), godbus.WithMatchMember("ReloadProgress")}
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return clientError(err)
	}
	defer c.conn.RemoveMatchSignal(match...)
	ch := make(chan *godbus.Signal, 256)
	c.conn.Signal(ch)
	defer c.conn.RemoveSignal(ch)
	done := make(chan error, 1)
	go func() { done <- c.call(ctx, "Reload", nil, pool) }()
	report := func(sig *godbus.Signal) {
		if progress == nil || len(sig.Body) != 7 {
			return
		}
		p, _ := sig.Body[0].(string)
		if p != pool {
			return
		}
		i, _ := sig.Body[1].(uint32)
		ph, _ := sig.Body[2].(string)
		us, _ := sig.Body[3].(uint64)
		msg, _ := sig.Body[4].(string)
		n, _ := sig.Body[5].(uint32)
		total, _ := sig.Body[6].(uint32)
		progress(ReloadStep{Pool: p, Index: int(i), Phase: ph, Took: time.Duration(us) * time.Microsecond, Err: msg, Done: int(n), Total: int(total)})
	}
	for {
		select {
		case sig := <-ch:
			report(sig)
		case err := <-done:
			// Signals sent before the reply are queued before it.
			for {
				select {
				case sig := <-ch:
					report(sig)
				default:
					return err
				}
			}
		}
	}
}

// Apply asks corrald to make the pool files in effect and returns its
// report; a pool that failed has Action "failed".
func (c *Client) Apply(ctx context.Context) ([]Change, error) {
	var ws []changeWire
	if err := c.call(ctx, "Apply", &ws); err != nil {
		return nil, err
	}
	out := make([]Change, len(ws))
	for i, w := range ws {
		out[i] = Change(w)
	}
	return out, nil
}
