package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Errors that callers branch on, for example to print what to install.
var (
	ErrNotRoot = errors.New("netns: must run as root (network namespaces, veths and routes need it): run it with sudo")
	ErrNoIP    = errors.New("netns: ip not found: run 'apt-get install iproute2'")
)

// Iface is the name of the namespace's end of the veth, inside the namespace.
const Iface = "eth0"

const (
	// removeTimeout bounds the removal of a Host (Close, leftovers).
	removeTimeout = 30 * time.Second

	// execPath is PATH for ip and for commands run inside a namespace.
	execPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Options configure New. The zero value is ready to use.
type Options struct {
	// Pool is the range New takes the Host's /24 from: a prefix of 10.0.0.0/8 between /8
	// and /24. Zero: DefaultPool (10.213.0.0/16). Set it on a machine whose own networks
	// overlap the default one (New skips every /24 a route of the host overlaps anyway).
	Pool netip.Prefix
}

// A Host is a network namespace with its own address, reachable from the host through a veth
// pair. Its fields describe it and must not be changed. Its methods are safe for concurrent
// use; Close removes it.
type Host struct {
	// Name names the namespace (ip netns exec Name, ip -n Name) and the host's end of the
	// veth: corral-X-Y for the /24 10.X.Y.0/24.
	Name string
	// Path is the namespace's file, /run/netns/Name: for sdbox.Options.NetNS,
	// nsenter --net=Path or setns.
	Path string
	// Subnet is the Host's /24, 10.X.Y.0/24.
	Subnet netip.Prefix
	// Addr is the namespace's address, 10.X.Y.2 on Iface: where the host reaches what
	// listens inside.
	Addr netip.Addr
	// HostAddr is the host's address on its end of the veth, 10.X.Y.1: where the namespace
	// reaches the host, and its default gateway.
	HostAddr netip.Addr

	ip   string   // path of ip(8)
	lock *os.File // holds lockPath(Name) for the Host's life

	closeOnce sync.Once
	closeErr  error
}

// New makes a Host: it takes a free /24 of opts.Pool (see the package documentation), creates
// the namespace, the veth pair and the addresses and routes, and returns once the namespace
// is reachable at Addr. ctx bounds New only; the Host lives until Close. New first calls
// CleanupStale (ignoring its error).
//
// On error nothing is left behind: no namespace, interface, route or lock file.
func New(ctx context.Context, opts Options) (*Host, error) {
	ip, err := prerequisites()
	if err != nil {
		return nil, err
	}
	pool := opts.Pool
	if !pool.IsValid() {
		pool = DefaultPool
	}
	if err := checkPool(pool); err != nil {
		return nil, err
	}
	_ = cleanupStale(ctx, ip)
	h, err := claim(ctx, ip, pool)
	if err != nil {
		return nil, err
	}
	if err := h.create(ctx, h.steps()); err != nil {
		if cerr := h.Close(); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
		}
		return nil, err
	}
	return h, nil
}

// prerequisites checks that we are root and returns the path of ip.
func prerequisites() (string, error) {
	if os.Geteuid() != 0 {
		return "", ErrNotRoot
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return "", ErrNoIP
	}
	return ip, nil
}

// newHost returns the Host of subnet, not created, not locked.
func newHost(ip string, subnet netip.Prefix) *Host {
	name := nameFor(subnet)
	host, inside := hostAddrs(subnet)
	return &Host{
		Name:     name,
		Path:     filepath.Join(netnsDir, name),
		Subnet:   subnet,
		Addr:     inside,
		HostAddr: host,
		ip:       ip,
	}
}

// claim takes the first free /24 of pool and returns its Host, locked and not created yet.
func claim(ctx context.Context, ip string, pool netip.Prefix) (*Host, error) {
	routes, err := listRoutes(ctx, ip)
	if err != nil {
		return nil, err
	}
	for _, subnet := range subnets(pool) {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("netns: find a free /24 in %s: %w", pool, context.Cause(ctx))
		}
		if overlaps(subnet, routes) {
			continue // a route of the host, or a live Host
		}
		h, err := take(ctx, ip, subnet)
		if errors.Is(err, errTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return h, nil
	}
	return nil, fmt.Errorf("netns: no free /24 in %s (each overlaps a route of this machine or belongs to a live Host): close Hosts, run netns.CleanupStale, or set Options.Pool", pool)
}

