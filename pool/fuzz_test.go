package pool

import (
	"strconv"
	"testing"

	"github.com/corral-pool/corral/units"
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
		if i < 1 || i > units.MaxInstances || p == "" {
			t.Fatalf("ParseInstance(%q) = %q, %d", unit, p, i)
		}
		if q, j, ok := ParseInstance(InstanceName(p, i)); !ok || q != p || j != i {
			t.Fatalf("ParseInstance(InstanceName(%q, %d)) = %q, %d, %v", p, i, q, j, ok)
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
		cur = min(max(cur, 1), units.MaxInstances)
		n, auto, err := ParseScale(spec, cur, 2)
		if err != nil {
			return
		}
		if n < 1 || n > units.MaxInstances {
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
