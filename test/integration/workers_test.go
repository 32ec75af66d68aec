//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// wkExample is one example worker of docs/examples and its pool file.
type wkExample struct {
	pool   string // the pool's name
	dir    string // under docs/examples
	file   string // the example's pool file in dir
	server string // the server's file name in dir
	port   int    // the test's port, instead of the example's
	extra  string // lines the test adds to the pool file ("" for the file as it is)
	typ    string // the service Type= its readiness makes
	hello  string // what / answers
}

var wkExamples = []wkExample{
	// The examples' pool files name nothing but exec, listen and instances:
	// the default readiness, "simple".
	{pool: "node", dir: "node", file: "node.toml", server: "server.js", port: 18094, typ: "exec", hello: "hello from node instance "},
	{pool: "python", dir: "python", file: "python.toml", server: "server.py", port: 18095, typ: "exec", hello: "hello from python instance "},
	// The Python example with readiness = "notify", as its pool file
	// suggests: its READY=1 reaches systemd through the sandbox.
	{pool: "pynotify", dir: "python", file: "python.toml", server: "server.py", port: 18098, extra: `readiness = "notify"`, typ: "notify", hello: "hello from python instance "},
}

func (e wkExample) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", e.port) }

// TestWorkers: the example Node and Python workers of docs/examples, with
// their pool files, run under the default sandbox; every instance answers;
// with readiness = "notify", Python's READY=1 reaches systemd; each answers
// corral broadcast; and a rolling restart of the instances
// under load (new connections, and keep-alive ones) fails no request: each
// worker drains on SIGTERM and the kernel queues what comes meanwhile.
func TestWorkers(t *testing.T) {
	b := installed(t)
	for _, e := range wkExamples {
		src := filepath.Join("..", "..", "docs", "examples", e.dir)
		server, err := os.ReadFile(filepath.Join(src, e.server))
		if err != nil {
			t.Fatal(err)
		}
		toml, err := os.ReadFile(filepath.Join(src, e.file))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.WriteFile("/srv/examples/"+e.dir+"/"+e.server, server, 0o644); err != nil {
			t.Fatal(err)
		}
		b.writePool(e.pool, wkPoolFile(t, string(toml), e.port, e.extra))
	}
	out := b.must("corral", "validate")
	start := []string{"systemctl", "start"}
	for _, e := range wkExamples {
		if !strings.Contains(out, e.pool+": ok") {
			t.Errorf("corral validate: no %q:\n%s", e.pool+": ok", out)
		}
		start = append(start, e.pool+".target")
	}
	b.must(start...)

	for _, e := range wkExamples {
		waitFor(t, e.pool+" answers", 30*time.Second, func() error {
			body, err := get(e.url())
			if err == nil && !strings.HasPrefix(body, e.hello) {
				err = fmt.Errorf("answer %q", body)
			}
			return err
		})
		if seen := instancesSeen(t, e.url(), 60); len(seen) != 2 {
			t.Errorf("%s: instances answering %v, want 2", e.pool, seen)
		}
		if body, err := get(e.url() + "slow?ms=20"); err != nil || !strings.HasPrefix(body, e.hello) {
			t.Errorf("%s: /slow?ms=20: %q %v", e.pool, body, err)
		}
		if typ := b.show(e.pool+"@1.service", "Type"); typ != e.typ {
			t.Errorf("%s@1: Type=%s, want %s", e.pool, typ, e.typ)
		}
	}
	// Python's READY=1 and STATUS= got through the sandbox to systemd.
	if st := b.show("pynotify@1.service", "StatusText"); !strings.Contains(st, "serving on fd 3") {
		t.Errorf("pynotify@1 StatusText=%q, want the worker's STATUS=", st)
	}

	// Messages: each example answers corral broadcast (docs/messages.md).
	for _, lang := range []string{"node", "python"} {
		waitFor(t, lang+" answers messages", 30*time.Second, func() error {
			out, err := b.run("corral", "broadcast", lang, "ping", "--wait")
			for i := 1; i <= 2 && err == nil; i++ {
				if want := fmt.Sprintf(`%s instance %d got "ping"`, lang, i); !strings.Contains(out, want) {
					err = fmt.Errorf("no %q", want)
				}
			}
			if err != nil {
				return fmt.Errorf("%v\n%s", err, out)
			}
			return nil
		})
	}

	for _, e := range wkExamples {
		wkRollingRestart(t, b, e)
	}
}

