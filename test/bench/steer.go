package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
	"golang.org/x/sys/unix"
)

// The steer suite (issue 17): steering in the kernel against the kernel's
// plain hash, side by side in one box booted with sdbox.KernelSteering.
// Three pools of the demo take the same load one after the other: app
// (steering on, 127.0.0.1:8080), appoff (steering = false, 18331) and
// appspare (steering on and one spare, 18332: one instance more, out of
// rotation); a fourth, sticky (balance = "sticky", 18333), takes the
// sticky run. The
// load is loadgen.go's: it knows which instance answered each request and
// when it started, so the requests that arrive during a kill, a reload or
// a cordon are cut out of the run.

const (
	steerOnPort  = 8080
	steerOffPort = 18331
	sparePort    = 18332
	// The spare part: pools whose instances take slowStart to start.
	slowPort      = 18334
	slowSparePort = 18335
	slowStart     = 2 * time.Second
	stickyPort    = 18333

	steerConns = 100 // clients of the kill and reload runs
	killLoad   = 5 * time.Second
	killAt     = 2 * time.Second
	warm       = 500 * time.Millisecond // the start of each run, not counted
)

// steerRounds is how many kills of each kind, off then on each time, and
// reloads of each kind the suite runs (-steer-rounds). A p99 of one kill
// rests on its 50 to 1,000 arriving requests (with keep-alive, the killed
// clients' reconnections: its largest); the pooled table takes the
// requests of every round.
var steerRounds = 3

// steerParts are the parts of the suite that run (-steer-parts).
var steerParts = "restart,kill,spare,reload,cordon,sticky"

func steerPart(name string) bool { return slices.Contains(strings.Split(steerParts, ","), name) }

// steerProcs, if not 0, is the GOMAXPROCS of the suite's demo instances
// (-steer-gomaxprocs). With 1, the demo's default, the instance that
// survives a kill has half the pool's CPU; with the cores' count it may
// use them all.
var steerProcs int

// steerPool is a pool the suite measures.
type steerPool struct {
	name   string
	port   int
	on     bool // steering
	spares int  // spares =, beyond the instances in rotation
	// slow, if not 0, is how long each instance waits before it starts
	// (a worker that loads for that long: most Node or Python apps take
	// 0.5–3 s): the demo under sh -c "sleep …; exec corral-demo".
	slow time.Duration
}

func (p steerPool) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p steerPool) label() string {
	switch {
	case p.spares > 0:
		return fmt.Sprintf("on, %d spare", p.spares)
	case p.on:
		return "on"
	}
	return "off"
}

// startPools writes the pool file of each of pools, with 2 instances in
// rotation, starts them and waits until they run, steered or not as
// they ask.
func startPools(box *sdbox.Box, sh func(...string) (string, error), pools []steerPool) error {
	for _, p := range pools {
		if err := box.WriteFile("/etc/corral/pools.d/"+p.name+".toml", []byte(p.file(2)), 0o644); err != nil {
			return err
		}
	}
	if _, err := sh("systemctl", "daemon-reload"); err != nil {
		return err
	}
	for _, p := range pools {
		if _, err := sh("corral", "start", p.name); err != nil {
			return err
		}
	}
	for _, p := range pools {
		if err := waitActive(sh, p.name+"@*.service", 2+p.spares, time.Minute); err != nil {
			return err
		}
		if err := waitSteering(sh, p.name, p.on); err != nil {
			return err
		}
	}
	return nil
}

// file is the pool file of p with n instances in rotation; with p.slow,
// each instance starts after that long.
func (p steerPool) file(n int) string {
	more := ""
	switch {
	case !p.on:
		more = "steering = false"
	case p.spares > 0:
		more = fmt.Sprintf("spares = %d", p.spares)
	}
	f := steerFile(p.port, n+p.spares, more)
	if p.slow > 0 {
		exec := fmt.Sprintf("exec = [\"/bin/sh\", \"-c\", \"sleep %g; exec /usr/libexec/corral/corral-demo\"]", p.slow.Seconds())
		f = strings.Replace(f, `exec = ["/usr/libexec/corral/corral-demo"]`, exec, 1)
	}
	return f
}

// steerFile is a pool file of n demo instances on port. Many restarts are
// allowed: the suite kills instances on purpose.
func steerFile(port, n int, more string) string {
	if steerProcs > 0 {
		more += fmt.Sprintf("\nenvironment = { GOMAXPROCS = \"%d\" }", steerProcs)
	}
	return fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = %d\nreadiness = \"notify\"\n%s\n[restart]\nburst = 1000\ncrash_loop_failures = 1000\n", port, n, more)
}

// loadSrc gives each client of the kill, reload and cordon runs its own
// source address, 127.0.3.k+1 (client ports then never run out with a
// new connection per request).
func loadSrc(k int) string { return fmt.Sprintf("127.0.%d.%d", 3+k/250, 1+k%250) }

