package units

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/api"
)

// field is one key of a pool file. The table keys is the one place that
// says which keys there are, their defaults and how each is read; the parser, the unknown-key check, Defaults and the test of
// corral.toml(5) all go by it.
type field struct {
	key     string // "exec"; "restart.backoff" for a key of [restart]
	def     string // its default as corral.toml(5) writes it ("30s"); "" when it has none or it depends on others
	missing string // for a required key: the error when it is absent
	table   bool   // a table of keys ([restart], [sandbox]) that follow it in keys
	init    func(*Pool)
	read    func(p *parser, pool *Pool, v any)
}

// keys lists every key of a pool file, a table's keys after it, in the
// order errors are reported.
var keys = []field{
	{key: "exec",
		missing: `missing exec: the command each instance runs, such as exec = ["/usr/bin/node", "/srv/app/server.js"]`,
		read: func(p *parser, pool *Pool, v any) {
			if exec, ok := p.strings("exec", v, `an array of strings such as ["/usr/bin/node", "server.js"]`); ok {
				p.exec(exec)
				pool.Exec = exec
			}
		}},
	{key: "listen",
		missing: `missing listen: the addresses systemd listens on, such as listen = ["0.0.0.0:3000"]`,
		read: func(p *parser, pool *Pool, v any) {
			if ls, ok := p.strings("listen", v, `an array of addresses such as ["0.0.0.0:3000"]`); ok {
				pool.Listen = p.listen(ls)
			}
		}},
	{key: "instances", def: "auto", read: (*parser).instances},
	choiceKey("balance", "", func(pool *Pool, s string) { pool.Balance = Balance(s) },
		choice{string(BalanceReusePort), "a socket per instance, the kernel spreads connections"},
		choice{string(BalanceShared), "one socket for all"},
		choice{string(BalanceSticky), "a socket per instance, a client address stays on one instance"}),
	boolKey("steering", true, func(pool *Pool, b bool) { pool.Steering = b }),
	intKey("spares", 0, api.MaxInstances-1, 0, func(pool *Pool, n int) { pool.Spares = n }),
	choiceKey("readiness", string(ReadinessSimple), func(pool *Pool, s string) { pool.Readiness = Readiness(s) },
		choice{string(ReadinessNotify), "the worker sends READY=1"},
		choice{string(ReadinessSimple), "started once executed"}),
	{key: "user", read: func(p *parser, pool *Pool, v any) {
		if s, ok := p.account("user", v); ok {
			pool.User = s
		}
	}},
	{key: "group", read: func(p *parser, pool *Pool, v any) {
		if s, ok := p.account("group", v); ok {
			pool.Group = s
		}
	}},
	{key: "environment", read: func(p *parser, pool *Pool, v any) {
		pool.Environment = p.environment(v)
	}},
	{key: "working_directory", read: func(p *parser, pool *Pool, v any) {
		if s, ok := p.str("working_directory", v, "an absolute path"); ok && p.absPath("working_directory", s) {
			pool.WorkingDirectory = s
		}
	}},
	sizeKey("memory_max", func(pool *Pool, s string, n int64) { pool.MemoryMax, pool.MemoryMaxBytes = s, n }),
	sizeKey("memory_high", func(pool *Pool, s string, n int64) { pool.MemoryHigh, pool.MemoryHighBytes = s, n }),
	{key: "cpu_quota", read: (*parser).cpuQuota},
	intKey("cpu_weight", 1, 10000, 0, func(pool *Pool, n int) { pool.CPUWeight = n }),
	{key: "tasks_max", read: func(p *parser, pool *Pool, v any) {
		if n, ok := p.intOrWord("tasks_max", v, "infinity", "no limit", 1, maxTasks); ok {
			pool.TasksMax = "infinity"
			if n > 0 {
				pool.TasksMax = strconv.Itoa(n)
			}
		}
	}},
	intKey("open_files", 64, 1<<20, 0, func(pool *Pool, n int) { pool.OpenFiles = n }),
	durationKey("start_timeout", time.Second, time.Hour, 90*time.Second, func(pool *Pool, d time.Duration) { pool.StartTimeout = d }),
	durationKey("stop_timeout", time.Second, maxStopTimeout, 30*time.Second, func(pool *Pool, d time.Duration) { pool.StopTimeout = d }),
	offKey(durationKey("watchdog", time.Second, 10*time.Minute, 0, func(pool *Pool, d time.Duration) { pool.Watchdog = d })),
	choiceKey("watchdog_signal", "SIGABRT", func(pool *Pool, s string) { pool.WatchdogSignal = s },
		choice{"SIGABRT", "Go workers print every goroutine's stack"},
		choice{"SIGKILL", ""}, choice{"SIGTERM", ""}),
	offKey(durationKey("recycle_after", 10*time.Second, 8760*time.Hour, 0, func(pool *Pool, d time.Duration) { pool.RecycleAfter = d })),
	offKey(durationKey("recycle_jitter", 0, 8760*time.Hour, 0, func(pool *Pool, d time.Duration) { pool.RecycleJitter = d })),
	intKey("max_unavailable", 1, api.MaxInstances, 1, func(pool *Pool, n int) { pool.MaxUnavailable = n }),
	durationKey("ready_delay", 0, 10*time.Minute, time.Second, func(pool *Pool, d time.Duration) { pool.ReadyDelay = d }),
	{key: "release", read: func(p *parser, pool *Pool, v any) {
		if s, ok := p.str("release", v, "an absolute path"); ok && p.absPath("release", s) {
			if s == "/" {
				p.errorf("release", `release = "/" is the root directory: give the release link, such as "/srv/shop/current"`)
				return
			}
			pool.Release = s
		}
	}},
	intKey("keep_releases", 2, 100, 5, func(pool *Pool, n int) { pool.KeepReleases = n }),
	durationKey("canary", 0, time.Hour, 10*time.Second, func(pool *Pool, d time.Duration) { pool.Canary = d }),
	{key: "health", read: (*parser).health},
	boolKey("start_on_boot", true, func(pool *Pool, b bool) { pool.StartOnBoot = b }),
	{key: "node_preload", read: func(p *parser, pool *Pool, v any) {
		if b, ok := p.boolean("node_preload", v); ok {
			pool.NodePreload, pool.nodePreloadSet = b, true
		}
	}},
	{key: "description", read: func(p *parser, pool *Pool, v any) {
		if s, ok := p.str("description", v, "a string"); ok {
			if strings.ContainsAny(s, "\x00\n\r") || len(s) > 200 {
				p.errorf("description", "description must be one line of at most 200 characters")
			} else {
				pool.Description = s
			}
		}
	}},

	{key: "restart", table: true},
	choiceKey("restart.policy", "on-failure", func(pool *Pool, s string) { pool.Restart.Policy = s },
		choice{"on-failure", "restart after a crash or non-zero exit"}, choice{"always", ""}, choice{"no", ""}),
	durationKey("restart.delay", 0, time.Hour, 0, func(pool *Pool, d time.Duration) { pool.Restart.Delay = d }),
	intKey("restart.burst", 1, 1000, 5, func(pool *Pool, n int) { pool.Restart.Burst = n }),
	durationKey("restart.interval", time.Second, 24*time.Hour, 10*time.Second, func(pool *Pool, d time.Duration) { pool.Restart.Interval = d }),
	durationKey("restart.backoff", 100*time.Millisecond, time.Hour, time.Second, func(pool *Pool, d time.Duration) { pool.Restart.Backoff = d }),
	durationKey("restart.backoff_max", 100*time.Millisecond, 24*time.Hour, 5*time.Minute, func(pool *Pool, d time.Duration) { pool.Restart.BackoffMax = d }),
	intKey("restart.crash_loop_failures", 1, 1000, 5, func(pool *Pool, n int) { pool.Restart.LoopFailures = n }),
	durationKey("restart.crash_loop_window", time.Second, 24*time.Hour, 5*time.Minute, func(pool *Pool, d time.Duration) { pool.Restart.LoopWindow = d }),

	{key: "sandbox", table: true},
	boolKey("sandbox.write_execute_memory", true, func(pool *Pool, b bool) { pool.Sandbox.WriteExecuteMemory = b }),
	choiceKey("sandbox.network", string(NetworkNone), func(pool *Pool, s string) { pool.Sandbox.Network = Network(s) },
		choice{string(NetworkNone), "only the inherited sockets"}, choice{string(NetworkOutbound), "workers may dial other hosts"}),
	{key: "sandbox.writable_paths", read: func(p *parser, pool *Pool, v any) {
		if ps, ok := p.strings("sandbox.writable_paths", v, "an array of absolute paths"); ok {
			for i, w := range ps {
				if p.absPath(fmt.Sprintf("sandbox.writable_paths[%d]", i), w) {
					pool.Sandbox.WritablePaths = append(pool.Sandbox.WritablePaths, w)
				}
			}
		}
	}},
	choiceKey("sandbox.protect_home", "", func(pool *Pool, s string) { pool.Sandbox.ProtectHome = s },
		choice{"yes", ""}, choice{"read-only", ""}, choice{"no", ""}),
}

