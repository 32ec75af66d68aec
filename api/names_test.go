package api

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseInstance: unit names come from systemd's signals and from bus
// callers. Whatever is accepted names an instance from 1 to MaxInstances,
// and InstanceName gives the same name back.
func FuzzParseInstance(f *testing.F) {
	for _, s := range []string{"app@3.service", "app@1024.socket", "app@1025", "@1", "a@b@2", "app@03", "app@-1", "app@+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, unit string) {
		p, i, ok := ParseInstance(unit)
		if !ok {
			return
		}
		if i < 1 || i > MaxInstances || p == "" {
			t.Fatalf("ParseInstance(%q) = %q, %d", unit, p, i)
		}
		if q, j, ok := ParseInstance(InstanceTarget(p, i) + ".service"); !ok || q != p || j != i {
			t.Fatalf("ParseInstance(InstanceTarget(%q, %d)) = %q, %d, %v", p, i, q, j, ok)
		}
	})
}

// FuzzParseScale: a scale spec comes from any member of the corral group
// over the bus. An accepted one gives a count from 1 to MaxInstances.
func FuzzParseScale(f *testing.F) {
	for _, s := range []string{"4", "+2", "-1", "auto", "0", "-9223372036854775808", "+9223372036854775807", " 3", "1e3"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, spec string, cur int) {
		cur = min(max(cur, 1), MaxInstances)
		s, err := ParseScale(spec)
		if err != nil {
			return
		}
		n, err := s.Count(cur, 2)
		if err != nil {
			return
		}
		auto := s.Auto
		if n < 1 || n > MaxInstances {
			t.Fatalf("ParseScale(%q, %d) = %d", spec, cur, n)
		}
		if auto != (spec == "auto") {
			t.Fatalf("ParseScale(%q) auto = %v", spec, auto)
		}
		if _, err := strconv.Atoi(spec); err != nil && !auto {
			t.Fatalf("ParseScale accepted %q", spec)
		}
	})
}

// TestNameRules: the rules the corral command and corrald share.
func TestNameRules(t *testing.T) {
	for _, c := range []struct {
		target string
		pool   string
		i      int
		err    error
	}{
		{"app", "app", 0, nil},
		{"app@3", "app", 3, nil},
		{"my.app-2_x@1024", "my.app-2_x", 1024, nil},
		{"app@0", "", 0, ErrNoInstance},
		{"app@01", "", 0, ErrNoInstance},
		{"app@1025", "", 0, ErrNoInstance},
		{"app@", "", 0, ErrNoInstance},
		{"app@1@2", "", 0, ErrNoInstance},
		{"@1", "", 0, ErrNoPool},
		{".app", "", 0, ErrNoPool},
		{"a/b", "", 0, ErrNoPool},
		{"app.service", "", 0, ErrNoPool},
		{strings.Repeat("a", MaxNameLen+1), "", 0, ErrNoPool},
	} {
		p, i, err := ParseTarget(c.target)
		if p != c.pool || i != c.i || !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("ParseTarget(%q) = %q, %d, %v; want %q, %d, %v", c.target, p, i, err, c.pool, c.i, c.err)
		}
	}
	for _, c := range []struct {
		spec      string
		cur, want int
		ok        bool
	}{
		{"4", 2, 4, true}, {"+2", 2, 4, true}, {"-1", 2, 1, true}, {"auto", 9, 2, true},
		{"-2", 2, 0, false}, {"+1024", 1, 0, false}, {"0", 2, 0, false}, {"04", 2, 0, false},
		{"+-1", 2, 0, false}, {"1025", 2, 0, false}, {"four", 2, 0, false}, {"", 2, 0, false},
	} {
		s, err := ParseScale(c.spec)
		n := 0
		if err == nil {
			n, err = s.Count(c.cur, 2)
		}
		if (err == nil) != c.ok || n != c.want || (err != nil && !errors.Is(err, ErrBadSpec)) {
			t.Errorf("scale %q from %d = %d, %v; want %d (ok %v)", c.spec, c.cur, n, err, c.want, c.ok)
		}
	}
}
