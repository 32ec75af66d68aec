//go:build integration

package sdbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests boot real systemd containers: run them as root with
//
//	go test -tags integration -v -count=1 ./test/sdbox/

func TestBox(t *testing.T) {
	start := time.Now()
	b := New(t, Options{Mask: []string{"sdbox-test-extra.service"}})
	t.Logf("boot took %s (overlay, nspawn, systemd until is-system-running)", time.Since(start).Round(time.Millisecond))
	dir := b.dir
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("running", func(t *testing.T) {
		out, _, err := b.Exec(ctx, "systemctl", "is-system-running")
		if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
			t.Errorf("systemctl is-system-running = %q, %v; want running or degraded", s, err)
		}
		if out, _, _ := b.Exec(ctx, "cat", "/proc/1/comm"); strings.TrimSpace(out) != "systemd" {
			t.Errorf("PID 1 inside is %q; want systemd", strings.TrimSpace(out))
		}
	})

	t.Run("systemd-run", func(t *testing.T) {
		if _, _, err := b.Exec(ctx, "systemd-run", "--wait", "--quiet", "true"); err != nil {
			t.Error(err)
		}
		_, _, err := b.Exec(ctx, "systemd-run", "--wait", "--quiet", "false")
		if err == nil {
			t.Error("systemd-run --wait false: want an error")
		}
	})

	t.Run("dbus", func(t *testing.T) {
		out, _, err := b.Exec(ctx, "busctl", "list", "--no-pager")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"org.freedesktop.systemd1", "org.freedesktop.DBus"} {
			if !strings.Contains(out, name) {
				t.Errorf("busctl list lacks %s:\n%s", name, out)
			}
		}
		out, _, err = b.Exec(ctx, "busctl", "get-property", "org.freedesktop.systemd1",
			"/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "SystemState")
		if err != nil || !strings.Contains(out, "running") && !strings.Contains(out, "degraded") {
			t.Errorf("SystemState over D-Bus = %q, %v", out, err)
		}
	})

	t.Run("policy-rc.d", func(t *testing.T) {
		_, _, err := b.Exec(ctx, "test", "!", "-e", "/usr/sbin/policy-rc.d")
		if err != nil {
			t.Errorf("policy-rc.d still present inside: %v", err)
		}
		// The host keeps it (when the image has it).
		if _, err := os.Lstat("/usr/sbin/policy-rc.d"); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
	})

	t.Run("mask", func(t *testing.T) {
		for _, u := range []string{"postgresql.service", "apt-daily.timer", "haproxy.service",
			"prometheus-node-exporter-smartmon.timer", "sdbox-test-extra.service"} {
			out, _, _ := b.Exec(ctx, "systemctl", "show", "-p", "LoadState", "--value", u)
			if s := strings.TrimSpace(out); s != "masked" {
				t.Errorf("%s: LoadState=%q; want masked", u, s)
			}
		}
	})

	t.Run("exec error", func(t *testing.T) {
		_, stderr, err := b.Exec(ctx, "sh", "-c", "echo oops >&2; exit 3")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("Exec error = %v; want exit status 3", err)
		}
		if !strings.Contains(err.Error(), "oops") || strings.TrimSpace(stderr) != "oops" {
			t.Errorf("Exec error %q, stderr %q; want both to say oops", err, stderr)
		}
	})

	t.Run("WriteFile", func(t *testing.T) {
		if err := b.WriteFile("/srv/sdbox-test/hello.txt", []byte("hello\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		out, _, err := b.Exec(ctx, "stat", "-c", "%a %s", "/srv/sdbox-test/hello.txt")
		if err != nil || strings.TrimSpace(out) != "640 6" {
			t.Errorf("stat inside = %q, %v; want 640 6", out, err)
		}
		if _, err := os.Stat("/srv/sdbox-test"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the file leaked to the host's /srv: %v", err)
		}
		if err := b.WriteFile("/tmp/x", nil, 0o644); err == nil {
			t.Error("WriteFile /tmp/x: want an error (tmpfs inside)")
		}
	})

	t.Run("socket activation", func(t *testing.T) {
		port := freePort(t)
		socket := fmt.Sprintf("[Socket]\nListenStream=127.0.0.1:%d\nAccept=yes\n", port)
		service := "[Service]\nExecStart=/bin/echo hello from the box\nStandardInput=socket\nStandardOutput=socket\n"
		if err := b.WriteFile("/etc/systemd/system/sdbox-echo.socket", []byte(socket), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := b.WriteFile("/etc/systemd/system/sdbox-echo@.service", []byte(service), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "start", "sdbox-echo.socket"}} {
			if _, _, err := b.Exec(ctx, args...); err != nil {
				t.Fatal(err)
			}
		}
		// The network namespace is shared: connect from the host.
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil || string(got) != "hello from the box\n" {
			t.Errorf("read from the socket-activated service = %q, %v", got, err)
		}
	})

	closeAndCheck(t, b, dir)
}

func TestSequentialBoots(t *testing.T) {
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), BootTimeout)
		start := time.Now()
		b, err := Boot(ctx, Options{Log: testWriter{t}})
		cancel()
		if err != nil {
			t.Fatalf("boot %d: %v", i+1, err)
		}
		t.Logf("boot %d took %s", i+1, time.Since(start).Round(time.Millisecond))
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		if _, _, err := b.Exec(ctx, "systemd-run", "--wait", "--quiet", "true"); err != nil {
			t.Errorf("boot %d: %v", i+1, err)
		}
		cancel()
		closeAndCheck(t, b, b.dir)
	}
}

