// Package api is corrald's API as its clients see it: the D-Bus names, the
// types that travel, the errors callers branch on, the rules for pool names,
// targets and scale specs, and Client, which calls corrald over the system
// bus. The corral command is built on it, and so can any Go program that
// scripts corral; it links nothing of corrald itself. docs/corrald.md
// describes the same API for other languages.
package api

import (
	"context"
	"time"
)

// The D-Bus names of corrald's API. See docs/corrald.md.
const (
	BusName    = "org.corral.Corral1"
	ObjectPath = "/org/corral/Corral1"
	Interface  = "org.corral.Corral1.Manager"
)

// Group is the group whose members may change pools besides root.
const Group = "corral"

// Unknown marks a counter systemd could not give (MemoryBytes, CPUNSec),
// as systemd's own "[not set]".
const Unknown = ^uint64(0)

// MaxWait is the longest Broadcast and Send wait for replies.
const MaxWait = 5 * time.Minute

// The field order of PoolInfo, InstanceInfo and Change is their D-Bus
// signature (docs/corrald.md); TestIntrospection holds them to it.

// PoolInfo is one pool as `corral list` shows it.
type PoolInfo struct {
	Name    string // pool name
	State   string // "running", "degraded", "crash-loop", "socket-failed", "not-accepting", "stopped"
	Desired uint32 // instances wanted
	Running uint32 // instances active
	Balance string // "reuseport", "sticky" or "shared"
	File    string // the pool file
	Listen  []string
	Drained bool // the operator drained it (corral drain): the HAProxy agent answers "drain"
	// Capacity is the count the pool file asks for (instances, or one per
	// CPU; less its spares, with steering): the HAProxy agent's 100%, so
	// that corral scale moves a host's share of the traffic with its
	// instances, and a spare that stands in keeps it.
	Capacity uint32
	// Steering is how new connections are steered to the instances: "on"
	// (a program in the kernel), "off: REASON" where BPF is not available,
	// "disabled" (steering = false), or "" with one socket for all.
	Steering string
}

// InstanceInfo is one instance as `corral list` and `corral status` show it.
type InstanceInfo struct {
	Pool        string
	Index       uint32
	Unit        string // "app@3.service"
	Phase       string // "running", "starting", "backoff", "crash-loop", "held", …
	ActiveState string
	SubState    string
	PID         uint32
	SinceUSec   uint64 // when it last became active, microseconds since the epoch; 0 if never
	Restarts    uint32 // systemd's NRestarts plus corrald's restarts
	MemoryBytes uint64 // Unknown when not accounted
	CPUNSec     uint64 // Unknown when not accounted
	Reason      string // why it is in this phase, e.g. "exit-code 1; next try in 4s"
	Messages    bool   // its worker is connected to corrald for messages
	Queued      uint32 // not-accepting: connections waiting in its socket's queue
	Cordoned    bool   // the operator cordoned it (corral cordon): no new connections
	// Spare: one of the pool's spares (spares =), started but out of
	// rotation; StandsFor is the instance whose place in rotation it has
	// taken, 0 none.
	Spare     bool
	StandsFor uint32
	// Release is the release it runs: the directory its pool's release
	// link pointed at when its process started (docs/deploy.md); "" when
	// the pool has no release link or it does not run.
	Release string
}

// Since returns SinceUSec as a time (zero if never active).
func (i InstanceInfo) Since() time.Time {
	if i.SinceUSec == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(i.SinceUSec))
}

// Phase is corrald's summary of an instance (InstanceInfo.Phase); a
// pool's State uses the same words where they apply ("crash-loop").
type Phase string

const (
	PhaseRunning   Phase = "running"    // active
	PhaseStarting  Phase = "starting"   // activating, or restarting under systemd's own policy
	PhaseStopping  Phase = "stopping"   // deactivating
	PhaseStopped   Phase = "stopped"    // inactive; wanted or not
	PhaseHeld      Phase = "held"       // stopped by the operator on purpose
	PhaseBackoff   Phase = "backoff"    // failed; corrald restarts it when its delay is over
	PhaseCrashLoop Phase = "crash-loop" // failed too often in the window; backing off longer
	PhaseSurplus   Phase = "surplus"    // above the desired count, being stopped
	// PhaseNotAccepting: it runs, but connections wait in its socket's
	// queue and it has taken none for seconds (it likely listens on a port
	// of its own).
	PhaseNotAccepting Phase = "not-accepting"
)

// MaxDrainWait is the longest Drain waits for a pool's connections to end.
const MaxDrainWait = time.Hour

// DrainReport is what Drain found: how many connections to the pool were
// still established when it stopped waiting (0: all ended), how long it
// waited, and whether a balancer heard of it.
type DrainReport struct {
	Pool   string
	Left   int // -1 when they could not be counted
	Waited time.Duration
	// Watched: a balancer asked corrald's agent for the pool in the minute
	// before the drain; Told: one heard "drain" since. A watched pool's
	// drain ends at 0 connections only once Told.
	Watched, Told bool
}

// Change is one line of Apply's report.
type Change struct {
	Pool   string
	Action string // "added", "removed", "reloaded", "scaled", "unchanged", "socket changed", "failed"
	Detail string
}

// ReloadStep is one step of a rolling reload, for progress reports.
type ReloadStep struct {
	Pool  string
	Index int
	Phase string        // "restarting", "ready" or "failed"
	Took  time.Duration // with "ready" and "failed": since its restart began
	Err   string        // with "failed"
	Done  int           // instances ready so far
	Total int
}

