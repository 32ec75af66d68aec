package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-pool/corral/test/npmci"
	"github.com/corral-pool/corral/test/sdbox"
)

var (
	//go:embed count.lua
	countLua []byte
	//go:embed cluster.js
	clusterJS []byte
	//go:embed package.json
	packageJSON []byte
	//go:embed package-lock.json
	packageLock []byte
)

// boxApp is where the Node app lives in the box: readable by the pools'
// dynamic users, outside the tmpfs that covers /tmp there.
const boxApp = "/opt/corral-bench-peers/server.js"

// bench holds what setup prepared and close removes.
type bench struct {
	config
	work      string // temporary directory on the host
	app       string // the Node app's copy in work
	clusterJS string // cluster.js in work
	script    string // count.lua's source, run by wrk with its report
	demo      string // corral-demo from the .deb, unpacked in work
	pm2Bin    string
	pm2Home   string
	box       *sdbox.Box
	machine   machine
	notes     []string // what went wrong without spoiling a run
}

// note records something for the report and says it at once.
func (b *bench) note(s string) {
	fmt.Fprintln(os.Stderr, "note:", s)
	b.notes = append(b.notes, s)
}

// setup checks the tools, measures how busy the machine is, unpacks what
// the systems need, installs pm2 and boots the box with corral installed
// and the pools written. On error, close undoes what was done.
func setup(ctx context.Context, cfg config, sel []spec) (*bench, error) {
	b := &bench{config: cfg}
	need := map[string]string{"wrk": "wrk", "node": "nodejs", "gnuplot": "gnuplot-nox", "ss": "iproute2", "dpkg-deb": "dpkg"}
	for _, s := range sel {
		if s.id == "pm2" {
			need["npm"] = "npm"
		}
	}
	for tool, pkg := range need {
		if _, err := exec.LookPath(tool); err != nil {
			return b, fmt.Errorf("%s not found: run 'make deps' (or apt-get install %s)", tool, pkg)
		}
	}
	app, err := os.ReadFile(cfg.app)
	if err != nil {
		return b, fmt.Errorf("the Node app: %w (run from the repository's root)", err)
	}
	if !strings.Contains(string(app), "'/cpu'") {
		return b, fmt.Errorf("%s has no /cpu route", cfg.app)
	}
	fmt.Fprintf(os.Stderr, "measuring the machine's background load for 2s...\n")
	b.machine = describe(ctx, cfg)
	b.machine.busyBefore = busy(ctx, 2*time.Second)

	if b.work, err = os.MkdirTemp("", "corral-bench-peers-"); err != nil {
		return b, err
	}
	b.app = filepath.Join(b.work, "server.js")
	b.clusterJS = filepath.Join(b.work, "cluster.js")
	b.script = string(countLua)
	for name, data := range map[string][]byte{b.app: app, b.clusterJS: clusterJS} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return b, err
		}
	}
	// The host's Go process runs the very binary the .deb installs.
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", cfg.deb, filepath.Join(b.work, "deb")).CombinedOutput(); err != nil {
		return b, fmt.Errorf("dpkg-deb -x %s: %w: %s", cfg.deb, err, out)
	}
	b.demo = filepath.Join(b.work, "deb", "usr", "libexec", "corral", "corral-demo")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-f", cfg.deb, "Version").Output(); err == nil {
		b.machine.corral = strings.TrimSpace(string(out))
	}

	for _, s := range sel {
		if s.id == "pm2" {
			if err := b.installPM2(ctx); err != nil {
				return b, err
			}
			break
		}
	}
	var pools []spec
	for _, s := range sel {
		if s.corral {
			pools = append(pools, s)
		}
	}
	if len(pools) > 0 {
		if err := b.bootBox(ctx, pools); err != nil {
			return b, err
		}
	}
	return b, nil
}

// installPM2 installs the pinned pm2 with npm ci into a cache directory
// named after the lock file's hash (once), and makes a PM2_HOME for this
// run.
func (b *bench) installPM2(ctx context.Context) error {
	cache := b.cache
	if cache == "" {
		dir, err := npmci.CacheDir("corral-bench-peers")
		if err != nil {
			return fmt.Errorf("pm2: %w: pass -cache", err)
		}
		cache = dir
	}
	dir, err := npmci.Install(ctx, cache, "pm2", packageJSON, packageLock)
	if err != nil {
		return err
	}
	b.pm2Bin = filepath.Join(dir, "node_modules", ".bin", "pm2")
	if v, err := pm2Version(filepath.Join(dir, "node_modules", "pm2", "package.json")); err == nil {
		b.machine.pm2 = v
	}
	b.pm2Home, err = os.MkdirTemp("", "corral-bench-peers-pm2-")
	return err
}

