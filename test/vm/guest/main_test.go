//go:build vmguest

// Package guest holds the checks of the VM tier: they run inside a QEMU machine that
// test/vm boots (see there), as root, with systemd as PID 1 and a full cgroup v2, where
// the kernel enforces MemoryMax=, CPUQuota= and the rest. The .deb is installed by
// TestMain with apt, as an operator would. Never run them on a host: the build tag
// vmguest keeps them out of every other build.
package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/wait"
)

func TestMain(m *testing.M) {
	deb := os.Getenv("CORRAL_DEB")
	if deb == "" {
		fmt.Fprintln(os.Stderr, "guest: CORRAL_DEB is not set: test/vm runs these checks in the VM")
		os.Exit(2)
	}
	start := time.Now()
	if out, err := command(5*time.Minute, "apt-get", "install", "-y", "-q", deb); err != nil {
		fmt.Fprintf(os.Stderr, "guest: apt-get install %s: %v\n%s", deb, err, out)
		os.Exit(2)
	}
	fmt.Printf("guest: installed %s in %.1fs\n", deb, time.Since(start).Seconds())
	os.Exit(m.Run())
}

// command runs a command with a timeout and returns its combined output.
func command(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// must runs a command and fails the test if it fails.
func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := command(2*time.Minute, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show returns one property of a unit.
func show(unit, prop string) string {
	out, _ := command(time.Minute, "systemctl", "show", "-P", prop, unit)
	return strings.TrimSpace(out)
}

// showInt returns one numeric property of a unit, -1 if it is not a number ([not set]).
func showInt(unit, prop string) int64 {
	n, err := strconv.ParseInt(show(unit, prop), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// writePool installs a pool file, reloads systemd and starts the pool; it stops it and
// removes the file when the test ends.
func writePool(t *testing.T, name, src string) {
	t.Helper()
	path := "/etc/corral/pools.d/" + name + ".toml"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		command(2*time.Minute, "corral", "stop", name)
		os.Remove(path)
		command(2*time.Minute, "systemctl", "daemon-reload")
	})
	must(t, "corral", "validate", path)
	must(t, "systemctl", "daemon-reload")
	// corrald reads the pool files again when systemd says it reloaded.
	waitFor(t, "corrald knows pool "+name, time.Minute, func() error {
		if out, err := command(time.Minute, "corral", "status", name); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	must(t, "corral", "start", name)
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	wait.For(t, what, timeout, cond)
}

// instance is one instance of corral list --json.
type instance struct {
	Name        string  `json:"name"`
	Index       uint32  `json:"index"`
	Phase       string  `json:"phase"`
	ActiveState string  `json:"active_state"`
	PID         *uint32 `json:"pid"`
	Restarts    uint32  `json:"restarts"`
	MemoryBytes *uint64 `json:"memory_bytes"`
	CPUNSec     *uint64 `json:"cpu_nsec"`
	Reason      string  `json:"reason"`
}

// list returns the instances of pool as corral list --json gives them.
func list(t *testing.T, pool string) []instance {
	t.Helper()
	var doc struct {
		Pools []struct {
			Name      string     `json:"name"`
			Instances []instance `json:"instances"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(must(t, "corral", "list", "--json")), &doc); err != nil {
		t.Fatalf("corral list --json: %v", err)
	}
	for _, p := range doc.Pools {
		if p.Name == pool {
			return p.Instances
		}
	}
	t.Fatalf("corral list --json has no pool %s", pool)
	return nil
}

// get fetches url on a fresh connection within timeout.
func get(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
