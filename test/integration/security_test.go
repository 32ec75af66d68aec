//go:build integration

package integration

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// uidRE finds the real, effective, saved and file system uids in /proc/PID/status.
var uidRE = regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

// TestPoolNameIsNotAnAccount: a pool named like an account on the machine
// (root, nobody, postgres) runs its workers as its own dynamic user,
// corral-NAME, never as that account: without User=, systemd would take the
// unit's prefix as the user name and use the static account of that name.
// A pool whose dynamic user name is itself an account is refused by
// `corral validate` and gets no units.
func TestPoolNameIsNotAnAccount(t *testing.T) {
	b := installed(t)
	pools := []struct {
		name string
		port int
	}{{"root", 18110}, {"nobody", 18111}, {"postgres", 18112}}
	for _, p := range pools {
		if _, err := b.run("id", "-u", p.name); err != nil {
			b.must("useradd", "--system", "--no-create-home", p.name)
		}
		b.writePool(p.name, fmt.Sprintf("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:%d\"]\ninstances = 2\nreadiness = \"notify\"\n", p.port))
	}
	// An account named as the dynamic user of pool "taken" would be.
	b.must("useradd", "--system", "--no-create-home", "corral-taken")
	b.writePool("taken", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18113\"]\n")

	out, err := b.run("corral", "validate")
	if err == nil || !strings.Contains(out, `pool "taken" would run as a dynamic user named corral-taken, but an account of that name exists`) {
		t.Errorf("corral validate: %v, want the taken pool refused:\n%s", err, out)
	}
	for _, p := range pools {
		if !strings.Contains(out, p.name+": ok") {
			t.Errorf("corral validate: no %q:\n%s", p.name+": ok", out)
		}
	}
	if ls := b.show("taken.target", "LoadState"); ls != "not-found" {
		t.Errorf("taken.target LoadState=%s, want not-found: a refused pool gets no units", ls)
	}

	for _, p := range pools {
		b.must("systemctl", "start", p.name+".target")
		url := fmt.Sprintf("http://127.0.0.1:%d/", p.port)
		waitFor(t, p.name+" answers", 30*time.Second, func() error {
			_, err := get(url)
			return err
		})
		account, err := strconv.Atoi(strings.TrimSpace(b.must("id", "-u", p.name)))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			unit := fmt.Sprintf("%s@%d.service", p.name, i)
			user := b.show(unit, "User")
			if user != "corral-"+p.name {
				t.Errorf("%s: User=%q, want corral-%s", unit, user, p.name)
			}
			pid := b.show(unit, "MainPID")
			status := b.must("cat", "/proc/"+pid+"/status")
			m := uidRE.FindStringSubmatch(status)
			if m == nil {
				t.Fatalf("%s: no Uid line in /proc/%s/status:\n%s", unit, pid, status)
			}
			uids := m[1:]
			for _, s := range uids {
				uid, _ := strconv.Atoi(s)
				if uid == 0 || uid == account {
					t.Errorf("%s runs as uid %d (Uid: %v), the account %s or root; want a dynamic user", unit, uid, uids, p.name)
					break
				}
			}
			t.Logf("%s: User=%s, uids %v (the account %s is uid %d)", unit, user, uids, p.name, account)
		}
	}
}

// TestHostilePoolFiles: pool files that would reach root, or block the
// generator and corrald, get no units and leave a working pool serving:
// a loader variable in environment (it would reach ExecStopPost=, which runs
// as root), a FIFO named x.toml, a file writable by others and owned by
// nobody, a link to a file outside the pool directory, a user that is uid 0
// under another name and a group whose members are root.
func TestHostilePoolFiles(t *testing.T) {
	b := installed(t)
	b.writePool("good", "exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18114\"]\nreadiness = \"notify\"\n")
	b.must("systemctl", "start", "good.target")
	waitFor(t, "good answers", 30*time.Second, func() error {
		_, err := get("http://127.0.0.1:18114/")
		return err
	})

	const dir = "/etc/corral/pools.d/"
	if err := b.WriteFile(dir+"preload.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18115\"]\nenvironment = { LD_PRELOAD = \"/srv/evil.so\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFile(dir+"ww.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18116\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.must("chown", "nobody:nogroup", dir+"ww.toml")
	b.must("chmod", "0666", dir+"ww.toml")
	if err := b.WriteFile("/srv/elsewhere/out.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18117\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.must("ln", "-s", "/srv/elsewhere/out.toml", dir+"out.toml")
	b.must("mkfifo", dir+"fifo.toml")
	// Root under another name, and a group whose members are root.
	b.must("useradd", "--system", "--no-create-home", "--non-unique", "--uid", "0", "toor")
	if err := b.WriteFile(dir+"toor.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18118\"]\nuser = \"toor\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFile(dir+"dock.toml", []byte("exec = [\"/usr/libexec/corral/corral-demo\"]\nlisten = [\"127.0.0.1:18119\"]\nuser = \"nobody\"\ngroup = \"docker\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The generator runs in daemon-reload: a FIFO must not block it (b.run
	// gives up after 2 minutes, far past a blocked generator's limit).
	start := time.Now()
	b.must("systemctl", "daemon-reload")
	t.Logf("daemon-reload with the hostile files took %s", time.Since(start).Round(time.Millisecond))

	out, err := b.run("corral", "validate")
	if err == nil {
		t.Errorf("corral validate passed:\n%s", out)
	}
	for _, want := range []string{
		dir + "preload.toml:3:15: environment variable LD_PRELOAD changes how the dynamic loader or libc loads code",
		dir + "ww.toml: is owned by uid 65534, not root",
		dir + "out.toml: is a link to /srv/elsewhere/out.toml, outside " + strings.TrimSuffix(dir, "/"),
		dir + "fifo.toml: is not a regular file (a FIFO)",
		dir + `toor.toml: user "toor" is uid 0, root under another name`,
		dir + `dock.toml:4:9: group = "docker" is refused`,
		"good: ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("corral validate: no %q:\n%s", want, out)
		}
	}
	for _, p := range []string{"preload", "ww", "out", "fifo", "toor", "dock"} {
		if ls := b.show(p+".target", "LoadState"); ls != "not-found" {
			t.Errorf("%s.target LoadState=%s, want not-found: a refused pool gets no units", p, ls)
		}
	}

	// corrald read the same files on the reload and still answers; the good
	// pool still serves.
	list := b.must("corral", "list")
	if !strings.Contains(list, "good") || strings.Contains(list, "preload") || strings.Contains(list, "fifo") {
		t.Errorf("corral list after the hostile files:\n%s", list)
	}
	if _, err := get("http://127.0.0.1:18114/"); err != nil {
		t.Errorf("good stopped serving: %v", err)
	}
	logs := b.must("journalctl", "-u", "corral.service", "--no-pager")
	if !strings.Contains(logs, "fifo.toml: is not a regular file") {
		t.Errorf("corrald's journal does not name the FIFO it skipped:\n%s", logs)
	}
}
