package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/corral-pool/corral/api"
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
	// Counters returns a service's MemoryCurrent and CPUUsageNSec, read
	// afresh; Unknown where systemd has no accounting.
	Counters(ctx context.Context, unit string) (mem, cpu uint64)
	// IsActive reports whether a unit is active, read afresh.
	IsActive(ctx context.Context, unit string) (bool, error)
	// Kill sends sig to the main process of a service.
	Kill(ctx context.Context, unit string, sig syscall.Signal) error
	// LiftMemoryHigh lifts the kernel's throttling of a running service at
	// MemoryHigh= for the rest of its life: the service's cgroup gets
	// memory.high "max", and systemd sets MemoryHigh= again in the cgroup
	// of the next start.
	LiftMemoryHigh(ctx context.Context, unit string) error
	// MemoryStall returns the share of the last 10 seconds, in percent, in
	// which some task of a running service stalled on memory: "some
	// avg10" of its cgroup's memory.pressure (PSI).
	MemoryStall(ctx context.Context, unit string) (float64, error)
}

// Invalidator is implemented by a Systemd that caches unit properties: the
// coordinator calls Invalidate when a unit's properties changed ("" for
// every unit).
type Invalidator interface {
	Invalidate(unit string)
}

// SystemdBus is Systemd over a go-systemd D-Bus connection. It caches what
// it read of each unit until the unit's state changes or Invalidate is
// called for it (on the unit's PropertiesChanged signal); socket units are
// known by their listed state alone. Create it with NewSystemdBus.
type SystemdBus struct {
	Conn  *sddbus.Conn
	cache unitCache

	cgMu   sync.Mutex
	cgDirs map[string]string      // cgroup directories by unit (readCgroup)
	noAcct map[string]unaccounted // what systemd accounts nothing of, by unit (Counters)

	cgFiles openFiles // cgroup files kept open (readCgroup)
}

// NewSystemdBus returns a SystemdBus on conn.
func NewSystemdBus(conn *sddbus.Conn) *SystemdBus {
	return &SystemdBus{Conn: conn}
}

// Invalidate drops what is cached of unit, or of every unit for "".
func (s *SystemdBus) Invalidate(unit string) { s.cache.invalidate(unit) }

// unitCache holds what was read of units. A read that overlapped an
// invalidation of its unit is not stored: the signal that invalidated it
// may report a change the read missed, and the unit's listed state alone
// may not show it (failed, then failed again). The zero value is empty and
// ready; it is safe for concurrent use.
type unitCache struct {
	mu    sync.Mutex
	units map[string]Unit
	gen   map[string]uint64 // invalidations per unit
	all   uint64            // invalidations of everything
}

// get returns the cached unit if its listed state is still st's.
func (c *unitCache) get(st sddbus.UnitStatus) (Unit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.units[st.Name]
	return u, ok && u.ActiveState == st.ActiveState && u.SubState == st.SubState && u.LoadState == st.LoadState
}

// begin returns the generation to pass to put for a read of unit starting
// now.
func (c *unitCache) begin(unit string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen[unit] + c.all
}

// put stores u, read since begin returned gen, unless it was invalidated
// meanwhile.
func (c *unitCache) put(u Unit, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen[u.Name]+c.all {
		return
	}
	if c.units == nil {
		c.units = map[string]Unit{}
	}
	c.units[u.Name] = u
}

func (c *unitCache) invalidate(unit string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == nil {
		c.gen = map[string]uint64{}
	}
	if unit == "" {
		c.units = nil
		c.all++
		return
	}
	delete(c.units, unit)
	c.gen[unit]++
}

