package units

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/api"
)

// Limits of a pool file's values.
const (
	maxUnixPath    = 107 // sizeof(sun_path) - 1
	maxStopTimeout = time.Hour
)

// Defaults of a pool file's optional keys.
const (
	DefaultStopTimeout     = 30 * time.Second
	DefaultReadyDelay      = time.Second
	DefaultRestartDelay    = 0
	DefaultRestartBurst    = 5
	DefaultRestartInterval = 10 * time.Second
	DefaultBackoff         = time.Second
	DefaultBackoffMax      = 5 * time.Minute
	DefaultLoopFailures    = 5
	DefaultLoopWindow      = 5 * time.Minute
)

var (
	userRE    = regexp.MustCompile(`^[a-z_][a-z0-9_-]*[$]?$`)
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	memMaxRE  = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?[KMGT]?|[0-9]{1,3}(\.[0-9]+)?%|infinity)$`)
	reservedE = []string{"CORRAL_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_"}
	// privilegedGroups are the groups whose members are root in all but name,
	// or command corral itself, with why.
	privilegedGroups = map[string]string{
		"sudo":   "its members may run anything as root",
		"wheel":  "its members may run anything as root",
		"admin":  "its members may run anything as root",
		"disk":   "its members can write the disks under any file system",
		"docker": "its members can start a root container with the host mounted",
		"lxd":    "its members can start a privileged container with the host mounted",
		"shadow": "its members can read every password hash",
		"corral": "its members command every pool through corrald",
	}
	// loaderE are the variables that make the dynamic loader or libc load
	// code or data from a path (glibc strips them for setuid programs). A
	// pool's environment reaches ExecStopPost=, which runs as root outside
	// the sandbox, so a worker that can write the path named would get code
	// run as root. Prefixes end in "_".
	loaderE = []string{"LD_", "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCPATH",
		"MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF"}
)

// schema lists every key a pool file may have, with a short description of
// the expected value used in "unknown key" messages.
var topKeys = map[string]string{
	"exec":              `array of strings, exec[0] an absolute path`,
	"listen":            `array of "host:port", "[v6]:port", ":port" or "/unix/path"`,
	"instances":         `"auto" or 1..1024`,
	"balance":           `"reuseport" or "shared"`,
	"readiness":         `"simple" or "notify"`,
	"user":              `user name`,
	"group":             `group name`,
	"environment":       `table of strings`,
	"working_directory": `absolute path`,
	"memory_max":        `"512M", "2G", "50%" or "infinity"`,
	"open_files":        `whole number`,
	"stop_timeout":      `duration such as "30s"`,
	"start_on_boot":     `true or false`,
	"max_unavailable":   `whole number`,
	"ready_delay":       `duration such as "1s"`,
	"description":       `string`,
	"restart":           `table`,
	"sandbox":           `table`,
}

var restartKeys = map[string]string{
	"policy":              `"on-failure", "always" or "no"`,
	"delay":               `duration such as "100ms"`,
	"burst":               `whole number`,
	"interval":            `duration such as "10s"`,
	"backoff":             `duration such as "1s"`,
	"backoff_max":         `duration such as "5m"`,
	"crash_loop_failures": `whole number`,
	"crash_loop_window":   `duration such as "5m"`,
}

var sandboxKeys = map[string]string{
	"write_execute_memory": `true or false`,
	"network":              `"none" or "outbound"`,
	"writable_paths":       `array of absolute paths`,
	"protect_home":         `"yes", "read-only" or "no"`,
}

type parser struct {
	file string
	loc  *locator
	errs Errors
}

func (p *parser) errorf(key, format string, args ...any) {
	line, col := p.loc.find(key)
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// typeName names a decoded TOML value's type the way a pool file's author
// thinks of it.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "a number"
	case float64:
		return "a decimal number"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

func (p *parser) unknownKeys(prefix string, m map[string]any, known map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := known[k]; ok {
			continue
		}
		names := make([]string, 0, len(known))
		for n := range known {
			names = append(names, n)
		}
		sort.Strings(names)
		hint := ""
		full := k
		if prefix != "" {
			full = prefix + "." + k
		}
		if s := closest(k, names); s != "" {
			if prefix != "" {
				s = prefix + "." + s
			}
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		where := "a pool file"
		if prefix != "" {
			where = "[" + prefix + "]"
		}
		p.errorf(full, "unknown key %q%s; %s takes: %s", full, hint, where, strings.Join(names, ", "))
	}
}

// closest returns the known name nearest to k, if it is near enough to be a
// typo.
func closest(k string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(k, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *parser) str(key string, v any, want string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.errorf(key, "%s must be %s, not %s", key, want, typeName(v))
		return "", false
	}
	return s, true
}

func (p *parser) boolean(key string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		p.errorf(key, "%s must be true or false, not %s", key, typeName(v))
	}
	return b, ok
}

func (p *parser) strings(key string, v any, want string) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		p.errorf(key, "%s must be %s, not %s", key, want, typeName(v))
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.errorf(key, "%s[%d] must be a string, not %s", key, i, typeName(e))
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (p *parser) integer(key string, v any, lo, hi int64) (int, bool) {
	n, ok := v.(int64)
	if !ok {
		p.errorf(key, "%s must be a whole number from %d to %d, not %s", key, lo, hi, typeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		p.errorf(key, "%s must be from %d to %d, not %d", key, lo, hi, n)
		return 0, false
	}
	return int(n), true
}

func (p *parser) duration(key string, v any, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		p.errorf(key, `%s must be a duration string such as "30s" or "1m30s", not %s`, key, typeName(v))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errorf(key, `%s = %q is not a duration: use a number with a unit, such as "500ms", "30s" or "2m"`, key, s)
		return 0, false
	}
	if d < lo || d > hi {
		p.errorf(key, "%s must be from %v to %v, not %v", key, lo, hi, d)
		return 0, false
	}
	return d, true
}

func (p *parser) absPath(key, s string) bool {
	switch {
	case s == "":
		p.errorf(key, "%s is empty: give an absolute path", key)
	case !path.IsAbs(s):
		p.errorf(key, "%s = %q is not an absolute path: start it with /", key, s)
	case path.Clean(s) != s:
		p.errorf(key, "%s = %q is not a clean path: write %q", key, s, path.Clean(s))
	case strings.ContainsAny(s, "\x00\n\r\t"):
		p.errorf(key, "%s = %q contains a control character", key, s)
	case strings.Contains(s, `\`):
		p.errorf(key, "%s = %q contains a backslash, which unit files read as an escape or, at the end, as a line continuation: use a path without one", key, s)
	default:
		return true
	}
	return false
}

// pool builds and validates a Pool from a decoded pool file.
func (p *parser) pool(name string, raw map[string]any) *Pool {
	pool := &Pool{
		Name:           name,
		Path:           p.file,
		Balance:        "",
		Readiness:      ReadinessSimple,
		StopTimeout:    DefaultStopTimeout,
		StartOnBoot:    true,
		MaxUnavailable: 1,
		ReadyDelay:     DefaultReadyDelay,
		Restart: Restart{
			Policy:       "on-failure",
			Delay:        DefaultRestartDelay,
			Burst:        DefaultRestartBurst,
			Interval:     DefaultRestartInterval,
			Backoff:      DefaultBackoff,
			BackoffMax:   DefaultBackoffMax,
			LoopFailures: DefaultLoopFailures,
			LoopWindow:   DefaultLoopWindow,
		},
		Sandbox: Sandbox{WriteExecuteMemory: true, Network: NetworkNone},
	}
	p.name(name)
	p.unknownKeys("", raw, topKeys)

	if v, ok := raw["exec"]; ok {
		if exec, ok := p.strings("exec", v, "an array of strings such as [\"/usr/bin/node\", \"server.js\"]"); ok {
			p.exec(exec)
			pool.Exec = exec
		}
	} else {
		p.errorf("exec", `missing exec: the command each instance runs, such as exec = ["/usr/bin/node", "/srv/app/server.js"]`)
	}

	if v, ok := raw["listen"]; ok {
		if ls, ok := p.strings("listen", v, `an array of addresses such as ["0.0.0.0:3000"]`); ok {
			pool.Listen = p.listen(ls)
		}
	} else {
		p.errorf("listen", `missing listen: the addresses systemd listens on, such as listen = ["0.0.0.0:3000"]`)
	}

	if v, ok := raw["instances"]; ok {
		switch x := v.(type) {
		case string:
			if x != "auto" {
				p.errorf("instances", `instances must be "auto" (one per CPU) or a whole number from 1 to %d, not %q`, api.MaxInstances, x)
			}
		case int64:
			pool.Instances, _ = p.integer("instances", v, 1, api.MaxInstances)
		default:
			p.errorf("instances", `instances must be "auto" (one per CPU) or a whole number from 1 to %d, not %s`, api.MaxInstances, typeName(v))
		}
	}

	if v, ok := raw["balance"]; ok {
		if s, ok := p.str("balance", v, `"reuseport" or "shared"`); ok {
			switch Balance(s) {
			case BalanceReusePort, BalanceShared:
				pool.Balance = Balance(s)
			default:
				p.errorf("balance", `balance must be "reuseport" (a socket per instance, the kernel spreads connections) or "shared" (one socket for all), not %q`, s)
			}
		}
	}

	if v, ok := raw["readiness"]; ok {
		if s, ok := p.str("readiness", v, `"simple" or "notify"`); ok {
			switch Readiness(s) {
			case ReadinessSimple, ReadinessNotify:
				pool.Readiness = Readiness(s)
			default:
				p.errorf("readiness", `readiness must be "notify" (the worker sends READY=1) or "simple" (started once executed), not %q`, s)
			}
		}
	}

	for _, k := range []string{"user", "group"} {
		v, ok := raw[k]
		if !ok {
			continue
		}
		s, ok := p.str(k, v, "a user or group name")
		if !ok {
			continue
		}
		if len(s) > 32 || !userRE.MatchString(s) {
			p.errorf(k, "%s = %q is not a valid %s name (lower-case letters, digits, _ and -, at most 32)", k, s, k)
			continue
		}
		if s == "root" {
			p.errorf(k, `%s = "root" is refused: workers never run as root; remove %s to run as a dynamic user, or name an unprivileged one`, k, k)
			continue
		}
		if k == "group" && privilegedGroups[s] != "" {
			p.errorf(k, `group = %q is refused: %s; remove group to use the user's own group, or name an unprivileged one`, s, privilegedGroups[s])
			continue
		}
		if s == "nobody" || s == "nogroup" {
			p.errorf(k, `%s = %q is refused: files it owns are shared with every other nobody process; remove %s to run as a dynamic user, which is safer`, k, s, k)
			continue
		}
		if k == "user" {
			pool.User = s
		} else {
			pool.Group = s
		}
	}
	if pool.Group != "" && pool.User == "" {
		p.errorf("group", "group is set but user is not: a dynamic user has its own group; set user too, or remove group")
	}

	if v, ok := raw["environment"]; ok {
		pool.Environment = p.environment(v)
	}

	if v, ok := raw["working_directory"]; ok {
		if s, ok := p.str("working_directory", v, "an absolute path"); ok && p.absPath("working_directory", s) {
			pool.WorkingDirectory = s
		}
	}

	if v, ok := raw["memory_max"]; ok {
		switch x := v.(type) {
		case int64:
			if x < 1<<20 {
				p.errorf("memory_max", "memory_max = %d bytes is too small to run anything: use a size such as \"512M\"", x)
			} else {
				pool.MemoryMax = strconv.FormatInt(x, 10)
			}
		case string:
			if !memMaxRE.MatchString(x) {
				p.errorf("memory_max", `memory_max = %q is not a size: use bytes with a K, M, G or T suffix ("512M", "1.5G"), a share of RAM ("50%%"), or "infinity"`, x)
			} else {
				pool.MemoryMax = x
			}
		default:
			p.errorf("memory_max", `memory_max must be a size such as "512M", not %s`, typeName(v))
		}
	}

	if v, ok := raw["open_files"]; ok {
		pool.OpenFiles, _ = p.integer("open_files", v, 64, 1<<20)
	}

	if v, ok := raw["stop_timeout"]; ok {
		if d, ok := p.duration("stop_timeout", v, time.Second, maxStopTimeout); ok {
			pool.StopTimeout = d
		}
	}

	if v, ok := raw["max_unavailable"]; ok {
		pool.MaxUnavailable, _ = p.integer("max_unavailable", v, 1, api.MaxInstances)
	}

	if v, ok := raw["ready_delay"]; ok {
		if d, ok := p.duration("ready_delay", v, 0, 10*time.Minute); ok {
			pool.ReadyDelay = d
		}
	}

	if v, ok := raw["start_on_boot"]; ok {
		pool.StartOnBoot, _ = p.boolean("start_on_boot", v)
	}

	if v, ok := raw["description"]; ok {
		if s, ok := p.str("description", v, "a string"); ok {
			if strings.ContainsAny(s, "\x00\n\r") || len(s) > 200 {
				p.errorf("description", "description must be one line of at most 200 characters")
			} else {
				pool.Description = s
			}
		}
	}

	if v, ok := raw["restart"]; ok {
		if m, ok := v.(map[string]any); ok {
			p.restart(m, &pool.Restart)
		} else {
			p.errorf("restart", "restart must be a table ([restart] with policy, delay, burst, interval), not %s", typeName(v))
		}
	}

	if v, ok := raw["sandbox"]; ok {
		if m, ok := v.(map[string]any); ok {
			p.sandbox(m, &pool.Sandbox)
		} else {
			p.errorf("sandbox", "sandbox must be a table ([sandbox] with write_execute_memory, network, writable_paths, protect_home), not %s", typeName(v))
		}
	}
	if pool.Sandbox.ProtectHome == "" {
		pool.Sandbox.ProtectHome = "yes"
		if underHome(pool.WorkingDirectory) || (len(pool.Exec) > 0 && anyUnderHome(pool.Exec)) {
			pool.Sandbox.ProtectHome = "read-only"
		}
	}

	p.balance(pool)
	return pool
}