// take locks subnet, removes what a dead owner left there, and checks again that no route
// of the host overlaps it. errTaken if the /24 is not available.
func take(ctx context.Context, ip string, subnet netip.Prefix) (*Host, error) {
	h := newHost(ip, subnet)
	f, err := lock(h.Name)
	if err != nil {
		return nil, err
	}
	release := func(err error) (*Host, error) {
		_ = unlock(h.Name, f)
		return nil, err
	}
	if busy, err := inUse(h.Path); err != nil {
		return release(err)
	} else if busy {
		return release(errTaken) // a dead owner's namespace that processes still run in
	}
	if err := h.remove(); err != nil {
		return release(err)
	}
	routes, err := listRoutes(ctx, ip)
	if err != nil {
		return release(err)
	}
	if overlaps(subnet, routes) {
		return release(errTaken)
	}
	h.lock = f
	return h, nil
}

// A step of the creation of a Host: ip with args, or do.
type step struct {
	args []string
	do   func() error
}

// steps returns what New does to create h, in order. The last-resort route comes first, so
// that the /24 never follows the host's default route, not even half made.
func (h *Host) steps() []step {
	n, gw := h.Name, h.HostAddr.String()
	return []step{
		{args: []string{"route", "add", "unreachable", h.Subnet.String(), "metric", fmt.Sprint(uint32(guardMetric))}},
		{args: []string{"netns", "add", n}},
		{args: []string{"link", "add", n, "type", "veth", "peer", "name", Iface, "netns", n}},
		{args: []string{"link", "set", "dev", n, "addrgenmode", "none"}},
		{args: []string{"-n", n, "link", "set", "dev", Iface, "addrgenmode", "none"}},
		{do: h.noForwarding},
		{args: []string{"addr", "add", gw + "/24", "dev", n}},
		{args: []string{"link", "set", "dev", n, "up"}},
		{args: []string{"-n", n, "addr", "add", h.Addr.String() + "/24", "dev", Iface}},
		{args: []string{"-n", n, "link", "set", "dev", "lo", "up"}},
		{args: []string{"-n", n, "link", "set", "dev", Iface, "up"}},
		{args: []string{"-n", n, "route", "add", "default", "via", gw, "dev", Iface}},
	}
}

// create runs steps.
func (h *Host) create(ctx context.Context, steps []step) error {
	for _, s := range steps {
		var err error
		if s.do != nil {
			err = s.do()
		} else {
			_, err = h.run(ctx, s.args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// noForwarding turns forwarding off for what comes in on the host's end: the namespace
// reaches the host's own addresses, never beyond, even on a host that forwards (a router,
// Docker).
func (h *Host) noForwarding() error {
	p := filepath.Join("/proc/sys/net/ipv4/conf", h.Name, "forwarding")
	if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
		return fmt.Errorf("netns: turn forwarding off on %s: %w", h.Name, err)
	}
	return nil
}

// Down cuts the Host's link, as if the machine lost power or its cable: it sets the
// namespace's end of the veth down. The host keeps its route to Subnet; its packets to Addr
// are dropped, so connection attempts time out (after about 3 s the kernel reports "no route
// to host") and open connections stall. Inside, the namespace has no route but to its own
// /24. Processes inside keep running. Up restores the link.
func (h *Host) Down(ctx context.Context) error {
	_, err := h.run(ctx, "-n", h.Name, "link", "set", "dev", Iface, "down")
	return err
}

// Up restores the link after Down: it sets the namespace's end up and puts back the default
// route, which the kernel removed with the link. Up on a Host that is up is harmless.
func (h *Host) Up(ctx context.Context) error {
	if _, err := h.run(ctx, "-n", h.Name, "link", "set", "dev", Iface, "up"); err != nil {
		return err
	}
	_, err := h.run(ctx, "-n", h.Name, "route", "replace", "default", "via", h.HostAddr.String(), "dev", Iface)
	return err
}

// Command returns a command that runs args in the namespace (ip netns exec Name args...),
// with a clean environment (PATH, HOME=/root, LANG=C.UTF-8). Only the network namespace
// changes: files, processes and users are the host's. Set Stdin, Stdout and Stderr as with
// any exec.Cmd. Cancelling ctx kills the command.
func (h *Host) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.ip, append([]string{"netns", "exec", h.Name}, args...)...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second // a daemon started inside may hold our pipes
	return cmd
}

// Exec runs args in the namespace and returns what it wrote. The error names the command and
// includes the exit status (errors.As finds the *exec.ExitError) and the trimmed stderr.
func (h *Host) Exec(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	if len(args) == 0 {
		return "", "", errors.New("netns: exec: no command")
	}
	var o, e bytes.Buffer
	cmd := h.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), fmt.Errorf("netns: exec %q in %s: %w%s", args, h.Name, err, detail(ctx, e.String()))
	}
	return o.String(), e.String(), nil
}

