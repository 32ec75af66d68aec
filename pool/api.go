package pool

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The D-Bus names of corrald's API. See docs/corrald.md.
const (
	BusName    = "org.corral.Corral1"
	ObjectPath = "/org/corral/Corral1"
	Interface  = "org.corral.Corral1.Manager"
)

// PoolInfo is one pool as `corral list` shows it.
type PoolInfo struct {
	Name    string // pool name
	State   string // "running", "degraded", "crash-loop", "socket-failed", "stopped"
	Desired uint32 // instances wanted
	Running uint32 // instances active
	Balance string // "reuseport" or "shared"
	File    string // the pool file
	Listen  []string
}

// InstanceInfo is one instance as `corral list` and `corral status` show it.
type InstanceInfo struct {
	Pool        string
	Index       uint32
	Unit        string // "app@3.service"
	Phase       string // a Phase
	ActiveState string
	SubState    string
	PID         uint32
	SinceUSec   uint64 // when it last became active, microseconds since the epoch; 0 if never
	Restarts    uint32 // systemd's NRestarts plus corrald's restarts
	MemoryBytes uint64 // Unknown when not accounted
	CPUNSec     uint64 // Unknown when not accounted
	Reason      string // why it is in this phase, e.g. "exit-code 1; next try in 4s"
	Messages    bool   // its worker is connected to corrald for messages (see relay)
}

// Since returns SinceUSec as a time (zero if never active).
func (i InstanceInfo) Since() time.Time {
	if i.SinceUSec == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(i.SinceUSec))
}

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
}

// Errors callers branch on; over D-Bus they travel as the error names in
// docs/corrald.md and Client maps them back.
var (
	ErrNoPool     = errors.New("no such pool")
	ErrNoInstance = errors.New("no such instance")
	ErrBadSpec    = errors.New("bad scale")
	ErrDenied     = errors.New("permission denied")
	ErrNotRunning = errors.New("corrald is not running")
	ErrBadMessage = errors.New("bad message")
	// ErrOtherPool is a worker messaging another pool's workers; it is
	// also ErrDenied.
	ErrOtherPool = fmt.Errorf("%w: a worker may message only its own pool", ErrDenied)
)