func underHome(s string) bool {
	for _, d := range []string{"/home", "/root", "/run/user"} {
		if s == d || strings.HasPrefix(s, d+"/") {
			return true
		}
	}
	return false
}

func anyUnderHome(args []string) bool {
	for _, a := range args {
		if underHome(a) {
			return true
		}
	}
	return false
}

func (p *parser) name(name string) {
	if err := api.CheckPoolName(name); err != nil {
		p.errorf("", "%v (the file's name): rename the file", err)
	}
}

func (p *parser) exec(exec []string) {
	if len(exec) == 0 {
		p.errorf("exec", `exec is empty: give the command, such as ["/usr/bin/node", "/srv/app/server.js"]`)
		return
	}
	if !path.IsAbs(exec[0]) {
		p.errorf("exec", "exec[0] = %q must be an absolute path; find it with 'command -v %s'", exec[0], path.Base(exec[0]))
	} else if path.Clean(exec[0]) != exec[0] {
		p.errorf("exec", "exec[0] = %q is not a clean path: write %q", exec[0], path.Clean(exec[0]))
	}
	for i, a := range exec {
		if strings.ContainsRune(a, 0) {
			p.errorf("exec", "exec[%d] contains a NUL byte", i)
		}
		if strings.ContainsAny(a, "\n\r") {
			p.errorf("exec", "exec[%d] contains a line break: pass multi-line values through environment or a file", i)
		}
	}
}

