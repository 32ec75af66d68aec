// Package agent answers HAProxy's agent checks (agent-check in HAProxy's
// configuration manual, 2.6) for the pools of this host, so that a balancer
// in front of several hosts sends each host the share its pool can serve.
//
// HAProxy connects to the agent port, sends its agent-send string (here: the
// pool's name and a newline) and reads one line:
//
//	up ready 100%                 the pool runs as many instances as its file asks
//	up ready 50%                  1 of 2 (crashed, or corral scale 1): weight 50% of the server's
//	up drain #drained by corral   the operator drained the pool (corral drain)
//	down #crash-loop …            no instance runs and the pool crash-loops
//	down #stopped …               the operator stopped the pool
//
// HAProxy keeps the last answer while the agent does not answer (measured
// with 2.6: a refused or silent agent changes neither the weight nor a
// drain), so the answer always carries every word: the state, the
// administrative state and the weight.
package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/corral-pool/corral/api"
)

// Pools looks up the pools this agent speaks for: *pool.Status.
type Pools interface {
	ListPools(ctx context.Context) ([]api.PoolInfo, error)
}

// Answer is the agent's line for a pool as info describes it, with its
// newline.
func Answer(info api.PoolInfo) string {
	switch {
	case info.State == "stopped" && info.Running == 0:
		return "down #stopped: corral start " + info.Name + "\n"
	case info.Running == 0 && info.State == "crash-loop":
		return "down #crash-loop: every instance fails; corral status " + info.Name + "\n"
	case info.Running == 0 && info.State == "socket-failed":
		return "down #socket-failed: journalctl -u " + info.Name + "*.socket\n"
	case info.Drained:
		return "up drain #drained: corral undrain " + info.Name + "\n"
	}
	// The share of the pool file's count that runs: corral scale moves the
	// host's share with it, and so does a crashed instance. Above the
	// count, 100%: HAProxy's weight is the operator's to raise.
	full := info.Capacity
	if full == 0 {
		full = info.Desired
	}
	pct := 100
	if full > 0 {
		pct = int(min(info.Running, full) * 100 / full)
	}
	return fmt.Sprintf("up ready %d%%\n", pct)
}

// Server answers agent checks on its listeners.
type Server struct {
	Pools Pools
	// Checked, if not nil, hears of every answer for a pool of this host:
	// whether it was drain (pool.Drainer.Checked).
	Checked func(pool string, drain bool)
	// Wait bounds how long a check may take to send its pool's name and
	// to take the answer: 2s.
	Wait time.Duration
	// Max is how many checks are answered at once; more are closed: 64.
	Max int
}

// maxName bounds what a check may send: a pool name and a newline.
const maxName = 256

// Serve answers the checks that come to ln until ctx is done or ln fails;
// it closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	wait, max := s.Wait, s.Max
	if wait <= 0 {
		wait = 2 * time.Second
	}
	if max <= 0 {
		max = 64
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	sem := make(chan struct{}, max)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("agent: accept: %w", err)
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close() // HAProxy counts it as a failed check and keeps the last answer
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.answer(ctx, c, wait)
		}()
	}
}

// answer reads the pool's name from c and writes its line.
func (s *Server) answer(ctx context.Context, c net.Conn, wait time.Duration) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	line, err := bufio.NewReaderSize(&limited{c, maxName}, 64).ReadString('\n')
	var text string
	if err != nil && line == "" {
		text = "down #corral: no pool name came: set agent-send \"POOL\\n\" on the server line\n"
	} else {
		ctx, cancel := context.WithTimeout(ctx, wait)
		text = s.lookup(ctx, strings.TrimSpace(line))
		cancel()
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	_, _ = c.Write([]byte(text))
	// Closing with bytes unread would reset the connection and lose the
	// answer: read what else came first, a little.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

// lookup answers for the pool called name.
func (s *Server) lookup(ctx context.Context, name string) string {
	if err := api.CheckPoolName(name); err != nil {
		return "down #corral: agent-send names no pool: " + oneLine(err.Error()) + "\n"
	}
	pools, err := s.Pools.ListPools(ctx)
	if err != nil {
		// Not down: corrald could not look, the pool may serve well.
		return "#corral cannot read its pools: " + oneLine(err.Error()) + "\n"
	}
	for _, p := range pools {
		if p.Name == name {
			a := Answer(p)
			if s.Checked != nil {
				s.Checked(name, strings.Contains(a, " drain "))
			}
			return a
		}
	}
	return "down #corral: no pool " + name + " on this host: corral list\n"
}

// oneLine keeps s on one line of printable ASCII for HAProxy's log.
func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	return string(b)
}

// limited reads at most n bytes from c.
type limited struct {
	c net.Conn
	n int
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("agent-send too long")
	}
	p = p[:min(len(p), l.n)]
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}
