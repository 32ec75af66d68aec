package sdbox

import (
	"slices"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// comm may contain spaces and parentheses; starttime is field 22.
	line := "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{comm: "a (b) c", state: 'S', ppid: 17, start: 987654}
	if got != want {
		t.Errorf("parseStat:\n got %+v\nwant %+v", got, want)
	}
	if _, err := parseStat("4242 (x) S 1"); err == nil {
		t.Error("parseStat of a short line: want an error")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 0:21 / / rw,relatime - overlay overlay rw
42 27 0:39 / /run/sdbox.123 rw,relatime - tmpfs tmpfs rw
45 42 0:40 / /run/sdbox.123/root rw,relatime - overlay overlay rw,lowerdir=/
46 27 0:41 / /mnt/with\040space rw - tmpfs tmpfs rw
47 27 0:42 / /mnt/back\134slash rw - tmpfs tmpfs rw
`
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/", "/run/sdbox.123", "/run/sdbox.123/root", "/mnt/with space", `/mnt/back\slash`}
	if !slices.Equal(got, want) {
		t.Errorf("parseMountinfo:\n got %q\nwant %q", got, want)
	}
}

func TestBoxPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/srv/a/b.toml", "srv/a/b.toml", true},
		{"/opt/x", "opt/x", true},
		{"/etc/corral/pools.d/app.toml", "etc/corral/pools.d/app.toml", true},
		{"/tmpfoo", "tmpfoo", true},
		{"/tmp/x", "", false},
		{"/tmp", "", false},
		{"/run/x", "", false},
		{"/proc/1/x", "", false},
		{"relative", "", false},
		{"/srv/../etc/x", "", false},
		{"/srv/", "", false},
		{"/", "", false},
	} {
		got, err := boxPath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("boxPath(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestCheckUnitName(t *testing.T) {
	for _, u := range DefaultMask() {
		if err := checkUnitName(u); err != nil {
			t.Errorf("DefaultMask holds %q: %v", u, err)
		}
	}
	for _, bad := range []string{"", "foo", "../x.service", "a/b.service", ".service"} {
		if err := checkUnitName(bad); err == nil {
			t.Errorf("checkUnitName(%q): want an error", bad)
		}
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
	} {
		if got := tail(tc.in, tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q; want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestCgroupHierarchies(t *testing.T) {
	mountinfo := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	got, err := parseCgroupMounts(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []systemdHierarchy{
		{v1name: true, mount: "/sys/fs/cgroup/systemd", root: "/"},
		{v1name: false, mount: "/sys/fs/cgroup/unified", root: "/"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseCgroupMounts:\n got %+v\nwant %+v", got, want)
	}

	own := "9:name=systemd:/a/b\n4:memory:/m\n0::/c\n"
	if p, ok := ownCgroup(own, true); !ok || p != "/a/b" {
		t.Errorf("ownCgroup(name=systemd) = %q, %v; want /a/b", p, ok)
	}
	if p, ok := ownCgroup(own, false); !ok || p != "/c" {
		t.Errorf("ownCgroup(v2) = %q, %v; want /c", p, ok)
	}
	if _, ok := ownCgroup("4:memory:/m\n", true); ok {
		t.Error("ownCgroup without name=systemd: want not found")
	}
}

func TestCheckNetNS(t *testing.T) {
	if err := checkNetNS("/proc/self/ns/net"); err != nil {
		t.Errorf("checkNetNS(/proc/self/ns/net) = %v; want nil", err)
	}
	for _, bad := range []string{"", "run/netns/x", "/proc/self/ns/mnt", "/proc/self/status", "/nonexistent/netns"} {
		if err := checkNetNS(bad); err == nil {
			t.Errorf("checkNetNS(%q): want an error", bad)
		}
	}
}
