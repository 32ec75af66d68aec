package main

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	wrkpkg "github.com/corral-pool/corral/test/wrk"
)

// A shape is how wrk's connections carry requests.
type shape string

const (
	keepAlive shape = "keep-alive"
	connClose shape = "close" // Connection: close: a new connection per request
)

// A load is what one wrk run measured.
type load struct {
	rps      float64
	p50, p99 time.Duration
	requests int // completed responses

	// wrk's socket errors: connect (refused, mostly), read (a connection
	// reset or closed before the answer), write, timeout (no answer within
	// --timeout); and answers with a status other than 2xx or 3xx.
	connect, read, write, timeout, non2xx int

	wrkCPU time.Duration // wrk's user + system time (rusage)
	dur    time.Duration // the run's length, as asked
	other  time.Duration // CPU time other work on the machine took meanwhile (otherCPU)

	// Responses per worker process, from count.lua; nil when wrk ran
	// without it.
	pids []pidCount
}

// otherLoad is the CPU other work took during the run, in cores.
func (l load) otherLoad() float64 {
	if l.dur <= 0 {
		return 0
	}
	return l.other.Seconds() / l.dur.Seconds()
}

// failed is every request that got no 2xx/3xx answer: socket errors and
// non-2xx responses.
func (l load) failed() int { return l.connect + l.read + l.write + l.timeout + l.non2xx }

// A pidCount is the responses one worker process gave in a run: count.lua
// keys them by body, which names the process ("…, pid P").
type pidCount struct {
	pid   int // 0: responses whose body names no pid (errors)
	n     int
	first time.Time // when wrk received the first of them
}

// runWrk runs wrk against url (one thread, conns connections, a 10 s
// timeout: Node's p99 under CPU load is seconds) with script, count.lua's
// source or "", and reads its figures.
func runWrk(ctx context.Context, url string, s shape, conns int, dur time.Duration, script string) (load, error) {
	o := wrkpkg.Options{URL: url, Conns: conns, Duration: dur, Extra: script}
	if s == connClose {
		o.Headers = []string{"Connection: close"}
	}
	r, err := wrkpkg.Run(ctx, o)
	if err != nil {
		return load{}, fmt.Errorf("%w (%s)", err, s)
	}
	l := loadOf(r)
	l.dur = time.Duration(wrkpkg.Seconds(dur)) * time.Second
	return l, nil
}

// loadOf is a load of wrk's figures and count.lua's lines.
func loadOf(r wrkpkg.Result) load {
	e := r.Errors
	return load{rps: r.RPS, p50: r.P50, p99: r.P99, requests: r.Requests,
		connect: e.Connect, read: e.Read, write: e.Write, timeout: e.Timeout, non2xx: e.Status,
		wrkCPU: r.CPU, pids: pidCounts(r.Lines)}
}

var countRE = regexp.MustCompile(`^peers: pid (\S+) responses (\d+) first ([0-9.]+)$`)

// pidCounts reads count.lua's lines: the responses of each worker process
// and when the first came. nil without them.
func pidCounts(lines []string) []pidCount {
	byPID := map[int]pidCount{}
	for _, l := range lines {
		c := countRE.FindStringSubmatch(l)
		if c == nil {
			continue
		}
		pid, _ := strconv.Atoi(c[1]) // "-": 0
		n, _ := strconv.Atoi(c[2])
		ms, _ := strconv.ParseFloat(c[3], 64)
		first := time.UnixMicro(int64(math.Round(ms * 1000)))
		pc, ok := byPID[pid]
		if !ok || first.Before(pc.first) {
			pc.first = first
		}
		pc.pid, pc.n = pid, pc.n+n
		byPID[pid] = pc
	}
	var out []pidCount
	for _, pc := range byPID {
		out = append(out, pc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// counts returns the responses of each worker process (pid > 0).
func (l load) counts() []int {
	var n []int
	for _, pc := range l.pids {
		if pc.pid > 0 {
			n = append(n, pc.n)
		}
	}
	return n
}

// wrkVersion is wrk's first line of -v, such as "wrk 4.1.0".
func wrkVersion(out string) string {
	f := strings.Fields(out)
	if len(f) >= 2 && f[0] == "wrk" {
		return "wrk " + strings.TrimPrefix(f[1], "debian/") // Debian's says "wrk debian/4.1.0-3+b2"
	}
	return "wrk (unknown version)"
}
