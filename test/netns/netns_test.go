//go:build integration

package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// These tests need root and iproute2, and TestTwoBoxes boots real systemd containers
// (test/sdbox): run them with
//
//	go test -tags integration -v -count=1 ./test/netns/

// TestHost checks one Host without a box: its addresses and routes, what it leaves out (IPv6,
// forwarding), and that Close removes everything.
func TestHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	h, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("New took %s: %s, host end %s", time.Since(start).Round(time.Millisecond), h, h.HostAddr)
	defer h.Close()
	if !DefaultPool.Contains(h.Addr) || !h.Subnet.Contains(h.HostAddr) || h.Path != "/run/netns/"+h.Name {
		t.Errorf("Host %+v: want addresses in %s and Path /run/netns/%s", h, DefaultPool, h.Name)
	}

	out, _, err := h.Exec(ctx, "ip", "-br", "addr")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{Iface + "@", h.Addr.String() + "/24", "lo ", "UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip -br addr in the namespace lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "fe80::") {
		t.Errorf("the namespace has an IPv6 link-local address:\n%s", out)
	}
	out, _, err = h.Exec(ctx, "ip", "-4", "route")
	if err != nil || !strings.Contains(out, "default via "+h.HostAddr.String()+" dev "+Iface) {
		t.Errorf("routes in the namespace = %q, %v; want a default route via %s", out, err, h.HostAddr)
	}
	if out, err := h.run(ctx, "-br", "addr", "show", "dev", h.Name); err != nil ||
		!strings.Contains(out, h.HostAddr.String()+"/24") || strings.Contains(out, "fe80::") {
		t.Errorf("host end: %q, %v; want %s/24 and no IPv6 address", out, err, h.HostAddr)
	}
	if fwd, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + h.Name + "/forwarding"); err != nil || strings.TrimSpace(string(fwd)) != "0" {
		t.Errorf("forwarding on %s = %q, %v; want 0", h.Name, fwd, err)
	}
	if _, err := os.Stat(lockPath(h.Name)); err != nil {
		t.Errorf("lock file: %v", err)
	}
	routes, err := listRoutes(ctx, h.ip)
	if err != nil {
		t.Fatal(err)
	}
	guards := 0
	for _, r := range routes {
		if r.isGuard(h.Subnet) {
			guards++
		}
	}
	if guards != 1 {
		t.Errorf("%d last-resort routes for %s; want 1", guards, h.Subnet)
	}
	// The namespace reaches the host.
	if err := reachHost(ctx, t, h); err != nil {
		t.Error(err)
	}

	// A second Host gets another /24.
	h2, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h2.Subnet == h.Subnet || h2.Name == h.Name {
		t.Errorf("two Hosts share %s (%s)", h.Subnet, h.Name)
	}
	closeAndCheck(t, h2)
	closeAndCheck(t, h)
}