func benchSteer(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) error {
	began := time.Now()
	defer func() { fmt.Printf("(the steer suite took %v in its box)\n\n", time.Since(began).Round(time.Second)) }()
	on := steerPool{"app", steerOnPort, true, 0, 0}
	off := steerPool{"appoff", steerOffPort, false, 0, 0}
	spare := steerPool{"appspare", sparePort, true, 1, 0}
	pools := []steerPool{off, on, spare}
	if err := startPools(box, sh, pools); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)

	cmd := "go run ./test/bench " + strings.Join(os.Args[1:], " ")
	procs := "1 (the demo's default)"
	if steerProcs > 0 {
		procs = strconv.Itoa(steerProcs)
	}
	fmt.Printf("steering in the kernel (issue 17), %s, %d cores, GOMAXPROCS of each instance %s, `%s`\n\n", time.Now().Format("2006-01-02"), runtimeCPUs(), procs, cmd)

	// 0. Where a restart's time goes.
	if steerPart("restart") {
		if err := restartRun(box, sh, on); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		if err := waitServing(ctx, on.addr(), 2); err != nil {
			return err
		}
	}

	// 1. SIGKILL of 1 of 2 instances.
	var kills []killRow
	for _, route := range []string{"/cpu?ms=5", "/"} {
		if !steerPart("kill") {
			break
		}
		for _, ka := range []bool{true, false} {
			for range steerRounds {
				for _, p := range pools {
					r, err := killRun(ctx, box, sh, p, route, ka)
					if err != nil {
						return fmt.Errorf("kill, %s %s: %w", p.name, route, err)
					}
					kills = append(kills, r)
				}
			}
		}
	}
	if len(kills) > 0 {
		printKills("SIGKILL of 1 of 2 instances", kills)
	}
	if steerPart("spare") {
		if err := slowKills(ctx, box, sh); err != nil {
			return fmt.Errorf("spare: %w", err)
		}
	}

	// 2. corral reload of 4 instances (and 3, the cordon, on them).
	for _, p := range pools {
		if _, err := sh("corral", "scale", p.name, strconv.Itoa(4+p.spares)); err != nil {
			return err
		}
	}
	var reloads []reloadSteerRow
	for _, p := range pools {
		if err := waitActive(sh, p.name+"@*.service", 4, time.Minute); err != nil {
			return err
		}
		if err := waitServing(ctx, p.addr(), 4); err != nil {
			return err
		}
	}
	for _, ka := range []bool{true, false} {
		if !steerPart("reload") {
			break
		}
		for range steerRounds {
			for _, p := range pools {
				r, err := reloadRun(ctx, sh, p, ka)
				if err != nil {
					return fmt.Errorf("reload, %s: %w", p.name, err)
				}
				reloads = append(reloads, r)
			}
		}
	}
	if len(reloads) > 0 {
		printReloads(reloads)
	}

	// 3. Cordon under load, app's 4 instances.
	if steerPart("cordon") {
		if err := cordonRun(ctx, sh, on); err != nil {
			return fmt.Errorf("cordon: %w", err)
		}
	}

	// 4. Sticky.
	for _, p := range []steerPool{off, spare} {
		if _, err := sh("corral", "stop", p.name); err != nil {
			return err
		}
	}
	if !steerPart("sticky") {
		_, err := sh("corral", "stop", "app")
		return err
	}
	if err := stickyRun(ctx, box, sh); err != nil {
		return fmt.Errorf("sticky: %w", err)
	}
	for _, p := range []string{"app", "sticky"} {
		if _, err := sh("corral", "stop", p); err != nil {
			return err
		}
	}
	return nil
}

func runtimeCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}

