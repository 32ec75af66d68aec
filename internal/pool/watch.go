package pool

import (
	"context"
	"fmt"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/corral-pool/corral/api"
)

// Watch subscribes conn to systemd's signals about units, jobs, reloads
// and its own bus name, and turns each into a hint for c (Dirty) until ctx
// is done. Signals are hints, not truth: c re-lists the pool's units on
// each. A daemon-reload (which may add or remove pools) and a change of
// systemd's bus name owner mark every pool.
func Watch(ctx context.Context, conn *godbus.Conn, c *Coordinator) error {
	matches := [][]godbus.MatchOption{
		{godbus.WithMatchInterface("org.freedesktop.DBus.Properties"), godbus.WithMatchMember("PropertiesChanged"),
			godbus.WithMatchPathNamespace("/org/freedesktop/systemd1/unit")},
		{godbus.WithMatchInterface("org.freedesktop.systemd1.Manager"), godbus.WithMatchObjectPath("/org/freedesktop/systemd1")},
		{godbus.WithMatchInterface("org.freedesktop.DBus"), godbus.WithMatchMember("NameOwnerChanged"),
			godbus.WithMatchArg(0, "org.freedesktop.systemd1")},
	}
	for _, m := range matches {
		if err := conn.AddMatchSignalContext(ctx, m...); err != nil {
			return fmt.Errorf("pool: watch systemd: %w", err)
		}
	}
	// systemd sends unit and job signals only while someone subscribed.
	if err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
		return fmt.Errorf("pool: subscribe to systemd: %w", err)
	}
	// godbus drops signals when this channel is full; a drop only delays
	// a reconcile until the next signal or the resync timer.
	ch := make(chan *godbus.Signal, 1024)
	conn.Signal(ch)
	go func() {
		defer conn.RemoveSignal(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case sig, ok := <-ch:
				if !ok {
					return
				}
				u := signalUnit(sig)
				if becameActive(sig) {
					c.Activated(u)
				} else {
					c.Changed(u)
				}
			}
		}
	}()
	return nil
}

// signalUnit returns the unit a signal is about, "" for a signal about
// systemd as a whole (a reload, a new owner of its bus name).
func signalUnit(sig *godbus.Signal) string {
	switch sig.Name {
	case "org.freedesktop.DBus.Properties.PropertiesChanged":
		return unescapeUnitPath(string(sig.Path))
	case "org.freedesktop.systemd1.Manager.JobRemoved", "org.freedesktop.systemd1.Manager.JobNew":
		// (id, job, unit[, result])
		if len(sig.Body) >= 3 {
			if u, ok := sig.Body[2].(string); ok {
				return u
			}
		}
	case "org.freedesktop.systemd1.Manager.UnitNew", "org.freedesktop.systemd1.Manager.UnitRemoved":
		if len(sig.Body) >= 1 {
			if u, ok := sig.Body[0].(string); ok {
				return u
			}
		}
	}
	return ""
}

// becameActive reports whether sig says that an instance unit is now
// active: a PropertiesChanged of its Unit interface whose new ActiveState
// is "active".
func becameActive(sig *godbus.Signal) bool {
	if sig.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" || len(sig.Body) < 2 {
		return false
	}
	if iface, _ := sig.Body[0].(string); iface != "org.freedesktop.systemd1.Unit" {
		return false
	}
	changed, _ := sig.Body[1].(map[string]godbus.Variant)
	v, ok := changed["ActiveState"]
	if s, _ := v.Value().(string); !ok || s != "active" {
		return false
	}
	_, _, ok = api.ParseInstance(unescapeUnitPath(string(sig.Path)))
	return ok
}

// unitPool returns the pool of a unit name, or "-" for a unit of no pool
// (the coordinator ignores unknown pools).
func unitPool(u string) string {
	if p, _, ok := api.ParseInstance(u); ok {
		return p
	}
	for _, suf := range []string{".target", ".socket"} {
		if strings.HasSuffix(u, suf) {
			return strings.TrimSuffix(u, suf)
		}
	}
	return "-"
}

// unescapeUnitPath turns /org/freedesktop/systemd1/unit/app_403_2eservice
// into app@3.service.
func unescapeUnitPath(p string) string {
	s := p[strings.LastIndexByte(p, '/')+1:]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+3], "%02x", &v); err == nil {
				b.WriteByte(v)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