// bootBox boots the box, installs the .deb, and writes the Node app and
// the pools' files.
func (b *bench) bootBox(ctx context.Context, pools []spec) error {
	deb, err := os.ReadFile(b.deb)
	if err != nil {
		return err
	}
	app, err := os.ReadFile(b.app)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "booting a systemd box, installing %s...\n", filepath.Base(b.deb))
	bootCtx, cancel := context.WithTimeout(ctx, time.Minute)
	b.box, err = sdbox.Boot(bootCtx, sdbox.Options{Log: os.Stderr})
	cancel()
	if err != nil {
		return err
	}
	if err := b.box.WriteFile("/opt/corral-bench-peers/corral.deb", deb, 0o644); err != nil {
		return err
	}
	if err := b.box.WriteFile(boxApp, app, 0o644); err != nil {
		return err
	}
	if out, err := b.boxSh(ctx, "apt-get", "install", "-y", "/opt/corral-bench-peers/corral.deb"); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	for _, s := range pools {
		pool := s.newSystem(b, 0).(*corralSystem).pool
		if err := b.box.WriteFile("/etc/corral/pools.d/"+pool+".toml", []byte(poolFile(s, b.portOf(s), boxApp)), 0o644); err != nil {
			return err
		}
		if s.noSandbox {
			if err := b.box.WriteFile("/etc/systemd/system/"+pool+"@.service.d/bench-no-sandbox.conf", []byte(noSandboxDropIn), 0o644); err != nil {
				return err
			}
		}
	}
	for _, c := range [][]string{{"corral", "validate"}, {"systemctl", "daemon-reload"}, {"systemctl", "restart", "corral.service"}} {
		if out, err := b.boxSh(ctx, c...); err != nil {
			journal, _ := b.boxSh(ctx, "journalctl", "-u", "corral.service", "-n", "40", "--no-pager")
			return fmt.Errorf("%w\n%s\njournal of corral.service:\n%s", err, out, journal)
		}
	}
	return nil
}