// String returns the name and the address, for messages.
func (h *Host) String() string { return fmt.Sprintf("%s (%s)", h.Name, h.Addr) }

// Close removes the Host: the veth pair, the namespace, the last-resort route and the lock
// file. Processes still running in the namespace keep running without a network. It is
// idempotent, safe for concurrent use and on a nil *Host, and always safe to defer; every
// step is bounded (30 s). The error reports what could not be removed.
func (h *Host) Close() error {
	if h == nil {
		return nil
	}
	h.closeOnce.Do(func() {
		err := h.remove()
		if h.lock != nil {
			err = errors.Join(err, unlock(h.Name, h.lock))
			h.lock = nil
		}
		h.closeErr = err
	})
	return h.closeErr
}

// remove deletes whatever of h exists: the veth (both ends go together), the namespace, the
// last-resort route. The caller holds the lock.
func (h *Host) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	var errs []error
	if _, err := net.InterfaceByName(h.Name); err == nil {
		kind, err := h.linkKind(ctx)
		switch {
		case err != nil:
			errs = append(errs, err)
		case kind != "veth":
			errs = append(errs, fmt.Errorf("netns: interface %s is a %q, not a veth of this package: left alone; remove it with 'ip link del %s'", h.Name, kind, h.Name))
		default:
			_, err := h.run(ctx, "link", "del", "dev", h.Name)
			errs = append(errs, err)
		}
	}
	if _, err := os.Lstat(h.Path); err == nil {
		_, err := h.run(ctx, "netns", "del", h.Name)
		errs = append(errs, err)
	}
	routes, err := listRoutes(ctx, h.ip)
	errs = append(errs, err)
	for _, r := range routes {
		if r.isGuard(h.Subnet) {
			_, err := h.run(ctx, "route", "del", "unreachable", h.Subnet.String(), "metric", fmt.Sprint(uint32(guardMetric)))
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// linkKind returns the kind of the host's interface named h.Name ("veth"; "" for a device).
func (h *Host) linkKind(ctx context.Context) (string, error) {
	out, err := h.run(ctx, "-j", "-d", "link", "show", "dev", h.Name)
	if err != nil {
		return "", err
	}
	var links []struct {
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return "", fmt.Errorf("netns: parse ip -j -d link show dev %s: %q", h.Name, out)
	}
	return links[0].LinkInfo.Kind, nil
}

// run runs ip with args and returns its stdout.
func (h *Host) run(ctx context.Context, args ...string) (string, error) {
	return runIP(ctx, h.ip, args...)
}

// runIP runs ip with args and returns its stdout; the error includes the command and stderr.
func runIP(ctx context.Context, ip string, args ...string) (string, error) {
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, ip, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("netns: ip %s: %w%s", strings.Join(args, " "), err, detail(ctx, e.String()))
	}
	return o.String(), nil
}

// detail returns ": stderr" (trimmed) and why ctx ended, if it did, for an error message.
func detail(ctx context.Context, stderr string) string {
	var s string
	if msg := strings.TrimSpace(stderr); msg != "" {
		s = ": " + msg
	}
	if ctx.Err() != nil {
		s += " (" + context.Cause(ctx).Error() + ")"
	}
	return s
}

// listRoutes returns the host's IPv4 routes, all tables.
func listRoutes(ctx context.Context, ip string) ([]route, error) {
	out, err := runIP(ctx, ip, "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	return parseRoutes([]byte(out))
}

func cleanEnv() []string {
	return []string{"PATH=" + execPath, "HOME=/root", "LANG=C.UTF-8"}
}
