//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/internal/daemonconf"
	"github.com/corral-pool/corral/test/haproxy"
	"github.com/corral-pool/corral/test/prom"
)

// Ports of the balancer tests; nothing else listens there.
const (
	metricsPort = 18310
	agentPort   = 18311
	shopPort    = 18312
	lbPort      = 18313
)

// withDaemonConf writes corral.toml with the metrics and agent addresses and
// restarts the sockets it sets and corrald, as corrald(8) tells an operator
// to.
func (b *box) withDaemonConf(conf string) {
	b.t.Helper()
	if err := b.WriteFile("/etc/corral/corral.toml", []byte(conf), 0o644); err != nil {
		b.t.Fatal(err)
	}
	var sockets []string
	for table, unit := range map[string]string{"[metrics]": "corral-metrics.socket", "[agent]": "corral-agent.socket"} {
		if strings.Contains(conf, table) {
			sockets = append(sockets, unit)
		}
	}
	b.must("sh", "-c", daemonconf.ApplyCommand(sockets...))
}

// agentCheck asks the agent at addr for pool as HAProxy does.
func agentCheck(addr, pool string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(pool + "\n")); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func scrape(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// TestMetrics: corral.toml's [metrics] address becomes a socket PID 1 holds
// for corrald; what it serves passes promtool's lint, and a real Prometheus
// scraping it records the pools. The [agent] address answers HAProxy's
// agent checks, also while corrald is stopped: the socket starts it.
func TestMetrics(t *testing.T) {
	b := installed(t)
	b.writePool("shop", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 2\n", shopPort))
	b.must("corral", "start", "shop")
	b.withDaemonConf(fmt.Sprintf("[metrics]\nlisten = \"127.0.0.1:%d\"\n[agent]\nlisten = \"127.0.0.1:%d\"\n", metricsPort, agentPort))
	if st := b.show("corral-metrics.socket", "ActiveState"); st != "active" {
		t.Fatalf("corral-metrics.socket is %s", st)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	var text string
	waitFor(t, "shop's 2 instances in the metrics", 60*time.Second, func() error {
		var err error
		if text, err = scrape(url); err != nil {
			return err
		}
		if !strings.Contains(text, `corral_pool_running_instances{pool="shop"} 2`) {
			return fmt.Errorf("metrics:\n%s", text)
		}
		return nil
	})
	for _, want := range []string{
		`corral_pool_desired_instances{pool="shop"} 2`,
		`corral_instance_state{index="1",phase="running",pool="shop"} 1`,
		`corral_restarts_total{pool="shop",result="oom-kill"} 0`,
		`corral_build_info{goversion="go`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in the metrics", want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if problems, err := prom.CheckMetrics(ctx, []byte(text)); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, problems)
	}
	// The alerting rules docs/metrics.md offers.
	if out, err := exec.CommandContext(ctx, prom.Promtool, "check", "rules", "../../docs/prometheus/corral-rules.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	// A crash is counted by its cause. (Go turns a SIGSEGV sent from
	// outside into exit status 2; SIGKILL stays a signal.)
	pid := b.show("shop@1.service", "MainPID")
	b.must("kill", "-KILL", pid)
	waitFor(t, "the crash counted", 60*time.Second, func() error {
		text, err := scrape(url)
		if err != nil {
			return err
		}
		if !strings.Contains(text, `corral_restarts_total{pool="shop",result="signal"} 1`) {
			return fmt.Errorf("metrics:\n%s", grepLines(text, "corral_restarts_total"))
		}
		return nil
	})

	p := prom.StartT(t, prom.Config{Targets: []string{fmt.Sprintf("127.0.0.1:%d", metricsPort)}, Interval: time.Second})
	samples, err := p.WaitFor(ctx, `corral_pool_running_instances{pool="shop"}`, func(s []prom.Sample) bool { return len(s) == 1 && s[0].Value == 2 })
	if err != nil {
		t.Fatalf("Prometheus: %v", err)
	}
	t.Logf("Prometheus recorded %v", samples)
	if _, err := p.WaitFor(ctx, `corral_scrape_ok`, func(s []prom.Sample) bool { return len(s) == 1 && s[0].Value == 1 }); err != nil {
		t.Errorf("Prometheus: %v", err)
	}

	agent := fmt.Sprintf("127.0.0.1:%d", agentPort)
	waitFor(t, "the agent says up ready 100%", 30*time.Second, func() error {
		got, err := agentCheck(agent, "shop")
		if err != nil || got != "up ready 100%\n" {
			return fmt.Errorf("agent: %q, %v", got, err)
		}
		return nil
	})
	if got, _ := agentCheck(agent, "nope"); !strings.HasPrefix(got, "down #corral: no pool nope") {
		t.Errorf("agent for an unknown pool: %q", got)
	}
	// corral drain with nothing connected ends at once; the agent says so.
	out := b.must("corral", "drain", "shop", "--timeout", "10s")
	if !strings.Contains(out, "shop: drained; no connection left") {
		t.Errorf("corral drain: %q", out)
	}
	if got, _ := agentCheck(agent, "shop"); got != "up drain #drained: corral undrain shop\n" {
		t.Errorf("agent after corral drain: %q", got)
	}
	// corrald stopped: the socket stays, and the next check starts corrald,
	// which still knows the drain.
	b.must("systemctl", "stop", "corral.service")
	got, err := agentCheck(agent, "shop")
	if err != nil || got != "up drain #drained: corral undrain shop\n" {
		t.Errorf("agent check while corrald was stopped: %q, %v", got, err)
	}
	// corrald answers the agent from its start, a moment before it tells
	// systemd it is ready: it may still be activating.
	waitFor(t, "corral.service active after an agent check (socket-activated)", 30*time.Second, func() error {
		if st := b.show("corral.service", "ActiveState"); st != "active" {
			return fmt.Errorf("corral.service is %s", st)
		}
		return nil
	})
	if out := b.must("corral", "list"); !strings.Contains(out, "drained") {
		t.Errorf("corral list does not show the drain:\n%s", out)
	}
	b.must("corral", "undrain", "shop")
	if got, _ := agentCheck(agent, "shop"); got != "up ready 100%\n" {
		t.Errorf("agent after corral undrain: %q", got)
	}
	// A broken corral.toml: corrald says why, the pools run on.
	if err := b.WriteFile("/etc/corral/corral.toml", []byte("[agent]\nlisten = \"lb.example:1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.must("systemctl", "daemon-reload")
	b.must("systemctl", "restart", "corral.service")
	b.waitJournal("corral.service", `is not an IP address`)
	if _, err := get(fmt.Sprintf("http://127.0.0.1:%d/", shopPort)); err != nil {
		t.Errorf("shop after a broken corral.toml: %v", err)
	}
	// Fixed, but with the socket not restarted: corrald says what to run.
	if err := b.WriteFile("/etc/corral/corral.toml", []byte(fmt.Sprintf("[agent]\nlisten = \"127.0.0.1:%d\"\n", agentPort+10)), 0o644); err != nil {
		t.Fatal(err)
	}
	b.must("systemctl", "daemon-reload")
	b.must("systemctl", "restart", "corral.service")
	b.waitJournal("corral.service", `fix="`+daemonconf.ApplyCommand("corral-agent.socket")+`"`)
	// Removing the package stops the sockets first: a check then finds
	// nothing, rather than starting a corrald that is being removed.
	b.withDaemonConf(fmt.Sprintf("[agent]\nlisten = \"127.0.0.1:%d\"\n", agentPort))
	if got, err := agentCheck(agent, "shop"); err != nil || got != "up ready 100%\n" {
		t.Fatalf("agent before the removal: %q, %v", got, err)
	}
	b.must("apt-get", "remove", "-y", "corral")
	if got, err := agentCheck(agent, "shop"); err == nil {
		t.Errorf("agent after apt-get remove answered %q", got)
	}
	if st := b.show("corral.service", "ActiveState"); st == "active" || st == "activating" {
		t.Errorf("corral.service after apt-get remove and an agent check: %s", st)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHAProxyAgent: Debian's HAProxy in front of a pool, with agent-check:
// corral scale to 1 of 2 sets the server's weight to 50% within 2 agent
// intervals, corral drain makes it DRAIN while requests keep succeeding,
// and undrain brings it back.
func TestHAProxyAgent(t *testing.T) {
	b := installed(t)
	b.writePool("shop", fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 2\n", shopPort))
	b.must("corral", "start", "shop")
	b.withDaemonConf(fmt.Sprintf("[agent]\nlisten = \"127.0.0.1:%d\"\n", agentPort))
	const inter = time.Second
	// Another host, plain: HAProxy sends it what host1 does not take.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "other host\n") }))
	defer other.Close()
	px := haproxy.StartT(t, haproxy.Config{Sections: haproxy.Defaults + fmt.Sprintf(`
frontend lb
	bind 127.0.0.1:%d
	default_backend shop
backend shop
	# An idle connection HAProxy keeps to a server counts as established:
	# without this a drain waits for pool-purge-delay.
	http-reuse never
	server host1 127.0.0.1:%d check inter 1s agent-check agent-port %d agent-inter 1s agent-send "shop\n" weight 100
	server other %s check inter 1s weight 100
`, lbPort, shopPort, agentPort, strings.TrimPrefix(other.URL, "http://"))})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	server := func() haproxy.Server {
		s, err := px.Server(ctx, "shop", "host1")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	waitFor(t, "host1 UP at weight 100", 30*time.Second, func() error {
		if s := server(); s.State() != "UP" || s.Weight != 100 {
			return fmt.Errorf("%s weight %d (agent %s %s)", s.Status, s.Weight, s.AgentStatus, s.LastAgentCheck)
		}
		return nil
	})
	b.must("corral", "scale", "shop", "1")
	t0 := time.Now()
	waitFor(t, "host1 at weight 50", 30*time.Second, func() error {
		if s := server(); s.Weight != 50 {
			return fmt.Errorf("%s weight %d (agent %s %s)", s.Status, s.Weight, s.AgentStatus, s.LastAgentCheck)
		}
		return nil
	})
	took := time.Since(t0)
	t.Logf("weight 50 after corral scale shop 1: %v", took.Round(10*time.Millisecond))
	if took > 2*inter+time.Second {
		t.Errorf("weight followed the scale after %v, want within 2 agent intervals (%v)", took, 2*inter)
	}
	b.must("corral", "scale", "shop", "2")

	// Drain under load through HAProxy: 0 failed requests.
	lctx, lcancel := context.WithCancel(ctx)
	res := make(chan loadResult, 1)
	go func() { res <- load(lctx, fmt.Sprintf("http://127.0.0.1:%d/", lbPort), 16) }()
	time.Sleep(2 * time.Second)
	out := b.must("corral", "drain", "shop", "--timeout", "20s")
	t.Logf("corral drain: %s", strings.TrimSpace(out))
	waitFor(t, "host1 DRAIN", 10*time.Second, func() error {
		if s := server(); s.State() != "DRAIN" {
			return fmt.Errorf("%s (agent %s %s)", s.Status, s.AgentStatus, s.LastAgentCheck)
		}
		return nil
	})
	b.must("corral", "undrain", "shop")
	waitFor(t, "host1 UP at weight 100 again", 10*time.Second, func() error {
		if s := server(); s.State() != "UP" || s.Weight != 100 {
			return fmt.Errorf("%s weight %d", s.Status, s.Weight)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	lcancel()
	r := <-res
	t.Logf("through HAProxy during drain and undrain: %v", r)
	if r.failed > 0 || r.refused > 0 || r.ok == 0 {
		t.Errorf("load through HAProxy: %v, want 0 failed", r)
	}
}
