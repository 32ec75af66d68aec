package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Systemd is what the coordinator needs from systemd. SystemdBus implements
// it over D-Bus; tests fake it. Every method is safe for concurrent use.
type Systemd interface {
	// Observe lists the units of pool: its target, its socket(s) and the
	// instances systemd knows, with their properties.
	Observe(ctx context.Context, pool string) (Observed, error)
	// Start, Stop and Restart queue a job (mode "replace") and wait for it:
	// any result but "done" is an error naming the unit and the result.
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	// ResetFailed clears a unit's failed state and start-limit counter.
	ResetFailed(ctx context.Context, unit string) error
}

// SystemdBus is Systemd over a go-systemd D-Bus connection.
type SystemdBus struct {
	Conn *sddbus.Conn
}

// Observe implements Systemd.
func (s SystemdBus) Observe(ctx context.Context, pool string) (Observed, error) {
	o := Observed{Sockets: map[int]Unit{}, Instances: map[int]Unit{}}
	list, err := s.Conn.ListUnitsByPatternsContext(ctx, nil,
		[]string{pool + ".target", pool + "@*.service", pool + ".socket", pool + "@*.socket"})
	if err != nil {
		return o, fmt.Errorf("pool: list units of %s: %w", pool, err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })

	// Properties are fetched concurrently: a pool of 64 instances is 128
	// round trips otherwise.
	units := make([]Unit, len(list))
	errs := make([]error, len(list))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, st := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			units[i], errs[i] = s.unit(ctx, st)
		}()
	}
	wg.Wait()
	for i, u := range units {
		if errs[i] != nil {
			// A unit that vanished between list and read is not an error.
			continue
		}
		switch {
		case u.Name == pool+".target":
			o.Target = u
		case u.Name == pool+".socket":
			o.Sockets[0] = u
		default:
			p, n, ok := ParseInstance(u.Name)
			if !ok || p != pool {
				continue
			}
			if len(u.Name) > 7 && u.Name[len(u.Name)-7:] == ".socket" {
				o.Sockets[n] = u
			} else {
				o.Instances[n] = u
			}
		}
	}
	return o, nil
}

func (s SystemdBus) unit(ctx context.Context, st sddbus.UnitStatus) (Unit, error) {
	u := Unit{Name: st.Name, LoadState: st.LoadState, ActiveState: st.ActiveState, SubState: st.SubState,
		MemoryCurrent: Unknown, CPUUsageNSec: Unknown}
	props, err := s.Conn.GetUnitPathPropertiesContext(ctx, st.Path)
	if err != nil {
		return u, err
	}
	u.ActiveEnter = usecTime(props["ActiveEnterTimestamp"])
	u.InactiveEnter = usecTime(props["InactiveEnterTimestamp"])
	u.InactiveExit = usecTime(props["InactiveExitTimestamp"])
	iface := "Socket"
	if len(st.Name) > 8 && st.Name[len(st.Name)-8:] == ".service" {
		iface = "Service"
	} else if len(st.Name) > 7 && st.Name[len(st.Name)-7:] == ".target" {
		return u, nil
	}
	tp, err := s.Conn.GetUnitTypePropertiesContext(ctx, st.Name, iface)
	if err != nil {
		return u, err
	}
	u.Result, _ = tp["Result"].(string)
	u.MainPID, _ = tp["MainPID"].(uint32)
	u.NRestarts, _ = tp["NRestarts"].(uint32)
	if v, ok := tp["MemoryCurrent"].(uint64); ok {
		u.MemoryCurrent = v
	}
	if v, ok := tp["CPUUsageNSec"].(uint64); ok {
		u.CPUUsageNSec = v
	}
	return u, nil
}

// usecTime converts a systemd timestamp (microseconds since the epoch, 0 for
// never) to a time.
func usecTime(v any) time.Time {
	us, ok := v.(uint64)
	if !ok || us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(us))
}

// ErrJob is wrapped by errors of jobs that did not end "done".
var ErrJob = errors.New("job failed")

func (s SystemdBus) job(ctx context.Context, verb, unit string, f func(context.Context, string, string, chan<- string) (int, error)) error {
	// Buffered: go-systemd must never block on delivering the result, or
	// it stalls the whole connection.
	ch := make(chan string, 1)
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: %w: %s (see 'journalctl -u %s')", verb, unit, ErrJob, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, unit, ctx.Err())
	}
}

// Start implements Systemd.
func (s SystemdBus) Start(ctx context.Context, unit string) error {
	return s.job(ctx, "start", unit, s.Conn.StartUnitContext)
}

// Stop implements Systemd.
func (s SystemdBus) Stop(ctx context.Context, unit string) error {
	return s.job(ctx, "stop", unit, s.Conn.StopUnitContext)
}

// Restart implements Systemd.
func (s SystemdBus) Restart(ctx context.Context, unit string) error {
	return s.job(ctx, "restart", unit, s.Conn.RestartUnitContext)
}

// ResetFailed implements Systemd.
func (s SystemdBus) ResetFailed(ctx context.Context, unit string) error {
	if err := s.Conn.ResetFailedUnitContext(ctx, unit); err != nil {
		return fmt.Errorf("reset-failed %s: %w", unit, err)
	}
	return nil
}
