package units

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// NodePreloadPath is where the package installs the Node preload
// (activation/node/preload.js).
const NodePreloadPath = "/usr/share/corral/node/preload.js"

// Dir is where pool files live on a host: one pool per NAME.toml.
const Dir = "/etc/corral/pools.d"

// Ext is the suffix of a pool file.
const Ext = ".toml"

// Balance says how connections are spread over a pool's instances.
type Balance string

const (
	// BalanceReusePort gives every instance its own listening socket with
	// SO_REUSEPORT; the kernel hashes each new connection to one of them.
	BalanceReusePort Balance = "reuseport"
	// BalanceShared gives every instance the same listening socket; the
	// instances compete in accept(2).
	BalanceShared Balance = "shared"
	// BalanceSticky is BalanceReusePort where every connection of a client
	// address reaches the same instance while it serves (package steer).
	BalanceSticky Balance = "sticky"
)

// PerInstance reports whether every instance has a socket of its own.
func (b Balance) PerInstance() bool { return b == BalanceReusePort || b == BalanceSticky }

// Readiness says when systemd considers an instance started.
type Readiness string

const (
	// ReadinessSimple: started once the process has been executed
	// (Type=exec).
	ReadinessSimple Readiness = "simple"
	// ReadinessNotify: started once the worker sends READY=1
	// (Type=notify).
	ReadinessNotify Readiness = "notify"
)

// Network says which sockets a worker may open itself.
type Network string

const (
	// NetworkNone gives the worker a network namespace of its own with
	// only a loopback device: it serves on the inherited sockets, which
	// stay in the host's namespace, and reaches no other host.
	NetworkNone Network = "none"
	// NetworkOutbound lets the worker share the host's network, for
	// workers that dial a database or another service.
	NetworkOutbound Network = "outbound"
)

// Listen is one listening address of a pool.
type Listen struct {
	// Address is as written in the pool file: "host:port", "[v6]:port",
	// ":port" or an absolute unix socket path.
	Address string
	// Unix is true for a unix stream socket path.
	Unix bool
}

// Stream returns the value of systemd's ListenStream= for l.
func (l Listen) Stream() string {
	if strings.HasPrefix(l.Address, ":") {
		return l.Address[1:] // a bare port: every address, IPv4 and IPv6
	}
	return l.Address
}

