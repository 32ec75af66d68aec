package pool

import (
	"math"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// TestUnitCacheRace: a read that overlapped an invalidation is not cached,
// so a unit that failed again (same listed state, newer InactiveEnter) is
// read afresh next time.
func TestUnitCacheRace(t *testing.T) {
	var c unitCache
	st := sddbus.UnitStatus{Name: "app@1.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
	old := Unit{Name: st.Name, LoadState: "loaded", ActiveState: "failed", SubState: "failed", InactiveEnter: time.Unix(100, 0)}

	gen := c.begin(st.Name)
	c.invalidate(st.Name) // the signal of the next failure arrives mid-read
	c.put(old, gen)
	if _, ok := c.get(st); ok {
		t.Fatal("a read that overlapped an invalidation was cached")
	}

	gen = c.begin(st.Name)
	c.put(old, gen)
	if u, ok := c.get(st); !ok || u != old {
		t.Fatalf("get = %+v, %v; want the unit read", u, ok)
	}
	st.ActiveState = "active"
	if _, ok := c.get(st); ok {
		t.Error("cached unit returned though its listed state changed")
	}
	st.ActiveState = "failed"
	gen = c.begin(st.Name)
	c.invalidate("")
	c.put(old, gen)
	if _, ok := c.get(st); ok {
		t.Error("a read that overlapped an invalidation of everything was cached")
	}
}

func TestParsePressure(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"some avg10=1.53 avg60=0.40 avg300=0.08 total=1234567\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 1.53, true},
		{"some avg10=100.00 avg60=0 avg300=0 total=0", 100, true},
		{"full avg10=5.00 avg60=0 avg300=0 total=0\n", 0, false},
		{"some avg60=1.00", 0, false},
		{"some avg10=NaN avg60=0", 0, false},
		{"some avg10=-1", 0, false},
		{"", 0, false},
	} {
		got, err := parsePressure(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parsePressure(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParsePressure(f *testing.F) {
	f.Add("some avg10=1.53 avg60=0.40 avg300=0.08 total=1234567\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	f.Add("some avg10=")
	f.Fuzz(func(t *testing.T, s string) {
		x, err := parsePressure(s)
		if err == nil && (x < 0 || x > 100 || math.IsNaN(x)) {
			t.Errorf("parsePressure(%q) = %v, outside 0..100", s, x)
		}
	})
}
