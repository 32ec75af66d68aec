//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pyServer is a Python server of Debian's, with its example app and pool
// file in docs/examples/NAME.
type pyServer struct {
	name    string // pool, directory, pool file NAME.toml, and what / says: "hello from NAME, pid P"
	bin     string // the server's program, from its Debian package (make deps installs it)
	port    int    // the test's port, instead of the example's
	procs   int    // processes in one instance: gunicorn's master and its one worker; uvicorn
	serving string // what its journal says once it serves on systemd's socket
	stopped string // the last line of a clean stop in its journal
}

var pyServers = []pyServer{
	{name: "gunicorn", bin: "/usr/bin/gunicorn", port: 5561, procs: 2,
		serving: "Listening at: http://127.0.0.1:5561", stopped: "Shutting down: Master"},
	{name: "uvicorn", bin: "/usr/bin/uvicorn", port: 5562, procs: 1,
		serving: "Uvicorn running on socket ('127.0.0.1', 5562)", stopped: "Finished server process"},
}

func (s pyServer) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", s.port) }

// TestPythonServers: Debian's gunicorn and uvicorn, with the example apps
// and pool files of docs/examples as they are (the port and instances = 2
// aside), serve on systemd's socket in every instance, one gunicorn (one
// worker) or one uvicorn process per instance; and corral reload under load
// (new connections and keep-alive ones) fails no request: each old server
// drains on SIGTERM on its own and exits before the stop timeout.
func TestPythonServers(t *testing.T) {
	for _, s := range pyServers {
		if _, err := os.Stat(s.bin); err != nil {
			t.Fatalf("%s: %v (make deps installs Debian's %s)", s.name, err, s.name)
		}
	}
	b := installed(t)
	for _, s := range pyServers {
		src := filepath.Join("..", "..", "docs", "examples", s.name)
		// The app, and gunicorn's settings file.
		files, err := filepath.Glob(filepath.Join(src, "*.py"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Python files in %s: %v", src, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.WriteFile("/srv/examples/"+s.name+"/"+filepath.Base(f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		toml, err := os.ReadFile(filepath.Join(src, s.name+".toml"))
		if err != nil {
			t.Fatal(err)
		}
		b.writePool(s.name, wkPoolFile(t, string(toml), s.port, ""))
	}
	out := b.must("corral", "validate")
	for _, s := range pyServers {
		if !strings.Contains(out, s.name+": ok") {
			t.Errorf("corral validate: no %q:\n%s", s.name+": ok", out)
		}
	}
	for _, s := range pyServers {
		b.must("corral", "start", s.name)
	}

	for _, s := range pyServers {
		waitFor(t, s.name+" answers", 30*time.Second, func() error {
			_, err := get(s.url())
			return err
		})
		seen := pidsSeen(t, s.url(), s.name, 40)
		if body, err := get(s.url() + "slow?ms=20"); err != nil || !strings.HasPrefix(body, "hello from "+s.name+", pid ") {
			t.Errorf("%s: /slow?ms=20: %q %v", s.name, body, err)
		}
		// Each instance is one server, and the pids that answered are
		// its processes: both instances serve.
		for _, i := range []string{"1", "2"} {
			unit := s.name + "@" + i + ".service"
			procs := unitPids(b, unit)
			if len(procs) != s.procs {
				t.Errorf("%s: processes %v, want %d", unit, procs, s.procs)
			}
			answered := false
			for _, p := range procs {
				answered = answered || seen[p] > 0
			}
			if !answered {
				t.Errorf("%s: none of its processes %v answered; pids that did: %v", unit, procs, seen)
			}
			if logs := b.must("journalctl", "-u", unit, "--no-pager", "-o", "cat"); !strings.Contains(logs, s.serving) {
				t.Errorf("%s's journal lacks %q:\n%s", unit, s.serving, logs)
			}
		}
	}

	for _, s := range pyServers {
		reloadUnderLoad(t, b, s.name, s.port, s.stopped)
	}
	if t.Failed() {
		logs, _ := b.run("journalctl", "-u", "gunicorn@*", "-u", "uvicorn@*", "--no-pager", "-o", "short-precise")
		t.Logf("journal:\n%s", logs)
	}
}

// unitPids returns the pids of the processes in unit's cgroup.
func unitPids(b *box, unit string) []string {
	b.t.Helper()
	out, _ := b.run("sh", "-c", "grep -ls '/"+regexp.QuoteMeta(unit)+"$' /proc/[0-9]*/cgroup")
	var pids []string
	for _, f := range strings.Fields(out) {
		if p := strings.TrimSuffix(strings.TrimPrefix(f, "/proc/"), "/cgroup"); p != f && !strings.Contains(p, "/") {
			pids = append(pids, p)
		}
	}
	return pids
}
