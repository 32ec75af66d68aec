package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A system is one way of running an app on its own port (-port plus its
// place in specs: corral refuses two pools on one address): a plain process,
// Node's cluster module, pm2, or a corral pool in the box.
type system interface {
	// Start starts it; Stop stops it and frees the port. Both are bounded
	// in time.
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	// Workers returns the pids of the processes that serve, as the apps
	// name them in their answers (the box's pid namespace for corral).
	Workers(ctx context.Context) ([]int, error)
	// Shell runs a shell script where those pids are visible: on the host,
	// or in the box.
	Shell(ctx context.Context, script string) (string, error)
}

// A spec describes a system for the report.
type spec struct {
	id        string // the -systems name
	label     string // in tables and the chart
	app       string // "node" or "go"
	instances int
	kill      bool // part of the SIGKILL test
	corral    bool
	balance   string // corral's balance mode
	reference bool   // a single process: what the goals compare against
	noSandbox bool   // a corral pool with the sandbox taken off (see noSandboxDropIn)
	extra     bool   // run only when -systems names it, not in "all"
	newSystem func(b *bench, port int) system
}

// specs lists every system in the benchmark, in report order.
func specs(n int) []spec {
	return []spec{
		{id: "node", label: "node, 1 process", app: "node", instances: 1, reference: true,
			newSystem: func(b *bench, port int) system {
				return &hostSystem{b: b, port: port, name: "node", args: []string{"node", b.app}}
			}},
		{id: "cluster", label: fmt.Sprintf("node cluster ×%d", n), app: "node", instances: n, kill: true,
			newSystem: func(b *bench, port int) system {
				return &hostSystem{b: b, port: port, name: "cluster", args: []string{"node", b.clusterJS},
					env: []string{"APP=" + b.app, "WORKERS=" + strconv.Itoa(n)}, children: true}
			}},
		{id: "pm2", label: fmt.Sprintf("pm2 -i %d", n), app: "node", instances: n, kill: true,
			newSystem: func(b *bench, port int) system { return &pm2System{b: b, port: port, n: n} }},
		{id: "corral-node-reuseport", label: "corral node, reuseport", app: "node", instances: n, kill: true, corral: true, balance: "reuseport",
			newSystem: func(b *bench, port int) system {
				return &corralSystem{b: b, port: port, pool: "peers-node-reuseport", n: n}
			}},
		{id: "corral-node-shared", label: "corral node, shared", app: "node", instances: n, kill: true, corral: true, balance: "shared",
			newSystem: func(b *bench, port int) system {
				return &corralSystem{b: b, port: port, pool: "peers-node-shared", n: n}
			}},
		{id: "go1", label: "go, GOMAXPROCS=1", app: "go", instances: 1, reference: true,
			newSystem: func(b *bench, port int) system {
				return &hostSystem{b: b, port: port, name: "go1", args: []string{b.demo, "-listen", addr(port)}, env: []string{"GOMAXPROCS=1"}}
			}},
		{id: "go", label: fmt.Sprintf("go, GOMAXPROCS=%d", n), app: "go", instances: 1, reference: true,
			newSystem: func(b *bench, port int) system {
				return &hostSystem{b: b, port: port, name: "go", args: []string{b.demo, "-listen", addr(port)}, env: []string{"GOMAXPROCS=" + strconv.Itoa(n)}}
			}},
		{id: "corral-go-reuseport", label: "corral go, reuseport", app: "go", instances: n, corral: true, balance: "reuseport",
			newSystem: func(b *bench, port int) system {
				return &corralSystem{b: b, port: port, pool: "peers-go-reuseport", n: n}
			}},
		{id: "corral-go-shared", label: "corral go, shared", app: "go", instances: n, corral: true, balance: "shared",
			newSystem: func(b *bench, port int) system { return &corralSystem{b: b, port: port, pool: "peers-go-shared", n: n} }},
		{id: "corral-node-nosandbox", label: "corral node, reuseport, no sandbox", app: "node", instances: n, corral: true, balance: "reuseport", noSandbox: true, extra: true,
			newSystem: func(b *bench, port int) system {
				return &corralSystem{b: b, port: port, pool: "peers-node-nosandbox", n: n}
			}},
	}
}

// poolFile is the pool file of a corral system: the app on port, n
// instances, the balance mode; started by the benchmark, not at boot.
func poolFile(s spec, port int, boxApp string) string {
	var f strings.Builder
	if s.app == "node" {
		fmt.Fprintf(&f, "exec      = [\"/usr/bin/node\", %q]\n", boxApp)
	} else {
		f.WriteString("exec      = [\"/usr/libexec/corral/corral-demo\"]\n")
	}
	fmt.Fprintf(&f, "listen    = [\"127.0.0.1:%d\"]\ninstances = %d\nbalance   = %q\nstart_on_boot = false\n", port, s.instances, s.balance)
	if s.app == "go" {
		// As the demo pool: READY=1, and no JIT.
		f.WriteString("readiness = \"notify\"\n\n[sandbox]\nwrite_execute_memory = false\n")
	}
	// The benchmark kills workers on purpose, rounds apart: not a crash
	// loop for corrald to stop.
	f.WriteString("\n[restart]\ncrash_loop_failures = 1000\n")
	return f.String()
}

// noSandboxDropIn takes corral's sandbox off a pool's instances, to
// measure what it costs: no seccomp filters, namespaces, BPF address
// filters or dynamic user (the instances run as root).
const noSandboxDropIn = `[Service]
DynamicUser=no
User=
NoNewPrivileges=no
ProtectSystem=no
ProtectHome=no
PrivateTmp=no
PrivateDevices=no
PrivateUsers=no
PrivateIPC=no
PrivateMounts=no
ProtectHostname=no
ProtectClock=no
ProtectKernelTunables=no
ProtectKernelModules=no
ProtectKernelLogs=no
ProtectControlGroups=no
ProtectProc=default
LockPersonality=no
RestrictRealtime=no
RestrictSUIDSGID=no
RestrictNamespaces=no
RemoveIPC=no
MemoryDenyWriteExecute=no
RestrictAddressFamilies=
IPAddressDeny=
PrivateNetwork=no
SystemCallArchitectures=
SystemCallFilter=
`

// hostSystem is a process on the host, in a process group of its own: the
// Node app, the cluster wrapper, or the Go demo.
type hostSystem struct {
	b        *bench
	port     int
	name     string
	args     []string
	env      []string
	children bool // the workers are its children (the cluster module)

	cmd  *exec.Cmd
	done chan struct{}
}

func (h *hostSystem) Start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(h.b.work, h.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(h.args[0], h.args[1:]...)
	cmd.Env = append(os.Environ(), append([]string{"PORT=" + strconv.Itoa(h.port)}, h.env...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", h.name, err)
	}
	h.cmd, h.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(h.done) }()
	return nil
}

// Stop sends SIGTERM to the process (the apps drain, the cluster primary
// passes it on), waits up to 10 s, then SIGKILLs its process group.
func (h *hostSystem) Stop(ctx context.Context) error {
	if h.cmd == nil {
		return nil
	}
	pgid := h.cmd.Process.Pid
	h.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("stop %s: still running 10s after SIGTERM: killed", h.name)
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // what is left of the group
	<-h.done
	h.cmd = nil
	return errors.Join(err, waitPortFree(ctx, h.port))
}

func (h *hostSystem) Workers(ctx context.Context) ([]int, error) {
	if h.cmd == nil {
		return nil, fmt.Errorf("%s is not running", h.name)
	}
	pid := h.cmd.Process.Pid
	if !h.children {
		return []int{pid}, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, err
	}
	return parsePids(string(data)), nil
}

func (h *hostSystem) Shell(ctx context.Context, script string) (string, error) {
	return hostShell(ctx, script)
}

func hostShell(ctx context.Context, script string) (string, error) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(c, "sh", "-c", script).Output()
	if err != nil {
		return string(out), fmt.Errorf("sh -c %q: %w", script, err)
	}
	return string(out), nil
}

