package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode"

	"github.com/corral-pool/corral/api"
)

func TestBroadcast(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		out     string
		errLine string
	}{
		{"wait", []string{"broadcast", "app", "ping", "--wait"}, ExitOK,
			"INSTANCE  RESULT         REPLY\napp@1     replied        instance 1 got \"ping\"\napp@2     replied        instance 2 got \"ping\"\n", ""},
		{"no wait, words joined", []string{"broadcast", "app", "set", "flag", "on"}, ExitOK,
			"INSTANCE  RESULT         REPLY\napp@1     delivered      \napp@2     delivered      \n", ""},
		{"an instance not running", []string{"broadcast", "web", "ping", "-w"}, ExitInvalid,
			"INSTANCE  RESULT         REPLY\nweb@1     replied        instance 1 got \"ping\"\nweb@2     not delivered  it is not running (crash-loop: exit-code 1; next try in 5m)\n",
			"corral: 1 of 2 instance(s) of web did not reply"},
		{"send", []string{"send", "app@2", "ping", "--timeout", "1s"}, ExitOK,
			"INSTANCE  RESULT         REPLY\napp@2     replied        instance 2 got \"ping\"\n", ""},
		{"no such pool", []string{"broadcast", "nope", "ping"}, ExitInvalid, "",
			"corral: no pool \"nope\": 'corral list' shows the pools; pool files live in /etc/corral/pools.d"},
		{"no such instance", []string{"send", "app@9", "ping"}, ExitInvalid, "",
			"corral: send app@9: no such instance: 'corral status app' lists its instances, 'corral scale app N' sets how many run"},
		{"send to a pool", []string{"send", "app", "ping"}, ExitUsage, "",
			"corral: send: \"app\" is a pool: send goes to one instance, e.g. app@1; 'corral broadcast app' goes to every instance; usage: corral send POOL@I MESSAGE|- [--wait] [--timeout D] [--json]"},
		{"broadcast to an instance", []string{"broadcast", "app@1", "ping"}, ExitUsage, "",
			"corral: broadcast: \"app@1\" is an instance: broadcast goes to a pool; 'corral send app@1' goes to one instance; usage: corral broadcast POOL MESSAGE|- [--wait] [--timeout D] [--json]"},
		{"no message", []string{"broadcast", "app"}, ExitUsage, "",
			"corral: broadcast: give a pool and a message ('-' reads it from standard input); usage: corral broadcast POOL MESSAGE|- [--wait] [--timeout D] [--json]"},
		{"too large", []string{"broadcast", "app", strings.Repeat("x", 70000)}, ExitUsage, "",
			"corral: broadcast: the message is too large: 70000 bytes; the limit is 65536 (64 KiB): send a file's path instead; usage: corral broadcast POOL MESSAGE|- [--wait] [--timeout D] [--json]"},
		{"bad timeout", []string{"broadcast", "app", "x", "--timeout", "forever"}, ExitUsage, "",
			"corral: broadcast: bad --timeout \"forever\": give a duration from 1ms to 5m0s, such as 500ms or 10s; usage: corral broadcast POOL MESSAGE|- [--wait] [--timeout D] [--json]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, out, _ := testEnv(newFake(), nil)
			code, errLine := runEnv(t, context.Background(), env, tc.args...)
			if code != tc.code || errLine != tc.errLine || out.String() != tc.out {
				t.Errorf("exit %d, error %q, output:\n%s\nwant exit %d, error %q, output:\n%s", code, errLine, out, tc.code, tc.errLine, tc.out)
			}
		})
	}
}

func TestBroadcastStdinAndJSON(t *testing.T) {
	f := newFake()
	env, out, _ := testEnv(f, nil)
	env.Stdin = strings.NewReader("s3cret\n")
	code, errLine := runEnv(t, context.Background(), env, "broadcast", "--json", "app", "-", "-w")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errLine)
	}
	if got := f.calls[len(f.calls)-1]; got != "Broadcast app s3cret 5s" {
		t.Errorf("call = %q, want the message from stdin without its newline and the default wait", got)
	}
	var rs []messageJSON
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(rs) != 2 || rs[0] != (messageJSON{Instance: "app@1", Pool: "app", Index: 1, Status: "replied", Reply: `instance 1 got "s3cret"`}) {
		t.Errorf("--json = %+v", rs)
	}
}

func TestBroadcastDenied(t *testing.T) {
	f := newFake()
	f.errs["Broadcast"] = api.ErrDenied
	env, _, _ := testEnv(f, nil)
	code, errLine := runEnv(t, context.Background(), env, "broadcast", "app", "x")
	if code != ExitDenied || !strings.Contains(errLine, "sudo corral broadcast app x") {
		t.Errorf("exit %d, %q", code, errLine)
	}
}

func TestWriteResultsMultiline(t *testing.T) {
	var b strings.Builder
	writeResults(&b, []api.MessageResult{{Pool: "app", Index: 10, Status: "replied", Reply: "hits 12\nmisses 3\n"}})
	want := "INSTANCE  RESULT         REPLY\napp@10    replied        hits 12\n                         misses 3\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestWriteResultsEscapes: a worker's reply cannot drive the operator's
// terminal: control characters (an OSC that retitles the window, ESC, BEL)
// and bidi controls are shown as escapes; a note on a cut reply follows it.
func TestWriteResultsEscapes(t *testing.T) {
	var b strings.Builder
	writeResults(&b, []api.MessageResult{
		{Pool: "app", Index: 1, Status: "replied", Reply: "\x1b]0;pwned\x07ok\u202e\u009b2J\tend"},
		{Pool: "app", Index: 2, Status: "replied", Reply: "aaaa", Detail: "cut to the first 4 of its 9 bytes"},
	})
	want := "INSTANCE  RESULT         REPLY\n" +
		`app@1     replied        \x1b]0;pwned\x07ok\u202e\x9b2J` + "\tend\n" +
		"app@2     replied        aaaa\n" +
		"                         (cut to the first 4 of its 9 bytes)\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
}

// FuzzPrintable: what a worker replies reaches the operator's terminal
// with no control character but newline and tab, and no bidi control.
func FuzzPrintable(f *testing.F) {
	f.Add("\x1b]0;owned\x07ok\r\n\u202e")
	f.Add("plain\ttext\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range printable(s) {
			if (unicode.IsControl(r) && r != '\n' && r != '\t') || unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("printable(%q) keeps %U", s, r)
			}
		}
	})
}