// TestTwoBoxes is the use the package is for: two sdbox boxes, each in a Host of its own,
// each serving on 0.0.0.0:8080, reached from the host by address; one's network goes down
// and comes back while the other keeps answering.
func TestTwoBoxes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hosts := []*Host{NewT(t, Options{}), NewT(t, Options{})}
	boxes := make([]*sdbox.Box, len(hosts))
	bodies := make([]string, len(hosts))
	for i, h := range hosts {
		start := time.Now()
		boxes[i] = sdbox.New(t, sdbox.Options{NetNS: h.Path}) // closed before h (t.Cleanup order)
		t.Logf("box %d in %s booted in %s", i, h, time.Since(start).Round(time.Millisecond))
		bodies[i] = fmt.Sprintf("box %d at %s\n", i, h.Addr)
	}
	for i, b := range boxes {
		h := hosts[i]
		// The box has the namespace's network, not the host's.
		out, _, err := b.Exec(ctx, "ip", "-4", "-br", "addr")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, h.Addr.String()+"/24") || strings.Contains(out, hosts[1-i].Addr.String()) {
			t.Errorf("box %d: ip -4 -br addr =\n%s\nwant %s only", i, out, h.Addr)
		}
		if err := b.WriteFile("/srv/netns-test/index.html", []byte(bodies[i]), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Exec(ctx, "systemd-run", "--unit=netns-http", "--property=Type=exec",
			"python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/srv/netns-test"); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hosts {
		waitBody(ctx, t, h.Addr, bodies[i], 20*time.Second)
	}

	// The boxes listen in their namespaces only: the host's 127.0.0.1:8080 is not theirs.
	if got, err := get(ctx, netip.MustParseAddr("127.0.0.1")); err == nil && (got == bodies[0] || got == bodies[1]) {
		t.Errorf("http://127.0.0.1:8080/ on the host answers %q: a box listens in the host's namespace", got)
	}
	// The host does not route between Hosts (nor anywhere else): box 0 cannot reach box 1.
	// (Checked to fail with forwarding=1 on both host ends.)
	if out, _, err := boxes[0].Exec(ctx, "curl", "-sS", "--noproxy", "*", "-m", "2", "http://"+hosts[1].Addr.String()+":8080/"); err == nil {
		t.Errorf("box 0 reached box 1 at %s: %q; want nothing forwarded between Hosts", hosts[1].Addr, out)
	}

	// Down: box 0's network vanishes; a connection times out; box 1 still answers.
	if err := hosts[0].Down(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(hosts[0].Addr, 8080).String())
	took := time.Since(start)
	var ne net.Error
	switch {
	case err == nil:
		conn.Close()
		t.Errorf("after Down, connected to %s:8080", hosts[0].Addr)
	case !errors.As(err, &ne) || !ne.Timeout():
		t.Errorf("after Down, dial %s:8080 failed in %s with %v; want a timeout", hosts[0].Addr, took.Round(time.Millisecond), err)
	default:
		t.Logf("after Down, dial %s:8080: %v after %s", hosts[0].Addr, err, took.Round(time.Millisecond))
	}
	if got, err := get(ctx, hosts[1].Addr); err != nil || got != bodies[1] {
		t.Errorf("box 1 while box 0 is down: %q, %v; want %q", got, err, bodies[1])
	}
	if out, _, err := boxes[0].Exec(ctx, "systemctl", "is-active", "netns-http.service"); err != nil {
		t.Errorf("box 0's server while its network is down: %q, %v; want active", out, err)
	}

	// Up: box 0 answers again.
	if err := hosts[0].Up(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitBody(ctx, t, hosts[0].Addr, bodies[0], 10*time.Second)
	t.Logf("after Up, box 0 answered within %s", time.Since(start).Round(time.Millisecond))
	if out, _, err := boxes[0].Exec(ctx, "ip", "-4", "route"); err != nil || !strings.Contains(out, "default via "+hosts[0].HostAddr.String()) {
		t.Errorf("box 0 after Up: routes %q, %v; want the default route back", out, err)
	}
}

// TestFailureMidway stops the creation of a Host after each step and checks that Close removes
// what was made.
func TestFailureMidway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ip, err := prerequisites()
	if err != nil {
		t.Fatal(err)
	}
	n := len((&Host{}).steps())
	for k := 0; k <= n; k++ {
		h, err := claim(ctx, ip, DefaultPool)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.create(ctx, h.steps()[:k]); err != nil {
			t.Errorf("first %d steps: %v", k, err)
		}
		closeAndCheck(t, h)
	}
}

