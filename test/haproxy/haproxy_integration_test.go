//go:build integration

package haproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/child"
)

// agent is a tiny HAProxy agent-check server: on each connection it reads
// what HAProxy sends (the agent-send string) for a moment, answers its
// current line and closes. Its modes stand for an agent that is gone
// (the port refuses) and one that hangs (accepts, never answers).
type agent struct {
	t    *testing.T
	addr string

	mu    sync.Mutex
	ln    net.Listener
	reply string
	mode  string   // "reply", "refuse" or "hang"
	got   [][]byte // what each connection sent before we answered
	hung  []net.Conn
}

func newAgent(t *testing.T, reply string) *agent {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, addr: ln.Addr().String(), reply: reply, mode: "reply"}
	a.serve(ln)
	t.Cleanup(func() { a.set("refuse", "") })
	return a
}

func (a *agent) port() string { _, p, _ := net.SplitHostPort(a.addr); return p }

func (a *agent) serve(ln net.Listener) {
	a.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go a.handle(c)
		}
	}()
}

func (a *agent) handle(c net.Conn) {
	// HAProxy sends the agent-send string right after connecting, if any;
	// read until it ends in a newline or 300 ms pass.
	var got bytes.Buffer
	buf := make([]byte, 256)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for !bytes.HasSuffix(got.Bytes(), []byte("\n")) {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	a.mu.Lock()
	a.got = append(a.got, got.Bytes())
	mode, reply := a.mode, a.reply
	if mode == "hang" {
		a.hung = append(a.hung, c)
	}
	a.mu.Unlock()
	if mode == "hang" {
		return // until set closes it
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, reply)
	c.Close()
}

// set switches the agent to mode, answering reply in mode "reply".
func (a *agent) set(mode, reply string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reply = reply
	if mode == a.mode {
		return
	}
	switch {
	case mode == "refuse":
		a.ln.Close()
	case a.mode == "refuse":
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			a.t.Errorf("agent: listen again on %s: %v", a.addr, err)
			return
		}
		a.serve(ln)
	}
	if a.mode == "hang" {
		for _, c := range a.hung {
			c.Close()
		}
		a.hung = nil
	}
	a.mode = mode
}

// sent is what the connections sent before the agent answered.
func (a *agent) sent() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]byte(nil), a.got...)
}

func show(s Server) string {
	return fmt.Sprintf("status=%q weight=%d uweight=%d check=%s/%q agent_status=%q agent_code=%q agent_desc=%q last_agt=%q agent_health=%d/%d+%d",
		s.Status, s.Weight, s.UserWeight, s.CheckStatus, s.LastCheck, s.AgentStatus, s.AgentCode, s.AgentDesc, s.LastAgentCheck,
		s.AgentHealth, s.AgentRise, s.AgentFall)
}

