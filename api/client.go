package api

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// MessageWire is a MessageResult as it travels: the field order is its
// D-Bus signature, (susss).
type MessageWire struct {
	Pool                  string
	Index                 uint32
	Status, Reply, Detail string
}

// Wire returns r as it travels.
func (r MessageResult) Wire() MessageWire {
	return MessageWire{r.Pool, uint32(r.Index), string(r.Status), r.Reply, r.Detail}
}

// Result returns w as callers see it.
func (w MessageWire) Result() MessageResult {
	return MessageResult{Pool: w.Pool, Index: int(w.Index), Status: Status(w.Status), Reply: w.Reply, Detail: w.Detail}
}

// ReloadProgress is the name of the signal that reports a ReloadStep.
const ReloadProgress = "ReloadProgress"

// ReloadStepBody is st as the body of a ReloadProgress signal,
// (sustsuu).
func ReloadStepBody(st ReloadStep) []any {
	return []any{st.Pool, uint32(st.Index), st.Phase, uint64(st.Took.Microseconds()), st.Err, uint32(st.Done), uint32(st.Total)}
}

// reloadStep reads the body of a ReloadProgress signal.
func reloadStep(body []any) (ReloadStep, bool) {
	var w struct {
		Pool  string
		Index uint32
		Phase string
		USec  uint64
		Err   string
		Done  uint32
		Total uint32
	}
	if godbus.Store(body, &w.Pool, &w.Index, &w.Phase, &w.USec, &w.Err, &w.Done, &w.Total) != nil {
		return ReloadStep{}, false
	}
	return ReloadStep{Pool: w.Pool, Index: int(w.Index), Phase: w.Phase, Took: time.Duration(w.USec) * time.Microsecond,
		Err: w.Err, Done: int(w.Done), Total: int(w.Total)}, true
}

// DeployProgress is the name of the signal that reports a DeployStep.
const DeployProgress = "DeployProgress"

// DeployStepBody is st as the body of a DeployProgress signal,
// (sussstsuu).
func DeployStepBody(st DeployStep) []any {
	return []any{st.Pool, uint32(st.Index), st.Phase, st.Release, uint64(st.Took.Microseconds()), st.Err, uint32(st.Done), uint32(st.Total)}
}

// deployStep reads the body of a DeployProgress signal.
func deployStep(body []any) (DeployStep, bool) {
	var w struct {
		Pool    string
		Index   uint32
		Phase   string
		Release string
		USec    uint64
		Err     string
		Done    uint32
		Total   uint32
	}
	if godbus.Store(body, &w.Pool, &w.Index, &w.Phase, &w.Release, &w.USec, &w.Err, &w.Done, &w.Total) != nil {
		return DeployStep{}, false
	}
	return DeployStep{Pool: w.Pool, Index: int(w.Index), Phase: w.Phase, Release: w.Release, Took: time.Duration(w.USec) * time.Microsecond,
		Err: w.Err, Done: int(w.Done), Total: int(w.Total)}, true
}

// Client is API over D-Bus.
type Client struct {
	conn *godbus.Conn
	obj  godbus.BusObject
}

var _ API = (*Client)(nil)

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

// storeReply stores the body of method's reply in out, pointers, one per
// out-arg. A body of another shape comes from a corrald of another
// version: after an upgrade that could not restart it, for one.
func storeReply(method string, body []any, out ...any) error {
	if err := godbus.Store(body, out...); err != nil {
		var sig strings.Builder
		for _, o := range out {
			sig.WriteString(godbus.SignatureOfType(reflect.TypeOf(o).Elem()).String())
		}
		return fmt.Errorf("corrald's answer to %s is not the %s this corral expects: corrald runs another version of corral; restart it with 'sudo systemctl restart corral'",
			method, sig.String())
	}
	return nil
}

// clientError turns a D-Bus error into the API's; other errors (the bus
// connection broke, ctx ended) stay as they are.
func clientError(err error) error {
	var e godbus.Error
	if !errors.As(err, &e) {
		var pe *godbus.Error
		if !errors.As(err, &pe) {
			return err
		}
		e = *pe
	}
	return FromErrorName(e.Name, e.Error())
}

