//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/child"
	"github.com/corral-pool/corral/test/haproxy"
	"github.com/corral-pool/corral/test/netns"
	"github.com/corral-pool/corral/test/sdbox"
)

// Ports of TestManyHosts. Each host has a network namespace of its own, so
// nothing else on this machine listens there.
const (
	manyShopPort  = 18400
	manyAgentPort = 18401
)

// Load of TestManyHosts through HAProxy: clients on a new connection per
// request, and clients that keep theirs alive (a reverse proxy, a client
// library); 100 connections in all.
const (
	manyNewConns       = 50
	manyKeepAliveConns = 50
)

// manyHost is one machine of TestManyHosts: a network namespace with its own
// address, a systemd booted in it with corral installed, and its server line
// in HAProxy.
type manyHost struct {
	name string // the server's name in HAProxy's backend shop
	net  *netns.Host
	box  *box
}

func (h *manyHost) String() string { return h.name + " (" + h.net.Addr.String() + ")" }

func (h *manyHost) agent() string {
	return netip.AddrPortFrom(h.net.Addr, manyAgentPort).String()
}

// manyLoad is a load through HAProxy running in the background.
type manyLoad struct {
	cancel    context.CancelFunc
	fresh, ka chan loadResult
}

// startManyLoad starts manyNewConns clients on new connections and
// manyKeepAliveConns on kept-alive ones against url, until stop.
func startManyLoad(ctx context.Context, url string) *manyLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &manyLoad{cancel: cancel, fresh: make(chan loadResult, 1), ka: make(chan loadResult, 1)}
	go func() { l.fresh <- load(ctx, url, manyNewConns) }()
	go func() { l.ka <- loadKeepAlive(ctx, url, manyKeepAliveConns) }()
	return l
}

// stop ends the load and returns what each kind of client saw. A client
// finishes its request first: at most the client timeout, 10 s.
func (l *manyLoad) stop() (fresh, ka loadResult) {
	l.cancel()
	return <-l.fresh, <-l.ka
}

