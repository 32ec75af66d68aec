//go:build vm

// Package vm is the VM tier of the tests: the checks that need the kernel to enforce cgroup
// limits (MemoryMax=, CPUQuota=, the OOM killer, real CPU and memory accounting) run in a
// QEMU machine with a full cgroup v2, which a container cannot give. TestVM builds the
// checks of package guest, boots one machine (test/vmbox) with the .deb named by
// CORRAL_DEB, runs them all in that one boot, and reports each as a subtest. `make vmtest`
// runs it, and `make test` runs that.
//
// Where QEMU cannot run, TestVM skips with the reason; it never skips silently.
package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/test/vmbox"
)

// guestTimeout bounds the checks inside, the machine's boot and the .deb's install apart.
const guestTimeout = 25 * time.Minute

func TestVM(t *testing.T) {
	if why := vmbox.Available(); why != "" {
		t.Skip("the VM tier cannot run here: " + why)
	}
	deb := os.Getenv("CORRAL_DEB")
	if deb == "" {
		t.Fatal("CORRAL_DEB is not set: run 'make vmtest', which builds the .deb first")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "guest.test")
	build := exec.Command("go", "test", "-c", "-tags", "vmguest", "-o", bin, "./guest")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest's checks: %v\n%s", err, out)
	}
	args := []string{vmbox.ShareDir + "/guest.test", "-test.v", "-test.timeout", guestTimeout.String()}
	if run := os.Getenv("CORRAL_VM_RUN"); run != "" { // a subset: CORRAL_VM_RUN=TestCPUQuota
		args = append(args, "-test.run", run)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout+10*time.Minute)
	defer cancel()
	res, err := vmbox.Run(ctx, vmbox.Options{
		Files:   map[string]string{"guest.test": bin, "corral.deb": deb},
		Command: "CORRAL_DEB=" + vmbox.ShareDir + "/corral.deb " + vmbox.ShellJoin(args),
		Output:  &prefixWriter{prefix: "guest: "},
		Timeout: guestTimeout + 8*time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s booted in %v; the whole run took %v", res.Kernel, res.Boot.Round(100*time.Millisecond), res.Total.Round(time.Second))
	tests := vmbox.GoTests(res.Output)
	for _, g := range tests {
		t.Run(g.Name, func(t *testing.T) {
			switch g.Result {
			case "PASS":
			case "SKIP":
				t.Skip(strings.Join(g.Lines, "\n"))
			default:
				t.Errorf("failed in the VM:\n%s", strings.Join(g.Lines, "\n"))
			}
		})
	}
	if res.ExitCode != 0 && !vmbox.AnyFailed(tests) {
		t.Errorf("the checks exited %d in the VM without a failed test; their output ends:\n%s", res.ExitCode, vmbox.LastLines(res.Output, 30))
	}
	if len(tests) == 0 {
		t.Errorf("no check ran in the VM")
	}
}

// prefixWriter shows the guest's output as it comes, each whole line prefixed.
type prefixWriter struct {
	prefix  string
	partial []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		fmt.Print(w.prefix + string(w.partial[:i+1]))
		w.partial = w.partial[i+1:]
	}
}
