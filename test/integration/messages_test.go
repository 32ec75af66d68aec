//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// msgResult is one element of `corral broadcast|send --json`.
type msgResult struct {
	Instance string `json:"instance"`
	Index    int    `json:"index"`
	Status   string `json:"status"`
	Reply    string `json:"reply"`
	Detail   string `json:"detail"`
}

// message runs `corral ARGS --json` and returns its results and error.
func (b *box) message(args ...string) ([]msgResult, string, error) {
	b.t.Helper()
	out, err := b.run(append(append([]string{"corral"}, args...), "--json")...)
	rs, jerr := parseResults(out)
	if jerr != nil && err == nil {
		b.t.Fatalf("corral %s --json: %v\n%s", strings.Join(args, " "), jerr, out)
	}
	return rs, out, err
}

// parseResults reads the --json array of broadcast or send from out, which
// may end with corral's error line.
func parseResults(out string) ([]msgResult, error) {
	var rs []msgResult
	err := json.Unmarshal([]byte(out[:strings.LastIndexByte(out, ']')+1]), &rs)
	return rs, err
}

func summarize(rs []msgResult) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%s %s %q %s", r.Instance, r.Status, r.Reply, r.Detail))
	}
	return strings.Join(s, "\n")
}

// recorder is a Python worker that answers "report" with every message it
// got that starts with "m", in order, and the number of times it
// connected; instance 2 connects and never reads (a stuck worker).
const recorder = `import json, os, socket, sys, time
seen, conns = [], 0
if os.environ["CORRAL_INSTANCE"] == "2":
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["CORRAL_MESSAGES"])
    time.sleep(1e6)
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(os.environ["CORRAL_MESSAGES"])
    except OSError:
        time.sleep(0.2)
        continue
    conns += 1
    for line in s.makefile("rb"):
        m = json.loads(line)
        if m["message"] == "report":
            reply = "conns=%d %s" % (conns, ",".join(seen))
        else:
            if m["message"].startswith("m"):
                seen.append(m["message"])
            reply = "ok"
        s.sendall((json.dumps({"id": m["id"], "reply": reply}) + "\n").encode())
`

