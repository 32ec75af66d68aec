package units

import (
	"fmt"
	"strings"
)

// KV is one unit file setting.
type KV struct{ Key, Value string }

// Hardening returns the sandbox settings of a pool's worker template, in
// the order they are written. The defaults are the tightest a network
// worker serving on inherited sockets can live with: it needs no socket(2)
// of an IP family, no privileges, no devices and no writable file system.
// The pool's [sandbox] table loosens them, and Loosenings says what each
// loosening costs.
func Hardening(p *Pool) []KV {
	s := p.Sandbox
	kv := []KV{}
	add := func(k, v string) { kv = append(kv, KV{k, v}) }
	if p.User == "" {
		add("DynamicUser", "yes")
		add("User", DynamicUserName(p.Name))
	} else {
		add("User", p.User)
		if p.Group != "" {
			add("Group", p.Group)
		}
	}
	add("UMask", "0077")
	add("NoNewPrivileges", "yes")
	add("CapabilityBoundingSet", "")
	add("AmbientCapabilities", "")
	add("ProtectSystem", "strict")
	add("ProtectHome", s.ProtectHome)
	if len(s.WritablePaths) > 0 {
		ps := make([]string, len(s.WritablePaths))
		for i, w := range s.WritablePaths {
			ps[i] = quoteEnv(w)
		}
		add("ReadWritePaths", strings.Join(ps, " "))
	}
	add("PrivateTmp", "yes")
	add("PrivateDevices", "yes")
	add("PrivateUsers", "yes")
	add("PrivateIPC", "yes")
	add("PrivateMounts", "yes")
	add("ProtectHostname", "yes")
	add("ProtectClock", "yes")
	add("ProtectKernelTunables", "yes")
	add("ProtectKernelModules", "yes")
	add("ProtectKernelLogs", "yes")
	add("ProtectControlGroups", "yes")
	add("ProtectProc", "invisible")
	add("KeyringMode", "private")
	add("LockPersonality", "yes")
	add("RestrictRealtime", "yes")
	add("RestrictSUIDSGID", "yes")
	add("RestrictNamespaces", "yes")
	add("RemoveIPC", "yes")
	if !s.WriteExecuteMemory {
		add("MemoryDenyWriteExecute", "yes")
	}
	switch s.Network {
	case NetworkOutbound:
		add("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6")
	default:
		// The worker gets a network namespace of its own holding only a
		// loopback device; a socket inherited from systemd stays in the
		// host's namespace and keeps serving. IP sockets may still be
		// created (Python's socketserver makes one before it is handed
		// fd 3) but reach nothing. AF_UNIX is for sd_notify and journald.
		add("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6")
		add("IPAddressDeny", "any")
		add("PrivateNetwork", "yes")
	}
	add("SystemCallArchitectures", "native")
	add("SystemCallFilter", "@system-service")
	add("SystemCallFilter", "~@privileged @resources")
	// A filtered call fails with EPERM instead of killing the worker, so
	// runtimes that probe optional calls keep running.
	add("SystemCallErrorNumber", "EPERM")
	return kv
}

// Loosening is one way a pool's sandbox is looser than corral's defaults.
type Loosening struct {
	Setting string // the pool file setting, e.g. `sandbox.network = "outbound"`
	Effect  string // what it allows, in a sentence
	apply   func(*Pool)
}

func (l Loosening) String() string { return l.Setting + ": " + l.Effect }

// Tightest returns a copy of p with every loosening undone: a dynamic user
// and the default sandbox with W^X memory.
func Tightest(p *Pool) *Pool {
	t := *p
	t.User, t.Group = "", ""
	t.Sandbox = Sandbox{WriteExecuteMemory: false, Network: NetworkNone, ProtectHome: "yes"}
	return &t
}

// Loosenings lists how p's sandbox differs from the tightest settings
// (Tightest), so that `corral validate` can say what each costs.
func Loosenings(p *Pool) []Loosening {
	var ls []Loosening
	s := p.Sandbox
	if p.User != "" {
		ls = append(ls, Loosening{fmt.Sprintf("user = %q", p.User),
			"workers run as a fixed user instead of a fresh dynamic one: they can read and write whatever that user owns, and files they create outlive them",
			func(t *Pool) { t.User, t.Group = p.User, p.Group }})
	}
	if s.WriteExecuteMemory {
		ls = append(ls, Loosening{"sandbox.write_execute_memory = true (the default)",
			"workers may map writable and executable memory, which JITs (V8, PyPy) need; set it to false for Go, Rust, C or CPython workers",
			func(t *Pool) { t.Sandbox.WriteExecuteMemory = true }})
	}
	if s.Network == NetworkOutbound {
		ls = append(ls, Loosening{`sandbox.network = "outbound"`,
			"workers share the host's network and may open IPv4/IPv6 sockets to any host, not only serve on the inherited sockets",
			func(t *Pool) { t.Sandbox.Network = NetworkOutbound }})
	}
	if len(s.WritablePaths) > 0 {
		ls = append(ls, Loosening{"sandbox.writable_paths",
			"workers may write to " + strings.Join(s.WritablePaths, ", "),
			func(t *Pool) { t.Sandbox.WritablePaths = s.WritablePaths }})
	}
	switch s.ProtectHome {
	case "read-only":
		ls = append(ls, Loosening{`sandbox.protect_home = "read-only"`,
			"workers can read /home, /root and /run/user (the default when the pool runs from there)",
			func(t *Pool) { t.Sandbox.ProtectHome = "read-only" }})
	case "no":
		ls = append(ls, Loosening{`sandbox.protect_home = "no"`,
			"workers see /home, /root and /run/user as the user they run as",
			func(t *Pool) { t.Sandbox.ProtectHome = "no" }})
	}
	return ls
}
