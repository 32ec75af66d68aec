//go:build integration

package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestShortLivedCrashLoop: a worker that exits 1 after 3s of life never
// trips systemd's start limit (5 starts in 10s): systemd restarts it for
// ever and the unit is never "failed". corrald counts systemd's restarts:
// within the 6th the instance is crash-loop in corral list, with the last
// exit's cause, and corrald stops it and backs it off instead of letting it
// burn CPU.
func TestShortLivedCrashLoop(t *testing.T) {
	b := installed(t)
	b.writePool("flaky", "exec = [\"/bin/sh\", \"-c\", \"sleep 3; exit 1\"]\nlisten = [\"127.0.0.1:18120\"]\ninstances = 1\n")
	b.must("corral", "start", "flaky")
	nrestarts := func() int {
		n, _ := strconv.Atoi(b.show("flaky@1.service", "NRestarts"))
		return n
	}
	var list string
	waitFor(t, "flaky@1 in crash-loop", 60*time.Second, func() error {
		list = b.must("corral", "list")
		if !containsFields(list, "flaky@1", "crash-loop") {
			return fmt.Errorf("systemd restarted it %d times; corral list:\n%s", nrestarts(), list)
		}
		return nil
	})
	restarts := nrestarts()
	t.Logf("crash-loop after systemd's restart %d:\n%s", restarts, list)
	if restarts > 6 {
		t.Errorf("crash-loop reported after %d restarts, want within the 6th", restarts)
	}
	status := b.must("corral", "status", "flaky")
	if !strings.Contains(status, "crash loop: failed") || strings.Contains(status, "last: success") ||
		!strings.Contains(status, "(last: exit-code)") && !strings.Contains(status, "'corral logs flaky' says why") {
		t.Errorf("corral status gives no cause, or says the last exit was a success:\n%s", status)
	}
	// Backed off: stopped by corrald, and no more restarts meanwhile.
	waitFor(t, "flaky@1 stopped", 30*time.Second, func() error {
		if st := b.show("flaky@1.service", "ActiveState"); st != "inactive" {
			return fmt.Errorf("ActiveState=%s", st)
		}
		return nil
	})
	pid := b.show("flaky@1.service", "InvocationID")
	time.Sleep(8 * time.Second)
	if st, now := b.show("flaky@1.service", "ActiveState"), b.show("flaky@1.service", "InvocationID"); st != "inactive" || now != pid {
		t.Errorf("flaky@1 during its backoff: ActiveState=%s, invocation %s (was %s): want it stopped", st, now, pid)
	}
	if !strings.Contains(b.must("corral", "status", "flaky"), "stopped by corrald, next try in") {
		t.Errorf("corral status does not say when it is tried again:\n%s", b.must("corral", "status", "flaky"))
	}
}

// containsFields reports whether a line of out starts with the given
// whitespace-separated fields.
func containsFields(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= len(fields) && strings.Join(f[:len(fields)], " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}
