package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
)

// defaultWait is how long --wait waits for replies without --timeout.
const defaultWait = 5 * time.Second

var messageOptions = []option{
	{long: "wait", short: "w"},
	{long: "timeout", short: "t", takesValue: true},
	{long: "json"},
}

// messageJSON is one element of the --json array of broadcast and send
// (corral(1) documents it).
type messageJSON struct {
	Instance string `json:"instance"` // "app@3"
	Pool     string `json:"pool"`
	Index    int    `json:"index"`
	Status   string `json:"status"`           // replied, error, delivered, no-reply, not-delivered
	Reply    string `json:"reply,omitempty"`  // the reply, or the worker's error
	Detail   string `json:"detail,omitempty"` // why not delivered or not answered
}

// runBroadcast is `corral broadcast POOL MESSAGE`.
func runBroadcast(ctx context.Context, env *Env, args []string) error {
	return sendMessage(ctx, env, "broadcast", args)
}

// runSend is `corral send POOL@I MESSAGE`.
func runSend(ctx context.Context, env *Env, args []string) error {
	return sendMessage(ctx, env, "send", args)
}

func sendMessage(ctx context.Context, env *Env, cmd string, args []string) error {
	opts, operands, err := parseOptions(cmd, args, messageOptions...)
	if err != nil {
		return err
	}
	what := "a pool"
	if cmd == "send" {
		what = "an instance, POOL@I,"
	}
	if len(operands) < 2 {
		return badUsage(cmd, "give %s and a message ('-' reads it from standard input)", what)
	}
	to := operands[0]
	name, err := parseTarget(cmd, to)
	if err != nil {
		return err
	}
	switch {
	case cmd == "send" && !strings.Contains(to, "@"):
		return badUsage(cmd, "%q is a pool: send goes to one instance, e.g. %s@1; 'corral broadcast %s' goes to every instance", to, to, to)
	case cmd == "broadcast" && strings.Contains(to, "@"):
		return badUsage(cmd, "%q is an instance: broadcast goes to a pool; 'corral send %s' goes to one instance", to, to)
	}
	text := strings.Join(operands[1:], " ")
	if len(operands) == 2 && operands[1] == "-" {
		if text, err = readMessage(env); err != nil {
			return err
		}
	}
	if err := message.CheckMessage(text); err != nil {
		return badUsage(cmd, "the message is %v", err)
	}
	wait, err := messageWait(cmd, opts)
	if err != nil {
		return err
	}

	corrald, closeAPI, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer closeAPI()
	cctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	var rs []api.MessageResult
	if cmd == "send" {
		rs, err = corrald.Send(cctx, to, text, wait)
	} else {
		rs, err = corrald.Broadcast(cctx, to, text, wait)
	}
	if err != nil {
		if errors.Is(err, api.ErrOtherPool) {
			return err
		}
		if errors.Is(err, api.ErrBadMessage) {
			return failed("%s: %w", cmd, err)
		}
		return apiError(env, cmd+" "+to, name, err)
	}

	if opts["json"] != "" {
		if err := writeJSON(env.Stdout, resultsJSON(rs)); err != nil {
			return err
		}
	} else {
		writeResults(env.Stdout, rs)
	}
	return messageOutcome(to, rs, wait > 0)
}

// messageWait is how long to wait for replies: none, or --wait's default,
// or --timeout.
func messageWait(cmd string, opts map[string]string) (time.Duration, error) {
	var wait time.Duration
	if opts["wait"] != "" {
		wait = defaultWait
	}
	if v, ok := opts["timeout"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > api.MaxWait {
			return 0, badUsage(cmd, "bad --timeout %q: give a duration from 1ms to %v, such as 500ms or 10s", v, api.MaxWait)
		}
		wait = d
	}
	return wait, nil
}

// resultsJSON is the results as --json writes them.
func resultsJSON(rs []api.MessageResult) []messageJSON {
	out := make([]messageJSON, len(rs))
	for i, r := range rs {
		out[i] = messageJSON{r.Instance(), r.Pool, r.Index, string(r.Status), r.Reply, r.Detail}
	}
	return out
}

// readMessage reads the message from standard input, for secrets that do
// not belong on a command line.
func readMessage(env *Env) (string, error) {
	if env.Stdin == nil {
		return "", usageError("cannot read the message: no standard input")
	}
	b, err := io.ReadAll(io.LimitReader(env.Stdin, message.MaxText+1))
	if err != nil {
		return "", failed("read the message from standard input: %w", err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// printable shows the control characters of a worker's text as escapes
// (ESC as \x1b), all but newline and tab: written raw, a reply could move
// the cursor, retitle the window or rewrite what the operator sees. Bidi
// controls, which reorder what is shown, are escaped too. --json has the
// text as it is.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t' || !unicode.IsControl(r) && !unicode.Is(unicode.Bidi_Control, r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// writeResults prints one line per instance; a reply of several lines
// goes on, indented, under its instance.
func writeResults(w io.Writer, rs []api.MessageResult) {
	width := len("INSTANCE")
	for _, r := range rs {
		width = max(width, len(r.Instance()))
	}
	const statusWidth = len("not delivered")
	fmt.Fprintf(w, "%-*s  %-*s  %s\n", width, "INSTANCE", statusWidth, "RESULT", "REPLY")
	for _, r := range rs {
		status := strings.ReplaceAll(string(r.Status), "-", " ")
		text := r.Reply
		switch {
		case r.Detail != "" && r.Reply != "":
			text = r.Reply + "\n(" + r.Detail + ")"
		case r.Detail != "":
			text = r.Detail
		}
		lines := strings.Split(strings.TrimRight(printable(text), "\n"), "\n")
		fmt.Fprintf(w, "%-*s  %-*s  %s\n", width, r.Instance(), statusWidth, status, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%*s  %s\n", width+2+statusWidth, "", l)
		}
	}
}

// messageOutcome is the exit status: success when every instance replied
// (with --wait) or got the message.
func messageOutcome(to string, rs []api.MessageResult, waited bool) error {
	if len(rs) == 0 {
		return failed("no instance of %s runs: the message went nowhere ('corral status %s')", to, to)
	}
	bad := 0
	for _, r := range rs {
		if !r.Status.OK() {
			bad++
		}
	}
	if bad == 0 {
		return nil
	}
	what := "did not get the message"
	if waited {
		what = "did not reply"
	}
	return failed("%d of %d instance(s) of %s %s", bad, len(rs), strings.SplitN(to, "@", 2)[0], what)
}
