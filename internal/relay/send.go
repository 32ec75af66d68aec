package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
)

// A Target is an instance a message is addressed to.
type Target struct {
	Pool  string
	Index int
	// Down says why the instance cannot take messages when it has no
	// channel, e.g. "it is not running (backoff: exit-code 1; next try in
	// 4s)"; empty for an instance that should be running.
	Down string
	// Starting is set for an instance that is coming up: without a
	// channel it is reported as starting, not as a worker that does not
	// read messages.
	Starting bool
}

// Connected reports which instances of pool have a channel, by index.
func (r *Relay) Connected(ctx context.Context, pool string) (map[int]bool, error) {
	out := map[int]bool{}
	err := r.do(ctx, func() {
		for _, ch := range r.chans {
			if ch.pool == pool {
				out[ch.index] = true
			}
		}
	})
	return out, err
}

// Send writes text to each target's channel, in the order of targets, and
// with wait > 0 waits up to wait (at most MaxWait) for their answers. It
// returns one Result per target, and more for every other instance of a
// target's pool that has a channel when all is set on those targets'
// pools: see Broadcast. Send fails only when text cannot travel
// (message.CheckText) or ctx is done before the messages are written.
func (r *Relay) Send(ctx context.Context, targets []Target, text string, wait time.Duration) ([]api.MessageResult, error) {
	return r.send(ctx, targets, "", text, wait)
}

// Broadcast is Send to every target, and to every other instance of pool
// with a channel (started by hand, say).
func (r *Relay) Broadcast(ctx context.Context, pool string, targets []Target, text string, wait time.Duration) ([]api.MessageResult, error) {
	return r.send(ctx, targets, pool, text, wait)
}

// Ping sends corrald's watchdog ping (message.Frame.Ping) to each target
// and waits up to wait for the answers, as Send does.
func (r *Relay) Ping(ctx context.Context, targets []Target, wait time.Duration) ([]api.MessageResult, error) {
	return r.sendTemplate(ctx, targets, "", message.PingTemplate(), wait)
}

func (r *Relay) send(ctx context.Context, targets []Target, pool, text string, wait time.Duration) ([]api.MessageResult, error) {
	tpl, err := message.NewTemplate(text)
	if err != nil {
		return nil, fmt.Errorf("message %w", err)
	}
	return r.sendTemplate(ctx, targets, pool, tpl, wait)
}

