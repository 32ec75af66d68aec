package activation

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultStopTimeout is what StopTimeout returns when CORRAL_STOP_TIMEOUT is
// unset or invalid. It matches the default stop_timeout of a pool.
const DefaultStopTimeout = 30 * time.Second

// ErrNoInstance is returned, wrapped, by Instance when CORRAL_INSTANCE is not
// set: the process was not started by corral.
var ErrNoInstance = errors.New("CORRAL_INSTANCE is not set")

// Instance returns the instance number corral gave this process in
// CORRAL_INSTANCE, counting from 1 (instance I runs as the unit NAME@I.service).
//
// When CORRAL_INSTANCE is unset or empty, Instance returns 0 and an error
// wrapping ErrNoInstance; callers that also run outside corral can treat that
// case as instance 0:
//
//	n, err := activation.Instance()
//	if err != nil && !errors.Is(err, activation.ErrNoInstance) {
//		return err
//	}
//
// Any other value that is not a decimal number from 1 up is an error.
func Instance() (int, error) {
	return parseInstance(os.Getenv("CORRAL_INSTANCE"))
}

func parseInstance(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("activation: %w (not run by corral?)", ErrNoInstance)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("activation: CORRAL_INSTANCE=%q: want an instance number from 1 up", s)
	}
	return n, nil
}

// Pool returns the name of the pool this process belongs to, from
// CORRAL_POOL, or "" when the process was not started by corral.
func Pool() string {
	return os.Getenv("CORRAL_POOL")
}

// StopTimeout returns how long the process has to stop once asked to: the
// pool's stop_timeout, passed in CORRAL_STOP_TIMEOUT as a Go duration
// ("30s", "1m30s"; see time.ParseDuration). Past it systemd sends SIGKILL.
//
// StopTimeout returns DefaultStopTimeout (30s) when CORRAL_STOP_TIMEOUT is
// unset, is not a duration, or is not positive. It never returns an error: a
// worker always gets a usable budget.
func StopTimeout() time.Duration {
	return parseStopTimeout(os.Getenv("CORRAL_STOP_TIMEOUT"))
}

func parseStopTimeout(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return DefaultStopTimeout
	}
	return d
}

// listenFDsStart is SD_LISTEN_FDS_START: the first inherited fd.
const listenFDsStart = 3

// maxListenFDs bounds LISTEN_FDS so that a corrupt value cannot make the
// process allocate without limit. No socket unit passes that many fds.
const maxListenFDs = 1 << 16

// unnamed is the name of an fd when LISTEN_FDNAMES is unset, as in
// sd_listen_fds_with_names(3).
const unnamed = "unknown"

// listenEnv lists the variables of the socket activation protocol that are
// unset once read. LISTEN_PIDFDID is set by systemd 256 and later.
var listenEnv = []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"}

// parseListenEnv interprets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
// (pass "" for unset variables) for the process pid, as sd_listen_fds(3) and
// sd_listen_fds_with_names(3) do.
//
// It returns one name per inherited fd, in fd order. When the variables pass
// no fds to this process it returns no names, a nil error and a reason that
// says why, for error messages ("LISTEN_FDS is not set"). It returns an error
// only for malformed values.
func parseListenEnv(pid int, listenPID, listenFDs, listenFDNames string) (names []string, reason string, err error) {
	if listenPID == "" {
		return nil, "LISTEN_PID is not set", nil
	}
	p, err := strconv.Atoi(listenPID)
	if err != nil || p < 1 {
		return nil, "", fmt.Errorf("LISTEN_PID=%q is not a process id", listenPID)
	}
	if p != pid {
		return nil, fmt.Sprintf("LISTEN_PID=%d is another process, this is %d", p, pid), nil
	}
	if listenFDs == "" {
		return nil, "LISTEN_FDS is not set", nil
	}
	n, err := strconv.Atoi(listenFDs)
	if err != nil || n < 0 {
		return nil, "", fmt.Errorf("LISTEN_FDS=%q is not a number of fds", listenFDs)
	}
	if n > maxListenFDs {
		return nil, "", fmt.Errorf("LISTEN_FDS=%d: more than %d fds", n, maxListenFDs)
	}
	if n == 0 {
		return nil, "LISTEN_FDS=0", nil
	}
	if listenFDNames == "" {
		names = make([]string, n)
		for i := range names {
			names[i] = unnamed
		}
		return names, "", nil
	}
	names = strings.Split(listenFDNames, ":")
	if len(names) != n {
		return nil, "", fmt.Errorf("LISTEN_FDNAMES has %d names for LISTEN_FDS=%d", len(names), n)
	}
	return names, "", nil
}