// DeployStep is one step of a deploy or a rollback, for progress reports.
type DeployStep struct {
	Pool  string
	Index int // the instance; 0 for a step of the whole pool
	// Phase is "switched", "restarting", "ready", "canary", "healthy",
	// "failed", "rolling back", "rolled back"; after a deploy that passed,
	// "removed" for each old release beyond keep_releases that it removed,
	// "kept" for one it did not remove (Err says why).
	Phase   string
	Release string // the release the step is about
	Took    time.Duration
	Err     string // with "failed", "rolling back" and "kept": why
	Done    int    // instances on the new release so far
	Total   int
}

// DeployReport is what a deploy or a rollback did.
type DeployReport struct {
	Pool     string
	From, To string // the release link's target before, and the one asked for
	// RolledBack: the gate failed, the link points at From again and
	// every instance that had started on To was restarted onto From.
	RolledBack bool
	// Instance, Reason and Log say where the gate failed: the instance
	// (0: none, or the whole pool), why, and the command that shows its
	// log.
	Instance int
	Reason   string
	Log      string
}

// Status is the outcome of a message for one instance.
type Status string

const (
	// Replied: the worker answered with a reply.
	Replied Status = "replied"
	// Failed: the worker answered with an error.
	Failed Status = "error"
	// Delivered: the message is in the worker's socket buffer; no reply
	// was asked for.
	Delivered Status = "delivered"
	// NoReply: delivered, but no answer came in time, or the worker went
	// away before answering.
	NoReply Status = "no-reply"
	// NotDelivered: the message did not reach the instance; Detail says
	// why.
	NotDelivered Status = "not-delivered"
)

// OK reports whether s is what the operator asked for: a reply, or
// delivery when no reply was asked for.
func (s Status) OK() bool { return s == Replied || s == Delivered }

// MessageResult is what became of a message for one instance.
type MessageResult struct {
	Pool   string
	Index  int
	Status Status
	Reply  string // the reply, or the worker's error (Failed)
	Detail string // why not delivered or not answered
}

// Instance returns "POOL@I".
func (r MessageResult) Instance() string { return InstanceTarget(r.Pool, r.Index) }

// API is what corrald offers its clients; Client implements it over D-Bus.
// Every method takes ctx first and is safe for concurrent use.
type API interface {
	// ListPools returns every pool corrald manages, sorted by name.
	ListPools(ctx context.Context) ([]PoolInfo, error)
	// ListInstances returns the instances of pool, sorted by index.
	ListInstances(ctx context.Context, pool string) ([]InstanceInfo, error)
	// Scale sets a pool's desired count from spec: "N", "+N", "-N" or
	// "auto", and returns the new count.
	Scale(ctx context.Context, pool, spec string) (uint32, error)
	// Start, Stop and Restart act on "POOL" (every instance, and the pool's
	// held/stopped marks) or "POOL@I" (one instance).
	Start(ctx context.Context, target string) error
	Stop(ctx context.Context, target string) error
	Restart(ctx context.Context, target string) error
	// Reload restarts a pool's instances onto the current binaries and
	// units, max_unavailable at a time, each ready before the next; it
	// stops at the first that fails (ErrReload). progress may be nil.
	Reload(ctx context.Context, pool string, progress func(ReloadStep)) error
	// Deploy points pool's release link at dir and rolls the pool onto it:
	// a canary first, held for the pool's canary period, then the rest,
	// each gated (docs/deploy.md). When the gate fails, corrald rolls the
	// pool back and the error wraps ErrRolledBack; the report says where
	// and why. progress may be nil.
	Deploy(ctx context.Context, pool, dir string, progress func(DeployStep)) (DeployReport, error)
	// Rollback deploys the release before the current one, the same way.
	Rollback(ctx context.Context, pool string, progress func(DeployStep)) (DeployReport, error)
	// Apply validates every pool file, reloads systemd's units and
	// reconciles each pool (docs/corrald.md); an invalid file changes
	// nothing (ErrInvalidConfig).
	Apply(ctx context.Context) ([]Change, error)
	// Broadcast delivers text to every running instance of pool, Send to
	// one, "POOL@I" (docs/messages.md); with wait > 0 they wait up to wait
	// for the replies. There is one result per instance addressed: replied,
	// delivered, or not, and why.
	Broadcast(ctx context.Context, pool, text string, wait time.Duration) ([]MessageResult, error)
	Send(ctx context.Context, target, text string, wait time.Duration) ([]MessageResult, error)
	// Drain takes pool out of its balancers' rotation: the HAProxy agent
	// answers "drain" from now until Undrain, across restarts of corrald.
	// It then waits up to timeout (at most MaxDrainWait) until no
	// connection to the pool is established, and reports how many are left.
	Drain(ctx context.Context, pool string, timeout time.Duration) (DrainReport, error)
	// Undrain puts pool back in rotation.
	Undrain(ctx context.Context, pool string) error
	// Cordon keeps new connections from instance POOL@I (target) while it
	// keeps those it has, across restarts of corrald, until Uncordon. It
	// needs steering in the kernel (ErrNoSteering).
	Cordon(ctx context.Context, target string) error
	// Uncordon lets new connections reach a cordoned instance again.
	Uncordon(ctx context.Context, target string) error
}
