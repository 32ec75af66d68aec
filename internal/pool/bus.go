package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/corral-pool/corral/api"
)

// server is the exported object: it checks the caller (callers), then
// forwards the call to the part of corrald that owns it.
type server struct {
	conn    *godbus.Conn
	parts   Parts
	callers *callers

	// The answers to the calls open to every local user, kept a moment.
	poolList     snapshots[[]api.PoolInfo]
	instanceList snapshots[[]api.InstanceInfo]
}

// changed forgets the kept answers after a call that changes pools.
func (s *server) changed() {
	s.poolList.clear()
	s.instanceList.clear()
}

const callTimeout = 5 * time.Minute // bounds the calls that change pools, but Reload, Deploy, Rollback and Drain

func (s *server) ListPools(from godbus.Sender) ([]api.PoolInfo, *godbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e := s.callers.read(ctx, from); e != nil {
		return nil, e
	}
	out, err := s.poolList.get(ctx, "", s.parts.Status.ListPools)
	return out, busError(err)
}

func (s *server) ListInstances(from godbus.Sender, pool string) ([]api.InstanceInfo, *godbus.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e := s.callers.read(ctx, from); e != nil {
		return nil, e
	}
	out, err := s.instanceList.get(ctx, pool, func(ctx context.Context) ([]api.InstanceInfo, error) {
		return s.parts.Status.ListInstances(ctx, pool)
	})
	return out, busError(err)
}

func (s *server) Scale(sender godbus.Sender, pool, spec string) (uint32, *godbus.Error) {
	if e := s.callers.change(sender); e != nil {
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
	if e := s.callers.change(sender); e != nil {
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

// Deploy and Rollback reply with the report as out-args, (ssbuss): from,
// to, rolled_back, instance, reason, log (deployReply).
func (s *server) Deploy(sender godbus.Sender, pool, dir string) (from, to string, rolledBack bool, instance uint32, reason, log string, _ *godbus.Error) {
	if e := s.callers.change(sender); e != nil {
		return "", "", false, 0, "", "", e
	}
	return deployReply(s.deploy(func(ctx context.Context) (api.DeployReport, error) {
		return s.parts.Deployer.Deploy(ctx, pool, dir, s.deployProgress)
	}))
}

func (s *server) Rollback(sender godbus.Sender, pool string) (from, to string, rolledBack bool, instance uint32, reason, log string, _ *godbus.Error) {
	if e := s.callers.change(sender); e != nil {
		return "", "", false, 0, "", "", e
	}
	return deployReply(s.deploy(func(ctx context.Context) (api.DeployReport, error) {
		return s.parts.Deployer.Rollback(ctx, pool, s.deployProgress)
	}))
}

// deployProgress sends a step of a deploy as a DeployProgress signal.
func (s *server) deployProgress(st api.DeployStep) {
	s.conn.Emit(api.ObjectPath, api.Interface+"."+api.DeployProgress, api.DeployStepBody(st)...)
}

// deploy runs a deploy or a rollback for a caller of Deploy or Rollback.
// Like reload, it has no call timeout: the canary's hold and one restart
// after another take longer than callTimeout on a large pool, and a
// deadline would cut it between two releases. Each restart is bounded by
// the coordinator's JobTimeout. A caller that goes away does not stop it.
func (s *server) deploy(run func(context.Context) (api.DeployReport, error)) (api.DeployReport, error) {
	defer s.changed()
	return run(context.Background())
}

// deployReply is a deploy's report as Deploy and Rollback reply with it.
// A deploy that was rolled back is a reply with rolled_back, not an
// error: D-Bus carries a reply or an error, never both, and the report is
// what the caller needs (api.Client turns it back into an error wrapping
// api.ErrRolledBack). Any other error travels as a D-Bus error.
func deployReply(rep api.DeployReport, err error) (from, to string, rolledBack bool, instance uint32, reason, log string, _ *godbus.Error) {
	if err != nil && !(rep.RolledBack && errors.Is(err, api.ErrRolledBack)) {
		return "", "", false, 0, "", "", busError(err)
	}
	return rep.From, rep.To, rep.RolledBack, uint32(rep.Instance), rep.Reason, rep.Log, nil
}

func (s *server) Apply(sender godbus.Sender) ([]api.Change, *godbus.Error) {
	if e := s.callers.change(sender); e != nil {
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

func (s *server) Drain(sender godbus.Sender, pool string, timeoutUSec uint64) (int32, uint64, bool, bool, *godbus.Error) {
	if e := s.callers.change(sender); e != nil {
		return 0, 0, false, false, e
	}
	timeout := time.Duration(min(timeoutUSec, uint64(api.MaxDrainWait/time.Microsecond)+1)) * time.Microsecond
	// No call timeout but the drain's own, as Reload: a caller that goes
	// away leaves the pool drained, as it asked.
	defer s.changed()
	r, err := s.parts.Drainer.Drain(context.Background(), pool, timeout)
	if err != nil {
		return 0, 0, false, false, busError(err)
	}
	return int32(r.Left), uint64(r.Waited / time.Microsecond), r.Watched, r.Told, nil
}

func (s *server) Undrain(sender godbus.Sender, pool string) *godbus.Error {
	return s.act(sender, pool, s.parts.Drainer.Undrain)
}

func (s *server) Cordon(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.parts.Steerer.Cordon)
}

func (s *server) Uncordon(sender godbus.Sender, target string) *godbus.Error {
	return s.act(sender, target, s.parts.Steerer.Uncordon)
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
	if e := s.callers.message(ctx, from, pool); e != nil {
		return nil, e
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
	if e := s.callers.change(sender); e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err := f(ctx, target)
	s.changed()
	return busError(err)
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
	s := &server{conn: conn, parts: parts,
		callers:      &callers{conn: conn, workers: parts.Workers, group: corralGID, slowed: make(chan struct{}, maxSlowed)},
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
