package activation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/corral-pool/corral/internal/message"
)

// ErrNoMessages is returned, wrapped, by ServeMessages, at once, when it has
// no socket to connect to: CORRAL_MESSAGES is not set, so the process does
// not run under corral. Callers that also run by hand can ignore it.
var ErrNoMessages = errors.New("CORRAL_MESSAGES is not set")

// ErrMessagesRefused is wrapped by the error that MessageOptions.OnConnect
// gets when corrald refused the connection, for instance because the
// process is not an instance of a pool. The error's text includes corrald's
// reason.
var ErrMessagesRefused = errors.New("corrald refused the connection")

// A Message is one message from corrald: what `corral send POOL@I TEXT` or
// `corral broadcast POOL TEXT` asked to deliver.
type Message struct {
	// ID is corrald's id of the message, unique per corrald. The answer
	// carries it back; handlers need it only to log or to deduplicate.
	ID string
	// Text is the message: valid UTF-8, at most message.MaxText (64 KiB)
	// bytes, possibly empty.
	Text string
}

// A MessageHandler answers the messages ServeMessages receives.
//
// ServeMessage returns the reply to m, or an error, whose text goes back to
// the sender instead. Both are shown to the operator who sent the message.
// The reply must be valid UTF-8 of at most message.MaxText (64 KiB) bytes:
// ServeMessages answers any other reply with an error saying so. An empty
// reply is a valid answer.
//
// ctx is the ctx of ServeMessages: it is cancelled when that one is.
// ServeMessage is called from one goroutine, one message at a time, in the
// order corrald sent them; until it returns, no other message is read. It
// should therefore return quickly and hand long work to a goroutine of its
// own, replying that the work has started.
type MessageHandler interface {
	ServeMessage(ctx context.Context, m Message) (reply string, err error)
}

// MessageHandlerFunc lets an ordinary function be a MessageHandler.
type MessageHandlerFunc func(ctx context.Context, m Message) (reply string, err error)

// ServeMessage calls f(ctx, m).
func (f MessageHandlerFunc) ServeMessage(ctx context.Context, m Message) (string, error) {
	return f(ctx, m)
}

// ServeMessages answers corrald's messages with h until ctx is done. It is
// MessageOptions{}.ServeMessages: see there.
func ServeMessages(ctx context.Context, h MessageHandler) error {
	return MessageOptions{}.ServeMessages(ctx, h)
}

// MessageOptions configures ServeMessages. The zero value is ready to use:
// it connects to the socket named by CORRAL_MESSAGES and reports nothing.
type MessageOptions struct {
	// Path is the unix socket to connect to. "" means the value of
	// CORRAL_MESSAGES (message.EnvSocket), read when ServeMessages is
	// called; under corral that is /run/corral/messages.sock.
	Path string

	// OnConnect, if not nil, is called from the goroutine that runs
	// ServeMessages, so that a worker can log the state of its connection:
	// with a nil error each time ServeMessages has connected, and with an
	// error that says why each time a connection attempt failed or a
	// connection ended. corrald refusing a connection counts as a connection
	// that ended: the error wraps ErrMessagesRefused. OnConnect is not called
	// for the end of ctx. No message is read while it runs.
	OnConnect func(err error)

	// timing replaces the delays in tests; the zero value means the
	// defaults.
	timing messageTiming
}

// The delays of ServeMessages.
const (
	// minReconnectDelay and maxReconnectDelay bound the wait before a
	// reconnection, which doubles after every short-lived connection and
	// every failed attempt.
	minReconnectDelay = 100 * time.Millisecond
	maxReconnectDelay = 5 * time.Second
	// stableConnection is how long a connection must have lived for the
	// wait to start again from minReconnectDelay.
	stableConnection = 10 * time.Second
	// messageWriteTimeout bounds the writing of an answer, and connecting.
	messageWriteTimeout = 10 * time.Second
)

// ServeMessages connects to corrald's message socket, o.Path, and answers
// every message that comes on it with h, until ctx is done; then it returns
// nil. It returns an error only when it cannot start: at once, wrapping
// ErrNoMessages, when o.Path is "" and CORRAL_MESSAGES is not set, and
// when h is nil.
//
// A worker connects and says nothing: corrald tells which instance of which
// pool the process belongs to from the connection's peer credentials. Run
// one ServeMessages per instance: corrald keeps one connection per
// instance, and a newer one replaces the older, whose ServeMessages then
// reconnects and takes it back, and so on. h and o.OnConnect are called
// from the goroutine that called ServeMessages, never at the same time.
//
// # Order
//
// ServeMessages reads one message, calls h.ServeMessage, writes the answer,
// and only then reads the next: messages are handled one at a time, in the
// order corrald sent them, and each is answered at most once. A handler
// that is slow delays every later message; while it runs, new messages wait
// in the socket's buffer, and when that is full corrald reports them as not
// delivered instead of waiting (corrald never blocks on a worker). So h
// should return quickly and hand long work to a goroutine of its own.
//
// The answer is h's reply, or its error's text. A reply or error that
// cannot travel (more than message.MaxText, 64 KiB, or not valid UTF-8; see
// message.CheckText) is replaced by an error that says so: the sender always
// learns what happened. Lines from corrald that are not messages (not JSON
// objects, unknown fields only, answers) are ignored.
//
// # Connection
//
// corrald keeps its side of the connection across its own restarts (in
// systemd's file descriptor store), so a worker normally never sees it break,
// and messages sent meanwhile wait in the kernel. When corrald is stopped for
// good, or drops the connection, ServeMessages sees the end of it and
// reconnects. It connects at once when called, then waits before every new
// attempt: 100ms after a connection that lived 10s or more, else twice as
// long as the last time, from 100ms up to 5s.
// While corrald is down, connecting fails (the socket is missing or
// refuses connections) and ServeMessages goes on trying at that pace. When
// corrald refuses the connection with a reason, it waits 5s. A line that
// corrald had not finished when the connection ended is dropped, not
// handled.
//
// Writing an answer may take up to 10s; past that (corrald does not read),
// ServeMessages drops the connection and reconnects.
//
// # Stopping
//
// When ctx is done, ServeMessages closes the connection and returns nil
// once h, if it is running, has returned; h sees ctx done too. An answer h
// returns after that is not sent. ServeMessages does not catch signals: run
// it with the ctx that ends when the worker stops, for example in a
// goroutine beside Serve, cancelled when Serve returns.
func (o MessageOptions) ServeMessages(ctx context.Context, h MessageHandler) error {
	path := o.Path
	if path == "" {
		path = os.Getenv(message.EnvSocket)
	}
	if path == "" {
		return fmt.Errorf("activation: serve messages: %w (not run by corral?)", ErrNoMessages)
	}
	if h == nil {
		return errors.New("activation: serve messages: the handler is nil")
	}
	t := o.timing.orDefaults()
	b := backoff{timing: t}
	for {
		lived, err := o.serveConn(ctx, path, h, t)
		if ctx.Err() != nil {
			return nil
		}
		if o.OnConnect != nil {
			o.OnConnect(err)
		}
		wait := time.NewTimer(b.next(lived, errors.Is(err, ErrMessagesRefused)))
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil
		case <-wait.C:
		}
	}
}