// parsePids reads whitespace-separated pids, skipping anything else (0,
// blank lines).
func parsePids(s string) []int {
	var pids []int
	for _, f := range strings.Fields(s) {
		if p, err := strconv.Atoi(f); err == nil && p > 0 {
			pids = append(pids, p)
		}
	}
	slices.Sort(pids)
	return pids
}

// pm2System is the Node app under pm2 in cluster mode (-i n), with its
// own PM2_HOME. The daemon lives for the whole benchmark; bench.close runs
// `pm2 kill`.
type pm2System struct {
	b    *bench
	port int
	n    int
}

const pm2App = "peers"

func (p *pm2System) Start(ctx context.Context) error {
	_, err := p.b.pm2(ctx, []string{"PORT=" + strconv.Itoa(p.port)}, "start", p.b.app, "-i", strconv.Itoa(p.n), "--name", pm2App)
	return err
}

func (p *pm2System) Stop(ctx context.Context) error {
	_, err := p.b.pm2(ctx, nil, "delete", pm2App)
	return errors.Join(err, waitPortFree(ctx, p.port))
}

func (p *pm2System) Workers(ctx context.Context) ([]int, error) {
	out, err := p.b.pm2(ctx, nil, "jlist")
	if err != nil {
		return nil, err
	}
	return pm2Pids(out)
}