// TestCleanupStale plays a test process that died: its Host's lock is released without Close.
func TestCleanupStale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	live := NewT(t, Options{})
	dead, err := New(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dead.lock.Close() // what the kernel does when the process dies
	dead.closeOnce.Do(func() {})
	t.Cleanup(func() { _ = CleanupStale(context.Background()) }) // if the test fails half-way

	// A process still in the namespace keeps it.
	sleep := dead.Command(ctx, "sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	waitInUse(t, dead.Path)
	if err := CleanupStale(ctx); err != nil {
		t.Errorf("CleanupStale: %v", err)
	}
	if _, err := os.Stat(dead.Path); err != nil {
		t.Errorf("CleanupStale removed a namespace a process runs in: %v", err)
	}
	_ = sleep.Process.Kill()
	_ = sleep.Wait()

	if err := CleanupStale(ctx); err != nil {
		t.Errorf("CleanupStale: %v", err)
	}
	checkGone(t, dead)
	if _, err := os.Stat(live.Path); err != nil {
		t.Errorf("CleanupStale removed a live Host: %v", err)
	}
	if err := reachHost(ctx, t, live); err != nil {
		t.Errorf("live Host after CleanupStale: %v", err)
	}
}

// TestConcurrentNew makes Hosts side by side: each gets a /24 of its own.
func TestConcurrentNew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 8
	hosts := make([]*Host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { hosts[i], errs[i] = New(ctx, Options{}) })
	}
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for i, h := range hosts {
		if errs[i] != nil {
			t.Errorf("New %d: %v", i, errs[i])
			continue
		}
		if seen[h.Subnet] {
			t.Errorf("two Hosts got %s", h.Subnet)
		}
		seen[h.Subnet] = true
	}
	for _, h := range hosts {
		if h != nil {
			closeAndCheck(t, h)
		}
	}
}

func TestNewCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := leftovers(t)
	if h, err := New(ctx, Options{}); err == nil {
		h.Close()
		t.Fatal("New with a cancelled context: want an error")
	}
	if after := leftovers(t); after != before {
		t.Errorf("New with a cancelled context left:\n%s\n(before:\n%s)", after, before)
	}
}

// closeAndCheck closes h twice and checks that nothing of it is left.
func closeAndCheck(t *testing.T, h *Host) {
	t.Helper()
	start := time.Now()
	if err := h.Close(); err != nil {
		t.Errorf("Close %s: %v", h.Name, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Logf("Close %s took %s", h.Name, took.Round(time.Millisecond))
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close %s: %v", h.Name, err)
	}
	checkGone(t, h)
}

// checkGone checks that no namespace, interface, route or lock file of h is left.
func checkGone(t *testing.T, h *Host) {
	t.Helper()
	if _, err := os.Lstat(h.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left: %v", h.Path, err)
	}
	if _, err := net.InterfaceByName(h.Name); err == nil {
		t.Errorf("interface %s left", h.Name)
	}
	if _, err := os.Lstat(lockPath(h.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file %s left: %v", lockPath(h.Name), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	routes, err := listRoutes(ctx, h.ip)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if p, ok := r.prefix(); ok && p.Overlaps(h.Subnet) {
			t.Errorf("route to %s left: %+v", h.Subnet, r)
		}
	}
}

// leftovers lists this package's namespaces, interfaces and lock files, for a before/after
// comparison.
func leftovers(t *testing.T) string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		out = append(out, "netns "+e.Name())
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, namePrefix) {
			out = append(out, "link "+i.Name)
		}
	}
	locks, _ := filepath.Glob(filepath.Join(runDir, namePrefix+"*"+lockSuffix))
	out = append(out, locks...)
	return strings.Join(out, "\n")
}

// reachHost serves HTTP on h.HostAddr and fetches it from inside h's namespace.
func reachHost(ctx context.Context, t *testing.T, h *Host) error {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(h.HostAddr, 0).String())
	if err != nil {
		return err
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host\n") })}}
	srv.Start()
	defer srv.Close()
	out, _, err := h.Exec(ctx, "curl", "-sS", "--noproxy", "*", "-m", "2", srv.URL+"/")
	if err != nil || out != "host\n" {
		return fmt.Errorf("from inside %s, %s = %q, %v; want host", h, srv.URL, out, err)
	}
	return nil
}

// waitInUse waits until a process runs in the namespace at path.
func waitInUse(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if busy, _ := inUse(path); busy {
			return
		}
	}
	t.Fatalf("no process in %s after 5s", path)
}

// client talks to the boxes directly: no proxy from the environment, no kept connections,
// every request bounded.
var client = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	},
}

// get returns the body of http://addr:8080/.
func get(ctx context.Context, addr netip.Addr) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+netip.AddrPortFrom(addr, 8080).String()+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return string(body), err
}

// waitBody waits until http://addr:8080/ answers want.
func waitBody(ctx context.Context, t *testing.T, addr netip.Addr, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := get(ctx, addr)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("http://%s:8080/ = %q, %v after %s; want %q", addr, got, err, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
