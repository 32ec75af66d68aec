package netns

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestCheckPool(t *testing.T) {
	for _, ok := range []string{"10.213.0.0/16", "10.0.0.0/8", "10.1.2.0/24", "10.200.0.0/20"} {
		if err := checkPool(netip.MustParsePrefix(ok)); err != nil {
			t.Errorf("checkPool(%s) = %v; want nil", ok, err)
		}
	}
	for _, bad := range []string{"10.213.0.1/16", "10.1.2.0/25", "0.0.0.0/0", "192.168.0.0/16",
		"172.16.0.0/12", "fd00::/64", "11.0.0.0/8"} {
		if err := checkPool(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("checkPool(%s): want an error", bad)
		}
	}
	if err := checkPool(netip.Prefix{}); err == nil {
		t.Error("checkPool(zero): want an error")
	}
	if err := checkPool(DefaultPool); err != nil {
		t.Errorf("DefaultPool: %v", err)
	}
}

func TestSubnets(t *testing.T) {
	got := subnets(netip.MustParsePrefix("10.213.0.0/16"))
	if len(got) != 256 || got[0].String() != "10.213.0.0/24" || got[1].String() != "10.213.1.0/24" ||
		got[255].String() != "10.213.255.0/24" {
		t.Errorf("subnets(10.213.0.0/16) = %d subnets, %v ... %v", len(got), got[:2], got[len(got)-1])
	}
	got = subnets(netip.MustParsePrefix("10.1.254.0/23"))
	if len(got) != 2 || got[0].String() != "10.1.254.0/24" || got[1].String() != "10.1.255.0/24" {
		t.Errorf("subnets(10.1.254.0/23) = %v", got)
	}
	got = subnets(netip.MustParsePrefix("10.0.0.0/8"))
	if len(got) != 65536 || got[256].String() != "10.1.0.0/24" || got[65535].String() != "10.255.255.0/24" {
		t.Errorf("subnets(10.0.0.0/8) = %d subnets, [256] %v, last %v", len(got), got[256], got[len(got)-1])
	}
}

func TestNames(t *testing.T) {
	for _, sub := range subnets(netip.MustParsePrefix("10.0.0.0/8")) {
		name := nameFor(sub)
		if len(name) > 15 { // IFNAMSIZ-1: the host's end of the veth has this name
			t.Fatalf("nameFor(%s) = %q: longer than an interface name may be", sub, name)
		}
		back, ok := parseName(name)
		if !ok || back != sub {
			t.Fatalf("parseName(nameFor(%s) = %q) = %v, %v", sub, name, back, ok)
		}
	}
	if got := nameFor(netip.MustParsePrefix("10.213.7.0/24")); got != "corral-213-7" {
		t.Errorf("nameFor(10.213.7.0/24) = %q; want corral-213-7", got)
	}
	for _, bad := range []string{"corral-", "corral-1", "corral-1-", "corral-01-2", "corral-1-256",
		"corral-+1-2", "corral-1-2-3", "corral-x-y", "sdbox-1-2", "corral-1-2.netns.lock"} {
		if p, ok := parseName(bad); ok {
			t.Errorf("parseName(%q) = %v; want not ours", bad, p)
		}
	}
}

func TestHostAddrs(t *testing.T) {
	host, inside := hostAddrs(netip.MustParsePrefix("10.213.7.0/24"))
	if host.String() != "10.213.7.1" || inside.String() != "10.213.7.2" {
		t.Errorf("hostAddrs = %s, %s; want 10.213.7.1, 10.213.7.2", host, inside)
	}
	h := newHost("/sbin/ip", netip.MustParsePrefix("10.213.7.0/24"))
	if h.Name != "corral-213-7" || h.Path != "/run/netns/corral-213-7" || h.Addr != inside || h.HostAddr != host {
		t.Errorf("newHost = %+v", h)
	}
}

// Output of `ip -j -4 route show table all` (iproute2 6.1) on a machine with one Host.
const routesJSON = `[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
{"type":"unreachable","dst":"10.213.0.0/24","metric":4294967295,"flags":[]},
{"dst":"10.213.0.0/24","dev":"corral-213-0","protocol":"kernel","scope":"link","prefsrc":"10.213.0.1","flags":[]},
{"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},
{"type":"unreachable","dst":"10.99.0.0/16","metric":10,"flags":[]},
{"type":"local","dst":"10.213.0.1","dev":"corral-213-0","table":"local","protocol":"kernel","scope":"host","prefsrc":"10.213.0.1","flags":[]},
{"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host","prefsrc":"127.0.0.1","flags":[]},
{"type":"broadcast","dst":"192.0.2.255","dev":"eth0","table":"local","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]}]`