// waitServer polls be/name until ok holds, or fails t with the last state.
func waitServer(t *testing.T, p *Proxy, name, what string, ok func(Server) bool) Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var last Server
	var err error
	for {
		last, err = p.Server(ctx, "be", name)
		if err == nil && ok(last) {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("be/%s: %s: not within 15s: last %s (err %v)", name, what, show(last), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// hold is how long the tests watch a state that should last: 12 agent
// intervals, 3 check timeouts.
const hold = 6 * time.Second

// stays samples be/name for d and fails t if ok stops holding. It logs the
// distinct states it saw, in order, each with when it was first seen,
// under what.
func stays(t *testing.T, p *Proxy, name, what string, d time.Duration, ok func(Server) bool) {
	t.Helper()
	start := time.Now()
	var seen []string
	prev := ""
	for time.Since(start) < d {
		s, err := p.Server(context.Background(), "be", name)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("status=%q weight=%d uweight=%d agent_status=%q agent_desc=%q last_agt=%q",
			s.Status, s.Weight, s.UserWeight, s.AgentStatus, s.AgentDesc, s.LastAgentCheck)
		if key != prev {
			seen = append(seen, fmt.Sprintf("  +%.1fs %s", time.Since(start).Seconds(), key))
			prev = key
		}
		if !ok(s) {
			t.Errorf("%s: HAProxy changed be/%s after %.1fs: %s", what, name, time.Since(start).Seconds(), show(s))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s, for %v:\n%s", what, d, strings.Join(seen, "\n"))
}

func TestAgentCheck(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	srvA, srvB := httptest.NewServer(ok), httptest.NewServer(ok)
	t.Cleanup(srvA.Close)
	t.Cleanup(srvB.Close)
	agA, agB := newAgent(t, "up ready 100%\n"), newAgent(t, "up ready 100%\n")
	fe, err := child.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	server := func(name string, s *httptest.Server, a *agent) string {
		return fmt.Sprintf("\tserver %s %s check inter 500ms agent-check agent-port %s agent-inter 500ms agent-send \"shop\\n\" weight 100\n",
			name, s.Listener.Addr(), a.port())
	}
	p := StartT(t, Config{Sections: Defaults + fmt.Sprintf("\nfrontend fe\n\tbind 127.0.0.1:%d\n\tdefault_backend be\n", fe) +
		"\nbackend be\n\tbalance roundrobin\n\toption httpchk GET /\n" + server("a", srvA, agA) + server("b", srvB, agB)})

	waitServer(t, p, "a", "UP with weight 100", func(s Server) bool { return s.Status == "UP" && s.Weight == 100 })
	waitServer(t, p, "b", "UP with weight 100", func(s Server) bool { return s.Status == "UP" && s.Weight == 100 })
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", fe))
	if err != nil {
		t.Fatalf("through haproxy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("through haproxy: %s", resp.Status)
	}

	// What each step asserts is HAProxy 2.6's behaviour that corral's
	// design depends on; what it logs are the observations.
	t.Run("percent", func(t *testing.T) {
		agA.set("reply", "up ready 50%\n")
		s := waitServer(t, p, "a", "weight 50 after 50%", func(s Server) bool { return s.Weight == 50 })
		t.Logf("50%%: %s", show(s))
		if s.State() != "UP" || s.UserWeight != 50 {
			t.Errorf("after 50%%: %s, want UP with uweight 50", show(s))
		}
		o, err := p.Command(context.Background(), "show servers state be")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("show servers state be:\n%s", o)
	})

	t.Run("percent-then-refused", func(t *testing.T) {
		// (a) 50%, then the agent's port refuses.
		agA.set("refuse", "")
		waitServer(t, p, "a", "agent L4CON", func(s Server) bool { return strings.HasSuffix(s.AgentStatus, "L4CON") })
		stays(t, p, "a", "(a) after 50%, agent port refuses", hold, func(s Server) bool { return s.State() == "UP" && s.Weight == 50 })
	})

	t.Run("percent-then-hang", func(t *testing.T) {
		// (b) 50%, then the agent accepts and never answers.
		agA.set("reply", "up ready 50%\n")
		waitServer(t, p, "a", "agent L7OK", func(s Server) bool { return s.AgentStatus == "L7OK" })
		agA.set("hang", "")
		waitServer(t, p, "a", "agent L7TOUT", func(s Server) bool { return strings.HasSuffix(s.AgentStatus, "L7TOUT") })
		stays(t, p, "a", "(b) after 50%, agent hangs", hold, func(s Server) bool { return s.State() == "UP" && s.Weight == 50 })
	})

	t.Run("drain", func(t *testing.T) {
		agA.set("reply", "drain\n")
		s := waitServer(t, p, "a", "DRAIN after drain", func(s Server) bool { return s.State() == "DRAIN" })
		t.Logf("drain: %s", show(s))
	})

	t.Run("drain-then-refused", func(t *testing.T) {
		// (a) drain, then the agent's port refuses.
		agA.set("refuse", "")
		waitServer(t, p, "a", "agent L4CON", func(s Server) bool { return strings.HasSuffix(s.AgentStatus, "L4CON") })
		stays(t, p, "a", "(a) after drain, agent port refuses", hold, func(s Server) bool { return s.State() == "DRAIN" })
	})

	t.Run("drain-then-hang", func(t *testing.T) {
		// (b) drain, then the agent accepts and never answers.
		agA.set("reply", "drain\n")
		waitServer(t, p, "a", "agent CHECKED", func(s Server) bool { return s.AgentStatus == "CHECKED" })
		agA.set("hang", "")
		waitServer(t, p, "a", "agent L7TOUT", func(s Server) bool { return strings.HasSuffix(s.AgentStatus, "L7TOUT") })
		stays(t, p, "a", "(b) after drain, agent hangs", hold, func(s Server) bool { return s.State() == "DRAIN" })
	})

	t.Run("ready-after-drain", func(t *testing.T) {
		// (c) ready after drain.
		agA.set("reply", "ready\n")
		s := waitServer(t, p, "a", "UP after ready", func(s Server) bool { return s.State() == "UP" })
		t.Logf("(c) ready after drain: %s", show(s))
	})

	t.Run("down", func(t *testing.T) {
		agA.set("reply", "down #maintenance window\n")
		s := waitServer(t, p, "a", "DOWN after down", func(s Server) bool { return s.State() == "DOWN" })
		t.Logf("down #reason: %s", show(s))
		if !strings.Contains(s.LastAgentCheck, "maintenance window") {
			t.Errorf("the reason is not in last_agt: %s", show(s))
		}
		b, err := p.Server(context.Background(), "be", "b")
		if err != nil {
			t.Fatal(err)
		}
		if b.State() != "UP" {
			t.Errorf("be/b while be/a is down: %s, want UP", show(b))
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", fe))
		if err != nil {
			t.Fatalf("through haproxy with be/a down: %v", err)
		}
		resp.Body.Close()
	})

	t.Run("down-then-refused", func(t *testing.T) {
		agA.set("refuse", "")
		waitServer(t, p, "a", "agent L4CON", func(s Server) bool { return strings.HasSuffix(s.AgentStatus, "L4CON") })
		stays(t, p, "a", "after down, agent port refuses", hold, func(s Server) bool { return s.State() == "DOWN" })
	})

	t.Run("down-then-hang", func(t *testing.T) {
		agA.set("reply", "down #again\n")
		waitServer(t, p, "a", "agent L7STS", func(s Server) bool { return s.AgentStatus == "L7STS" })
		agA.set("hang", "")
		waitServer(t, p, "a", "agent L7TOUT", func(s Server) bool { return strings.HasSuffix(s.AgentStatus, "L7TOUT") })
		stays(t, p, "a", "after down, agent hangs", hold, func(s Server) bool { return s.State() == "DOWN" })
	})

	t.Run("up-after-down", func(t *testing.T) {
		// (c) up after down.
		agA.set("reply", "up\n")
		s := waitServer(t, p, "a", "UP after up", func(s Server) bool { return s.State() == "UP" })
		t.Logf("(c) up after down: %s", show(s))
	})

	t.Run("send", func(t *testing.T) {
		// (d) What HAProxy sends the agent: agent-send "shop\n" in the
		// config; the agent reads for 300 ms or up to a newline.
		sent := append(agA.sent(), agB.sent()...)
		for i, b := range sent {
			if string(b) != "shop\n" {
				t.Errorf("agent connection %d received %q, want exactly \"shop\\n\"", i, b)
			}
		}
		t.Logf("(d) %d agent connections (a and b), each received %q", len(sent), sent[0])
	})

	t.Log("haproxy's output:\n" + p.Output())
}
