package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// This file holds the pure parts (names, addresses, routes) and the lock that claims a /24.

// DefaultPool is where New takes a Host's /24 when Options.Pool is zero.
var DefaultPool = netip.MustParsePrefix("10.213.0.0/16")

// runDir holds the lock files, runDir/corral-X-Y.netns.lock (a variable for unit tests).
var runDir = "/run"

const (
	namePrefix = "corral-"
	lockSuffix = ".netns.lock"
	// netnsDir is where ip netns keeps named namespaces.
	netnsDir = "/run/netns"
	// guardMetric is the metric of the last-resort unreachable route of each Host's /24:
	// the largest, so that the veth's connected route (metric 0) wins while it exists.
	guardMetric = 4294967295
)

// private10 is the range Options.Pool must lie in: names encode the /24's 2nd and 3rd octets.
var private10 = netip.MustParsePrefix("10.0.0.0/8")

// checkPool validates a pool: an IPv4 prefix within 10.0.0.0/8, /8 to /24, without host bits.
func checkPool(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 24 ||
		p.Masked() != p || !private10.Contains(p.Addr()) {
		return fmt.Errorf("netns: Options.Pool %s: want a prefix of 10.0.0.0/8 between /8 and /24, such as %s", p, DefaultPool)
	}
	return nil
}

// subnets returns the /24s of pool, in order.
func subnets(pool netip.Prefix) []netip.Prefix {
	base := pool.Addr().As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8
	n := 1 << (24 - pool.Bits())
	out := make([]netip.Prefix, 0, n)
	for i := range n {
		v := first + uint32(i)<<8
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24))
	}
	return out
}

// hostAddrs returns the addresses of a /24: the host's end (.1) and the namespace's (.2).
func hostAddrs(subnet netip.Prefix) (host, inside netip.Addr) {
	a := subnet.Addr().As4()
	a[3] = 1
	host = netip.AddrFrom4(a)
	a[3] = 2
	return host, netip.AddrFrom4(a)
}

// nameFor returns the name of the namespace (and of the host's interface) of a /24 of
// 10.0.0.0/8: corral-X-Y for 10.X.Y.0/24, at most 15 bytes as interface names must be.
func nameFor(subnet netip.Prefix) string {
	a := subnet.Addr().As4()
	return fmt.Sprintf("%s%d-%d", namePrefix, a[1], a[2])
}

// parseName is the inverse of nameFor: ok is false for any name nameFor does not make.
func parseName(name string) (subnet netip.Prefix, ok bool) {
	rest, found := strings.CutPrefix(name, namePrefix)
	if !found {
		return netip.Prefix{}, false
	}
	xs, ys, found := strings.Cut(rest, "-")
	if !found {
		return netip.Prefix{}, false
	}
	x, err1 := strconv.ParseUint(xs, 10, 8)
	y, err2 := strconv.ParseUint(ys, 10, 8)
	if err1 != nil || err2 != nil {
		return netip.Prefix{}, false
	}
	subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(x), byte(y), 0}), 24)
	return subnet, nameFor(subnet) == name // no leading zeros, no sign
}

// lockPath returns the lock file of a name.
func lockPath(name string) string { return filepath.Join(runDir, name+lockSuffix) }

// route is what New needs of a route in `ip -j route show table all`.
type route struct {
	Type   string `json:"type"` // empty for unicast
	Dst    string `json:"dst"`  // "default", "10.0.0.0/8" or an address
	Metric uint32 `json:"metric"`
	Table  string `json:"table"` // empty for main
}

// parseRoutes parses the output of `ip -j -4 route show table all`.
func parseRoutes(data []byte) ([]route, error) {
	var rs []route
	if err := json.Unmarshal(data, &rs); err != nil {
		return nil, fmt.Errorf("netns: parse ip -j route: %w", err)
	}
	return rs, nil
}

// prefix returns the destination of r, false for the default route or an unparsable one.
func (r route) prefix() (netip.Prefix, bool) {
	if r.Dst == "" || r.Dst == "default" {
		return netip.Prefix{}, false
	}
	if strings.Contains(r.Dst, "/") {
		p, err := netip.ParsePrefix(r.Dst)
		return p.Masked(), err == nil && p.Bits() > 0
	}
	a, err := netip.ParseAddr(r.Dst)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// isGuard reports whether r is the last-resort route of subnet.
func (r route) isGuard(subnet netip.Prefix) bool {
	p, ok := r.prefix()
	return ok && r.Type == "unreachable" && r.Metric == guardMetric && p == subnet && r.Table == ""
}

// overlaps reports whether any route but the default one covers part of subnet: the host
// already reaches (or owns) addresses there, so a Host must not take it.
func overlaps(subnet netip.Prefix, routes []route) bool {
	for _, r := range routes {
		if p, ok := r.prefix(); ok && p.Overlaps(subnet) {
			return true
		}
	}
	return false
}

// errTaken says that a /24 belongs to a live Host (its lock is held) or is otherwise in use.
var errTaken = errors.New("netns: taken")

// lock takes the lock file of name without waiting: errTaken if a live process holds it. The
// file holds the owner's PID, for people. A lock file is removed by its owner before it
// releases it (unlock); lock checks, once it holds the lock, that the file it locked is still
// the one at the path, so that two processes never both own a name.
func lock(name string) (*os.File, error) {
	path := lockPath(name)
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("netns: lock %s: %w", path, err)
		}
		fd := int(f.Fd())
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errTaken
			}
			return nil, fmt.Errorf("netns: lock %s: %w", path, err)
		}
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(path, &now) == nil &&
			held.Dev == now.Dev && held.Ino == now.Ino {
			_ = f.Truncate(0)
			_, _ = f.WriteAt(fmt.Appendf(nil, "pid=%d\n", os.Getpid()), 0)
			return f, nil
		}
		f.Close() // its owner removed it meanwhile: lock the new one
	}
	return nil, errTaken
}

// unlock removes the lock file of name, then releases it.
func unlock(name string, f *os.File) error {
	err := os.Remove(lockPath(name))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}