// Observe implements Systemd.
func (s *SystemdBus) Observe(ctx context.Context, pool string) (Observed, error) {
	o := Observed{Sockets: map[int]Unit{}, Instances: map[int]Unit{}}
	list, err := s.Conn.ListUnitsByPatternsContext(ctx, nil,
		[]string{pool + ".target", pool + "@*.service", pool + ".socket", pool + "@*.socket"})
	if err != nil {
		return o, fmt.Errorf("pool: list units of %s: %w", pool, err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })

	// Properties are fetched concurrently, and only for units whose state
	// changed since they were last read.
	units := make([]Unit, len(list))
	errs := make([]error, len(list))
	gens := make([]uint64, len(list))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, st := range list {
		if u, ok := s.cache.get(st); ok {
			units[i] = u
			continue
		}
		gens[i] = s.cache.begin(st.Name)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			units[i], errs[i] = s.unit(ctx, st)
		}()
	}
	wg.Wait()
	for i, u := range units {
		if errs[i] == nil {
			s.cache.put(u, gens[i])
		}
	}
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
			p, n, ok := api.ParseInstance(u.Name)
			if !ok || p != pool {
				continue
			}
			if strings.HasSuffix(u.Name, ".socket") {
				o.Sockets[n] = u
			} else {
				o.Instances[n] = u
			}
		}
	}
	return o, nil
}

// Counters implements Systemd: it reads memory.current and cpu.stat's
// usage_usec from the unit's cgroup, as systemd reads MemoryCurrent and
// CPUUsageNSec but without a bus call each (a scrape of the metrics reads
// every instance); where the cgroup has no such file (no controller there),
// it asks systemd, and Unknown where systemd has no accounting either.
func (s *SystemdBus) Counters(ctx context.Context, unit string) (mem, cpu uint64) {
	mem, cpu = api.Unknown, api.Unknown
	noMem, noCPU := s.unaccounted(unit)
	if !noMem {
		if b, err := s.readCgroup(ctx, unit, "memory.current"); err == nil {
			if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				mem = v
			}
		} else if p, err := s.Conn.GetServicePropertyContext(ctx, unit, "MemoryCurrent"); err == nil {
			if v, ok := p.Value.Value().(uint64); ok {
				mem = v
			}
		}
	}
	if !noCPU {
		if b, err := s.readCgroup(ctx, unit, "cpu.stat"); err == nil {
			if v, ok := usageUSec(string(b)); ok {
				cpu = v * 1000
			}
		} else if p, err := s.Conn.GetServicePropertyContext(ctx, unit, "CPUUsageNSec"); err == nil {
			if v, ok := p.Value.Value().(uint64); ok {
				cpu = v
			}
		}
	}
	if mem == api.Unknown && !noMem || cpu == api.Unknown && !noCPU {
		// Neither the cgroup nor systemd accounts it (a container whose
		// controllers belong to the host): look again in a while, not at
		// every scrape.
		until := time.Now().Add(unaccountedFor)
		s.cgMu.Lock()
		if s.noAcct == nil || len(s.noAcct) > 100000 {
			s.noAcct = map[string]unaccounted{}
		}
		a := s.noAcct[unit]
		if mem == api.Unknown && !noMem {
			a.mem = until
		}
		if cpu == api.Unknown && !noCPU {
			a.cpu = until
		}
		s.noAcct[unit] = a
		s.cgMu.Unlock()
	}
	return mem, cpu
}

// unaccountedFor is how long Counters takes systemd's word that a unit has
// no memory or CPU accounting.
const unaccountedFor = time.Minute

// unaccounted is until when a unit has no memory and no CPU accounting.
type unaccounted struct{ mem, cpu time.Time }

// unaccounted reports whether the memory and the CPU of unit went
// unaccounted a moment ago.
func (s *SystemdBus) unaccounted(unit string) (mem, cpu bool) {
	s.cgMu.Lock()
	defer s.cgMu.Unlock()
	a, now := s.noAcct[unit], time.Now()
	return now.Before(a.mem), now.Before(a.cpu)
}

// DaemonReload implements DaemonReloader: systemd reloads its units, rerunning
// the generators, and returns when done.
func (s *SystemdBus) DaemonReload(ctx context.Context) error {
	return s.Conn.ReloadContext(ctx)
}

// IsActive implements Systemd.
func (s *SystemdBus) IsActive(ctx context.Context, unit string) (bool, error) {
	p, err := s.Conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return false, fmt.Errorf("read %s: %w", unit, err)
	}
	st, _ := p.Value.Value().(string)
	return st == "active", nil
}