func (p *parser) listen(ls []string) []Listen {
	if len(ls) == 0 {
		p.errorf("listen", `listen is empty: give at least one address, such as ["0.0.0.0:3000"]`)
		return nil
	}
	var out []Listen
	seen := map[string]bool{}
	for i, a := range ls {
		key := fmt.Sprintf("listen[%d]", i)
		l, msg := parseListen(a)
		if msg != "" {
			p.errorf("listen", "%s = %q: %s", key, a, msg)
			continue
		}
		if seen[l.Stream()] {
			p.errorf("listen", "%s = %q is listed twice", key, a)
			continue
		}
		seen[l.Stream()] = true
		out = append(out, l)
	}
	return out
}

// parseListen checks one listen address; it returns a message saying what
// is wrong, or "".
func parseListen(a string) (Listen, string) {
	if strings.HasPrefix(a, "/") {
		switch {
		case len(a) > maxUnixPath:
			return Listen{}, fmt.Sprintf("a unix socket path can be at most %d bytes", maxUnixPath)
		case path.Clean(a) != a:
			return Listen{}, fmt.Sprintf("not a clean path: write %q", path.Clean(a))
		case strings.ContainsAny(a, "\x00\n\r\t %\\"):
			return Listen{}, "a unix socket path may not contain spaces, control characters, % or \\"
		case strings.HasSuffix(a, "/"):
			return Listen{}, "a unix socket path must name a file"
		}
		return Listen{Address: a, Unix: true}, ""
	}
	if strings.HasPrefix(a, "@") {
		return Listen{}, "abstract unix sockets are not supported: use a path such as /run/NAME/http.sock"
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return Listen{}, `not an address: use "host:port" such as "0.0.0.0:3000", "[::1]:3000" or ":3000", or an absolute unix socket path`
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return Listen{}, "the port must be a number from 1 to 65535"
	}
	if host != "" {
		ip := net.ParseIP(host)
		if ip == nil || strings.Contains(host, "%") {
			return Listen{}, fmt.Sprintf("%q is not an IP address; systemd does not resolve host names: use 127.0.0.1, [::1], 0.0.0.0, [::] or \":%d\" for every address", host, n)
		}
		if ip.To4() == nil {
			return Listen{Address: "[" + ip.String() + "]:" + strconv.Itoa(n)}, ""
		}
		return Listen{Address: ip.String() + ":" + strconv.Itoa(n)}, ""
	}
	return Listen{Address: ":" + strconv.Itoa(n)}, ""
}