// TestManyHosts: two hosts, each its own machine (a network namespace with
// its own address and a systemd with corral installed by apt), running the
// pool shop behind one HAProxy that asks each host's agent for its weight,
// as docs/many-hosts.md tells an operator to set it up. Under 100 concurrent
// connections through HAProxy: a rolling upgrade, host by host (corral
// drain, apt-get install of the next version, corral undrain) fails no
// request; a host that loses power is marked DOWN within seconds and fails at
// most the requests that were on it; corral scale moves the host's weight.
func TestManyHosts(t *testing.T) {
	next := os.Getenv("CORRAL_DEB_NEXT")
	if next == "" {
		t.Fatal("CORRAL_DEB_NEXT is not set: run 'make integration', which builds a second .deb")
	}
	nextDeb, err := os.ReadFile(next)
	if err != nil {
		t.Fatalf("read CORRAL_DEB_NEXT: %v (run 'make integration')", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v, err := exec.CommandContext(ctx, "dpkg-deb", "-f", next, "Version").Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s Version: %v", next, err)
	}
	nextVersion := strings.TrimSpace(string(v))

	hosts := []*manyHost{{name: "a"}, {name: "b"}}
	for _, h := range hosts {
		start := time.Now()
		// The namespace is made first, so that it is removed after the box
		// (t.Cleanup runs last in, first out).
		h.net = netns.NewT(t, netns.Options{})
		h.box = installedWith(t, sdbox.Options{NetNS: h.net.Path})
		h.box.writePool("shop", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\":%d\"]\ninstances = 2\n", manyShopPort))
		h.box.must("corral", "start", "shop")
		h.box.withDaemonConf(fmt.Sprintf("[agent]\nlisten = \":%d\"\n", manyAgentPort))
		if err := h.box.WriteFile("/opt/corral-test/next.deb", nextDeb, 0o644); err != nil {
			t.Fatal(err)
		}
		if v := h.version(); v == nextVersion {
			t.Fatalf("host %s runs %s before the upgrade: CORRAL_DEB and CORRAL_DEB_NEXT have the same version", h, v)
		}
		t.Logf("host %s: booted, corral %s installed, shop started in %v", h, h.version(), time.Since(start).Round(time.Millisecond))
	}

	fe, err := child.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	const inter = time.Second // check inter and agent-inter below
	var servers strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&servers, "\tserver %s %s check inter 1s agent-check agent-port %d agent-inter 1s agent-send \"shop\\n\" weight 100\n",
			h.name, netip.AddrPortFrom(h.net.Addr, manyShopPort), manyAgentPort)
	}
	px := haproxy.StartT(t, haproxy.Config{Sections: haproxy.Defaults + fmt.Sprintf(`
frontend lb
	bind 127.0.0.1:%d
	default_backend shop
backend shop
	# An idle connection HAProxy keeps to a server counts as established,
	# so a drain would wait for it: share none between clients, and close
	# the server side after each response. (Without the second line, each
	# kept-alive client keeps an idle connection to its last server: the
	# drain waited its whole 30 s for 50 of them, one per such client.)
	http-reuse never
	option http-server-close
	# A request whose connection to a dead host fails goes to another.
	option redispatch
	retries 3
%s`, fe, servers.String())})
	url := fmt.Sprintf("http://127.0.0.1:%d/", fe)

	// waitServer waits until HAProxy's show stat line for h satisfies ok and
	// returns how long that took.
	waitServer := func(h *manyHost, what string, timeout time.Duration, ok func(haproxy.Server) bool) time.Duration {
		t.Helper()
		start := time.Now()
		waitFor(t, fmt.Sprintf("HAProxy shows %s %s", h, what), timeout, func() error {
			s, err := px.Server(ctx, "shop", h.name)
			if err != nil {
				return err
			}
			if !ok(s) {
				return fmt.Errorf("status %q weight %d; check %s %q; agent %s %q", s.Status, s.Weight, s.CheckStatus, s.LastCheck, s.AgentStatus, s.LastAgentCheck)
			}
			return nil
		})
		return time.Since(start)
	}
	up100 := func(s haproxy.Server) bool { return s.Status == "UP" && s.Weight == 100 }
	for _, h := range hosts {
		waitServer(h, "UP at weight 100, agent L7OK", 30*time.Second, func(s haproxy.Server) bool {
			return up100(s) && s.AgentStatus == "L7OK"
		})
	}

	// A rolling upgrade under load: host by host, drain, install the next
	// version, undrain.
	{
		l := startManyLoad(ctx, url)
		time.Sleep(2 * time.Second)
		for _, h := range hosts {
			start := time.Now()
			out := h.box.must("corral", "drain", "shop", "--timeout", "30s")
			t.Logf("host %s: corral drain shop --timeout 30s: %s", h, strings.TrimSpace(out))
			if !strings.Contains(out, "no connection left") {
				t.Errorf("host %s: corral drain ended with connections left: %q; HAProxy keeps idle connections to a drained server (see the backend's comments)", h, out)
			}
			// What HAProxy did after corral drain returned: it should
			// have been told already and send the host nothing new.
			atReturn, err := px.Server(ctx, "shop", h.name)
			if err != nil {
				t.Fatal(err)
			}
			waitServer(h, "DRAIN", 10*time.Second, func(s haproxy.Server) bool { return s.State() == "DRAIN" })
			drained, err := px.Server(ctx, "shop", h.name)
			if err != nil {
				t.Fatal(err)
			}
			late := drained.TotalSessions - atReturn.TotalSessions
			t.Logf("host %s: when corral drain returned, HAProxy showed %q (agent %s %q); %d more sessions reached it until DRAIN",
				h, atReturn.Status, atReturn.AgentStatus, atReturn.LastAgentCheck, late)
			if strings.Contains(out, "no connection left") && late > 0 {
				t.Errorf("host %s: corral drain said %q before HAProxy's next agent check: HAProxy still showed %q and sent the host %d more sessions, which an operator who powers the host off now would fail (corral drain should not end before an agent check has been answered drain)",
					h, strings.TrimSpace(out), atReturn.Status, late)
			}
			out = h.box.must("apt-get", "install", "-y", "/opt/corral-test/next.deb")
			if !strings.Contains(out, "corral: reloaded the workers of pool shop") {
				t.Errorf("host %s: the upgrade did not roll the pool with corral reload:\n%s", h, out)
			}
			if v := h.version(); v != nextVersion {
				t.Errorf("host %s: corral %s after apt-get install of %s", h, v, nextVersion)
			}
			// The drain is the pool's desired state: it survives the
			// upgrade's restart of corrald. Asked directly, since HAProxy
			// would keep showing DRAIN if the agent did not answer.
			if got, err := agentCheck(h.agent(), "shop"); got != "up drain #drained: corral undrain shop\n" {
				t.Errorf("host %s: agent after the upgrade: %q, %v; want the drain kept", h, got, err)
			}
			h.box.must("corral", "undrain", "shop")
			waitServer(h, "UP at weight 100 after corral undrain", 10*time.Second, up100)
			t.Logf("host %s: drained, upgraded to %s, back at weight 100 in %v", h, nextVersion, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(2 * time.Second)
		fresh, ka := l.stop()
		t.Logf("through HAProxy during the rolling upgrade, %d clients on new connections: %v", manyNewConns, fresh)
		t.Logf("through HAProxy during the rolling upgrade, %d clients on kept-alive connections: %v", manyKeepAliveConns, ka)
		for _, r := range []struct {
			kind string
			loadResult
		}{{"new connections", fresh}, {"kept-alive connections", ka}} {
			if r.failed > 0 || r.refused > 0 || r.ok == 0 {
				t.Errorf("load on %s during the rolling upgrade: %v, want 0 failed and 0 refused; first failures: %q", r.kind, r.loadResult, r.samples)
			}
		}
		for _, h := range hosts {
			out := strings.TrimSpace(h.box.must("corral", "--version"))
			if !strings.Contains(out, nextVersion) {
				t.Errorf("host %s: corral --version says %q, want %s", h, out, nextVersion)
			}
		}
	}

	// A host loses power under load, and comes back.
	{
		b := hosts[1]
		l := startManyLoad(ctx, url)
		time.Sleep(2 * time.Second)
		// The host's link goes down, not its container: a machine that
		// loses power answers nothing, its packets vanish (connections
		// time out, open ones stall). Killing the container would leave
		// its namespace up without listeners, and the kernel would refuse
		// connections at once: an easier case than a real power cut.
		start := time.Now()
		if err := b.net.Down(ctx); err != nil {
			t.Fatal(err)
		}
		waitServer(b, "DOWN after its network went down", 10*time.Second, func(s haproxy.Server) bool { return s.State() == "DOWN" })
		took := time.Since(start)
		t.Logf("host %s: network down; HAProxy marked it DOWN after %v", b, took.Round(10*time.Millisecond))
		// With b DOWN, every new request goes to a and succeeds.
		check := startManyLoad(ctx, url)
		time.Sleep(3 * time.Second)
		cf, cka := check.stop()
		t.Logf("through HAProxy for 3 s once %s was DOWN: new connections %v; kept-alive %v", b, cf, cka)
		if cf.failed+cf.refused+cka.failed+cka.refused > 0 || cf.ok == 0 || cka.ok == 0 {
			t.Errorf("requests failed with only %s serving: new connections %v, first failures %q; kept-alive %v, first failures %q",
				hosts[0], cf, cf.samples, cka, cka.samples)
		}
		// Up after the requests that were on b have timed out (timeout
		// server and the clients' timeout, 10 s): sooner, TCP's
		// retransmissions would still deliver their answers, as after a
		// short network cut, not a power cut.
		select {
		case <-time.After(time.Until(start.Add(12 * time.Second))):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		start = time.Now()
		if err := b.net.Up(ctx); err != nil {
			t.Fatal(err)
		}
		waitServer(b, "UP at weight 100 after its network came back", 15*time.Second, up100)
		took = time.Since(start)
		t.Logf("host %s: network up; HAProxy marked it UP after %v", b, took.Round(10*time.Millisecond))
		fresh, ka := l.stop()
		if s, err := px.Server(ctx, "shop", b.name); err == nil {
			// HAProxy's own counts for b since it started: connection
			// errors, response errors (timeouts), retries, redispatches.
			t.Logf("HAProxy's counters for %s: econ %s, eresp %s, wretr %s, wredis %s", b,
				s.Fields["econ"], s.Fields["eresp"], s.Fields["wretr"], s.Fields["wredis"])
		}
		t.Logf("through HAProxy while %s lost power and came back, %d clients on new connections: %v; first failures %q", b, manyNewConns, fresh, fresh.samples)
		t.Logf("through HAProxy while %s lost power and came back, %d clients on kept-alive connections: %v; first failures %q", b, manyKeepAliveConns, ka, ka.samples)
		// What was on b when it went down fails (HAProxy cannot send a
		// request elsewhere once it went out); at most one request per
		// client connection.
		failed := fresh.failed + ka.failed
		t.Logf("failed requests during the power cut: %d (bound: %d, the client connections)", failed, manyNewConns+manyKeepAliveConns)
		if failed > manyNewConns+manyKeepAliveConns {
			t.Errorf("%d requests failed when %s lost power, more than the %d client connections could have had on it", failed, b, manyNewConns+manyKeepAliveConns)
		}
		if fresh.refused+ka.refused > 0 {
			t.Errorf("HAProxy refused %d connections while %s was down", fresh.refused+ka.refused, b)
		}
		if fresh.ok == 0 || ka.ok == 0 {
			t.Errorf("no request succeeded while %s was down: new connections %v; kept-alive %v", b, fresh, ka)
		}
	}

	// corral scale moves the host's weight.
	{
		a := hosts[0]
		a.box.must("corral", "scale", "shop", "1")
		took := waitServer(a, "at weight 50 after corral scale shop 1", 10*time.Second, func(s haproxy.Server) bool { return s.Weight == 50 })
		t.Logf("host %s: weight 50 after corral scale shop 1: %v", a, took.Round(10*time.Millisecond))
		if took > 2*inter+time.Second {
			t.Errorf("host %s: weight followed corral scale after %v, want within 2 agent intervals (%v)", a, took, 2*inter)
		}
		a.box.must("corral", "scale", "shop", "2")
		took = waitServer(a, "at weight 100 after corral scale shop 2", 10*time.Second, up100)
		t.Logf("host %s: weight 100 after corral scale shop 2: %v", a, took.Round(10*time.Millisecond))
	}
}

// version is the version of corral that dpkg has installed on h.
func (h *manyHost) version() string {
	return strings.TrimSpace(h.box.must("dpkg-query", "-W", "-f=${Version}", "corral"))
}
