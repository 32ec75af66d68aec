package pool

import (
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