// waitSteering waits until corral status POOL says steering is on (or
// disabled, for on false), and fails clearly if it does not.
func waitSteering(sh func(...string) (string, error), pool string, on bool) error {
	want := "steering   on"
	if !on {
		want = "steering   disabled"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := sh("corral", "status", pool)
		if strings.Contains(out, want) {
			return nil
		}
		if time.Now().After(deadline) {
			logs, _ := sh("journalctl", "-u", "corral.service", "--no-pager", "-n", "30")
			return fmt.Errorf("corral status %s does not say %q after 30 s: steering in the kernel is not working in this box, the suite measures nothing\n%s\n--- corrald's journal:\n%s", pool, want, out, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitServing waits until new connections to addr have reached n
// distinct instances.
func waitServing(ctx context.Context, addr string, n int) error {
	seen := map[int16]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ss := load{addr: addr, path: "/", conns: 4, perClient: 10, src: loadSrc, timeout: 2 * time.Second}.run(ctx, time.Now(), 5*time.Second)
		for _, s := range ss {
			if s.out == okay {
				seen[s.inst] = true
			}
		}
		if len(seen) >= n {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: new connections reached %d of %d instances in 20 s", addr, len(seen), n)
}

// monoNow is CLOCK_MONOTONIC, the clock of systemd's *TimestampMonotonic
// (the box shares the host's kernel).
func monoNow() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// hostPID finds, on the host, the process that is pid inside the box.
func hostPID(box *sdbox.Box, pid int) (int, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", box.PID()))
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(pid)
	for _, e := range ents {
		h, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == want {
				if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); l == ns {
					return h, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("pid %d of the box not found on the host", pid)
}

// mainPID returns unit's main process, in the box and on the host.
func mainPID(box *sdbox.Box, sh func(...string) (string, error), unit string) (pid int64, host int, err error) {
	if pid, err = showInt(sh, "MainPID", unit); err != nil {
		return 0, 0, err
	}
	host, err = hostPID(box, int(pid))
	return pid, host, err
}

// awaitReplacement waits, looking every poll for 20 s at most, until unit
// has a main process other than old that became active (READY=1) after
// since, and returns it and when it became active, both on the kernel's
// monotonic clock.
func awaitReplacement(sh func(...string) (string, error), unit string, old int64, since, poll time.Duration) (pid int64, active time.Duration, err error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		pid, _ = showInt(sh, "MainPID", unit)
		us, _ := showInt(sh, "ActiveEnterTimestampMonotonic", unit)
		if active = time.Duration(us) * time.Microsecond; pid != 0 && pid != old && active > since {
			return pid, active, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%s not back 20 s after the kill", unit)
		}
		time.Sleep(poll)
	}
}

// showInt reads a number property of a unit.
func showInt(sh func(...string) (string, error), prop, unit string) (int64, error) {
	out, err := sh("systemctl", "show", "-P", prop, unit)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(out), 10, 64)
}

// killRow is one kill run.
type killRow struct {
	p         steerPool
	route     string
	keepAlive bool
	steady    stats // before the kill
	window    stats // the new connections that arrived from the kill to the replacement's READY=1
	// The latencies behind steady and window, for the pooled table.
	steadyLat, windowLat []time.Duration
	allLat               []time.Duration // of every request that started in the window
	all                  stats           // every request that started in that window
	after                stats           // every request that started in the 1 s after READY=1
	ready                time.Duration   // kill to READY=1 of the replacement
	failed               int             // failed and refused, the whole run
	failedNew            int             // of them, requests on a new connection that started after the kill
	open                 int             // connections the killed worker held at the kill (its socket fds, stopped, less those it holds idle)
	onKilled             int             // keep-alive clients whose connection was on the killed worker
	queued               int             // arriving requests answered by the replacement: they waited on the killed worker's socket
	lastQueue            time.Duration   // the last of them to start, after the kill; -1 none
	// The SIGSTOP before the kill, while the connections are counted:
	// how long it lasted, and the requests that started in it (neither
	// steady nor arriving: they reach a stopped worker).
	stopped time.Duration
	inStop  int
	// CPU time of the box's processes in the cpuWindow after the kill,
	// and in the cpuWindow before it (with the killed worker's, "killed").
	cpu, cpuBefore map[string]time.Duration
	// From the probes: the last that went to the killed worker's socket
	// before READY=1, after the kill, and the first after READY=1 that
	// reached the replacement, after READY=1; -1 none.
	probeOut, probeBack time.Duration
}

// killRun runs steerConns clients on p for killLoad, SIGKILLs instance 2
// at killAt, and cuts the run at the kill and at the replacement's
// READY=1.
func killRun(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error), p steerPool, route string, keepAlive bool) (killRow, error) {
	row := killRow{p: p, route: route, keepAlive: keepAlive}
	if err := waitServing(ctx, p.addr(), 2); err != nil {
		return row, err
	}
	unit := p.name + "@2.service"
	old, host, err := mainPID(box, sh, unit)
	if err != nil {
		return row, err
	}
	idle, err := socketFDs(host)
	if err != nil {
		return row, err
	}
	// Who uses the CPU from the kill to READY=1: the box's processes that
	// take part in a restart, by host pid; and the killed worker's, for
	// the pool's CPU before the kill.
	watched := map[string]int{"systemd": box.PID(), "killed": host, "load": os.Getpid()}
	units := map[string]string{"corrald": "corral.service", "journald": "systemd-journald.service", "survivor": p.name + "@1.service"}
	if p.spares > 0 {
		units["spare"] = p.name + "@3.service"
	}
	for name, u := range units {
		if pid, err := showInt(sh, "MainPID", u); err == nil && pid != 0 {
			if h, err := hostPID(box, int(pid)); err == nil {
				watched[name] = h
			}
		}
	}
	l := load{addr: p.addr(), path: route, conns: steerConns, keepAlive: keepAlive, src: loadSrc}
	t0, mono0 := time.Now(), monoNow()
	res := make(chan []sample, 1)
	go func() { res <- l.run(ctx, t0, killLoad+p.slow) }()
	time.Sleep(time.Until(t0.Add(killAt - cpuWindow)))
	cpuPre := cpuTimes(watched)
	time.Sleep(time.Until(t0.Add(killAt)))
	// The killed worker's connections: stopped (SIGSTOP), it can
	// neither accept nor close one while they are counted, so the count
	// is exact; then SIGKILL, a millisecond or so later. The window
	// starts at the SIGKILL; steady ends at the SIGSTOP.
	cpu0 := cpuTimes(watched)
	stop := time.Since(t0)
	if err := syscall.Kill(host, syscall.SIGSTOP); err != nil {
		return row, fmt.Errorf("stop %d (%s): %w", host, unit, err)
	}
	n, err := socketFDs(host)
	kill := time.Since(t0)
	if kerr := syscall.Kill(host, syscall.SIGKILL); kerr != nil {
		return row, fmt.Errorf("kill %d (%s): %w", host, unit, kerr)
	}
	row.stopped = kill - stop
	cpu1 := make(chan map[string]time.Duration, 1)
	go func() {
		time.Sleep(time.Until(t0.Add(kill + cpuWindow)))
		cpu1 <- cpuTimes(watched)
	}()
	if err != nil {
		return row, err
	}
	row.open = n - idle
	probes := probe(ctx, p.addr(), t0, 2*time.Millisecond, 300)
	ss := <-res
	// READY=1 of the replacement, on the same clock.
	_, active, err := awaitReplacement(sh, unit, old, mono0+kill, 50*time.Millisecond)
	if err != nil {
		return row, err
	}
	readyAt := active - mono0
	row.ready = readyAt - kill
	row.cpu, row.cpuBefore = map[string]time.Duration{}, map[string]time.Duration{}
	after := <-cpu1
	for name, t := range after {
		row.cpu[name] = t - cpu0[name]
	}
	for name, t := range cpu0 {
		row.cpuBefore[name] = t - cpuPre[name]
	}
	row.inStop = len(between(ss, stop, kill))
	row.steady = statsOf(between(ss, warm, stop), stop-warm)
	in := between(ss, kill, readyAt)
	row.all = statsOf(in, 0)
	arriving := where(in, func(s sample) bool { return s.newConn })
	row.window = statsOf(arriving, 0)
	row.steadyLat, row.windowLat, row.allLat = latencies(between(ss, warm, stop)), latencies(arriving), latencies(in)
	row.after = statsOf(between(ss, readyAt, readyAt+time.Second), time.Second)
	row.lastQueue = -1
	for _, s := range ss {
		if s.out != okay {
			row.failed++
			if s.start >= kill && s.newConn {
				row.failedNew++
			}
		}
		if s.start >= kill && s.start < readyAt && s.newConn && s.out == okay && s.inst == 2 && s.pid != int32(old) {
			row.queued++
			row.lastQueue = s.start - kill
		}
	}
	timeline(row, ss, kill, readyAt, int32(old))
	row.probeOut, row.probeBack = -1, -1
	for _, s := range probes {
		repl := s.out == okay && s.inst == 2 && s.pid != int32(old)
		if repl && s.start < readyAt {
			row.probeOut = s.start - kill
		}
		if repl && s.start >= readyAt && row.probeBack < 0 {
			row.probeBack = s.start - readyAt
		}
	}
	if keepAlive {
		last := map[int16]sample{}
		for _, s := range between(ss, 0, stop) {
			if s.out == okay {
				last[s.client] = s
			}
		}
		for _, s := range last {
			if s.inst == 2 && s.pid == int32(old) {
				row.onKilled++
			}
		}
	}
	return row, nil
}

// probe opens n new connections to addr, one every step from now, each
// from its own goroutine (a probe that waits does not hold back the
// next), from 127.0.9.x, and returns them by start time.
func probe(ctx context.Context, addr string, t0 time.Time, step time.Duration, n int) []sample {
	out := make([]sample, n)
	var wg sync.WaitGroup
	tick := time.NewTicker(step)
	defer tick.Stop()
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client{addr: addr, src: fmt.Sprintf("127.0.9.%d", 1+k%250), req: []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n"), timeout: 3 * time.Second}
			out[k] = c.do(t0, false)
		}()
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	return out
}

// socketFDs counts the sockets among the fds of the host's process pid.
func socketFDs(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// timeline writes to stderr, for each 10 ms from the kill to 50 ms after
// READY=1, the requests that started then on a new connection: how many,
// answered by the survivor, by the replacement, failed, and their
// slowest.
func timeline(r killRow, ss []sample, kill, ready time.Duration, old int32) {
	fmt.Fprintf(os.Stderr, "kill %s %s %s: READY=1 at +%v; CPU in the %v before the kill: %s; after it: %s; new connections by start after the kill (n survivor/spare/replacement/failed, the slowest of each)\n", r.p.name, r.route, modeName(r.keepAlive), (ready - kill).Round(time.Millisecond), cpuWindow, fmtCPU(r.cpuBefore), fmtCPU(r.cpu))
	const step = 10 * time.Millisecond
	var b strings.Builder
	for t := kill; t < ready+50*time.Millisecond; t += step {
		var n int
		var by [4]int // survivor, spare, replacement, failed
		var slowest [4]time.Duration
		for _, s := range between(ss, t, t+step) {
			if !s.newConn {
				continue
			}
			k := 0
			switch {
			case s.out != okay:
				k = 3
			case s.inst == 2 && s.pid != old:
				k = 2
			case s.inst == 3:
				k = 1
			}
			n, by[k], slowest[k] = n+1, by[k]+1, max(slowest[k], s.lat)
		}
		fmt.Fprintf(&b, " +%d:%d %d/%d/%d/%d %.0f/%.0f/%.0f/%.0fms", (t-kill)/time.Millisecond, n, by[0], by[1], by[2], by[3],
			float64(slowest[0])/1e6, float64(slowest[1])/1e6, float64(slowest[2])/1e6, float64(slowest[3])/1e6)
	}
	fmt.Fprintln(os.Stderr, b.String())
}

// plusMS is +d in ms, or "none" for a negative d.
func plusMS(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return "+" + fmtMS(d)
}

func modeName(keepAlive bool) string {
	if keepAlive {
		return "keep-alive"
	}
	return "Connection: close"
}

// cpuWindow is how long after a kill the CPU time of the box's
// processes is taken: about the time to READY=1.
const cpuWindow = 300 * time.Millisecond

// cpuTimes returns the CPU time each process of pids has used, all its
// threads (schedstat, in ns), and, as "all cores", the time every core of
// the host spent busy (/proc/stat, in ticks of 10 ms), the load's and the
// kernel's included.
func cpuTimes(pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for k, f := range strings.Fields(line)[1:] {
			if n, err := strconv.ParseInt(f, 10, 64); err == nil && k != 3 && k != 4 && k < 8 { // not idle, iowait, guest
				out["all cores"] += time.Duration(n) * 10 * time.Millisecond
			}
		}
	}
	for name, pid := range pids {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				out[name] += time.Duration(ns)
			}
		}
	}
	return out
}

// slowKills: SIGKILL of 1 of 2 instances whose start takes slowStart,
// /cpu?ms=5, with steering and with steering and a spare.
func slowKills(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) error {
	pools := []steerPool{{"slow", slowPort, true, 0, slowStart}, {"slowspare", slowSparePort, true, 1, slowStart}}
	if err := startPools(box, sh, pools); err != nil {
		return err
	}
	var kills []killRow
	for _, ka := range []bool{true, false} {
		for range steerRounds {
			for _, p := range pools {
				r, err := killRun(ctx, box, sh, p, "/cpu?ms=5", ka)
				if err != nil {
					return fmt.Errorf("kill, %s: %w", p.name, err)
				}
				kills = append(kills, r)
			}
		}
	}
	printKills(fmt.Sprintf("SIGKILL of 1 of 2 instances that take %v to start, with and without a spare", slowStart), kills)
	for _, p := range pools {
		if _, err := sh("corral", "stop", p.name); err != nil {
			return err
		}
	}
	return nil
}

func printKills(title string, rows []killRow) {
	fmt.Printf("### %s\n\n", title)
	fmt.Printf("%d clients, one request at a time each, from 127.0.3.1–100; SIGKILL of instance 2 %v into a run of %v and its start, steering off, on, and on with a spare (instances = 3, spares = 1, instance 3 out of rotation until one leaves it), %d times each (pooled in the table after this one). Steady: the requests that started from %v to the SIGSTOP that comes before the kill (while the worker's connections are counted). Window: from the SIGKILL to the replacement's READY=1; \"arriving\" are the requests that opened a new connection in it (with Connection: close, all of them). Latencies count failed requests at the time they took to fail. Probes: a new connection every 2 ms from the kill on, for 600 ms, each on its own. Each client sends its next request as soon as the last is answered, which keeps both cores busy: the survivor of a kill carries the whole load on one core until the replacement is ready, unless a spare takes the killed instance's place.\n\n", steerConns, killAt, killLoad, steerRounds, warm)
	fmt.Printf("| route | connections | steering | steady req/s | steady p50 / p99 | kill → READY=1 | arriving: n, p50 / p99 / max | p99 arriving / steady (bar ≤ 1.5x) | arriving that waited on the killed socket: n, the last started | probes: the last to the killed socket after the kill; the first to the replacement after READY=1 | all requests in the window: n, p99 | p99 in the 1 s after | failed (of them on a new connection after the kill) | killed worker's connections | bar failed ≤ connections | SIGSTOP → SIGKILL; requests started in it (in neither) |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		bar := "pass"
		if r.failed > r.open {
			bar = "FAIL"
		}
		ratioBar := fmt.Sprintf("%.2fx", ratio(r.window.p99, r.steady.p99))
		if r.window.n == 0 {
			ratioBar = "- (none arrived)"
		} else if r.p.on {
			if ratio(r.window.p99, r.steady.p99) <= 1.5 {
				ratioBar += " pass"
			} else {
				ratioBar += " FAIL"
			}
		}
		conns := fmt.Sprint(r.open)
		if r.keepAlive {
			conns += fmt.Sprintf(" (%d keep-alive clients on it)", r.onKilled)
		}
		last := "-"
		if r.lastQueue >= 0 {
			last = "+" + fmtMS(r.lastQueue)
		}
		fmt.Printf("| %s | %s | %s | %.0f | %s / %s | %v | %d, %s / %s / %s | %s | %d, %s | %s; %s | %d, %s | %s | %d (%d) | %s | %s | %s; %d |\n",
			r.route, modeName(r.keepAlive), r.p.label(), r.steady.rps, fmtMS(r.steady.p50), fmtMS(r.steady.p99), r.ready.Round(time.Millisecond),
			r.window.n, fmtMS(r.window.p50), fmtMS(r.window.p99), fmtMS(r.window.max), ratioBar, r.queued, last, plusMS(r.probeOut), plusMS(r.probeBack),
			r.all.n, fmtMS(r.all.p99), fmtMS(r.after.p99), r.failed, r.failedNew, conns, bar, fmtMS(r.stopped), r.inStop)
	}
	fmt.Println()
	printPooledKills(rows)
}

// printPooledKills: the kills of each kind taken together, the arriving
// requests of all against the steady requests of all.
func printPooledKills(rows []killRow) {
	type kind struct {
		route     string
		keepAlive bool
		p         steerPool
	}
	var order []kind
	by := map[kind][]killRow{}
	for _, r := range rows {
		k := kind{r.route, r.keepAlive, r.p}
		if by[k] == nil {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	fmt.Printf("The same kills pooled: the requests that arrived in the windows of all the kills of a kind against the steady requests of those kills.\n\n")
	fmt.Printf("| route | connections | steering | kills | kill → READY=1, fastest–slowest | arriving n | arriving p99, all kills | steady p99, all kills | p99 arriving / steady (bar ≤ 1.5x) | kills within 1.5x on their own | kills with failed ≤ the killed worker's connections | CPU of the serving instances in the %v before the kill → after it, median | requests started in the windows per second / steady | every request in the windows: p50, p99 (p99 / steady p99) |\n", cpuWindow)
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range order {
		rs := by[k]
		var steady, arriving [][]time.Duration
		within, failOK := 0, 0
		lo, hi := rs[0].ready, rs[0].ready
		var served, serving []time.Duration
		var all [][]time.Duration
		var window time.Duration
		var started int
		var steadyRate float64
		for _, r := range rs {
			all, window, started = append(all, r.allLat), window+r.ready, started+r.all.n
			steadyRate += r.steady.rps / float64(len(rs))
			served = append(served, r.cpuBefore["survivor"]+r.cpuBefore["killed"]+r.cpuBefore["spare"])
			serving = append(serving, r.cpu["survivor"]+r.cpu["spare"])
			steady, arriving = append(steady, r.steadyLat), append(arriving, r.windowLat)
			if r.window.n > 0 && ratio(r.window.p99, r.steady.p99) <= 1.5 {
				within++
			}
			if r.failed <= r.open {
				failOK++
			}
			lo, hi = min(lo, r.ready), max(hi, r.ready)
		}
		sp99, ap99, n := pooledP99(steady), pooledP99(arriving), 0
		for _, a := range arriving {
			n += len(a)
		}
		bar := fmt.Sprintf("%.2fx", ratio(ap99, sp99))
		if k.p.on && n > 0 {
			if ratio(ap99, sp99) <= 1.5 {
				bar += " pass"
			} else {
				bar += " FAIL"
			}
		}
		who := "the survivor"
		if k.p.spares > 0 {
			who = "the survivor and the spare"
		}
		rate := float64(started) / window.Seconds()
		fmt.Printf("| %s | %s | %s | %d | %v–%v | %d | %s | %s | %s | %d of %d | %d of %d | %s (2 instances) → %s (%s) | %.0f / %.0f (%.2fx) | %s, %s (%.2fx) |\n", k.route, modeName(k.keepAlive), k.p.label(), len(rs),
			lo.Round(time.Millisecond), hi.Round(time.Millisecond), n, fmtMS(ap99), fmtMS(sp99), bar, within, len(rs), failOK, len(rs),
			fmtMS(median(served)), fmtMS(median(serving)), who, rate, steadyRate, rate/steadyRate, fmtMS(pooledQuantile(all, 50)), fmtMS(pooledP99(all)), ratio(pooledP99(all), sp99))
	}
	fmt.Println()
}

// latencies are the latencies of ss, answered or not (as statsOf counts
// them).
func latencies(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.lat
	}
	return out
}

// pooledP99 is the p99 of the latencies of all sets together; 0 for none.
func pooledP99(sets [][]time.Duration) time.Duration { return pooledQuantile(sets, 99) }

// pooledQuantile is the q-th percentile of the latencies of all sets
// together; 0 for none.
func pooledQuantile(sets [][]time.Duration, q int) time.Duration {
	all := slices.Concat(sets...)
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	return quantile(all, q)
}

// reloadSteerRow is one reload run and its steady run.
type reloadSteerRow struct {
	p         steerPool
	keepAlive bool
	steady    stats
	run       stats // the whole reload run
	during    stats // the requests that started during corral reload
	took      time.Duration
	// The latencies behind steady and run, for the pooled table.
	steadyLat, runLat []time.Duration
}

const (
	reloadSteady = 4500 * time.Millisecond
	reloadLoad   = 6 * time.Second
	reloadAt     = 1500 * time.Millisecond
)

// reloadRun: a steady run, then a run with corral reload POOL in it, as
// the reload suite does with wrk.
func reloadRun(ctx context.Context, sh func(...string) (string, error), p steerPool, keepAlive bool) (reloadSteerRow, error) {
	row := reloadSteerRow{p: p, keepAlive: keepAlive}
	if err := waitServing(ctx, p.addr(), 4); err != nil {
		return row, err
	}
	l := load{addr: p.addr(), path: "/", conns: steerConns, keepAlive: keepAlive, src: loadSrc}
	ss := l.run(ctx, time.Now(), reloadSteady)
	row.steady = statsOf(between(ss, warm, reloadSteady), reloadSteady-warm)
	row.steadyLat = latencies(between(ss, warm, reloadSteady))
	t0 := time.Now()
	res := make(chan []sample, 1)
	go func() { res <- l.run(ctx, t0, reloadLoad) }()
	time.Sleep(time.Until(t0.Add(reloadAt)))
	from := time.Since(t0)
	out, err := sh("corral", "reload", p.name)
	row.took = time.Since(t0) - from
	ss = <-res
	if err != nil {
		return row, fmt.Errorf("%w\n%s", err, out)
	}
	row.run = statsOf(between(ss, warm, reloadLoad), reloadLoad-warm)
	row.runLat = latencies(between(ss, warm, reloadLoad))
	row.during = statsOf(between(ss, from, from+row.took), row.took)
	return row, nil
}

func printReloads(rows []reloadSteerRow) {
	fmt.Printf("### corral reload of 4 instances under load\n\n")
	fmt.Printf("GET /, %d clients; a steady run of %v, then a run of %v with `corral reload POOL` %v in (the first %v of each run not counted); %d times each, steering off, on, and on with a spare (a fifth instance, out of rotation).\n\n", steerConns, reloadSteady, reloadLoad, reloadAt, warm, steerRounds)
	fmt.Printf("| connections | steering | steady req/s | steady p50 / p99 | reload run req/s | reload run p50 / p99 | p99 run / steady (bar ≤ 1.3x) | during the reload: n, p99, max | failed | reload took |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		rat := ratio(r.run.p99, r.steady.p99)
		bar := fmt.Sprintf("%.2fx", rat)
		if r.p.on {
			if rat <= 1.3 {
				bar += " pass"
			} else {
				bar += " FAIL"
			}
		}
		fmt.Printf("| %s | %s | %.0f | %s / %s | %.0f | %s / %s | %s | %d, %s, %s | %d | %v |\n",
			modeName(r.keepAlive), r.p.label(), r.steady.rps, fmtMS(r.steady.p50), fmtMS(r.steady.p99),
			r.run.rps, fmtMS(r.run.p50), fmtMS(r.run.p99), bar, r.during.n, fmtMS(r.during.p99), fmtMS(r.during.max),
			r.run.failed+r.run.refused, r.took.Round(time.Millisecond))
	}
	fmt.Println()
	if steerRounds < 2 {
		return
	}
	fmt.Printf("The same reloads pooled: the requests of all the reload runs of a kind against those of all their steady runs.\n\n")
	fmt.Printf("| connections | steering | reloads | reload run p99, all runs | steady p99, all runs | p99 run / steady (bar ≤ 1.3x) | runs within 1.3x on their own | failed, all runs |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|\n")
	var kinds []steerPool
	for _, r := range rows {
		if !slices.Contains(kinds, r.p) {
			kinds = append(kinds, r.p)
		}
	}
	for _, ka := range []bool{true, false} {
		for _, p := range kinds {
			var steady, run [][]time.Duration
			n, within, failed := 0, 0, 0
			for _, r := range rows {
				if r.keepAlive != ka || r.p != p {
					continue
				}
				n++
				steady, run = append(steady, r.steadyLat), append(run, r.runLat)
				if ratio(r.run.p99, r.steady.p99) <= 1.3 {
					within++
				}
				failed += r.run.failed + r.run.refused
			}
			if n == 0 {
				continue
			}
			sp99, rp99 := pooledP99(steady), pooledP99(run)
			bar := fmt.Sprintf("%.2fx", ratio(rp99, sp99))
			if p.on {
				if ratio(rp99, sp99) <= 1.3 {
					bar += " pass"
				} else {
					bar += " FAIL"
				}
			}
			fmt.Printf("| %s | %s | %d | %s | %s | %s | %d of %d | %d |\n", modeName(ka), p.label(), n, fmtMS(rp99), fmtMS(sp99), bar, within, n, failed)
		}
	}
	fmt.Println()
}

// cordonRun: 50 keep-alive clients and 50 clients with a new connection
// per request on app's 4 instances; corral cordon app@1 2 s in.
func cordonRun(ctx context.Context, sh func(...string) (string, error), p steerPool) error {
	if err := waitServing(ctx, p.addr(), 4); err != nil {
		return err
	}
	const dur, at = 5 * time.Second, 2 * time.Second
	ka := load{addr: p.addr(), path: "/", conns: 50, keepAlive: true, src: func(k int) string { return loadSrc(k) }}
	nc := load{addr: p.addr(), path: "/", conns: 50, keepAlive: false, src: func(k int) string { return loadSrc(50 + k) }}
	t0 := time.Now()
	kaRes, ncRes := make(chan []sample, 1), make(chan []sample, 1)
	go func() { kaRes <- ka.run(ctx, t0, dur) }()
	go func() { ncRes <- nc.run(ctx, t0, dur) }()
	time.Sleep(time.Until(t0.Add(at)))
	issued := time.Since(t0)
	out, err := sh("corral", "cordon", p.name+"@1")
	ret := time.Since(t0)
	kas, ncs := <-kaRes, <-ncRes
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	status, _ := sh("corral", "status", p.name)
	if _, err := sh("corral", "uncordon", p.name+"@1"); err != nil {
		return err
	}
	all := append(append([]sample(nil), kas...), ncs...)
	// New connections answered by instance 1, by when they started.
	var before, first100, later int
	var lastNew time.Duration = -1
	for _, s := range all {
		if !s.newConn || s.inst != 1 {
			continue
		}
		switch {
		case s.start < issued:
		case s.start < ret:
			before++
		case s.start < ret+100*time.Millisecond:
			first100++
		default:
			later++
		}
		if s.start >= ret {
			lastNew = max(lastNew, s.start-ret)
		}
	}
	// Keep-alive clients on instance 1 when the cordon was issued, and
	// their answers after it returned.
	onOne := map[int16]bool{}
	last := map[int16]sample{}
	for _, s := range between(kas, 0, issued) {
		if s.out == okay {
			last[s.client] = s
		}
	}
	for c, s := range last {
		if s.inst == 1 {
			onOne[c] = true
		}
	}
	keptAnswers, keptClients := 0, map[int16]bool{}
	for _, s := range between(kas, ret, dur) {
		if s.out == okay && !s.newConn && s.inst == 1 {
			keptAnswers++
			keptClients[s.client] = true
		}
	}
	failedN := 0
	for _, s := range all {
		if s.out != okay {
			failedN++
		}
	}
	perInst := map[int16]int{}
	for _, s := range between(ncs, ret+100*time.Millisecond, dur) {
		if s.out == okay {
			perInst[s.inst]++
		}
	}
	passFail := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "FAIL"
	}
	lastStr := "none"
	if lastNew >= 0 {
		lastStr = fmtMS(lastNew) + " after it returned"
	}
	steady := statsOf(between(all, warm, issued), issued-warm)
	afterSt := statsOf(between(all, ret, dur), dur-ret)
	fmt.Printf("### corral cordon under load\n\n")
	fmt.Printf("app, 4 instances, GET /: 50 keep-alive clients and 50 clients with a new connection per request, %v; `corral cordon app@1` %v in (it returned after %v, run from the host through nsenter).\n\n", dur, at, (ret - issued).Round(time.Millisecond))
	fmt.Printf("| measure | value | bar |\n|---|---|---|\n")
	fmt.Printf("| new connections answered by app@1, started between `corral cordon` and its return | %d | |\n", before)
	fmt.Printf("| … started in the 100 ms after it returned | %d | |\n", first100)
	fmt.Printf("| … started later (until the end, %v) | %d | 0: %s |\n", (dur - ret - 100*time.Millisecond).Round(time.Millisecond), later, passFail(later == 0))
	fmt.Printf("| the last new connection answered by app@1 | %s | |\n", lastStr)
	fmt.Printf("| new connections after return+100 ms, per instance | %s | |\n", fmtPer(perInst))
	fmt.Printf("| keep-alive clients on app@1 at the cordon; of them, answered by app@1 after it, on the same connection | %d; %d (%d answers) | all: %s |\n", len(onOne), len(keptClients), keptAnswers, passFail(len(onOne) > 0 && len(keptClients) == len(onOne)))
	fmt.Printf("| failed or refused requests, both loads | %d of %d | 0: %s |\n", failedN, len(all), passFail(failedN == 0))
	fmt.Printf("| p50 / p99 before the cordon, after it | %s / %s, %s / %s | |\n", fmtMS(steady.p50), fmtMS(steady.p99), fmtMS(afterSt.p50), fmtMS(afterSt.p99))
	fmt.Printf("| corral status shows the cordon | %v | |\n\n", strings.Contains(status, "cordoned"))
	return nil
}

func fmtPer(m map[int16]int) string {
	var keys []int
	for k := range m {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d: %d", k, m[int16(k)]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// stickyAddrs is the number of client addresses of the sticky run.
const stickyAddrs = 50

func stickySrc(k int) string { return fmt.Sprintf("127.0.7.%d", k+1) }

// stickyPhase sends n new connections from each address, 50 at a time
// (one client per address), and returns each address's instances.
func stickyPhase(ctx context.Context, n int) ([]map[int16]int, int, error) {
	l := load{addr: fmt.Sprintf("127.0.0.1:%d", stickyPort), path: "/", conns: stickyAddrs, perClient: n, src: stickySrc}
	ss := l.run(ctx, time.Now(), 2*time.Minute)
	per := make([]map[int16]int, stickyAddrs)
	for k := range per {
		per[k] = map[int16]int{}
	}
	bad := 0
	for _, s := range ss {
		if s.out != okay {
			bad++
			continue
		}
		per[s.client][s.inst]++
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	return per, bad, nil
}

// home is the instance of an address that reached exactly one, else 0.
func home(m map[int16]int) int16 {
	if len(m) != 1 {
		return 0
	}
	for i := range m {
		return i
	}
	return 0
}

// stickyRun: balance = "sticky", 3 instances; 1,000 new connections from
// each of 50 addresses; corral stop sticky@2; 200 each; corral start
// sticky@2; 200 each.
func stickyRun(ctx context.Context, box *sdbox.Box, sh func(...string) (string, error)) error {
	const n = 3
	if err := box.WriteFile("/etc/corral/pools.d/sticky.toml", []byte(steerFile(stickyPort, n, "balance = \"sticky\"")), 0o644); err != nil {
		return err
	}
	for _, c := range [][]string{{"systemctl", "daemon-reload"}, {"corral", "start", "sticky"}} {
		if _, err := sh(c...); err != nil {
			return err
		}
	}
	if err := waitActive(sh, "sticky@*.service", n, time.Minute); err != nil {
		return err
	}
	if err := waitSteering(sh, "sticky", true); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	t0 := time.Now()
	before, badA, err := stickyPhase(ctx, 1000)
	if err != nil {
		return err
	}
	tookA := time.Since(t0)
	if _, err := sh("corral", "stop", "sticky@2"); err != nil {
		return err
	}
	time.Sleep(time.Second)
	during, badB, err := stickyPhase(ctx, 200)
	if err != nil {
		return err
	}
	if _, err := sh("corral", "start", "sticky@2"); err != nil {
		return err
	}
	if err := waitActive(sh, "sticky@*.service", n, time.Minute); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	after, badC, err := stickyPhase(ctx, 200)
	if err != nil {
		return err
	}
	count := func(per []map[int16]int) (one int, on map[int16]int) {
		on = map[int16]int{}
		for _, m := range per {
			if h := home(m); h != 0 {
				one++
				on[h]++
			}
		}
		return one, on
	}
	oneA, onA := count(before)
	oneB, onB := count(during)
	oneC, onC := count(after)
	var stayed, moved, wrongMove, back int
	for k := range before {
		hb, hd := home(before[k]), home(during[k])
		switch {
		case hb == 0:
		case hb != 2 && hd == hb:
			stayed++
		case hb != 2:
			wrongMove++
		case hd != 0 && hd != 2:
			moved++
		}
		if hb != 0 && home(after[k]) == hb {
			back++
		}
	}
	passFail := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "FAIL"
	}
	fmt.Printf("### Sticky: balance = \"sticky\", 3 instances\n\n")
	fmt.Printf("%d client addresses (127.0.7.1–%d), each on a new connection per request, one client per address, all at once.\n\n", stickyAddrs, stickyAddrs)
	fmt.Printf("| phase | connections per address | addresses that reached one instance only | addresses per instance | failed | bar |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| all 3 up (%v) | 1000 | %d of %d | %s | %d | 100%%: %s |\n", tookA.Round(100*time.Millisecond), oneA, stickyAddrs, fmtPer(onA), badA, passFail(oneA == stickyAddrs && badA == 0))
	fmt.Printf("| `corral stop sticky@2` | 200 | %d of %d | %s | %d | |\n", oneB, stickyAddrs, fmtPer(onB), badB)
	fmt.Printf("| `corral start sticky@2` | 200 | %d of %d | %s | %d | |\n\n", oneC, stickyAddrs, fmtPer(onC), badC)
	fmt.Printf("After the stop: of the %d addresses on instances 1 and 3, %d stayed where they were and %d moved (bar: 0 moved, %s); the %d on instance 2 moved to one other instance each: %d. After the start, %d of %d addresses were back on their first instance.\n\n",
		oneA-onA[2], stayed, wrongMove, passFail(wrongMove == 0 && stayed == oneA-onA[2]), onA[2], moved, back, stickyAddrs)
	if oneA == 0 {
		return errors.New("no address reached a single instance")
	}
	return nil
}

// fmtCPU lists the CPU times of cpu by name: "corrald 12.3 ms, …".
func fmtCPU(cpu map[string]time.Duration) string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(cpu)) {
		out = append(out, fmt.Sprintf("%s %.1f ms", name, float64(cpu[name])/1e6))
	}
	return strings.Join(out, ", ")
}

// median returns the median of ds (the upper one of an even count), 0
// for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