func (p *parser) environment(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		p.errorf("environment", `environment must be a table such as { NODE_ENV = "production" }, not %s`, typeName(v))
		return nil
	}
	env := make(map[string]string, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		full := "environment." + k
		if !envKeyRE.MatchString(k) {
			p.errorf("environment", "environment variable name %q may hold only letters, digits and _, and may not start with a digit", k)
			continue
		}
		reserved := false
		for _, r := range reservedE {
			if strings.HasPrefix(k, r) {
				p.errorf("environment", "environment variable %s is set by corral or systemd itself: choose another name", k)
				reserved = true
				break
			}
		}
		if reserved {
			continue
		}
		if loaderVar(k) {
			p.errorf("environment", "environment variable %s changes how the dynamic loader or libc loads code, and would reach commands that systemd runs as root for the pool: remove it; a worker that needs it can set it itself, e.g. exec = [\"/usr/bin/env\", \"%s=...\", \"/srv/app/server\"]", k, k)
			continue
		}
		var s string
		switch x := m[k].(type) {
		case string:
			s = x
		case int64:
			s = strconv.FormatInt(x, 10)
		case bool:
			s = strconv.FormatBool(x)
		default:
			p.errorf(full, "environment.%s must be a string, not %s", k, typeName(m[k]))
			continue
		}
		if strings.ContainsAny(s, "\x00\n\r") {
			p.errorf(full, "environment.%s contains a line break or NUL: pass multi-line values through a file", k)
			continue
		}
		env[k] = s
	}
	return env
}