func (r *Relay) sendTemplate(ctx context.Context, targets []Target, pool string, tpl message.Template, wait time.Duration) ([]api.MessageResult, error) {
	// The longest id there can be: if this line fits, every one does.
	if _, err := tpl.Line(r.prefix + "-18446744073709551615"); err != nil {
		return nil, fmt.Errorf("message %w", err)
	}
	wait = min(wait, api.MaxWait)
	var w *waiter
	var encErr error
	err := r.do(ctx, func() {
		if pool != "" {
			targets = r.withConnected(pool, targets)
		}
		var broken []*channel
		w, broken, encErr = r.writeAll(tpl, targets, wait)
		// Broken channels are dropped after the writes: drop takes wmu too.
		for _, ch := range broken {
			r.drop(ctx, ch)
		}
	})
	if err != nil {
		return nil, err
	}
	if encErr != nil {
		return nil, fmt.Errorf("message %w", encErr)
	}
	if len(w.ids) > 0 {
		t := time.NewTimer(wait)
		select {
		case <-w.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	// Answers may still be arriving: take the results and the ids at once.
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for id := range w.ids {
		delete(r.waiting, id)
	}
	return append([]api.MessageResult(nil), w.results...), nil
}

// writeAll writes the message to each target's channel and, with wait >
// 0, registers the waiter of their answers, which may come while later
// targets are written to. It returns the channels found broken. In Run.
func (r *Relay) writeAll(tpl message.Template, targets []Target, wait time.Duration) (w *waiter, broken []*channel, err error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	w = &waiter{results: make([]api.MessageResult, len(targets)), done: make(chan struct{}), ids: map[string]int{}, via: map[int]*channel{}}
	defer w.check()
	for i, t := range targets {
		res := &w.results[i]
		res.Pool, res.Index = t.Pool, t.Index
		ch := r.chans[api.InstanceTarget(t.Pool, t.Index)]
		if ch == nil {
			res.Status, res.Detail = api.NotDelivered, r.notConnected(t)
			continue
		}
		r.seq++
		id := r.prefix + "-" + strconv.FormatUint(r.seq, 10)
		line, err := tpl.Line(id)
		if err != nil {
			return w, broken, err
		}
		if err := write(ch, line); err != nil {
			res.Status, res.Detail = api.NotDelivered, err.Error()
			if errors.Is(err, errBroken) {
				broken = append(broken, ch)
			}
			continue
		}
		res.Status = api.Delivered
		if wait > 0 {
			res.Status, res.Detail = api.NoReply, fmt.Sprintf("no reply within %s", wait)
			w.ids[id] = i
			w.via[i] = ch
			w.pending++
			r.waiting[id] = w
		}
	}
	return w, broken, nil
}

// withConnected adds to targets every channel of pool they do not name,
// in index order. In Run.
func (r *Relay) withConnected(pool string, targets []Target) []Target {
	named := map[int]bool{}
	for _, t := range targets {
		if t.Pool == pool {
			named[t.Index] = true
		}
	}
	var extra []Target
	for _, ch := range r.chans {
		if ch.pool == pool && !named[ch.index] {
			extra = append(extra, Target{Pool: pool, Index: ch.index})
		}
	}
	if len(extra) == 0 {
		return targets
	}
	out := append(append([]Target{}, targets...), extra...)
	sortTargets(out)
	return out
}

func sortTargets(ts []Target) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && (ts[j].Pool < ts[j-1].Pool || ts[j].Pool == ts[j-1].Pool && ts[j].Index < ts[j-1].Index); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// recently is how long after its channel closed an instance without
// one is taken to be restarting rather than not reading messages.
const recently = time.Minute

func (r *Relay) notConnected(t Target) string {
	switch {
	case t.Down != "":
		return t.Down
	case t.Starting:
		return "it is starting; its worker has not connected for messages yet"
	}
	if at, ok := r.left[api.InstanceTarget(t.Pool, t.Index)]; ok && time.Since(at) < recently {
		return fmt.Sprintf("its worker's connection closed %v ago: the instance is restarting, or its worker stopped reading messages", time.Since(at).Round(time.Millisecond))
	}
	return "its worker is not connected to corral's message socket: it does not read messages (docs/messages.md)"
}

// errQueueFull is why a message to a worker that does not read is not
// delivered.
var errQueueFull = errors.New("its worker is not reading its messages: its queue is full")

// errBroken is wrapped by write's errors when the channel must be dropped.
var errBroken = errors.New("its worker's connection")

// write puts line whole into ch's socket buffer, or nothing. In Run.
//
// A unix stream socket takes a write in chunks as long as the bytes it
// holds stay under its send buffer, and a non-blocking write stops at the
// first chunk it cannot take: the relay writes only when the buffer has
// room for the whole line with the kernel's overhead, so that a frame is
// never cut (the worker would read the rest of the stream as garbage).
func write(ch *channel, line []byte) error {
	n, full := 0, false
	var werr error
	err := ch.control(func(fd int) {
		// A line of one chunk goes whole or not at all: no need to look.
		if len(line) > oneChunk {
			queued, qerr := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
			if qerr == nil && ch.sndbuf > 0 && queued+cost(len(line)) > ch.sndbuf {
				full = true
				return
			}
		}
		for {
			n, werr = unix.SendmsgN(fd, line, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			if werr != unix.EINTR {
				break
			}
		}
		if errors.Is(werr, unix.EAGAIN) {
			full, werr = true, nil // never wait for room
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("%w is closed: %v", errBroken, err)
	case full:
		if ch.sndbuf < cost(len(line)) {
			return fmt.Errorf("the message (%d bytes) does not fit its socket buffer (%d bytes): raise net.core.wmem_max", len(line), ch.sndbuf)
		}
		return errQueueFull
	}
	if werr != nil || n < len(line) {
		// The worker went away, or part of the line went out: the stream
		// is cut; the worker reconnects and gets a clean one.
		if errors.Is(werr, unix.EPIPE) || errors.Is(werr, unix.ECONNRESET) {
			return fmt.Errorf("%w closed as the message was written: the instance is stopping or restarting", errBroken)
		}
		if werr != nil {
			return fmt.Errorf("%w broke: %v", errBroken, werr)
		}
		return fmt.Errorf("%w was cut after %d of %d bytes and is reset", errBroken, n, len(line))
	}
	return nil
}

// oneChunk is the longest line a unix stream socket surely takes as one
// sk_buff (at least 32 KiB of pages plus the head on Linux 4.x and later).
const oneChunk = 16 << 10

// cost is how much of a send buffer a write of n bytes takes: the bytes,
// and the kernel's per-chunk overhead (an sk_buff per 32 KiB or less).
func cost(n int) int { return n + n/8 + 64<<10 }

// waiter collects the answers to one Send, under Relay.wmu.
type waiter struct {
	kept    int // bytes of replies kept so far, at most MaxReplies
	results []api.MessageResult
	ids     map[string]int   // message id → index in results
	via     map[int]*channel // index in results → the channel written to
	pending int              // answers still awaited
	done    chan struct{}
	closed  bool
}

// check counts what is still awaited and closes done when nothing is.
func (w *waiter) check() {
	if w.pending == 0 {
		w.finish()
	}
}

func (w *waiter) finish() {
	if !w.closed {
		w.closed = true
		close(w.done)
	}
}

const gone = "its worker went away before it answered"

func (w *waiter) answer(ch *channel, f message.Frame) {
	i, ok := w.ids[f.ID]
	if !ok {
		return
	}
	res := &w.results[i]
	if w.via[i] != ch || res.Status != api.NoReply {
		return // another instance's id, or a second answer
	}
	if res.Detail != gone {
		w.pending--
	}
	res.Status, res.Reply = api.Replied, f.Reply
	if f.Error != "" {
		res.Status, res.Reply = api.Failed, f.Error
	}
	res.Reply, res.Detail = w.keep(res.Reply)
	w.check()
}

// MaxReplies bounds the replies kept for one call, all instances together:
// corrald returns them in one D-Bus reply, and the system bus disconnects a
// peer that sends a message over 32 MiB (1024 instances replying 64 KiB
// each would be 64 MiB). The D-Bus library encodes a reply twice over, in
// buffers that double as they grow, so corrald holds about five times what
// it returns: 4 MiB keeps it near 30 MB (measured by TestHostileLocalUser).
const MaxReplies = 4 << 20

// keep returns what is kept of a worker's reply, and a note when that is
// not all of it: no NUL, which a D-Bus string cannot hold (one voided the
// whole result); at most message.MaxText bytes, as documented; and within
// what is left of MaxReplies.
func (w *waiter) keep(text string) (kept, note string) {
	var notes []string
	if strings.IndexByte(text, 0) >= 0 {
		text = strings.ReplaceAll(text, "\x00", "\uFFFD")
		notes = append(notes, "NUL bytes replaced by U+FFFD")
	}
	if n := len(text); n > message.MaxText {
		text = cutUTF8(text, message.MaxText)
		notes = append(notes, fmt.Sprintf("cut to the first %d of its %d bytes: replies are at most 64 KiB", len(text), n))
	}
	if n := len(text); n > MaxReplies-w.kept {
		text = cutUTF8(text, MaxReplies-w.kept)
		notes = append(notes, fmt.Sprintf("cut to the first %d of its %d bytes: the replies to one message are kept up to %d MiB in all; send to fewer instances at a time", len(text), n, MaxReplies>>20))
	}
	w.kept += len(text)
	return text, strings.Join(notes, "; ")
}

// cutUTF8 returns the longest prefix of s of at most n bytes that ends on a
// character boundary, as a copy: kept for the broadcast's results, a
// prefix sharing s would keep all of s (200 KiB for 64 KiB) in memory.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.Clone(s[:n])
}

// lost marks the messages awaited from ch as unanswered for good.
func (w *waiter) lost(ch *channel) {
	for i, c := range w.via {
		if c == ch && w.results[i].Status == api.NoReply && w.results[i].Detail != gone {
			w.results[i].Detail = gone
			w.pending--
		}
	}
	w.check()
}