func (s *SystemdBus) unit(ctx context.Context, st sddbus.UnitStatus) (Unit, error) {
	u := Unit{Name: st.Name, LoadState: st.LoadState, ActiveState: st.ActiveState, SubState: st.SubState,
		MemoryCurrent: api.Unknown, CPUUsageNSec: api.Unknown}
	props, err := s.Conn.GetUnitPathPropertiesContext(ctx, st.Path)
	if err != nil {
		return u, err
	}
	u.ActiveEnter = usecTime(props["ActiveEnterTimestamp"])
	u.InactiveEnter = usecTime(props["InactiveEnterTimestamp"])
	u.InactiveExit = usecTime(props["InactiveExitTimestamp"])
	if !strings.HasSuffix(st.Name, ".service") {
		return u, nil
	}
	tp, err := s.Conn.GetUnitTypePropertiesContext(ctx, st.Name, "Service")
	if err != nil {
		return u, err
	}
	u.Result, _ = tp["Result"].(string)
	u.MainPID, _ = tp["MainPID"].(uint32)
	u.NRestarts, _ = tp["NRestarts"].(uint32)
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

func (s *SystemdBus) job(ctx context.Context, verb, unit string, f func(context.Context, string, string, chan<- string) (int, error)) error {
	// Buffered: go-systemd must never block on delivering the result, or
	// it stalls the whole connection.
	ch := make(chan string, 1)
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: %w: %s (see 'journalctl -u %s')", verb, unit, api.ErrFailed, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, unit, ctx.Err())
	}
}

// Start implements Systemd.
func (s *SystemdBus) Start(ctx context.Context, unit string) error {
	return s.job(ctx, "start", unit, s.Conn.StartUnitContext)
}

// Stop implements Systemd.
func (s *SystemdBus) Stop(ctx context.Context, unit string) error {
	return s.job(ctx, "stop", unit, s.Conn.StopUnitContext)
}

// Kill implements Systemd.
func (s *SystemdBus) Kill(ctx context.Context, unit string, sig syscall.Signal) error {
	if err := s.Conn.KillUnitWithTarget(ctx, unit, sddbus.Main, int32(sig)); err != nil {
		return fmt.Errorf("kill %s: %w", unit, err)
	}
	return nil
}

// LiftMemoryHigh implements Systemd: it writes "max" to memory.high in the
// unit's cgroup (its ControlGroup property, below CgroupRoot). Setting the
// property instead (SetUnitProperties) would leave a drop-in that
// outlives the instance and shadows the pool file until a reboot.
func (s *SystemdBus) LiftMemoryHigh(ctx context.Context, unit string) error {
	dir, err := s.cgroupDir(ctx, unit)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.high"), []byte("max"), 0); err != nil {
		return fmt.Errorf("lift memory.high of %s: %w", unit, err)
	}
	return nil
}

// MemoryStall implements Systemd.
func (s *SystemdBus) MemoryStall(ctx context.Context, unit string) (float64, error) {
	data, err := s.readCgroup(ctx, unit, "memory.pressure")
	if err != nil {
		return 0, fmt.Errorf("memory pressure of %s: %w", unit, err)
	}
	return parsePressure(string(data))
}

// readCgroup reads a file of a running unit's cgroup. The unit's cgroup
// directory is kept between calls (a unit's ControlGroup does not change
// while it runs) and looked up again when the file cannot be read.
func (s *SystemdBus) readCgroup(ctx context.Context, unit, file string) ([]byte, error) {
	s.cgMu.Lock()
	dir, ok := s.cgDirs[unit]
	s.cgMu.Unlock()
	if !ok {
		var err error
		if dir, err = s.cgroupDir(ctx, unit); err != nil {
			return nil, err
		}
		s.cgMu.Lock()
		if s.cgDirs == nil || len(s.cgDirs) > 100000 {
			s.cgDirs = map[string]string{}
		}
		s.cgDirs[unit] = dir
		s.cgMu.Unlock()
	}
	data, err := s.cgFiles.read(filepath.Join(dir, file))
	if err != nil {
		if _, serr := os.Stat(dir); serr != nil { // a new life, in a new cgroup
			s.cgMu.Lock()
			delete(s.cgDirs, unit)
			s.cgMu.Unlock()
		}
		return nil, err
	}
	return data, nil
}