// wkPoolFile is an example pool file with its listen address set to port,
// 2 instances, and extra lines after the instances line (before any table);
// it fails the test if the example does not have the lines it changes.
func wkPoolFile(t *testing.T, toml string, port int, extra string) string {
	t.Helper()
	instances := `instances = 2`
	if extra != "" {
		instances += "\n" + extra
	}
	for _, r := range []struct{ re, to string }{
		{`(?m)^listen\s*=.*$`, fmt.Sprintf(`listen    = ["127.0.0.1:%d"]`, port)},
		{`(?m)^instances\s*=.*$`, instances},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(toml) {
			t.Fatalf("example pool file has no line %s:\n%s", r.re, toml)
		}
		toml = re.ReplaceAllLiteralString(toml, r.to)
	}
	return toml
}

// wkRollingRestart restarts instance 1, then 2, of an example pool, as a
// rolling reload does, while 16 clients send slow requests on new
// connections and 4 on keep-alive connections. No request may fail.
func wkRollingRestart(t *testing.T, b *box, e wkExample) {
	t.Helper()
	units := []string{e.pool + "@1.service", e.pool + "@2.service"}
	pids := make([]string, len(units))
	for i, u := range units {
		pids[i] = b.show(u, "MainPID")
	}
	url := e.url() + "slow?ms=50"
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	fresh := make(chan loadResult, 1)
	kept := make(chan loadResult, 1)
	go func() { fresh <- load(ctx, url, 16) }()
	go func() { kept <- loadKeepAlive(ctx, url, 4) }()

	time.Sleep(time.Second)
	for _, u := range units {
		t0 := time.Now()
		b.must("systemctl", "restart", u)
		t.Logf("%s: systemctl restart %s took %v", e.pool, u, time.Since(t0).Round(time.Millisecond))
	}
	rf, rk := <-fresh, <-kept
	t.Logf("%s: rolling restart under 16 clients on new connections for 6s: %v", e.pool, rf)
	t.Logf("%s: rolling restart under 4 clients on keep-alive connections for 6s: %v", e.pool, rk)
	for _, r := range []struct {
		what string
		res  loadResult
	}{{"new connections", rf}, {"keep-alive connections", rk}} {
		if r.res.refused != 0 || r.res.failed != 0 {
			t.Errorf("%s, %s: %d refused and %d failed during a rolling restart, want 0 (first failures: %q)",
				e.pool, r.what, r.res.refused, r.res.failed, r.res.samples)
		}
		if r.res.ok < 100 {
			t.Errorf("%s, %s: only %d requests succeeded", e.pool, r.what, r.res.ok)
		}
	}

	for i, u := range units {
		if st := b.show(u, "ActiveState"); st != "active" {
			t.Errorf("%s after restart: ActiveState=%s", u, st)
		}
		if p := b.show(u, "MainPID"); p == pids[i] || p == "0" {
			t.Errorf("%s: MainPID %s after restart, was %s", u, p, pids[i])
		}
		// The old process drained and exited on its own, before the
		// timeout: its last line is the worker's.
		logs := b.must("journalctl", "-u", u, "--no-pager", "-o", "cat")
		if !strings.Contains(logs, "drained in") || strings.Contains(logs, "timed out") {
			t.Errorf("%s: journal has no clean drain:\n%s", u, logs)
		}
	}
	if t.Failed() {
		logs, _ := b.run("journalctl", "-u", e.pool+"@*", "--no-pager", "-o", "short-precise")
		t.Logf("journal of %s@*:\n%s", e.pool, logs)
	}
}