// close stops pm2's daemon (pm2 kill, then SIGKILL by its pid file if it
// is still there), powers the box off and removes the temporary files. It
// runs on every path out, also after an interrupt: its waits have their own
// bounds.
func (b *bench) close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b.pm2Home != "" {
		if _, err := b.pm2(ctx, nil, "kill"); err != nil {
			errs = append(errs, err)
		}
		if data, err := os.ReadFile(filepath.Join(b.pm2Home, "pm2.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		errs = append(errs, os.RemoveAll(b.pm2Home))
	}
	if b.box != nil {
		errs = append(errs, b.box.Close())
	}
	if b.work != "" {
		errs = append(errs, os.RemoveAll(b.work))
	}
	return errors.Join(errs...)
}

// roots are the processes whose descendants are the benchmark's: this
// program (wrk, the box, the systems on the host) and pm2's daemon, which
// leaves the process tree when it daemonizes.
func (b *bench) roots() []int {
	r := []int{os.Getpid()}
	if b.pm2Home != "" {
		if data, err := os.ReadFile(filepath.Join(b.pm2Home, "pm2.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				r = append(r, pid)
			}
		}
	}
	return r
}

// portOf is the port of a system: -port plus its place in specs.
func (b *bench) portOf(s spec) int {
	for i, t := range specs(b.instances) {
		if t.id == s.id {
			return b.port + i
		}
	}
	panic("no spec " + s.id)
}

// A route is one of the apps' URLs under load.
type route struct {
	name string // "cpu" or "hello"
	path string
}

func (b *bench) routes() []route {
	return []route{{"cpu", fmt.Sprintf("/cpu?ms=%d", b.ms)}, {"hello", "/"}}
}

var shapes = []shape{keepAlive, connClose}

// A cell is one system, route and load shape. counting marks the extra run
// that counts the answers per instance when the measured run does not (see
// countInline).
type cell struct {
	system   string
	route    string
	shape    shape
	counting bool
}

// countInline says whether the measured runs of a route count the answers
// per instance with count.lua. With a response() function wrk hands every
// answer to Lua: nothing at a few hundred req/s (the CPU route), but on the
// hello route, at tens of thousands, it costs wrk CPU that the servers on
// the same cores then miss. There the measured run goes without, and a
// shorter run with count.lua follows for the shares; the report compares
// the two.
func countInline(rt route) bool { return rt.name != "hello" }

// results gathers the runs of every round.
type results struct {
	loads map[cell][]load
	kills map[cell][]killResult // route "cpu"
	errs  []error
	notes []string
}

// runRounds runs every round: every system once per round, starting one
// system further each round.
func (b *bench) runRounds(ctx context.Context, sel []spec) (*results, error) {
	res := &results{loads: map[cell][]load{}, kills: map[cell][]killResult{}}
	fmt.Fprintf(os.Stderr, "%d rounds of %d systems, about %v\n", b.config.rounds, len(sel), b.estimate(sel).Round(10*time.Second))
	for r := range b.config.rounds {
		for i := range sel {
			s := sel[(r+i)%len(sel)]
			if err := b.runSystem(ctx, s, r, res); err != nil {
				err = fmt.Errorf("round %d, %s: %w", r+1, s.id, err)
				fmt.Fprintln(os.Stderr, err)
				res.errs = append(res.errs, err)
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
	}
	return res, errors.Join(res.errs...)
}

// estimate is about how long the rounds take.
func (b *bench) estimate(sel []spec) time.Duration {
	var d time.Duration
	for _, s := range sel {
		d += 5*time.Second + 2*b.warmup + 4*(b.dur+500*time.Millisecond) + 2*b.countDur()
		if s.kill && b.killDur > 0 {
			d += 2 * (b.killDur + time.Second)
		}
	}
	return d * time.Duration(b.config.rounds)
}

// countDur is the length of a counting run: half a measured one, at least 2 s.
func (c config) countDur() time.Duration { return max(c.dur/2, 2*time.Second) }

// runSystem starts one system, warms it up, runs its cells and its SIGKILL
// runs, and stops it.
func (b *bench) runSystem(ctx context.Context, s spec, round int, res *results) (err error) {
	port := b.portOf(s)
	sys := s.newSystem(b, port)
	if err := waitPortFree(ctx, port); err != nil {
		return fmt.Errorf("before the start: %w", err)
	}
	base := "http://" + addr(port)
	fmt.Fprintf(os.Stderr, "round %d: %s\n", round+1, s.label)
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = errors.Join(err, sys.Stop(c))
	}()
	if err := sys.Start(ctx); err != nil {
		return err
	}
	if err := waitServing(ctx, base+"/", s.instances); err != nil {
		return err
	}
	for _, rt := range b.routes() {
		if _, err := runWrk(ctx, base+rt.path, keepAlive, b.conns, b.warmup, ""); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for _, rt := range b.routes() {
		for _, sh := range shapes {
			script := ""
			if countInline(rt) {
				script = b.script
			}
			before := snapshot()
			l, err := runWrk(ctx, base+rt.path, sh, b.conns, b.dur, script)
			if err != nil {
				return err
			}
			l.other = otherCPU(before, snapshot(), b.roots(), l.wrkCPU)
			c := cell{s.id, rt.name, sh, false}
			res.loads[c] = append(res.loads[c], l)
			counted := l
			if !countInline(rt) {
				if counted, err = runWrk(ctx, base+rt.path, sh, b.conns, b.countDur(), b.script); err != nil {
					return err
				}
				c.counting = true
				res.loads[c] = append(res.loads[c], counted)
			}
			fmt.Fprintf(os.Stderr, "  %-5s %-10s %8.0f req/s  p50 %-8s p99 %-8s failed %d  shares %s  other load %.0f%%\n",
				rt.name, sh, l.rps, fmtDur(l.p50), fmtDur(l.p99), l.failed(), fmtShares(shares(counted.counts(), s.instances)), 100*l.otherLoad())
		}
	}
	if s.kill && b.killDur > 0 {
		cpu := b.routes()[0]
		for _, sh := range shapes {
			if err := b.waitWorkers(ctx, sys, s.instances); err != nil {
				return err
			}
			k, err := b.killUnderLoad(ctx, sys, port, base+cpu.path, sh, b.killDur)
			if err != nil {
				return fmt.Errorf("SIGKILL run (%s): %w", sh, err)
			}
			c := cell{s.id, cpu.name, sh, false}
			res.kills[c] = append(res.kills[c], k)
			fmt.Fprintf(os.Stderr, "  SIGKILL %-10s refused %d  failed %d  open %d  queued %d  replacement %s\n",
				sh, k.load.connect, k.load.failed(), k.open, k.queued, fmtReplacement(k))
		}
	}
	return nil
}

// waitWorkers waits up to 10 s until the system has n workers (after a
// SIGKILL run, the replacement).
func (b *bench) waitWorkers(ctx context.Context, sys system, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := sys.Workers(ctx)
		if err == nil && len(pids) >= n {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d workers, want %d: %v", len(pids), n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