// TestMessages: corral broadcast and send against the demo pool and a
// recording worker in the real systemd: replies from every instance,
// order, the limits, unknown pools and instances, who may send, a stuck
// worker, and corrald restarts that lose neither channels nor messages.
func TestMessages(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.must("corral", "scale", "app", "4")
	b.waitActive("app", "1", "2", "3", "4")

	// Broadcast to 4 instances: each replies with its instance number.
	waitFor(t, "every demo instance connected for messages", 30*time.Second, func() error {
		rs, out, err := b.message("broadcast", "app", "ping", "--wait")
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if len(rs) != 4 {
			return fmt.Errorf("%d results:\n%s", len(rs), out)
		}
		for i, r := range rs {
			want := fmt.Sprintf(`instance %d got "ping"`, i+1)
			if r.Instance != fmt.Sprintf("app@%d", i+1) || r.Status != "replied" || r.Reply != want {
				return fmt.Errorf("result %d: %+v, want a reply %q", i, r, want)
			}
		}
		return nil
	})
	out := b.must("corral", "broadcast", "app", "ping", "--wait")
	t.Logf("corral broadcast app ping --wait:\n%s", out)
	if rs, out, err := b.message("send", "app@3", "hello", "--wait"); err != nil || len(rs) != 1 || rs[0].Reply != `instance 3 got "hello"` {
		t.Errorf("corral send app@3 hello --wait: %v\n%s", err, out)
	}
	if out := b.must("corral", "broadcast", "app", "no", "reply", "asked"); strings.Count(out, "delivered") != 4 {
		t.Errorf("corral broadcast without --wait:\n%s", out)
	}
	// corral status says which workers are connected for messages.
	var st struct {
		Instances []struct {
			Name     string `json:"name"`
			Messages bool   `json:"messages"`
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(b.must("corral", "status", "app", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Instances) != 4 {
		t.Errorf("corral status app --json: %d instances, want 4", len(st.Instances))
	}
	for _, in := range st.Instances {
		if !in.Messages {
			t.Errorf("corral status app --json: %s not connected for messages", in.Name)
		}
	}
	t.Logf("corral status app:\n%s", b.must("corral", "status", "app"))

	// Clear errors, with the exit codes of corral(1).
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"corral", "broadcast", "nope", "x"}, `no pool "nope"`},
		{[]string{"corral", "send", "app@9", "x"}, "no such instance"},
		{[]string{"corral", "broadcast", "app", strings.Repeat("x", 70000)}, "too large: 70000 bytes; the limit is 65536"},
		{[]string{"busctl", "call", "org.corral.Corral1", "/org/corral/Corral1", "org.corral.Corral1.Manager",
			"Broadcast", "sst", "app", strings.Repeat("\x01", 60000), "0"}, "once encoded as JSON"},
	} {
		out, err := b.run(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%.60q: want an error with %q:\n%.300s", strings.Join(c.args, " "), c.want, out)
		}
	}

	// Only root and the corral group may send; anyone may list.
	b.must("useradd", "--no-create-home", "alice")
	b.must("useradd", "--no-create-home", "--groups", "corral", "bob")
	if out, err := b.run("runuser", "-u", "alice", "--", "corral", "broadcast", "app", "x"); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("corral broadcast as alice: err=%v\n%s", err, out)
	} else if !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("corral broadcast as alice: %v, want exit status 3", err)
	}
	if out, err := b.run("runuser", "-u", "bob", "--", "corral", "send", "app@1", "from bob", "--wait"); err != nil || !strings.Contains(out, `instance 1 got "from bob"`) {
		t.Errorf("corral send as bob (corral group): err=%v\n%s", err, out)
	}

	// The recorder pool: instance 1 records, instance 2 is stuck.
	if err := b.WriteFile("/srv/recorder.py", []byte(recorder), 0o644); err != nil {
		t.Fatal(err)
	}
	b.writePool("rec", `exec = ["/usr/bin/python3", "/srv/recorder.py"]
listen = ["127.0.0.1:18071"]
instances = 2
`)
	b.must("corral", "apply")
	b.must("systemctl", "start", "rec.target")
	b.waitActive("rec", "1", "2")
	waitFor(t, "rec@1 connected", 30*time.Second, func() error {
		_, out, err := b.message("send", "rec@1", "report", "--wait")
		return errIf(err, out)
	})
	waitFor(t, "rec@2 connected", 30*time.Second, func() error {
		_, out, err := b.message("send", "rec@2", "hello") // delivered, never read
		return errIf(err, out)
	})

	// A worker that does not read: its queue fills, then it is reported,
	// and its sibling answers at once all the same.
	big := strings.Repeat("y", 60000)
	if err := b.WriteFile("/srv/big.txt", []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	var full string
	for i := 0; i < 100 && full == ""; i++ {
		out, _ := b.run("sh", "-c", "corral send rec@2 - < /srv/big.txt")
		if strings.Contains(out, "not reading its messages") {
			full = out
		}
	}
	if full == "" {
		t.Fatal("a stuck worker was never reported as such after 100 messages of 60 kB")
	}
	t0 := time.Now()
	out, _ = b.run("sh", "-c", "corral broadcast rec - --wait --json < /srv/big.txt")
	rs, _ := parseResults(out)
	took := time.Since(t0)
	t.Logf("broadcast beside a stuck worker took %v:\n%s", took, summarize(rs))
	if len(rs) != 2 || rs[0].Status != "replied" || rs[1].Status != "not-delivered" || took > 4*time.Second {
		t.Errorf("broadcast to rec with a stuck rec@2 (took %v):\n%s", took, out)
	}

	// Order, and corrald restarts between messages: by systemctl restart
	// and by SIGKILL. Nothing is lost and the worker never reconnects.
	inodes := func() string {
		pid := strings.TrimSpace(b.show("app@1.service", "MainPID"))
		out, _ := b.run("sh", "-c", "ls -l /proc/"+pid+"/fd | grep -o 'socket:\\[[0-9]*\\]' | sort")
		return out
	}
	before := inodes()
	var sent []string
	send := func(n int) {
		for i := 0; i < n; i++ {
			m := fmt.Sprintf("m%d", len(sent))
			b.must("corral", "send", "rec@1", m)
			sent = append(sent, m)
		}
	}
	send(10)
	b.must("systemctl", "restart", "corral.service")
	send(10)
	b.must("systemctl", "kill", "--signal=SIGKILL", "corral.service")
	waitFor(t, "corrald back after SIGKILL", 30*time.Second, func() error {
		_, err := b.run("corral", "list")
		return err
	})
	send(10)
	rs, out, err := b.message("send", "rec@1", "report", "--wait")
	if err != nil || len(rs) != 1 {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if want := "conns=1 " + strings.Join(sent, ","); rs[0].Reply != want {
		t.Errorf("rec@1 got, in order:\n%s\nwant:\n%s", rs[0].Reply, want)
	}
	if after := inodes(); after != before {
		t.Errorf("app@1's sockets changed across corrald restarts (it reconnected):\n%s\n→\n%s", before, after)
	}
	if out, err := b.run("corral", "send", "app@1", "after restarts", "--wait"); err != nil || !strings.Contains(out, "replied") {
		t.Errorf("app@1 after corrald restarts: %v\n%s", err, out)
	}
	t.Logf("fd store of corral.service: %s", b.show("corral.service", "NFileDescriptorStore"))

	// A worker may not message another pool's workers, even when its user
	// may change pools: rogue runs as bob, of the corral group.
	b.writePool("rogue", `exec = ["/bin/sh", "-c", "corral broadcast app from-a-worker; corral broadcast rogue to-itself; exec sleep infinity"]
listen = ["127.0.0.1:18072"]
instances = 1
user = "bob"
`)
	b.must("corral", "apply")
	b.must("systemctl", "start", "rogue.target")
	b.waitJournal("rogue@1.service", "a worker may message only its own pool")
	b.waitJournal("rogue@1.service", "INSTANCE  RESULT") // its own pool: allowed
	// Its worker (sleep) never connects for messages: corral status says so.
	if out := b.must("corral", "status", "rogue"); !regexp.MustCompile(`(?m)^rogue@1\.service .* no *$`).MatchString(out) {
		t.Errorf("corral status rogue: want MSG no for rogue@1:\n%s", out)
	}

	// A process that is not a worker cannot connect for messages.
	out, _ = b.run("python3", "-c", `import socket; s = socket.socket(socket.AF_UNIX); s.connect("/run/corral/messages.sock"); print(s.recv(1000).decode())`)
	if !strings.Contains(out, "only the workers of corral pools may connect") {
		t.Errorf("a stranger connecting to the message socket got: %q", out)
	}
}

func errIf(err error, out string) error {
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

// TestMessageDuringReload: broadcasts while `corral reload` rolls the demo
// pool: every call returns in time, and each instance either replies or
// is reported as not delivered with why; after the reload all 4 reply.
func TestMessageDuringReload(t *testing.T) {
	b := installed(t)
	b.must("systemctl", "start", "app.target")
	b.must("corral", "scale", "app", "4")
	b.waitActive("app", "1", "2", "3", "4")
	waitFor(t, "every demo instance connected", 30*time.Second, func() error {
		_, out, err := b.message("broadcast", "app", "ping", "--wait")
		return errIf(err, out)
	})

	var mu sync.Mutex
	statuses := map[string]int{}
	details := map[string]bool{}
	var slowest time.Duration
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			out, _ := b.run("corral", "broadcast", "app", "during-reload", "--timeout", "2s", "--json")
			took := time.Since(t0)
			rs, _ := parseResults(out)
			mu.Lock()
			slowest = max(slowest, took)
			for _, r := range rs {
				statuses[r.Status]++
				if r.Status != "replied" {
					details[r.Instance+" "+r.Status+": "+regexp.MustCompile(`[0-9]+ms`).ReplaceAllString(r.Detail, "Nms")] = true
				}
			}
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	out := b.must("corral", "reload", "app")
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	var ds []string
	for d := range details {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	t.Logf("broadcasts during the reload: %v, slowest call %v; not replied:\n%s\n%s", statuses, slowest, strings.Join(ds, "\n"), out)
	if statuses["replied"] == 0 {
		t.Error("no reply at all during the reload")
	}
	for s := range statuses {
		if s != "replied" && s != "not-delivered" && s != "no-reply" {
			t.Errorf("status %q during the reload", s)
		}
	}
	why := regexp.MustCompile(`starting|stopping|not running|went away|no reply within|not connected|connection closed|closed as the message was written`)
	for _, d := range ds {
		if !why.MatchString(d) {
			t.Errorf("a result without a reason: %s", d)
		}
	}
	if slowest > 10*time.Second {
		t.Errorf("a broadcast took %v during the reload, want it bounded by its 2s timeout", slowest)
	}
	rs, out2, err := b.message("broadcast", "app", "after", "--wait")
	if err != nil || len(rs) != 4 {
		t.Errorf("after the reload: %v\n%s", err, out2)
	}
}
