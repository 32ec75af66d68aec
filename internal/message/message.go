// Package message is the wire format of corral's messages between corrald
// and the workers of its pools (docs/messages.md): JSON Lines over a unix
// stream socket.
//
// A worker connects to the socket named by the environment variable
// CORRAL_MESSAGES (SocketPath under corral). corrald tells who connected
// from the peer's credentials, so a worker says nothing to register. Each
// frame is one JSON object on one line, UTF-8, ended by "\n":
//
//	corrald → worker   {"id":"5f3c9a1e-17","message":"flush-cache"}
//	worker → corrald   {"id":"5f3c9a1e-17","reply":"flushed 312 entries"}
//	worker → corrald   {"id":"5f3c9a1e-18","error":"unknown command \"flush\""}
//	corrald → worker   {"error":"… is not an instance of a corral pool"}   (then it closes)
//
// Every frame from corrald with an id is a message; the worker answers it
// with at most one frame carrying the same id and a reply, or an error.
// Unknown fields are ignored on both sides, and so is a line that is not a
// JSON object. Texts are at most MaxText bytes, lines at most MaxLine.
//
// The package has no state: Encode makes a line, a Reader reads them.
package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

const (
	// EnvSocket is the environment variable that names corrald's message
	// socket in every instance of a pool.
	EnvSocket = "CORRAL_MESSAGES"
	// SocketPath is where corrald listens.
	SocketPath = "/run/corral/messages.sock"

	// MaxText is the largest message or reply text, in bytes of UTF-8.
	MaxText = 64 << 10
	// MaxLine is the largest frame, in bytes with its "\n". A text of
	// MaxText bytes fits unless it is mostly control characters, which
	// JSON escapes into six bytes each.
	MaxLine = 256 << 10
)

// A Frame is one line of the protocol. ID is set on messages and their
// answers; Message on messages; Reply or Error on answers. A frame with
// Error and no ID is corrald refusing the connection.
type Frame struct {
	ID      string `json:"id,omitempty"`
	Message string `json:"message,omitempty"`
	Reply   string `json:"reply,omitempty"`
	Error   string `json:"error,omitempty"`
	// Ping marks a message that is corrald's watchdog asking whether the
	// worker is alive (docs/health.md): {"id":"…","message":"ping","ping":true}.
	// A worker that knows it answers at once with PingReply, from the loop
	// that must not block; one that does not answers it as any message,
	// which proves as much.
	Ping bool `json:"ping,omitempty"`
}

// PingReply is the reply to a ping.
const PingReply = "pong"

// IsMessage reports whether f is a message to answer.
func (f Frame) IsMessage() bool { return f.ID != "" && f.Reply == "" && f.Error == "" }

// Errors of Encode and CheckText that callers branch on.
var (
	ErrTooLarge = errors.New("too large")
	ErrNotText  = errors.New("not UTF-8 text")
	ErrEmpty    = errors.New("empty")
)

// CheckMessage is CheckText for a message, which must not be empty either:
// a frame with an empty message would have no "message" field.
func CheckMessage(s string) error {
	if s == "" {
		return fmt.Errorf("%w: give some text", ErrEmpty)
	}
	return CheckText(s)
}

// CheckText returns an error that says what is wrong when s cannot travel
// as a message or reply text: more than MaxText bytes, or not valid UTF-8.
// The empty string is a valid text.
func CheckText(s string) error {
	if len(s) > MaxText {
		return fmt.Errorf("%w: %d bytes; the limit is %d (64 KiB): send a file's path instead", ErrTooLarge, len(s), MaxText)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: the text has bytes that are not UTF-8; encode binary data, e.g. in base64", ErrNotText)
	}
	return nil
}

// Encode returns f as one line ending in "\n". It fails, wrapping
// ErrTooLarge or ErrNotText, when a text fails CheckText or the line would
// be longer than MaxLine.
func Encode(f Frame) ([]byte, error) {
	for _, s := range []string{f.Message, f.Reply, f.Error} {
		if err := CheckText(s); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil { // Encode adds the "\n"
		return nil, fmt.Errorf("message: encode: %w", err)
	}
	if b.Len() > MaxLine {
		return nil, fmt.Errorf("%w: %d bytes once encoded as JSON (control characters take six bytes each); the limit is %d", ErrTooLarge, b.Len(), MaxLine)
	}
	return b.Bytes(), nil
}

// ErrBadLine is wrapped by the errors a Reader returns for a line it
// skipped; reading may go on after it.
var ErrBadLine = errors.New("bad line")

// A Reader reads frames from a stream, one per line.
type Reader struct {
	r   io.Reader
	buf []byte
	s   Splitter
	err error // of r, returned once the frames before it are
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 16<<10)}
}

