package pool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/units"
)

// GeneratorDir is where corral-generator's units are (systemd's normal-dir).
const GeneratorDir = "/run/systemd/generator"

// DaemonReloader is what Apply needs of systemd beyond Systemd: a
// daemon-reload, which reruns the generator.
type DaemonReloader interface {
	DaemonReload(ctx context.Context) error
}

// Applier makes the pool files in effect: corral apply.
type Applier struct {
	co     *Coordinator
	reload *Reloader
	sd     Systemd
	genDir string // where the generator writes
}

// NewApplier returns the applier of co's pools, with systemd's generator
// directory; a changed worker unit is rolled with reload.
func NewApplier(co *Coordinator, reload *Reloader) *Applier {
	return &Applier{co: co, reload: reload, sd: co.sd, genDir: GeneratorDir}
}

// Apply implements API.
func (a *Applier) Apply(ctx context.Context) ([]api.Change, error) {
	return a.ApplyIn(ctx, a.genDir)
}

// ApplyIn makes the pool files in effect, with the generator writing into
// genDir: it validates every one (any
// problem: nothing is changed and the error lists them), reloads systemd's
// units, and reconciles each pool. A pool whose worker unit changed is
// reloaded with a rolling reload; a new count is taken up (unless corral
// scale set one); a new pool with start_on_boot is started; a pool whose
// file is gone is stopped. A changed socket (listen, balance) is reported,
// not acted on: moving a pool to new sockets refuses connections for a
// moment, so the operator decides when.
func (a *Applier) ApplyIn(ctx context.Context, genDir string) ([]api.Change, error) {
	pools, err := a.validate()
	if err != nil {
		return nil, err
	}
	rl, ok := a.sd.(DaemonReloader)
	if !ok {
		return nil, errors.New("pool: this systemd connection cannot daemon-reload")
	}
	// What systemd runs now, to compare with what the files make.
	names, spares := map[string]bool{}, map[string]int{}
	if err := a.co.do(ctx, func(ps poolSet) {
		mark(names, ps, ps.names())
		for n, p := range ps {
			if p.cfg != nil {
				spares[n] = p.cfg.Spares
			}
		}
	}); err != nil {
		return nil, err
	}
	inFiles := map[string]*units.Pool{}
	for _, p := range pools {
		names[p.Name], inFiles[p.Name] = true, p
	}
	before := map[string]map[string]string{}
	for n := range names {
		before[n] = generated(genDir, n)
	}
	if err := rl.DaemonReload(ctx); err != nil {
		return nil, fmt.Errorf("pool: daemon-reload: %w", err)
	}
	if err := a.co.reread(ctx); err != nil {
		return nil, err
	}
	var report []api.Change
	for _, n := range slices.Sorted(maps.Keys(names)) {
		report = append(report, a.applyPool(ctx, n, inFiles[n], before[n], generated(genDir, n), spares[n])...)
	}
	for _, ch := range report {
		if ch.Action == "failed" {
			return report, fmt.Errorf("%w: %s: %s", api.ErrFailed, ch.Pool, ch.Detail)
		}
	}
	return report, nil
}