// Overlaps reports whether l and o cannot both be bound: the same unix
// path, or the same TCP port where the hosts are equal or one of them is a
// wildcard address.
func (l Listen) Overlaps(o Listen) bool {
	if l.Unix || o.Unix {
		return l.Unix && o.Unix && l.Address == o.Address
	}
	lh, lp, _ := net.SplitHostPort(l.Address)
	oh, op, _ := net.SplitHostPort(o.Address)
	if lp != op {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return lh == oh || wild(lh) || wild(oh)
}

// Restart is a pool's [restart] table: what systemd does when an instance
// exits on its own, and what corrald does once systemd has given up.
type Restart struct {
	Policy   string        // "on-failure" (default), "always" or "no": Restart=
	Delay    time.Duration // RestartSec=, default 0: at once; systemd's start limit and corrald's backoff bound a crash loop
	Burst    int           // StartLimitBurst=, default 5
	Interval time.Duration // StartLimitIntervalSec=, default 10s

	// corrald's restarts of a failed instance: Backoff (default 1s)
	// doubling up to BackoffMax (default 5m). LoopFailures failures
	// (default 5) within LoopWindow (default 5m) is a crash loop.
	Backoff, BackoffMax time.Duration
	LoopFailures        int
	LoopWindow          time.Duration
}

// Sandbox is a pool's [sandbox] table: the loosenings of corral's default
// hardening. The zero value is not the default; see Parse.
type Sandbox struct {
	// WriteExecuteMemory allows memory that is writable and executable,
	// which JIT compilers (V8, LuaJIT, PyPy…) need. Default true; false adds
	// MemoryDenyWriteExecute=yes.
	WriteExecuteMemory bool
	// Network is NetworkNone (default) or NetworkOutbound.
	Network Network
	// WritablePaths become ReadWritePaths=; everything else is read-only.
	WritablePaths []string
	// ProtectHome is "yes", "read-only" or "no". Default "yes", or
	// "read-only" when exec or working_directory lies under /home or /root.
	ProtectHome string
}

// Pool is one validated pool file.
type Pool struct {
	Name string // from the file name: NAME.toml
	Path string // the file it was read from

	Exec             []string
	Listen           []Listen
	Instances        int // 0 means "auto": one per usable CPU
	Balance          Balance
	Readiness        Readiness
	User             string // "" means a dynamic user (DynamicUser=yes)
	Group            string
	Environment      map[string]string
	WorkingDirectory string
	StartOnBoot      bool
	Description      string
	MemoryMax        string // systemd's MemoryMax= value, "" if unset
	// MemoryMaxBytes is memory_max in bytes when it is an absolute size;
	// 0 when it is unset, a share of RAM or "infinity".
	MemoryMaxBytes int64
	// MemoryHigh is systemd's MemoryHigh= value, "" if unset: where the
	// kernel throttles an instance and corrald recycles it, below
	// MemoryMax, where the kernel kills it.
	MemoryHigh string
	// MemoryHighBytes is memory_high in bytes when it is an absolute size;
	// 0 when it is unset, a share of RAM or "infinity". corrald compares an
	// instance's memory with it.
	MemoryHighBytes int64
	CPUQuota        string // CPUQuota=, a share of one CPU such as "50%" or "150%"; "" if unset
	CPUWeight       int    // CPUWeight=, 1 to 10000; 0 if unset (systemd's default)
	TasksMax        string // TasksMax=, a number or "infinity"; "" if unset (systemd's default)
	OpenFiles       int    // LimitNOFILE=, 0 if unset
	// StartTimeout is how long an instance may take from its start to
	// READY=1 (readiness = "notify") before systemd counts the start as
	// failed and stops it (TimeoutStartSec=, default 90s, systemd's).
	StartTimeout time.Duration
	StopTimeout  time.Duration // TimeoutStopSec=
	// Watchdog is how long an instance may go without showing it is alive
	// before it is killed and restarted; 0 is off. With readiness = "notify"
	// the worker sends WATCHDOG=1 and PID 1 enforces it (WatchdogSec=);
	// with "simple" corrald pings the worker over the message socket. Every
	// instance gets it as CORRAL_WATCHDOG.
	Watchdog time.Duration
	// WatchdogSignal is the signal PID 1 sends when the watchdog fires
	// (WatchdogSignal=): "SIGABRT" (default), "SIGKILL" or "SIGTERM".
	WatchdogSignal string
	// RecycleAfter is the age at which corrald restarts an instance, as a
	// rolling reload does; 0 is never. Each instance is recycled at an age
	// from RecycleAfter to RecycleAfter+RecycleJitter, its own, so that
	// instances started together are not recycled together.
	RecycleAfter time.Duration
	// RecycleJitter is at most RecycleAfter; default a tenth of it.
	RecycleJitter time.Duration
	// Steering keeps a program in the kernel on the instances' sockets
	// (balance = "reuseport" or "sticky") that sends new connections only
	// to instances that serve and are not cordoned (package steer); false
	// leaves the choice to the kernel's hash.
	Steering bool
	// Spares is how many of the instances the steering keeps started but
	// out of rotation, the highest-numbered ones: when an instance stops
	// serving (dies, restarts, is reloaded or cordoned) a spare takes its
	// place in the table at once, its connections and its clients, and
	// gives them back when it returns. 0: none.
	Spares int
	// MaxUnavailable is how many instances a rolling reload restarts at
	// once (default 1).
	MaxUnavailable int
	// ReadyDelay is how long a rolling reload waits after starting an
	// instance that cannot send READY=1 (readiness = "simple") before it
	// counts it as ready, if it still runs (default 1s).
	ReadyDelay time.Duration
	// Release is the release link: a symlink that exec or
	// working_directory goes through, which corral deploy points at one
	// release directory at a time; "" none.
	Release string
	// KeepReleases is how many releases corral remembers for rollback.
	KeepReleases int
	// Canary is how long corral deploy holds the first restarted instance
	// alone under live traffic before it rolls the rest.
	Canary time.Duration
	// Health is the request a deploy sends to each new instance, as
	// written ("GET /health"), and its method and path; "" none.
	Health, HealthMethod, HealthPath string
	// NodePreload puts corral's Node preload (NodePreloadPath) into the
	// workers' NODE_OPTIONS: a listen() of the pool's port is served on the
	// inherited socket, SIGTERM drains, and process.on('message') gets
	// corral's messages. Default: on when exec[0] is node.
	NodePreload    bool
	nodePreloadSet bool
	Restart        Restart
	Sandbox        Sandbox
}

// InRotation is how many of count instances take new connections when
// spares of them are kept out of rotation: all but the spares, at least
// one.
func InRotation(count, spares int) int { return max(1, count-spares) }

// Error is one problem found in a pool file, at a position in it when known.
type Error struct {
	File string
	Line int // 1-based; 0 when the position is unknown
	Col  int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one or more pool files, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Err returns es as an error, or nil if es is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// ErrNotPoolFile is returned by NameFromPath for a file that is not NAME.toml.
var ErrNotPoolFile = errors.New("units: not a pool file (want NAME.toml)")

// NameFromPath returns the pool name of a pool file path.
func NameFromPath(path string) (string, error) {
	base := filepath.Base(path)
	if !strings.HasSuffix(base, Ext) || base == Ext {
		return "", ErrNotPoolFile
	}
	return strings.TrimSuffix(base, Ext), nil
}

// Load reads and parses the pool file at path, as DefaultHost().Load.
func Load(path string) (*Pool, error) { return DefaultHost().Load(path) }

// Load reads the pool file at path under the rules of readPoolFile and
// parses it. The returned error, if any, is an Errors listing every problem
// found.
func (h Host) Load(path string) (*Pool, error) {
	p, _, err := h.load(path)
	return p, err
}

// load is Load that also returns the file's content.
func (h Host) load(path string) (*Pool, []byte, error) {
	name, err := NameFromPath(path)
	if err != nil {
		return nil, nil, Errors{{File: path, Msg: "a pool file must be named NAME.toml, where NAME is the pool's name"}}
	}
	data, err := h.readPoolFile(path)
	if err != nil {
		return nil, nil, Errors{{File: path, Msg: err.Error()}}
	}
	p, err := Parse(path, name, data)
	return p, data, err
}

func readErrMsg(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	case errors.Is(err, os.ErrPermission):
		return "permission denied: run as root (sudo)"
	}
	return err.Error()
}

// Parse parses and validates the pool called name from the TOML in data;
// path is used in error messages. Every problem found is returned, as
// Errors. Parse does not look at the host (see Check for that).
func Parse(path, name string, data []byte) (*Pool, error) {
	p := &parser{file: path, loc: newLocator(data)}
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Errors{{File: path, Line: pe.Position.Line, Col: pe.Position.Col,
				Msg: "invalid TOML: " + pe.Message}}
		}
		return nil, Errors{{File: path, Msg: "invalid TOML: " + err.Error()}}
	}
	pool := p.pool(name, raw)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return pool, nil
}

// ParseListen checks one listen address as a pool file's listen does
// ("host:port", "[v6]:port", ":port" or an absolute unix socket path); the
// message says what is wrong, or is "".
func ParseListen(a string) (Listen, string) { return parseListen(a) }
