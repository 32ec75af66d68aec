package main

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
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

// wrkArgs is wrk's command line: one thread, conns connections, latency
// percentiles, a 10 s timeout (Node's p99 under CPU load is seconds), and
// the count.lua script unless script is "".
func wrkArgs(url string, s shape, conns int, dur time.Duration, script string) []string {
	secs := max(int(math.Ceil(dur.Seconds())), 1)
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(secs) + "s", "--timeout", "10s", "--latency"}
	if s == connClose {
		args = append(args, "-H", "Connection: close")
	}
	if script != "" {
		args = append(args, "-s", script)
	}
	return append(args, url)
}

// runWrk runs wrk against url and parses what it printed.
func runWrk(ctx context.Context, url string, s shape, conns int, dur time.Duration, script string) (load, error) {
	c, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, "wrk", wrkArgs(url, s, conns, dur, script)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return load{}, fmt.Errorf("wrk %s (%s): %w: %s", url, s, err, out)
	}
	l, err := parseWrk(string(out))
	if err != nil {
		return load{}, err
	}
	l.wrkCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	l.dur = time.Duration(max(int(math.Ceil(dur.Seconds())), 1)) * time.Second
	return l, nil
}

var (
	rpsRE     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRE     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	totalRE   = regexp.MustCompile(`(\d+) requests in`)
	sockErrRE = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	non2xxRE  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	countRE   = regexp.MustCompile(`(?m)^peers: pid (\S+) responses (\d+) first ([0-9.]+)$`)
)

// parseWrk reads wrk's report (with --latency) and count.lua's lines.
func parseWrk(out string) (load, error) {
	var l load
	m := rpsRE.FindStringSubmatch(out)
	if m == nil {
		return l, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}
	for _, p := range pctRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		d := time.Duration(v * float64(unit[p[3]]))
		if p[1] == "50" {
			l.p50 = d
		} else {
			l.p99 = d
		}
	}
	if m := totalRE.FindStringSubmatch(out); m != nil {
		l.requests, _ = strconv.Atoi(m[1])
	}
	if m := sockErrRE.FindStringSubmatch(out); m != nil {
		for i, p := range []*int{&l.connect, &l.read, &l.write, &l.timeout} {
			*p, _ = strconv.Atoi(m[i+1])
		}
	}
	if m := non2xxRE.FindStringSubmatch(out); m != nil {
		l.non2xx, _ = strconv.Atoi(m[1])
	}
	byPID := map[int]pidCount{}
	for _, c := range countRE.FindAllStringSubmatch(out, -1) {
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
	for _, pc := range byPID {
		l.pids = append(l.pids, pc)
	}
	sort.Slice(l.pids, func(i, j int) bool { return l.pids[i].pid < l.pids[j].pid })
	return l, nil
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