// Defaults returns a pool with the defaults of every key that has one.
func Defaults() *Pool {
	pool := &Pool{}
	for _, f := range keys {
		if f.init != nil {
			f.init(pool)
		}
	}
	return pool
}

// names returns the names of the keys of table prefix ("" for the top
// level), sorted as keys lists them.
func names(prefix string) []string {
	var out []string
	for _, f := range keys {
		t, k, ok := strings.Cut(f.key, ".")
		if !ok {
			t, k = "", f.key
		}
		if t == prefix {
			out = append(out, k)
		}
	}
	return out
}

// A choice is one value a key may take, and what it means ("" when the
// value says it).
type choice struct{ value, means string }

func choiceKey(key, def string, set func(*Pool, string), choices ...choice) field {
	var quoted, explained []string
	for _, c := range choices {
		quoted = append(quoted, strconv.Quote(c.value))
		e := strconv.Quote(c.value)
		if c.means != "" {
			e += " (" + c.means + ")"
		}
		explained = append(explained, e)
	}
	f := field{key: key, def: def, read: func(p *parser, pool *Pool, v any) {
		s, ok := p.str(key, v, orList(quoted))
		if !ok {
			return
		}
		for _, c := range choices {
			if s == c.value {
				set(pool, s)
				return
			}
		}
		p.errorf(key, "%s must be %s, not %q", key, orList(explained), s)
	}}
	if def != "" {
		f.init = func(pool *Pool) { set(pool, def) }
	}
	return f
}

