// Package haproxy runs Debian's HAProxy (2.6 on Debian 12) as a plain child
// process of a test, not as a systemd service, and reads its servers' state
// from its runtime API: so that a test can put a real load balancer with
// agent-check in front of corral's hosts and see what HAProxy made of their
// agents' answers.
//
// The caller writes the frontends and backends; Start adds the global
// section with an admin stats socket in the proxy's own temporary
// directory, runs `haproxy -f CFG -db` in the foreground and waits until the
// socket answers. Close soft-stops it by its PID (SIGUSR1), kills it if it
// lingers, and removes the directory.
package haproxy

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/child"
)

// Bin is Debian's haproxy.
const Bin = "/usr/sbin/haproxy"

const (
	// StartTimeout bounds Start when its context has no sooner deadline.
	StartTimeout = 10 * time.Second
	// StopTimeout is how long Close lets a soft stop take before SIGKILL.
	StopTimeout = 5 * time.Second
	// CommandTimeout bounds a runtime API command when its context has no
	// sooner deadline.
	CommandTimeout = 10 * time.Second
)

// Defaults is a defaults section for HTTP with short timeouts, for a
// Config's Sections to start with.
const Defaults = `defaults
	mode http
	timeout connect 2s
	timeout client 10s
	timeout server 10s
	timeout check 2s
`

// Config is what the proxy serves.
type Config struct {
	// Sections is haproxy.cfg less its global section: defaults,
	// frontends, backends, listens.
	Sections string
	// Global holds more lines for the global section, such as
	// "maxconn 100"; Start writes the stats socket's line itself.
	Global []string
}

// Proxy is a running haproxy.
type Proxy struct {
	Dir    string // its temporary directory: haproxy.cfg and admin.sock
	Socket string // its admin stats socket, for the runtime API
	PID    int

	proc *child.Process
	once sync.Once
	err  error // Close's result
}

