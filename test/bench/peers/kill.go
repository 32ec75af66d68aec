package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A killResult is one SIGKILL of one of the workers under load.
type killResult struct {
	load load

	// open is the killed process's established connections, and queued the
	// connections waiting in the accept queues of the listening sockets it
	// held, both counted by ss at the kill.
	open, queued int

	// replacement is the time from the kill to the first answer from a
	// process that was not serving before it; replaced is false if none
	// answered before the run ended.
	replacement time.Duration
	replaced    bool
}

// killScript stops the victim (SIGSTOP: it accepts and answers nothing
// more), counts its connections with ss, prints the time and SIGKILLs it.
// Stopped, its set of connections cannot change between the count and the
// kill; the stop lasts the few milliseconds ss takes, during which its
// requests wait as they would have failed anyway.
func killScript(port, pid int) string {
	return fmt.Sprintf("kill -STOP %d; ss -Htnp state established '( sport = :%d )'; echo ---; ss -Hltnp '( sport = :%d )'; echo ---; date +%%s%%N; kill -KILL %d",
		pid, port, port, pid)
}

// parseKill reads killScript's output: the victim's established
// connections, the accept queue of the listening sockets it held, and the
// time of the kill.
func parseKill(out string, pid int) (open, queued int, at time.Time, err error) {
	parts := strings.Split(out, "---\n")
	if len(parts) != 3 {
		return 0, 0, at, fmt.Errorf("kill script printed %q", out)
	}
	owner := regexp.MustCompile(`[(,]pid=` + strconv.Itoa(pid) + `,`)
	for _, l := range strings.Split(parts[0], "\n") {
		if owner.MatchString(l) {
			open++
		}
	}
	for _, l := range strings.Split(parts[1], "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "LISTEN" {
			f = f[1:]
		}
		if len(f) < 1 || !owner.MatchString(l) {
			continue
		}
		n, _ := strconv.Atoi(f[0]) // Recv-Q of a listening socket: its accept queue
		queued += n
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(parts[2]), 10, 64)
	if err != nil {
		return 0, 0, at, fmt.Errorf("kill script: time %q: %w", parts[2], err)
	}
	return open, queued, time.Unix(0, ns), nil
}

// replacementAfter is the time from the kill to the first answer of a
// process not in before.
func replacementAfter(pids []pidCount, before []int, kill time.Time) (time.Duration, bool) {
	var first time.Time
	for _, pc := range pids {
		if pc.pid == 0 || slices.Contains(before, pc.pid) || pc.first.Before(kill) {
			continue
		}
		if first.IsZero() || pc.first.Before(first) {
			first = pc.first
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return first.Sub(kill), true
}

// killUnderLoad runs wrk for dur and SIGKILLs the first worker a third of
// the way in.
func (b *bench) killUnderLoad(ctx context.Context, sys system, port int, url string, s shape, dur time.Duration) (killResult, error) {
	before, err := sys.Workers(ctx)
	if err != nil {
		return killResult{}, err
	}
	if len(before) < 2 {
		return killResult{}, fmt.Errorf("kill: want 2 or more workers, have %v", before)
	}
	victim := before[0]
	type wrkOut struct {
		l   load
		err error
	}
	ch := make(chan wrkOut, 1)
	go func() {
		l, err := runWrk(ctx, url, s, b.conns, dur, b.script)
		ch <- wrkOut{l, err}
	}()
	select {
	case <-time.After(dur / 3):
	case <-ctx.Done():
	}
	// Not cancelled half-way: a victim stopped and not killed would hang.
	out, kerr := sys.Shell(context.WithoutCancel(ctx), killScript(port, victim))
	w := <-ch
	if kerr != nil {
		return killResult{}, kerr
	}
	if w.err != nil {
		return killResult{}, w.err
	}
	r := killResult{load: w.l}
	var at time.Time
	r.open, r.queued, at, err = parseKill(out, victim)
	if err != nil {
		return r, err
	}
	r.replacement, r.replaced = replacementAfter(w.l.pids, before, at)
	return r, nil
}
