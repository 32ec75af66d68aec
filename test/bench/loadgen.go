package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// A load generator that, unlike wrk, knows which instance answered each
// request and when it started: the steer suite's windows (a kill, a
// reload, a cordon) are cut out of one run by the requests' start times.

// outcome is what became of one request.
type outcome uint8

const (
	okay    outcome = iota // a 200 with the demo's answer
	failed                 // a connection reset or closed, a timeout, a non-200
	refused                // the connection refused (ECONNREFUSED)
)

// sample is one request.
type sample struct {
	start    time.Duration // since the run's t0; a new connection's dial included
	lat      time.Duration // to the end of the answer's body
	out      outcome
	newConn  bool  // the request dialed its connection
	client   int16 // the client (goroutine) that sent it
	inst     int16 // the instance that answered, from the body; 0 unknown
	connInst int16 // the instance of the connection, from earlier answers on it; 0 unknown
	pid      int32 // the pid that answered, from the body
}

// load is N clients on addr, each sending GET path one after the other,
// on one connection kept alive, or on a new connection each
// (Connection: close).
type load struct {
	addr      string // host:port
	path      string
	conns     int
	keepAlive bool
	// src, if not nil, is the source address of client k's connections
	// ("" any).
	src func(k int) string
	// perClient, if not 0, ends each client after that many requests.
	perClient int
	timeout   time.Duration // of one request; 0: 5 s
}

// run runs l until ctx ends or for dur (the requests under way finish),
// with start times since t0, and returns every request, by start time.
func (l load) run(ctx context.Context, t0 time.Time, dur time.Duration) []sample {
	ctx, cancel := context.WithTimeout(ctx, time.Until(t0.Add(dur)))
	defer cancel()
	timeout := l.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	req := "GET " + l.path + " HTTP/1.1\r\nHost: " + l.addr + "\r\nUser-Agent: corral-bench\r\n"
	if !l.keepAlive {
		req += "Connection: close\r\n"
	}
	req += "\r\n"
	out := make([][]sample, l.conns)
	var wg sync.WaitGroup
	for k := range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := ""
			if l.src != nil {
				src = l.src(k)
			}
			c := client{addr: l.addr, src: src, req: []byte(req), timeout: timeout, id: int16(k)}
			defer c.close()
			for n := 0; ctx.Err() == nil && (l.perClient == 0 || n < l.perClient); n++ {
				s := c.do(t0, l.keepAlive)
				out[k] = append(out[k], s)
				if s.out == refused {
					time.Sleep(time.Millisecond) // no busy loop on a closed port
				}
			}
		}()
	}
	wg.Wait()
	var all []sample
	for _, o := range out {
		all = append(all, o...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	return all
}

// client is one connection at a time, and what it knows of it.
type client struct {
	addr, src string
	req       []byte
	timeout   time.Duration
	id        int16

	conn     net.Conn
	br       *bufio.Reader
	connInst int16
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends one request, on a new connection if it has none.
func (c *client) do(t0 time.Time, keepAlive bool) sample {
	start := time.Now()
	s := sample{start: start.Sub(t0), client: c.id}
	fail := func(o outcome) sample {
		s.lat, s.out, s.connInst = time.Since(start), o, c.connInst
		c.close()
		return s
	}
	if c.conn == nil {
		conn, err := dialFrom(c.src, c.addr, c.timeout)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return fail(refused)
			}
			return fail(failed)
		}
		c.conn, c.br, c.connInst, s.newConn = conn, bufio.NewReaderSize(conn, 4096), 0, true
	}
	c.conn.SetDeadline(start.Add(c.timeout))
	if _, err := c.conn.Write(c.req); err != nil {
		return fail(failed)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fail(failed)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fail(failed)
	}
	s.lat = time.Since(start)
	s.inst, s.pid = parseAnswer(body)
	s.connInst = c.connInst
	if c.connInst == 0 {
		c.connInst = s.inst
	}
	if !keepAlive || resp.Close {
		c.close()
	}
	return s
}

// dialFrom connects to addr from the source address src ("" any), with
// SO_REUSEADDR: a port of an earlier run may be in TIME_WAIT.
func dialFrom(src, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		d.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
		}
	}
	return d.Dial("tcp", addr)
}

// parseAnswer reads "... instance N, pid P" from the demo's answers to /
// and /cpu.
func parseAnswer(body []byte) (inst int16, pid int32) {
	i := bytes.Index(body, []byte("instance "))
	if i < 0 {
		return 0, 0
	}
	rest := body[i+len("instance "):]
	j := bytes.Index(rest, []byte(", pid "))
	if j < 0 {
		return 0, 0
	}
	n, err1 := strconv.Atoi(string(rest[:j]))
	rest = bytes.TrimSpace(rest[j+len(", pid "):])
	p, err2 := strconv.Atoi(string(rest))
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return int16(n), int32(p)
}

// between returns the samples that started in [from, to).
func between(ss []sample, from, to time.Duration) []sample {
	var out []sample
	for _, s := range ss {
		if s.start >= from && s.start < to {
			out = append(out, s)
		}
	}
	return out
}

// where returns the samples for which keep is true.
func where(ss []sample, keep func(sample) bool) []sample {
	var out []sample
	for _, s := range ss {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// stats are the figures of some samples.
type stats struct {
	n, ok, failed, refused int
	p50, p99, max          time.Duration
	rps                    float64
}

// statsOf: latencies of every request, answered or not (a failed request
// counts at the time it took to fail), over a span of span for req/s.
func statsOf(ss []sample, span time.Duration) stats {
	st := stats{n: len(ss)}
	lats := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		switch s.out {
		case okay:
			st.ok++
		case failed:
			st.failed++
		case refused:
			st.refused++
		}
		lats = append(lats, s.lat)
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		st.p50, st.p99, st.max = quantile(lats, 50), quantile(lats, 99), lats[len(lats)-1]
	}
	if span > 0 {
		st.rps = float64(st.ok) / span.Seconds()
	}
	return st
}

// quantile returns the p-th percentile of sorted (nearest rank).
func quantile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// fmtMS prints a latency in milliseconds, to 0.01 ms.
func fmtMS(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