func TestRoutes(t *testing.T) {
	rs, err := parseRoutes([]byte(routesJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 8 {
		t.Fatalf("parseRoutes: %d routes; want 8", len(rs))
	}
	for _, tc := range []struct {
		subnet string
		want   bool
	}{
		{"10.213.0.0/24", true},  // a Host
		{"10.213.1.0/24", false}, // free: the default route does not count
		{"10.99.3.0/24", true},   // inside a /16 route
		{"192.0.2.0/24", true},
		{"127.0.0.0/24", true},
	} {
		if got := overlaps(netip.MustParsePrefix(tc.subnet), rs); got != tc.want {
			t.Errorf("overlaps(%s) = %v; want %v", tc.subnet, got, tc.want)
		}
	}
	sub := netip.MustParsePrefix("10.213.0.0/24")
	var guards []int
	for i, r := range rs {
		if r.isGuard(sub) {
			guards = append(guards, i)
		}
	}
	if len(guards) != 1 || guards[0] != 1 {
		t.Errorf("isGuard(10.213.0.0/24) matches routes %v; want [1]", guards)
	}
	if _, err := parseRoutes([]byte("not json")); err == nil {
		t.Error("parseRoutes(not json): want an error")
	}
}

func TestSteps(t *testing.T) {
	h := newHost("/sbin/ip", netip.MustParsePrefix("10.213.7.0/24"))
	steps := h.steps()
	first := strings.Join(steps[0].args, " ")
	if first != "route add unreachable 10.213.7.0/24 metric 4294967295" {
		t.Errorf("first step = %q; want the last-resort route first", first)
	}
	var all []string
	for _, s := range steps {
		if s.do == nil && len(s.args) == 0 {
			t.Error("empty step")
		}
		all = append(all, strings.Join(s.args, " "))
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		"link add corral-213-7 type veth peer name eth0 netns corral-213-7",
		"addr add 10.213.7.1/24 dev corral-213-7",
		"-n corral-213-7 addr add 10.213.7.2/24 dev eth0",
		"-n corral-213-7 route add default via 10.213.7.1 dev eth0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("steps lack %q:\n%s", want, text)
		}
	}
	// addrgenmode none must come before the links are up, or they keep a link-local address.
	if a, b := strings.Index(text, "dev corral-213-7 addrgenmode none"), strings.Index(text, "dev corral-213-7 up"); a < 0 || a > b {
		t.Errorf("addrgenmode none of the host's end after it is up:\n%s", text)
	}
	if a, b := strings.Index(text, "dev eth0 addrgenmode none"), strings.Index(text, "dev eth0 up"); a < 0 || a > b {
		t.Errorf("addrgenmode none of eth0 after it is up:\n%s", text)
	}
}

func TestLock(t *testing.T) {
	old := runDir
	runDir = t.TempDir()
	defer func() { runDir = old }()

	f, err := lock("corral-1-2")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(lockPath("corral-1-2")); !strings.HasPrefix(string(data), "pid=") {
		t.Errorf("lock file holds %q; want pid=...", data)
	}
	// flock conflicts between open files of one process too.
	if _, err := lock("corral-1-2"); !errors.Is(err, errTaken) {
		t.Errorf("second lock = %v; want errTaken", err)
	}
	other, err := lock("corral-1-3")
	if err != nil {
		t.Errorf("lock of another name: %v", err)
	} else if err := unlock("corral-1-3", other); err != nil {
		t.Error(err)
	}
	if err := unlock("corral-1-2", f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lockPath("corral-1-2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file after unlock: %v; want it removed", err)
	}
	f, err = lock("corral-1-2")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	_ = unlock("corral-1-2", f)
}

func TestNetLink(t *testing.T) {
	if got := netLink(4026531840); got != "net:[4026531840]" {
		t.Errorf("netLink = %q", got)
	}
	l, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l, "net:[") {
		t.Errorf("/proc/self/ns/net -> %q: the format inUse expects changed", l)
	}
}

func TestPrerequisites(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no ip
	want := ErrNoIP
	if os.Geteuid() != 0 {
		want = ErrNotRoot
	}
	if _, err := prerequisites(); !errors.Is(err, want) {
		t.Errorf("prerequisites() = %v; want %v", err, want)
	}
	if _, err := New(t.Context(), Options{}); !errors.Is(err, want) {
		t.Errorf("New = %v; want %v", err, want)
	}
}