// ListPools implements API.
func (c *Client) ListPools(ctx context.Context) ([]PoolInfo, error) {
	var out []PoolInfo
	if err := c.call(ctx, "ListPools", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListInstances implements API.
func (c *Client) ListInstances(ctx context.Context, pool string) ([]InstanceInfo, error) {
	var out []InstanceInfo
	if err := c.call(ctx, "ListInstances", &out, pool); err != nil {
		return nil, err
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
	var ws []MessageWire
	if err := c.call(ctx, method, &ws, to, text, uint64(max(wait, 0)/time.Microsecond)); err != nil {
		return nil, err
	}
	out := make([]MessageResult, len(ws))
	for i, w := range ws {
		out[i] = w.Result()
	}
	return out, nil
}

// Drain implements API.
func (c *Client) Drain(ctx context.Context, pool string, timeout time.Duration) (DrainReport, error) {
	var (
		left          int32
		waited        uint64
		watched, told bool
	)
	call := c.conn.Object(BusName, ObjectPath).CallWithContext(ctx, Interface+".Drain", 0, pool, uint64(max(timeout, 0)/time.Microsecond))
	if call.Err != nil {
		return DrainReport{}, clientError(call.Err)
	}
	if err := call.Store(&left, &waited, &watched, &told); err != nil {
		return DrainReport{}, err
	}
	return DrainReport{Pool: pool, Left: int(left), Waited: time.Duration(waited) * time.Microsecond, Watched: watched, Told: told}, nil
}

// Cordon implements API.
func (c *Client) Cordon(ctx context.Context, target string) error {
	return c.call(ctx, "Cordon", nil, target)
}

// Uncordon implements API.
func (c *Client) Uncordon(ctx context.Context, target string) error {
	return c.call(ctx, "Uncordon", nil, target)
}

// Undrain implements API.
func (c *Client) Undrain(ctx context.Context, pool string) error {
	return c.call(ctx, "Undrain", nil, pool)
}

// Reload asks corrald for a rolling reload of pool and calls progress for
// each step it reports (ReloadProgress signals), until the reload is over.
func (c *Client) Reload(ctx context.Context, pool string, progress func(ReloadStep)) error {
	return c.withSignals(ctx, ReloadProgress, func() error { return c.call(ctx, "Reload", nil, pool) }, func(body []any) {
		if st, ok := reloadStep(body); ok && progress != nil && st.Pool == pool {
			progress(st)
		}
	})
}

// Deploy implements API. The report travels as the reply's out-args; a
// deploy that was rolled back is a reply with rolled_back (D-Bus carries a
// reply or an error, never both), which Deploy returns with an error
// wrapping ErrRolledBack. progress gets each DeployProgress signal.
func (c *Client) Deploy(ctx context.Context, pool, dir string, progress func(DeployStep)) (DeployReport, error) {
	return c.deploy(ctx, pool, progress, "Deploy", pool, dir)
}

// Rollback implements API, as Deploy.
func (c *Client) Rollback(ctx context.Context, pool string, progress func(DeployStep)) (DeployReport, error) {
	return c.deploy(ctx, pool, progress, "Rollback", pool)
}

func (c *Client) deploy(ctx context.Context, pool string, progress func(DeployStep), method string, args ...any) (DeployReport, error) {
	rep := DeployReport{Pool: pool}
	err := c.withSignals(ctx, DeployProgress, func() error {
		call := c.obj.CallWithContext(ctx, Interface+"."+method, 0, args...)
		if call.Err != nil {
			return clientError(call.Err)
		}
		var err error
		rep, err = deployReport(method, pool, call.Body)
		return err
	}, func(body []any) {
		if st, ok := deployStep(body); ok && progress != nil && st.Pool == pool {
			progress(st)
		}
	})
	return rep, err
}

// deployReport reads the reply of Deploy or Rollback (method) of pool,
// (ssbuss): from, to, rolled_back, instance, reason, log. A report that
// says rolled_back comes with an error wrapping ErrRolledBack.
func deployReport(method, pool string, body []any) (DeployReport, error) {
	var w struct {
		From, To    string
		RolledBack  bool
		Instance    uint32
		Reason, Log string
	}
	if err := storeReply(method, body, &w.From, &w.To, &w.RolledBack, &w.Instance, &w.Reason, &w.Log); err != nil {
		return DeployReport{Pool: pool}, err
	}
	rep := DeployReport{Pool: pool, From: w.From, To: w.To, RolledBack: w.RolledBack, Instance: int(w.Instance), Reason: w.Reason, Log: w.Log}
	if rep.RolledBack {
		return rep, rolledBack(rep)
	}
	return rep, nil
}

// rolledBack is the error of a deploy whose report says it rolled back.
func rolledBack(rep DeployReport) error {
	where := rep.Pool
	if rep.Instance > 0 {
		where = InstanceTarget(rep.Pool, rep.Instance)
	}
	log := ""
	if rep.Log != "" {
		log = "; log: " + rep.Log
	}
	return fmt.Errorf("%w: %s: %s; the pool runs %s again%s", ErrRolledBack, where, rep.Reason, rep.From, log)
}

// withSignals runs call while it passes the body of each signal member
// of corrald's to report, in order, those sent before call's reply
// included.
func (c *Client) withSignals(ctx context.Context, member string, call func() error, report func(body []any)) error {
	match := []godbus.MatchOption{godbus.WithMatchSender(BusName), godbus.WithMatchInterface(Interface), godbus.WithMatchMember(member)}
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return clientError(err)
	}
	defer c.conn.RemoveMatchSignal(match...)
	ch := make(chan *godbus.Signal, 256)
	c.conn.Signal(ch)
	defer c.conn.RemoveSignal(ch)
	done := make(chan error, 1)
	go func() { done <- call() }()
	for {
		select {
		case sig := <-ch:
			report(sig.Body)
		case err := <-done:
			// Signals sent before the reply are queued before it.
			for {
				select {
				case sig := <-ch:
					report(sig.Body)
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
	var out []Change
	if err := c.call(ctx, "Apply", &out); err != nil {
		return nil, err
	}
	return out, nil
}