// Read returns the next frame. A line that is longer than MaxLine or is not
// a JSON object is consumed and reported as an error wrapping ErrBadLine;
// the next Read goes on with the line after it. At the end of the stream,
// Read returns io.EOF; an unfinished last line (no "\n") is dropped, since
// the writer stopped in the middle of it. Other errors are the stream's.
func (r *Reader) Read() (Frame, error) {
	for {
		if f, ok, err := r.s.Next(); ok {
			return f, err
		}
		if r.err != nil {
			return Frame{}, r.err
		}
		n, err := r.r.Read(r.buf)
		r.s.Write(r.buf[:n])
		r.err = err
	}
}

// A Splitter cuts a stream that arrives in pieces into frames: Write the
// pieces as they come, and call Next until it has no complete line left.
// It is a Reader for those who do the reading themselves, such as from a
// nonblocking socket, and it applies the same rules: a line longer than
// MaxLine is reported as a bad line without being kept in memory, and so
// is a line that is not a JSON object. The zero value is ready to use.
type Splitter struct {
	buf   []byte
	start int   // where the next line begins; buf[:start] is consumed
	tail  int   // where the unfinished line begins; buf[start:tail] holds whole lines
	longs []int // offsets in buf at which a line longer than MaxLine was dropped
	long  bool  // dropping the rest of a line longer than MaxLine
}

// Write adds p to the stream. It never fails.
func (s *Splitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if s.long {
			if i < 0 {
				return n, nil
			}
			s.long = false
			s.longs = append(s.longs, len(s.buf))
			p = p[i+1:]
			continue
		}
		part := p
		if i >= 0 {
			part = p[:i+1]
		}
		if len(s.buf)-s.tail+len(part) > MaxLine {
			s.buf = s.buf[:s.tail]
			if i < 0 {
				s.long = true
				return n, nil
			}
			s.longs = append(s.longs, len(s.buf))
		} else {
			s.buf = append(s.buf, part...)
			if i >= 0 {
				s.tail = len(s.buf)
			}
		}
		p = p[len(part):]
	}
	return n, nil
}

// Next returns the frame of the next complete line, with ok true; ok is
// false when no complete line is left. A bad line is consumed and reported
// with ok true and an error wrapping ErrBadLine.
func (s *Splitter) Next() (f Frame, ok bool, err error) {
	if len(s.longs) > 0 && s.longs[0] == s.start {
		s.longs = s.longs[1:]
		return Frame{}, true, fmt.Errorf("message: %w: longer than %d bytes", ErrBadLine, MaxLine)
	}
	if s.start == s.tail {
		s.compact()
		return Frame{}, false, nil
	}
	i := bytes.IndexByte(s.buf[s.start:s.tail], '\n')
	line := s.buf[s.start : s.start+i+1]
	s.start += i + 1
	f, err = decode(line)
	return f, true, err
}

// compact moves the unfinished line to the front of buf, and lets go of a
// large buffer once it holds little.
func (s *Splitter) compact() {
	rest := s.buf[s.tail:]
	if cap(s.buf) > 64<<10 && len(rest) <= 16<<10 {
		s.buf = append([]byte(nil), rest...)
	} else {
		s.buf = s.buf[:copy(s.buf, rest)]
	}
	s.start, s.tail = 0, 0
	s.longs = s.longs[:0]
}

func decode(line []byte) (Frame, error) {
	var f Frame
	if err := json.Unmarshal(line, &f); err != nil {
		return Frame{}, fmt.Errorf("message: %w: %v", ErrBadLine, err)
	}
	return f, nil
}

// A Template makes the lines of one message to many workers: the text is
// encoded once, and each line differs only in its id. Line(id) is what
// Encode(Frame{ID: id, Message: text}) returns.
type Template struct {
	text []byte // the text as a JSON string
	tail string // more fields, with their leading comma
}

// PingTemplate makes the lines of a watchdog ping (Frame.Ping).
func PingTemplate() Template {
	return Template{text: []byte(`"ping"`), tail: `,"ping":true`}
}

// NewTemplate checks text as a message (CheckMessage) and encodes it.
func NewTemplate(text string) (Template, error) {
	if err := CheckMessage(text); err != nil {
		return Template{}, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(text); err != nil {
		return Template{}, fmt.Errorf("message: encode: %w", err)
	}
	return Template{text: bytes.TrimSuffix(b.Bytes(), []byte("\n"))}, nil
}

// Line returns the message's line for id, which must be non-empty
// printable ASCII without '"' or '\'. It fails, wrapping ErrTooLarge, when the line would
// be longer than MaxLine.
func (t Template) Line(id string) ([]byte, error) {
	if id == "" {
		return nil, errors.New("message: a message needs an id")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return nil, fmt.Errorf("message: id %q: want printable ASCII without quotes or backslashes", id)
		}
	}
	n := len(`{"id":"","message":}`) + len(id) + len(t.text) + len(t.tail) + 1
	if n > MaxLine {
		return nil, fmt.Errorf("%w: %d bytes once encoded as JSON (control characters take six bytes each); the limit is %d", ErrTooLarge, n, MaxLine)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","message":`...)
	b = append(b, t.text...)
	b = append(b, t.tail...)
	return append(b, "}\n"...), nil
}