func (p *parser) restart(m map[string]any, r *Restart) {
	p.unknownKeys("restart", m, restartKeys)
	if v, ok := m["policy"]; ok {
		if s, ok := p.str("restart.policy", v, `"on-failure", "always" or "no"`); ok {
			switch s {
			case "on-failure", "always", "no":
				r.Policy = s
			default:
				p.errorf("restart.policy", `restart.policy must be "on-failure" (restart after a crash or non-zero exit), "always" or "no", not %q`, s)
			}
		}
	}
	if v, ok := m["delay"]; ok {
		if d, ok := p.duration("restart.delay", v, 0, time.Hour); ok {
			r.Delay = d
		}
	}
	if v, ok := m["burst"]; ok {
		if n, ok := p.integer("restart.burst", v, 1, 1000); ok {
			r.Burst = n
		}
	}
	if v, ok := m["interval"]; ok {
		if d, ok := p.duration("restart.interval", v, time.Second, 24*time.Hour); ok {
			r.Interval = d
		}
	}
	if v, ok := m["backoff"]; ok {
		if d, ok := p.duration("restart.backoff", v, 100*time.Millisecond, time.Hour); ok {
			r.Backoff = d
		}
	}
	if v, ok := m["backoff_max"]; ok {
		if d, ok := p.duration("restart.backoff_max", v, 100*time.Millisecond, 24*time.Hour); ok {
			r.BackoffMax = d
		}
	}
	if r.BackoffMax < r.Backoff {
		p.errorf("restart.backoff_max", "restart.backoff_max (%v) is shorter than restart.backoff (%v): make it at least as long", r.BackoffMax, r.Backoff)
	}
	if v, ok := m["crash_loop_failures"]; ok {
		if n, ok := p.integer("restart.crash_loop_failures", v, 1, 1000); ok {
			r.LoopFailures = n
		}
	}
	if v, ok := m["crash_loop_window"]; ok {
		if d, ok := p.duration("restart.crash_loop_window", v, time.Second, 24*time.Hour); ok {
			r.LoopWindow = d
		}
	}
}