// serveConn connects to path and answers messages with h until the
// connection ends or ctx is done. It returns how long the connection lived
// (0 if connecting failed) and why it ended; the error is meaningless once
// ctx is done.
func (o MessageOptions) serveConn(ctx context.Context, path string, h MessageHandler, t messageTiming) (lived time.Duration, err error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	c, err := dialPoll(path, t.writeTimeout)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 0, fmt.Errorf("activation: messages: %w (is corrald running? systemctl status corral)", err)
		}
		return 0, fmt.Errorf("activation: messages: %w", err)
	}
	defer c.Close()
	start := time.Now()
	defer func() { lived = time.Since(start) }()
	// Interrupting the connection ends the read, or the write, in progress.
	stop := context.AfterFunc(ctx, c.Interrupt)
	defer stop()
	if o.OnConnect != nil {
		o.OnConnect(nil)
	}

	r := message.NewReader(c)
	for {
		f, err := r.Read()
		switch {
		case errors.Is(err, message.ErrBadLine):
			continue // not for us to judge; corrald's next line may be fine
		case errors.Is(err, io.EOF):
			return 0, errors.New("activation: messages: corrald closed the connection")
		case err != nil:
			return 0, fmt.Errorf("activation: messages: read: %w", err)
		case f.ID == "" && f.Error != "":
			return 0, fmt.Errorf("activation: messages: %w: %s", ErrMessagesRefused, f.Error)
		case !f.IsMessage():
			continue
		}
		line := answer(ctx, h, f)
		if ctx.Err() != nil {
			return 0, ctx.Err() // the answer came too late
		}
		if line == nil {
			continue
		}
		if err := c.WriteAll(line, time.Now().Add(t.writeTimeout)); err != nil {
			return 0, fmt.Errorf("activation: messages: answer message %s: %w", f.ID, err)
		}
	}
}

// answer asks h to handle the message f and returns the answer's line, or
// nil if none can be made.
func answer(ctx context.Context, h MessageHandler, f message.Frame) []byte {
	if f.Ping { // corrald's watchdog: this goroutine is alive
		line, _ := message.Encode(message.Frame{ID: f.ID, Reply: message.PingReply})
		return line
	}
	reply, err := h.ServeMessage(ctx, Message{ID: f.ID, Text: f.Message})
	a, what := message.Frame{ID: f.ID, Reply: reply}, "reply"
	if err != nil {
		a, what = message.Frame{ID: f.ID, Error: err.Error()}, "error"
		if a.Error == "" { // would read as an empty reply
			a.Error = "failed (the worker's handler returned an error without text)"
		}
	}
	line, err := message.Encode(a)
	if err != nil {
		line, err = message.Encode(message.Frame{ID: f.ID, Error: fmt.Sprintf("the worker's %s cannot be sent: %v", what, err)})
	}
	if err != nil {
		return nil // the id alone makes the line too long: corrald's id cannot be answered
	}
	return line
}

// messageTiming holds the delays of ServeMessages.
type messageTiming struct {
	minDelay, maxDelay time.Duration // before reconnecting
	stable             time.Duration // a connection this old resets the delay
	writeTimeout       time.Duration // for an answer, and to connect
}

func (t messageTiming) orDefaults() messageTiming {
	if t == (messageTiming{}) {
		return messageTiming{minReconnectDelay, maxReconnectDelay, stableConnection, messageWriteTimeout}
	}
	return t
}

// backoff decides how long ServeMessages waits before reconnecting.
type backoff struct {
	timing messageTiming
	delay  time.Duration // the next wait; 0 means timing.minDelay
}

// next returns the wait before the next connection attempt, after a
// connection that lived for lived (0 when connecting failed) and that
// corrald refused or not.
func (b *backoff) next(lived time.Duration, refused bool) time.Duration {
	if refused {
		b.delay = b.timing.maxDelay
		return b.delay
	}
	if lived >= b.timing.stable {
		b.delay = 0
	}
	d := max(b.delay, b.timing.minDelay)
	b.delay = min(2*d, b.timing.maxDelay)
	return d
}
