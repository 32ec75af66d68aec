package pool

import (
	"fmt"
	"strconv"
	"time"

	"github.com/corral-pool/corral/api"
)

// Unit is what the coordinator observed of one systemd unit.
type Unit struct {
	Name        string // e.g. "app@3.service"
	LoadState   string // "loaded", "not-found"…
	ActiveState string // "active", "activating", "deactivating", "inactive", "failed"
	SubState    string // "running", "auto-restart", "dead", "failed", "listening"…
	Result      string // "success", "exit-code", "signal", "core-dump", "start-limit-hit"…
	MainPID     uint32
	NRestarts   uint32
	// ActiveEnter is when the unit last became active; InactiveEnter when
	// it last became inactive or failed: a new InactiveEnter is a new
	// failure; InactiveExit when it last began to start. Zero when it
	// never did.
	ActiveEnter, InactiveEnter, InactiveExit time.Time
	MemoryCurrent                            uint64 // bytes, or Unknown
	CPUUsageNSec                             uint64 // nanoseconds, or Unknown
	// Exit is the cause of the last exit for humans ("exited with status 1",
	// "out of memory (memory_max = 100M)"), from the record ExecStopPost=
	// wrote (lastExits); "" when unknown or clean. Unlike Result, it
	// survives systemd's own restart of the unit.
	Exit string
	// ExitResult is the SERVICE_RESULT of that record ("exit-code",
	// "oom-kill", "hung"…); "" without one.
	ExitResult string
}

// Up reports whether the unit is up proper: active or reloading, not
// activating and not stopping.
func (u Unit) Up() bool { return u.ActiveState == "active" || u.ActiveState == "reloading" }

// Live reports whether the unit is up or coming up: Up, or activating.
// corrald counts a live instance as one it need not start.
func (u Unit) Live() bool { return u.Up() || u.ActiveState == "activating" }

// Failed reports whether systemd gave up on the unit.
func (u Unit) Failed() bool { return u.ActiveState == "failed" }

// Observed is the state of one pool's units as systemd reported it.
type Observed struct {
	Target    Unit         // NAME.target
	Sockets   map[int]Unit // reuseport: NAME@I.socket by I; shared: NAME.socket at index 0
	Instances map[int]Unit // NAME@I.service by I (1-based); only units systemd knows
}

// Desired is what the operator asked of a pool. It survives restarts of
// corrald and reboots (Store).
type Desired struct {
	// Count is the number of instances wanted, 1..api.MaxInstances.
	Count int `json:"count"`
	// Auto is true when Count follows the number of CPUs.
	Auto bool `json:"auto,omitempty"`
	// Scaled is true when Count was set by `corral scale` rather than taken
	// from the pool file.
	Scaled bool `json:"scaled,omitempty"`
	// Stopped is true when the operator stopped the whole pool: corrald
	// starts nothing of it until the operator starts it again.
	Stopped bool `json:"stopped,omitempty"`
	// StoppedAt is when the operator stopped the pool (with Stopped), zero
	// if unknown. When the pool's target became active after StoppedAt
	// (systemctl start NAME.target), Plan clears Stopped; with a zero
	// StoppedAt only the coordinator clears it.
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// Held lists instances the operator stopped on purpose: corrald leaves
	// them stopped even when they are within Count.
	Held []int `json:"held,omitempty"`
	// Drained is true while the operator has the pool out of its
	// balancers' rotation (Drainer).
	Drained bool `json:"drained,omitempty"`
	// Cordoned lists instances the operator took out of the steering's
	// table (corral cordon): they keep their connections and get no new
	// ones.
	Cordoned []int `json:"cordoned,omitempty"`
	// Releases are the targets the pool's release link had, newest first
	// (the current one first), each since its switch, as corral deploy
	// and corral rollback set them: at most keep_releases.
	Releases []ReleaseRecord `json:"releases,omitempty"`
}

// IsHeld reports whether instance i is held stopped.
func (d Desired) IsHeld(i int) bool {
	for _, h := range d.Held {
		if h == i {
			return true
		}
	}
	return false
}

// ActionKind is what the coordinator asks systemd to do.
type ActionKind int

const (
	// StartUnit starts a unit (job mode "replace").
	StartUnit ActionKind = iota + 1
	// StopUnit stops a unit.
	StopUnit
	// ResetStartUnit resets a failed unit (ResetFailedUnit), then starts it.
	ResetStartUnit
)

func (k ActionKind) String() string {
	switch k {
	case StartUnit:
		return "start"
	case StopUnit:
		return "stop"
	case ResetStartUnit:
		return "reset-failed+start"
	}
	return "action(" + strconv.Itoa(int(k)) + ")"
}

// Action is one step of a plan.
type Action struct {
	Kind   ActionKind
	Unit   string // full unit name, e.g. "app@3.service", "app@3.socket"
	Reason string // for the log: "scale up to 4", "backoff over after 3 failures"…
}

func (a Action) String() string { return fmt.Sprintf("%s %s (%s)", a.Kind, a.Unit, a.Reason) }

// InstanceName returns the unit of instance i of pool.
func InstanceName(pool string, i int) string { return api.InstanceTarget(pool, i) + ".service" }

// SocketName returns the socket unit of instance i (reuseport) or of the
// pool (shared, i = 0).
func SocketName(pool string, i int) string {
	if i == 0 {
		return pool + ".socket"
	}
	return pool + "@" + strconv.Itoa(i) + ".socket"
}
