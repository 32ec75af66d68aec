package pool

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// TestBecameActive: only a Unit interface change whose new ActiveState is
// "active", of an instance unit, counts.
func TestBecameActive(t *testing.T) {
	sig := func(path, iface string, changed map[string]godbus.Variant) *godbus.Signal {
		return &godbus.Signal{Name: "org.freedesktop.DBus.Properties.PropertiesChanged", Path: godbus.ObjectPath(path),
			Body: []any{iface, changed, []string{}}}
	}
	const inst = "/org/freedesktop/systemd1/unit/app_402_2eservice"
	active := map[string]godbus.Variant{"ActiveState": godbus.MakeVariant("active"), "SubState": godbus.MakeVariant("running")}
	for _, c := range []struct {
		name string
		sig  *godbus.Signal
		want bool
	}{
		{"instance active", sig(inst, "org.freedesktop.systemd1.Unit", active), true},
		{"instance activating", sig(inst, "org.freedesktop.systemd1.Unit", map[string]godbus.Variant{"ActiveState": godbus.MakeVariant("activating")}), false},
		{"no ActiveState", sig(inst, "org.freedesktop.systemd1.Unit", map[string]godbus.Variant{"SubState": godbus.MakeVariant("running")}), false},
		{"service interface", sig(inst, "org.freedesktop.systemd1.Service", active), false},
		{"target", sig("/org/freedesktop/systemd1/unit/app_2etarget", "org.freedesktop.systemd1.Unit", active), false},
		{"ActiveState not a string", sig(inst, "org.freedesktop.systemd1.Unit", map[string]godbus.Variant{"ActiveState": godbus.MakeVariant(uint32(1))}), false},
		{"short body", &godbus.Signal{Name: "org.freedesktop.DBus.Properties.PropertiesChanged", Path: inst, Body: []any{"org.freedesktop.systemd1.Unit"}}, false},
		{"body of other types", &godbus.Signal{Name: "org.freedesktop.DBus.Properties.PropertiesChanged", Path: inst, Body: []any{1, "x"}}, false},
		{"job signal", &godbus.Signal{Name: "org.freedesktop.systemd1.Manager.JobRemoved", Path: "/org/freedesktop/systemd1", Body: []any{uint32(1), godbus.ObjectPath("/j"), "app@2.service", "done"}}, false},
	} {
		if got := becameActive(c.sig); got != c.want {
			t.Errorf("%s: becameActive = %v, want %v", c.name, got, c.want)
		}
	}
}
