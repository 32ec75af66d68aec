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