// orList joins "a", "b" and "c" as `"a", "b" or "c"`.
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func durationKey(key string, lo, hi, def time.Duration, set func(*Pool, time.Duration)) field {
	return field{key: key, def: humanDuration(def),
		init: func(pool *Pool) { set(pool, def) },
		read: func(p *parser, pool *Pool, v any) {
			if d, ok := p.duration(key, v, lo, hi); ok {
				set(pool, d)
			}
		}}
}

// offKey is f without a default: absent, its Pool field keeps its zero
// value, which means off.
func offKey(f field) field {
	f.def, f.init = "", nil
	return f
}

// sizeKey is a size as sizeRE reads it; set gets systemd's value and
// the size in bytes, 0 for a share of RAM or "infinity".
func sizeKey(key string, set func(*Pool, string, int64)) field {
	return field{key: key, read: func(p *parser, pool *Pool, v any) {
		if s, n, ok := p.size(key, v); ok {
			set(pool, s, n)
		}
	}}
}

// intKey is a whole number from lo to hi; def 0 means no default.
func intKey(key string, lo, hi int64, def int, set func(*Pool, int)) field {
	f := field{key: key, read: func(p *parser, pool *Pool, v any) {
		if n, ok := p.integer(key, v, lo, hi); ok {
			set(pool, n)
		}
	}}
	if def != 0 {
		f.def, f.init = strconv.Itoa(def), func(pool *Pool) { set(pool, def) }
	}
	return f
}

func boolKey(key string, def bool, set func(*Pool, bool)) field {
	return field{key: key, def: strconv.FormatBool(def),
		init: func(pool *Pool) { set(pool, def) },
		read: func(p *parser, pool *Pool, v any) {
			if b, ok := p.boolean(key, v); ok {
				set(pool, b)
			}
		}}
}

// humanDuration writes d as a pool file would: "5m", not "5m0s".
func humanDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