func (p *parser) sandbox(m map[string]any, s *Sandbox) {
	p.unknownKeys("sandbox", m, sandboxKeys)
	if v, ok := m["write_execute_memory"]; ok {
		if b, ok := p.boolean("sandbox.write_execute_memory", v); ok {
			s.WriteExecuteMemory = b
		}
	}
	if v, ok := m["network"]; ok {
		if n, ok := p.str("sandbox.network", v, `"none" or "outbound"`); ok {
			switch Network(n) {
			case NetworkNone, NetworkOutbound:
				s.Network = Network(n)
			default:
				p.errorf("sandbox.network", `sandbox.network must be "none" (only the inherited sockets) or "outbound" (workers may dial other hosts), not %q`, n)
			}
		}
	}
	if v, ok := m["writable_paths"]; ok {
		if ps, ok := p.strings("sandbox.writable_paths", v, "an array of absolute paths"); ok {
			for i, w := range ps {
				if p.absPath(fmt.Sprintf("sandbox.writable_paths[%d]", i), w) {
					s.WritablePaths = append(s.WritablePaths, w)
				}
			}
		}
	}
	if v, ok := m["protect_home"]; ok {
		if h, ok := p.str("sandbox.protect_home", v, `"yes", "read-only" or "no"`); ok {
			switch h {
			case "yes", "read-only", "no":
				s.ProtectHome = h
			default:
				p.errorf("sandbox.protect_home", `sandbox.protect_home must be "yes", "read-only" or "no", not %q`, h)
			}
		}
	}
}

// balance settles the balance mode: reuseport by default, shared when a
// unix socket is listed (a unix path cannot be bound once per instance).
func (p *parser) balance(pool *Pool) {
	hasUnix := false
	for _, l := range pool.Listen {
		if l.Unix {
			hasUnix = true
		}
	}
	switch {
	case pool.Balance == "" && hasUnix:
		pool.Balance = BalanceShared
	case pool.Balance == "":
		pool.Balance = BalanceReusePort
	case pool.Balance == BalanceReusePort && hasUnix:
		p.errorf("balance", `balance = "reuseport" cannot split a unix socket path over instances: set balance = "shared", or listen on TCP only`)
	}
}

// loaderVar reports whether k is one of loaderE.
func loaderVar(k string) bool {
	for _, l := range loaderE {
		if k == l || strings.HasSuffix(l, "_") && strings.HasPrefix(k, l) {
			return true
		}
	}
	return false
}