// Start writes cfg's haproxy.cfg, runs haproxy on it and waits until its
// stats socket answers. ctx bounds the start only: the proxy runs until
// Close.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if _, err := os.Stat(Bin); err != nil {
		return nil, errors.New("haproxy not found: run make deps (apt-get install haproxy)")
	}
	dir, err := os.MkdirTemp("", "haproxy")
	if err != nil {
		return nil, fmt.Errorf("haproxy: %w", err)
	}
	p := &Proxy{Dir: dir, Socket: filepath.Join(dir, "admin.sock")}
	if len(p.Socket) >= 108 { // sun_path
		os.RemoveAll(dir)
		return nil, fmt.Errorf("haproxy: socket path %s is too long for a unix socket: set TMPDIR to a shorter directory", p.Socket)
	}
	var b strings.Builder
	b.WriteString("global\n")
	fmt.Fprintf(&b, "\tstats socket %s level admin\n", p.Socket)
	for _, l := range cfg.Global {
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	b.WriteString("\n")
	b.WriteString(cfg.Sections)
	b.WriteString("\n")
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("haproxy: %w", err)
	}
	proc, err := child.Start("haproxy", dir, Bin, "-f", file, "-db")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.proc, p.PID = proc, proc.PID
	if err := p.waitReady(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// StartT is Start for a test: it fails t with haproxy's output if haproxy
// does not start, and closes the proxy in t.Cleanup, after writing
// haproxy's output to t.Log if the test failed.
func StartT(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- haproxy %d's output\n%s", p.PID, p.Output())
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// waitReady polls the stats socket until it answers, haproxy exits, or
// time runs out.
func (p *Proxy) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	var last error
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, last = p.Command(c, "show info")
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.proc.Exited:
			return fmt.Errorf("haproxy exited at start (%s), check the config: %s", p.proc.State(), p.Output())
		case <-ctx.Done():
			return fmt.Errorf("haproxy: stats socket %s did not answer within %v (last: %v): %s", p.Socket, StartTimeout, last, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Output is what haproxy has written to stdout and stderr (its last 64
// KiB): its warnings, such as "Server be/a is DOWN, reason: ...".
func (p *Proxy) Output() string { return p.proc.Out.String() }

// Close stops haproxy by its PID: SIGUSR1 (soft stop), then SIGKILL if it
// has not exited within StopTimeout; and removes its directory. It returns
// an error if haproxy had exited before Close. It can be called again.
func (p *Proxy) Close() error {
	p.once.Do(func() {
		defer os.RemoveAll(p.Dir)
		p.err = p.proc.Stop(syscall.SIGUSR1, StopTimeout)
	})
	return p.err
}

// Command sends one runtime API command, such as "show servers state" or
// "set weight be/a 10", to the stats socket and returns the answer.
func (p *Proxy) Command(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", p.Socket)
	if err != nil {
		return "", fmt.Errorf("haproxy: %q: %w", cmd, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy: %q: %w", cmd, err)
	}
	// Without "prompt", haproxy answers one command and closes.
	out, err := io.ReadAll(conn)
	if err != nil {
		return string(out), fmt.Errorf("haproxy: %q: %w", cmd, err)
	}
	return string(out), nil
}

// Server is one server's line of `show stat`. The strings are HAProxy's
// own; Fields has every column by its header name.
type Server struct {
	Backend string // pxname
	Name    string // svname
	// Status is show stat's status: "UP", "DOWN", "DRAIN", "MAINT", "no
	// check", with what HAProxy adds: "DRAIN (agent)" and "DOWN (agent)"
	// when the agent said so, "UP 1/3" (going down), "DOWN 1/2" (going
	// up), "MAINT (via be/x)". State has the word alone.
	Status          string
	Weight          int // effective weight (weight)
	UserWeight      int // uweight: the configured weight, changed by an agent's "N%" or set weight
	CurrentSessions int // scur
	TotalSessions   int // stot
	LastChange      int // lastchg: seconds since the last UP/DOWN change

	CheckStatus string // check_status: such as "L7OK", "L4CON", "L4TOUT"; "*" prefix while it runs
	CheckCode   string // check_code: such as the HTTP status
	CheckDesc   string // check_desc: the status in words
	LastCheck   string // last_chk: the health check's output or error, such as "Connection refused"

	// AgentStatus is agent_status: "L7OK" after "up" or "N%", "L7STS"
	// after "down", "CHECKED" after "drain" or "ready", "L4CON" when the
	// agent's port refused, "L7TOUT" when it did not answer; with a "* "
	// prefix while a check runs.
	AgentStatus string
	AgentCode   string // agent_code
	AgentDesc   string // agent_desc: the status in words, such as "Layer7 wrong status"
	// LastAgentCheck is last_agt: HAProxy's words for the agent's
	// answer, such as "via agent : up" or "via agent : down (reason)"
	// for "down #reason", or the error, such as "Connection refused".
	LastAgentCheck string
	AgentHealth    int // agent_health
	AgentRise      int // agent_rise
	AgentFall      int // agent_fall

	Addr   string            // addr: ip:port
	Fields map[string]string // every column of the line, by header name
}

// State is Status's state alone: "UP", "DOWN", "DRAIN", "MAINT", "NOLB" or
// "no check", without what HAProxy adds ("DRAIN (agent)", "UP 1/3").
func (s Server) State() string {
	if strings.HasPrefix(s.Status, "no check") {
		return "no check"
	}
	w, _, _ := strings.Cut(s.Status, " ")
	return w
}

// Servers is `show stat`'s servers (not its frontends, backends or
// listeners), in its order.
func (p *Proxy) Servers(ctx context.Context) ([]Server, error) {
	out, err := p.Command(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return ParseStat(out)
}

// Server is the server name of backend in `show stat`.
func (p *Proxy) Server(ctx context.Context, backend, name string) (Server, error) {
	ss, err := p.Servers(ctx)
	if err != nil {
		return Server{}, err
	}
	for _, s := range ss {
		if s.Backend == backend && s.Name == name {
			return s, nil
		}
	}
	return Server{}, fmt.Errorf("haproxy: no server %s/%s in show stat (check the config's backend and server names)", backend, name)
}

// ParseStat reads `show stat`'s CSV: a header line "# pxname,svname,...",
// then a line per frontend, backend, server and listener. It keeps the
// servers (type 2) and finds the columns by the header's names.
func ParseStat(out string) ([]Server, error) {
	head, body, ok := strings.Cut(out, "\n")
	h, found := strings.CutPrefix(head, "# ")
	if !found || !ok {
		return nil, fmt.Errorf("haproxy: show stat: no header line: %.200q", out)
	}
	names := strings.Split(strings.TrimSuffix(h, ","), ",")
	col := map[string]int{}
	for i, n := range names {
		col[n] = i
	}
	for _, n := range []string{"pxname", "svname", "status", "weight", "type"} {
		if _, ok := col[n]; !ok {
			return nil, fmt.Errorf("haproxy: show stat: no %s column in %q", n, h)
		}
	}
	r := csv.NewReader(strings.NewReader(body))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("haproxy: show stat: %w", err)
	}
	var ss []Server
	for _, row := range rows {
		f := map[string]string{}
		for i, n := range names {
			if i < len(row) && n != "" && n != "-" {
				f[n] = row[i]
			}
		}
		if f["type"] != "2" {
			continue
		}
		num := func(n string) int { v, _ := strconv.Atoi(f[n]); return v }
		ss = append(ss, Server{
			Backend: f["pxname"], Name: f["svname"], Status: f["status"],
			Weight: num("weight"), UserWeight: num("uweight"),
			CurrentSessions: num("scur"), TotalSessions: num("stot"), LastChange: num("lastchg"),
			CheckStatus: f["check_status"], CheckCode: f["check_code"], CheckDesc: f["check_desc"], LastCheck: f["last_chk"],
			AgentStatus: f["agent_status"], AgentCode: f["agent_code"], AgentDesc: f["agent_desc"], LastAgentCheck: f["last_agt"],
			AgentHealth: num("agent_health"), AgentRise: num("agent_rise"), AgentFall: num("agent_fall"),
			Addr: f["addr"], Fields: f,
		})
	}
	return ss, nil
}