// Boxes side by side (in one process, or in parallel test processes) must not share cgroups:
// otherwise stopping a unit, or powering off, in one box kills processes of the other.
func TestConcurrentBoxes(t *testing.T) {
	a, b := New(t, Options{}), New(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, x := range []*Box{a, b} {
		if _, _, err := x.Exec(ctx, "systemd-run", "--unit=sdbox-same", "sleep", "300"); err != nil {
			t.Fatal(err)
		}
	}
	cgA, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", a.PID()))
	cgB, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", b.PID()))
	if string(cgA) == string(cgB) {
		t.Errorf("both boxes' systemd run in the same cgroups:\n%s", cgA)
	}
	if _, _, err := a.Exec(ctx, "systemctl", "stop", "sdbox-same.service"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _, err := b.Exec(ctx, "systemctl", "is-active", "sdbox-same.service"); err != nil {
		t.Errorf("after stopping it in the other box and powering that off, sdbox-same.service = %q, %v; want active", out, err)
	}
	if out, _, err := b.Exec(ctx, "systemctl", "is-system-running"); err != nil {
		t.Errorf("the other box: is-system-running = %q, %v", out, err)
	}
}

func TestCleanupStale(t *testing.T) {
	b := New(t, Options{})
	// Play a crashed run: the owner is gone (PID 0 is nobody) and nspawn was
	// killed, leaving the container's systemd orphaned and the mounts in place.
	state := "owner=0:0\nnspawn=" + refOf(b.cmd.Process.Pid).String() + "\npid1=" + refOf(b.pid1).String() + "\n"
	if err := os.WriteFile(filepath.Join(b.dir, "state"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	pid1 := refOf(b.pid1)
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("systemd-nspawn did not exit after SIGKILL")
	}

	// A fresh directory without a state file may be a box being set up: left alone.
	young, err := os.MkdirTemp(runDir, dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(young)

	if err := CleanupStale(); err != nil {
		t.Errorf("CleanupStale: %v", err)
	}
	if pid1.alive() {
		t.Errorf("the orphaned container's systemd (pid %d) still runs", pid1.pid)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("CleanupStale removed a young directory: %v", err)
	}
	closeAndCheck(t, b, b.dir) // Close after the cleanup is fine too
}

func TestBootNeedsValidMask(t *testing.T) {
	_, err := Boot(context.Background(), Options{Mask: []string{"../etc/passwd"}})
	if err == nil {
		t.Fatal("Boot with a path as unit name: want an error")
	}
}

func TestBootNeedsValidNetNS(t *testing.T) {
	for _, p := range []string{"run/netns/x", "/run/netns/sdbox-test-does-not-exist", "/proc/self/ns/mnt"} {
		if _, err := Boot(context.Background(), Options{NetNS: p}); err == nil {
			t.Errorf("Boot with NetNS %q: want an error", p)
		}
	}
}

// closeAndCheck closes b and checks that nothing is left: no mount, no directory, no nspawn.
func closeAndCheck(t *testing.T, b *Box, dir string) {
	t.Helper()
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	t.Logf("Close took %s", time.Since(start).Round(time.Millisecond))
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-b.Done():
	default:
		t.Error("systemd-nspawn still runs after Close")
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mountinfo), dir) {
		t.Errorf("mounts left under %s:\n%s", dir, mountinfo)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
