package api

import (
	"errors"
	"fmt"
)

// Errors callers branch on. Over D-Bus each travels as the error name in
// busErrors (docs/corrald.md) with corrald's message, and Client turns it
// back into an error that errors.Is finds.
var (
	ErrNoPool     = errors.New("no such pool")
	ErrNoInstance = errors.New("no such instance")
	ErrBadSpec    = errors.New("bad scale")
	ErrDenied     = errors.New("permission denied")
	ErrNotRunning = errors.New("corrald is not running")
	ErrBadMessage = errors.New("bad message")
	// ErrBadArgument is an argument out of its range, such as a drain's
	// timeout.
	ErrBadArgument = errors.New("bad argument")
	// ErrOtherPool is a worker messaging another pool's workers; it is
	// also ErrDenied.
	ErrOtherPool = fmt.Errorf("%w: a worker may message only its own pool", ErrDenied)
	// ErrReload is wrapped by Reload's error when an instance failed to
	// come back; the instances not yet reloaded keep serving the old
	// version.
	ErrReload = errors.New("reload stopped")
	// ErrRolledBack is wrapped by Deploy's error when the new release
	// failed its gate and the pool was rolled back to the release before.
	ErrRolledBack = errors.New("deploy rolled back")
	// ErrNoRelease: the pool has no release link (release = in its file),
	// or no earlier release to roll back to.
	ErrNoRelease = errors.New("no release")
	// ErrBusy: a reload or a deploy of the pool is under way.
	ErrBusy = errors.New("busy")
	// ErrInvalidConfig is wrapped by Apply's error when a pool file is
	// invalid: nothing was changed.
	ErrInvalidConfig = errors.New("invalid pool file")
	// ErrNoMessages: corrald carries no messages (it could not open its
	// message socket).
	ErrNoMessages = errors.New("corrald carries no messages: its message socket did not open (see 'journalctl -u corral')")
	// ErrNoSteering: steering in the kernel is off on this host (no BPF),
	// so an instance cannot be cordoned.
	ErrNoSteering = errors.New("steering in the kernel is off on this host")
	// ErrFailed is any other failure, such as a systemd job that did not
	// end "done".
	ErrFailed = errors.New("systemd job failed")
)

// busErrors is the one table of the API's D-Bus error names, used both
// ways. The first entry whose error matches names an error going out, so
// an error that wraps two sentinels (ErrOtherPool) comes before the one it
// wraps.
var busErrors = []struct {
	name string
	err  error
}{
	{"org.corral.Corral1.Error.NoSuchPool", ErrNoPool},
	{"org.corral.Corral1.Error.NoSuchInstance", ErrNoInstance},
	{"org.corral.Corral1.Error.BadSpec", ErrBadSpec},
	{"org.corral.Corral1.Error.OtherPool", ErrOtherPool},
	{"org.corral.Corral1.Error.Denied", ErrDenied},
	{"org.corral.Corral1.Error.ReloadStopped", ErrReload},
	{"org.corral.Corral1.Error.RolledBack", ErrRolledBack},
	{"org.corral.Corral1.Error.NoRelease", ErrNoRelease},
	{"org.corral.Corral1.Error.Busy", ErrBusy},
	{"org.corral.Corral1.Error.InvalidConfig", ErrInvalidConfig},
	{"org.corral.Corral1.Error.BadMessage", ErrBadMessage},
	{"org.corral.Corral1.Error.BadArgument", ErrBadArgument},
	{"org.corral.Corral1.Error.NoMessages", ErrNoMessages},
	{"org.corral.Corral1.Error.NoSteering", ErrNoSteering},
	{"org.corral.Corral1.Error.Failed", ErrFailed},
	// Names the bus itself answers with.
	{"org.freedesktop.DBus.Error.AccessDenied", ErrDenied},
	{"org.freedesktop.DBus.Error.ServiceUnknown", ErrNotRunning},
	{"org.freedesktop.DBus.Error.NameHasNoOwner", ErrNotRunning},
}

// ErrorName is the D-Bus error name under which corrald returns err:
// the name of the first sentinel it wraps, else ErrFailed's.
func ErrorName(err error) string {
	for _, e := range busErrors {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "org.corral.Corral1.Error.Failed"
}

// FromErrorName is the error a client gets for a D-Bus error name and
// message: msg, wrapping the sentinel the name stands for (ErrFailed for a
// name it does not know).
func FromErrorName(name, msg string) error {
	sentinel := ErrFailed
	for _, e := range busErrors {
		if e.name == name {
			sentinel = e.err
			break
		}
	}
	return &wrapped{sentinel, msg}
}

// wrapped is an error with a message of its own that errors.Is takes for
// sentinel: an error corrald returned, or a broken rule of names.go.
type wrapped struct {
	sentinel error
	msg      string
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.sentinel }

func wrapf(sentinel error, format string, args ...any) error {
	return &wrapped{sentinel, fmt.Sprintf(format, args...)}
}