// openFiles keeps cgroup files open to read them again from offset 0: a
// pread costs 1.7 µs where opening, reading and closing cost 11 µs, and a
// scrape of the metrics reads two files of every running instance. A file
// whose cgroup went away (the unit stopped) fails to read, and is closed
// and opened again.
type openFiles struct {
	mu    sync.Mutex
	files map[string]*os.File
}

// maxOpenFiles bounds openFiles: beyond it, every file is closed.
const maxOpenFiles = 4096

func (o *openFiles) read(path string) ([]byte, error) {
	o.mu.Lock()
	f := o.files[path]
	o.mu.Unlock()
	if f != nil {
		if data, ok := readAt0(f); ok {
			return data, nil
		}
		o.forget(path, f)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	data, ok := readAt0(f)
	if !ok {
		f.Close()
		return os.ReadFile(path)
	}
	o.mu.Lock()
	if o.files == nil || len(o.files) >= maxOpenFiles {
		for _, old := range o.files {
			old.Close()
		}
		o.files = map[string]*os.File{}
	}
	if old := o.files[path]; old != nil {
		old.Close()
	}
	o.files[path] = f
	o.mu.Unlock()
	return data, nil
}

func (o *openFiles) forget(path string, f *os.File) {
	o.mu.Lock()
	if o.files[path] == f {
		delete(o.files, path)
	}
	o.mu.Unlock()
	f.Close()
}

// readAt0 reads a small file from its start in one pread; ok is false when
// it failed or may not have read all of it.
func readAt0(f *os.File) ([]byte, bool) {
	buf := make([]byte, 4096)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) || n == len(buf) {
		return nil, false
	}
	return buf[:n], true
}

// cgroupDir returns the directory of a running service's cgroup, from its
// ControlGroup property.
func (s *SystemdBus) cgroupDir(ctx context.Context, unit string) (string, error) {
	p, err := s.Conn.GetServicePropertyContext(ctx, unit, "ControlGroup")
	if err != nil {
		return "", fmt.Errorf("the cgroup of %s: %w", unit, err)
	}
	cg, _ := p.Value.Value().(string)
	if !strings.HasPrefix(cg, "/") || strings.Contains(cg, "..") {
		return "", fmt.Errorf("the cgroup of %s: %q (is it running?)", unit, cg)
	}
	dir := filepath.Join(CgroupRoot, cg)
	if _, err := os.Stat(dir); err != nil {
		// A host with the hybrid layout (cgroup v1 controllers) keeps the
		// v2 tree, cpu.stat in each cgroup, at unified/.
		if hybrid := filepath.Join(CgroupRoot, "unified", cg); dirExists(hybrid) {
			return hybrid, nil
		}
	}
	return dir, nil
}

// usageUSec returns usage_usec of a cgroup's cpu.stat:
//
//	usage_usec 1234567
//	user_usec 1000000
//	...
func usageUSec(s string) (uint64, bool) {
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// parsePressure returns "some avg10" of a PSI file (memory.pressure):
//
//	some avg10=1.53 avg60=0.40 avg300=0.08 total=1234567
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
func parsePressure(s string) (float64, error) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "some" {
			continue
		}
		v, ok := strings.CutPrefix(f[1], "avg10=")
		if !ok {
			break
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x < 0 || x > 100 || math.IsNaN(x) {
			break
		}
		return x, nil
	}
	return 0, fmt.Errorf("not a pressure file: %.80q", s)
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// CgroupRoot is where the cgroup v2 hierarchy is mounted.
const CgroupRoot = "/sys/fs/cgroup"

// Restart implements Systemd.
func (s *SystemdBus) Restart(ctx context.Context, unit string) error {
	return s.job(ctx, "restart", unit, s.Conn.RestartUnitContext)
}

// ResetFailed implements Systemd.
func (s *SystemdBus) ResetFailed(ctx context.Context, unit string) error {
	if err := s.Conn.ResetFailedUnitContext(ctx, unit); err != nil {
		return fmt.Errorf("reset-failed %s: %w", unit, err)
	}
	return nil
}