// validate loads every pool file and checks it on this host.
func (a *Applier) validate() ([]*units.Pool, error) {
	files, err := units.PoolFiles(a.co.cfg.PoolDir)
	if err != nil {
		return nil, err
	}
	pools, errs := units.LoadAll(files, a.co.cfg.Host)
	for _, p := range pools {
		errs = append(errs, a.co.cfg.Host.Check(p)...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w; nothing was changed:\n%w", api.ErrInvalidConfig, errs)
	}
	return pools, nil
}

// applyPool puts pool n's file p (nil: gone) in effect, given the units
// the generator wrote for it before the daemon-reload (old) and after
// (now), and the spares it had.
func (a *Applier) applyPool(ctx context.Context, n string, p *units.Pool, old, now map[string]string, spares int) []api.Change {
	switch {
	case p == nil:
		err := a.co.Stop(ctx, n)
		if errors.Is(err, api.ErrNoPool) {
			err = a.stopUnits(ctx, n)
		}
		return []api.Change{change(n, "removed", "its file is gone: stopped", err)}
	case len(old) == 0:
		detail := "not started (start_on_boot = false): systemctl start " + n + ".target"
		var err error
		if p.StartOnBoot {
			detail = "started"
			err = a.co.Start(ctx, n)
		}
		return []api.Change{change(n, "added", detail, err)}
	}
	var changes []api.Change
	if old[n+".socket"] != now[n+".socket"] || old[n+"@.socket"] != now[n+"@.socket"] {
		changes = append(changes, api.Change{Pool: n, Action: "socket changed", Detail: "listen or balance changed: to move to the new sockets (connections refused for a moment), run: corral stop " + n + " && corral start " + n})
	}
	if old[n+".target"] != now[n+".target"] {
		changes = append(changes, api.Change{Pool: n, Action: "scaled", Detail: a.countDetail(ctx, n)})
	}
	if old[n+"@.service"] != now[n+"@.service"] {
		err := a.reload.Reload(ctx, n, nil)
		changes = append(changes, change(n, "reloaded", "worker unit changed: rolling reload", err))
	}
	if p.Spares != spares {
		changes = append(changes, api.Change{Pool: n, Action: "spares", Detail: fmt.Sprintf("%d of its instances out of rotation, ready to take the place of one that leaves it (was %d)", p.Spares, spares)})
	}
	if len(changes) == 0 {
		changes = []api.Change{{Pool: n, Action: "unchanged"}}
	}
	return changes
}

func change(pool, action, detail string, err error) api.Change {
	if err != nil {
		return api.Change{Pool: pool, Action: "failed", Detail: action + ": " + err.Error()}
	}
	return api.Change{Pool: pool, Action: action, Detail: detail}
}

// countDetail says what became of a changed count.
func (a *Applier) countDetail(ctx context.Context, pool string) string {
	var d Desired
	a.co.do(ctx, func(pools poolSet) {
		if p := pools[pool]; p != nil {
			d = p.desired
		}
	})
	if d.Scaled {
		return fmt.Sprintf("the file's count changed; kept %d set by corral scale (corral scale %s N to change it)", d.Count, pool)
	}
	a.co.Dirty(pool)
	return fmt.Sprintf("%d instances", d.Count)
}

// stopUnits stops what is left running of a pool corrald no longer knows,
// then clears the failed state of its units, so that systemd unloads them
// all: a deleted pool leaves no unit behind.
func (a *Applier) stopUnits(ctx context.Context, pool string) error {
	o, err := a.sd.Observe(ctx, pool)
	if err != nil {
		return err
	}
	stop := poolUnits(pool, o, func(u Unit) bool { return u.ActiveState != "" && u.ActiveState != "inactive" && !u.Failed() })
	a.co.cfg.Log.Info("stopping the units of a pool whose file is gone", "pool", pool, "units", stop)
	if err := runJobs(ctx, a.co.cfg.JobTimeout, a.sd.Stop, stop); err != nil {
		return err
	}
	if o, err = a.sd.Observe(ctx, pool); err != nil {
		return err
	}
	for _, u := range poolUnits(pool, o, Unit.Failed) {
		if err := a.sd.ResetFailed(ctx, u); err != nil {
			return fmt.Errorf("%w: %w", api.ErrFailed, err)
		}
	}
	return nil
}

// poolUnits names the units of o that match: target, instances, sockets.
func poolUnits(pool string, o Observed, match func(Unit) bool) []string {
	var out []string
	if match(o.Target) {
		out = append(out, pool+".target")
	}
	for _, i := range sortedKeys(o.Instances) {
		if match(o.Instances[i]) {
			out = append(out, InstanceName(pool, i))
		}
	}
	for _, i := range sortedKeys(o.Sockets) {
		if match(o.Sockets[i]) {
			out = append(out, SocketName(pool, i))
		}
	}
	return out
}

// generated reads the units the generator wrote for pool.
func generated(dir, pool string) map[string]string {
	out := map[string]string{}
	for _, u := range units.UnitNames(pool) {
		if b, err := os.ReadFile(filepath.Join(dir, u)); err == nil {
			out[u] = string(b)
		}
	}
	return out
}