// pm2Pids reads the pids of the online processes from `pm2 jlist`.
func pm2Pids(jlist string) ([]int, error) {
	// pm2 may print a notice before the JSON.
	if i := strings.Index(jlist, "["); i > 0 {
		jlist = jlist[i:]
	}
	var procs []struct {
		PID    int `json:"pid"`
		PM2Env struct {
			Status string `json:"status"`
		} `json:"pm2_env"`
	}
	if err := json.Unmarshal([]byte(jlist), &procs); err != nil {
		return nil, fmt.Errorf("pm2 jlist: %w", err)
	}
	var pids []int
	for _, p := range procs {
		if p.PID > 0 && p.PM2Env.Status == "online" {
			pids = append(pids, p.PID)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

func (p *pm2System) Shell(ctx context.Context, script string) (string, error) {
	return hostShell(ctx, script)
}

// corralSystem is a pool in the box, written at setup with
// start_on_boot = false; started and stopped as an operator does, with
// corral start and corral stop.
type corralSystem struct {
	b    *bench
	port int
	pool string
	n    int
}

func (c *corralSystem) Start(ctx context.Context) error {
	if _, err := c.b.boxSh(ctx, "corral", "start", c.pool); err != nil {
		return err
	}
	units := make([]string, c.n)
	for i := range units {
		units[i] = fmt.Sprintf("%s@%d.service", c.pool, i+1)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := c.b.boxSh(ctx, append([]string{"systemctl", "is-active"}, units...)...)
		if strings.Count(out, "active\n") == c.n && !strings.Contains(out, "inactive") {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: instances not active after 1m: %s", c.pool, strings.Join(strings.Fields(out), " "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop runs corral stop. If that fails, the benchmark notes it (it is a
// finding) and stops the pool's units with systemctl, sockets first.
func (c *corralSystem) Stop(ctx context.Context) error {
	if _, err := c.b.boxSh(ctx, "corral", "stop", c.pool); err != nil {
		c.b.note(fmt.Sprintf("`corral stop %s` failed after the load: %s; stopped with systemctl instead", c.pool, oneLine(err.Error())))
		_, err = c.b.boxSh(ctx, "systemctl", "stop", c.pool+".target", c.pool+"*.socket", c.pool+"@*.service") // patterns: no error for units not loaded
		if err != nil {
			return errors.Join(err, waitPortFree(ctx, c.port))
		}
	}
	return waitPortFree(ctx, c.port)
}

// oneLine joins the lines of s.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (c *corralSystem) Workers(ctx context.Context) ([]int, error) {
	args := []string{"systemctl", "show", "-P", "MainPID"}
	for i := 1; i <= c.n; i++ {
		args = append(args, fmt.Sprintf("%s@%d.service", c.pool, i))
	}
	out, err := c.b.boxSh(ctx, args...)
	return parsePids(out), err
}

func (c *corralSystem) Shell(ctx context.Context, script string) (string, error) {
	return c.b.boxSh(ctx, "sh", "-c", script)
}

// boxSh runs a command in the box, bounded to 2 minutes.
func (b *bench) boxSh(ctx context.Context, args ...string) (string, error) {
	c, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, _, err := b.box.Exec(c, args...)
	return out, err
}

// pm2 runs the pinned pm2 with the benchmark's PM2_HOME.
func (b *bench) pm2(ctx context.Context, env []string, args ...string) (string, error) {
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, b.pm2Bin, args...)
	cmd.Env = append(os.Environ(), append([]string{"PM2_HOME=" + b.pm2Home}, env...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pm2 %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// waitPortFree waits up to 15 s until nothing listens on the port: the
// system has stopped (or nothing else uses it).
func waitPortFree(ctx context.Context, port int) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := net.Listen("tcp", addr(port))
		if err == nil {
			l.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s in use for 15s: %w", addr(port), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var pidRE = regexp.MustCompile(`pid (\d+)`)

// waitServing waits until url answers 200 and, within a few seconds of
// that, n different processes have answered (a shared socket may favour
// one, which the benchmark is there to show: then it goes on anyway).
func waitServing(ctx context.Context, url string, n int) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	var firstOK time.Time
	seen := map[string]bool{}
	for ctx.Err() == nil {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if firstOK.IsZero() {
					firstOK = time.Now()
				}
				if m := pidRE.FindSubmatch(body); m != nil {
					seen[string(m[1])] = true
				}
				if len(seen) >= n || time.Since(firstOK) > 3*time.Second {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no answer within 30s", url)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}
