package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoDaemon: the corral command talks to corrald through package
// api; it links neither the coordinator nor go-systemd's D-Bus client.
func TestLinksNoDaemon(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/coreos/go-systemd/v22/dbus", "github.com/corral-pool/corral/internal/pool", "github.com/corral-pool/corral/internal/relay"} {
			if dep == banned {
				t.Errorf("cmd/corral links %s", dep)
			}
		}
	}
}
