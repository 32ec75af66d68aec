package units

import (
	"fmt"
	"math/big"
	"net"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/corral-pool/corral/api"
)

// Limits of a pool file's values.
const (
	maxUnixPath    = 107 // sizeof(sun_path) - 1
	maxStopTimeout = time.Hour
	maxTasks       = 4194304 // the kernel's largest pid_max
	minMemory      = 1 << 20 // a limit below it leaves no room to run anything
	maxCPUQuota    = 100000  // percent of one CPU: a thousand CPUs
)

var (
	userRE   = regexp.MustCompile(`^[a-z_][a-z0-9_-]*[$]?$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sizeRE   = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?[KMGT]?|[0-9]{1,3}(\.[0-9]+)?%|infinity)$`)
	// cpuQuotaRE is a share of one CPU, in percent with at most one decimal.
	cpuQuotaRE = regexp.MustCompile(`^([0-9]+)(\.[0-9])?%$`)
	numberRE   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	reservedE  = []string{"CORRAL_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_"}
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

type parser struct {
	file string
	loc  *locator
	errs Errors
	set  map[string]bool // the keys the file has, as keys names them
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

// unknownKeys reports the keys of m, table prefix ("" for the top level),
// that keys does not list.
func (p *parser) unknownKeys(prefix string, m map[string]any) {
	known := names(prefix)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(known, k) {
			continue
		}
		names := slices.Sorted(slices.Values(known))
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

// pool builds and validates a Pool from a decoded pool file, key by key
// as keys lists them.
func (p *parser) pool(name string, raw map[string]any) *Pool {
	pool := Defaults()
	pool.Name, pool.Path = name, p.file
	p.set = map[string]bool{}
	p.name(name)
	p.unknownKeys("", raw)
	tables := map[string]map[string]any{"": raw}
	for _, f := range keys {
		table, k, ok := strings.Cut(f.key, ".")
		if !ok {
			table, k = "", f.key
		}
		m, ok := tables[table]
		if !ok {
			continue // a table the file does not have, or not a table
		}
		v, ok := m[k]
		p.set[f.key] = ok
		switch {
		case !ok && f.missing != "":
			p.errorf(f.key, "%s", f.missing)
		case !ok:
		case f.table:
			if t, ok := v.(map[string]any); ok {
				p.unknownKeys(f.key, t)
				tables[f.key] = t
			} else {
				p.errorf(f.key, "%s must be a table ([%s] with %s), not %s", f.key, f.key, strings.Join(names(f.key), ", "), typeName(v))
			}
		default:
			f.read(p, pool, v)
		}
	}
	p.settle(pool)
	return pool
}

// settle checks what depends on several keys, and sets the defaults that
// do.
func (p *parser) settle(pool *Pool) {
	if pool.Group != "" && pool.User == "" {
		p.errorf("group", "group is set but user is not: a dynamic user has its own group; set user too, or remove group")
	}
	if r := pool.Restart; r.BackoffMax < r.Backoff {
		p.errorf("restart.backoff_max", "restart.backoff_max (%v) is shorter than restart.backoff (%v): make it at least as long", r.BackoffMax, r.Backoff)
	}
	if pool.MemoryHighBytes > 0 && pool.MemoryMaxBytes > 0 && pool.MemoryHighBytes >= pool.MemoryMaxBytes {
		p.errorf("memory_high", "memory_high (%s) must be below memory_max (%s): memory_high is where the kernel throttles an instance and corral recycles it, memory_max where the kernel kills it; lower memory_high or raise memory_max", pool.MemoryHigh, pool.MemoryMax)
	}
	p.needs("watchdog_signal", "watchdog", "the signal that ends an instance whose watchdog fires")
	p.needs("recycle_jitter", "recycle_after", "a spread of the age at which instances are recycled")
	if !p.set["recycle_jitter"] {
		pool.RecycleJitter = pool.RecycleAfter / 10
	} else if pool.RecycleJitter > pool.RecycleAfter && pool.RecycleAfter > 0 {
		p.errorf("recycle_jitter", "recycle_jitter (%v) is longer than recycle_after (%v): make it at most as long", pool.RecycleJitter, pool.RecycleAfter)
	}
	if pool.Sandbox.ProtectHome == "" {
		pool.Sandbox.ProtectHome = "yes"
		if underHome(pool.WorkingDirectory) || (len(pool.Exec) > 0 && anyUnderHome(pool.Exec)) {
			pool.Sandbox.ProtectHome = "read-only"
		}
	}
	p.balance(pool)
	p.spares(pool)
	p.release(pool)
	if !pool.nodePreloadSet {
		pool.NodePreload = len(pool.Exec) > 0 && IsNode(pool.Exec[0])
	}
}

// needs reports key set in a file without other, the key it only refines:
// it is what, which needs other to mean anything.
func (p *parser) needs(key, other, what string) {
	if p.set[key] && !p.set[other] {
		p.errorf(key, "%s is set but %s is not: %s is %s; set %s too, or remove %s", key, other, key, what, other, key)
	}
}

// nodeRE matches the names Node's binary goes by: node, nodejs, node20.
var nodeRE = regexp.MustCompile(`^node(js)?[0-9]*$`)

// IsNode reports whether program is Node, by its name.
func IsNode(program string) bool { return nodeRE.MatchString(path.Base(program)) }

// instances reads "auto" (0: one per CPU) or a count.
func (p *parser) instances(pool *Pool, v any) {
	if n, ok := p.intOrWord("instances", v, "auto", "one per CPU", 1, api.MaxInstances); ok {
		pool.Instances = n
	}
}

// intOrWord reads key as word, which means what, or as a whole number from
// lo to hi; n is 0 for word.
func (p *parser) intOrWord(key string, v any, word, means string, lo, hi int64) (n int, ok bool) {
	switch x := v.(type) {
	case string:
		if x == word {
			return 0, true
		}
		hint := ""
		if _, err := strconv.ParseInt(x, 10, 64); err == nil {
			hint = fmt.Sprintf(": write %s = %s, without quotes", key, x)
		}
		p.errorf(key, `%s must be %q (%s) or a whole number from %d to %d, not %q%s`, key, word, means, lo, hi, x, hint)
	case int64:
		return p.integer(key, v, lo, hi)
	default:
		p.errorf(key, `%s must be %q (%s) or a whole number from %d to %d, not %s`, key, word, means, lo, hi, typeName(v))
	}
	return 0, false
}

// account reads user or group (k): a name that is not root's, nor of a
// group as good as root, nor nobody's.
func (p *parser) account(k string, v any) (string, bool) {
	s, ok := p.str(k, v, "a user or group name")
	switch {
	case !ok:
	case len(s) > 32 || !userRE.MatchString(s):
		p.errorf(k, "%s = %q is not a valid %s name (lower-case letters, digits, _ and -, at most 32)", k, s, k)
	case s == "root":
		p.errorf(k, `%s = "root" is refused: workers never run as root; remove %s to run as a dynamic user, or name an unprivileged one`, k, k)
	case k == "group" && privilegedGroups[s] != "":
		p.errorf(k, `group = %q is refused: %s; remove group to use the user's own group, or name an unprivileged one`, s, privilegedGroups[s])
	case s == "nobody" || s == "nogroup":
		p.errorf(k, `%s = %q is refused: files it owns are shared with every other nobody process; remove %s to run as a dynamic user, which is safer`, k, s, k)
	default:
		return s, true
	}
	return "", false
}

// size reads key as a memory size, systemd's way: bytes, with a K, M, G or
// T suffix (powers of 1024), a share of RAM or "infinity". It returns
// systemd's value and the size in bytes, 0 for a share or "infinity".
func (p *parser) size(key string, v any) (value string, bytes int64, ok bool) {
	switch x := v.(type) {
	case int64:
		value, bytes = strconv.FormatInt(x, 10), x
		if x < minMemory {
			p.errorf(key, "%s = %d bytes is too small to run anything: use a size such as \"512M\"", key, x)
			return "", 0, false
		}
	case string:
		if !sizeRE.MatchString(x) {
			p.errorf(key, `%s = %q is not a size: use bytes with a K, M, G or T suffix ("512M", "1.5G"), a share of RAM ("50%%"), or "infinity"`, key, x)
			return "", 0, false
		}
		value = x
		if x == "infinity" || strings.HasSuffix(x, "%") {
			return value, 0, true
		}
		if bytes, ok = sizeBytes(x); !ok {
			p.errorf(key, `%s = %q is too large: use "infinity" for no limit`, key, x)
			return "", 0, false
		}
		if bytes < minMemory {
			p.errorf(key, `%s = %q is too small to run anything: use a size such as "512M"`, key, x)
			return "", 0, false
		}
	default:
		p.errorf(key, `%s must be a size such as "512M", not %s`, key, typeName(v))
		return "", 0, false
	}
	return value, bytes, true
}

// sizeBytes returns the bytes of s, a size of sizeRE with an optional
// suffix but no %, rounded down as systemd does; false if they overflow an
// int64.
func sizeBytes(s string) (int64, bool) {
	num := strings.TrimRight(s, "KMGT")
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, false
	}
	if suffix := s[len(num):]; suffix != "" {
		r.Mul(r, new(big.Rat).SetInt64(1<<(10*(strings.Index("KMGT", suffix)+1))))
	}
	n := new(big.Int).Quo(r.Num(), r.Denom())
	return n.Int64(), n.IsInt64()
}

// cpuQuota reads a share of one CPU in percent: "50%", "150%", "12.5%".
func (p *parser) cpuQuota(pool *Pool, v any) {
	if n, ok := v.(int64); ok {
		p.errorf("cpu_quota", `cpu_quota = %d is a number: write "%d%%", a string with a percent sign`, n, n)
		return
	}
	s, ok := p.str("cpu_quota", v, `a share of one CPU as a string such as "50%" or "150%"`)
	if !ok {
		return
	}
	m := cpuQuotaRE.FindStringSubmatch(s)
	switch {
	case m == nil && numberRE.MatchString(s):
		p.errorf("cpu_quota", `cpu_quota = %q lacks its percent sign: write "%s%%"`, s, s)
		return
	case m == nil:
		p.errorf("cpu_quota", `cpu_quota = %q is not a percentage: write a share of one CPU with at most one decimal, such as "50%%", "150%%" or "12.5%%"`, s)
		return
	}
	whole, err := strconv.Atoi(m[1])
	tenths := 0
	if m[2] != "" {
		tenths = int(m[2][1] - '0')
	}
	if err != nil || whole > maxCPUQuota || whole*10+tenths < 10 || whole*10+tenths > maxCPUQuota*10 {
		p.errorf("cpu_quota", `cpu_quota must be from 1%% to %d%%, not %q; remove cpu_quota for no limit`, maxCPUQuota, s)
		return
	}
	pool.CPUQuota = strconv.Itoa(whole) + m[2] + "%"
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
	case pool.Balance.PerInstance() && hasUnix:
		p.errorf("balance", `balance = "%s" cannot split a unix socket path over instances: set balance = "shared", or listen on TCP only`, pool.Balance)
	}
}

// spares checks that a pool with spares has the steering that keeps them
// out of rotation, and an instance in it.
func (p *parser) spares(pool *Pool) {
	switch {
	case pool.Spares == 0:
	case !pool.Balance.PerInstance() || !pool.Steering:
		p.errorf("spares", "spares = %d needs steering in the kernel, which keeps them out of rotation: it needs balance = \"reuseport\" or \"sticky\" and steering on; remove spares, or those settings", pool.Spares)
	case pool.Instances > 0 && pool.Spares >= pool.Instances:
		p.errorf("spares", "spares = %d counts among instances = %d and must be fewer, so that one takes connections: raise instances (such as instances = %d for %d in rotation)", pool.Spares, pool.Instances, pool.Spares+pool.Instances, pool.Instances)
	}
}

// health reads health = "METHOD /path".
func (p *parser) health(pool *Pool, v any) {
	s, ok := p.str("health", v, `a request such as "GET /health"`)
	if !ok {
		return
	}
	method, path, _ := strings.Cut(s, " ")
	if (method != "GET" && method != "HEAD") || !strings.HasPrefix(path, "/") || strings.ContainsFunc(path, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		p.errorf("health", `health = %q is not a request: write the method GET or HEAD, one space and a path that starts with / and has no spaces or control characters, such as "GET /health"`, s)
		return
	}
	pool.Health, pool.HealthMethod, pool.HealthPath = s, method, path
}

// release checks that exec or working_directory goes through the release
// link, and that the keys about deploys have one.
func (p *parser) release(pool *Pool) {
	for _, k := range []string{"keep_releases", "canary", "health"} {
		p.needs(k, "release", "about deploys of releases through the release link")
	}
	if pool.Health != "" && (!pool.Balance.PerInstance() || !pool.Steering) {
		p.errorf("health", "health = %q needs steering in the kernel, whose door reaches one instance: it needs balance = \"reuseport\" or \"sticky\" and steering on; remove health, or those settings", pool.Health)
	}
	if pool.Release == "" {
		return
	}
	under := func(s string) bool { return s == pool.Release || strings.HasPrefix(s, pool.Release+"/") }
	through := under(pool.WorkingDirectory)
	for _, a := range pool.Exec {
		through = through || under(a)
	}
	if !through {
		p.errorf("release", "release = %q: neither exec nor working_directory goes through it: point them into the link, such as working_directory = %q", pool.Release, pool.Release)
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
