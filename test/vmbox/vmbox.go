package vmbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// Options configure Run.
type Options struct {
	// Command is run by /bin/sh as root in the guest, in ShareDir, once its systemd is up
	// (systemctl is-system-running --wait).
	Command string
	// Files are copied into the shared folder before the boot: name in ShareDir -> path on
	// the host.
	Files map[string]string
	// Output receives the command's output (stdout and stderr) as it comes, besides
	// Result.Output.
	Output io.Writer
	// Mask lists units to mask in the guest in addition to sdbox.DefaultMask and the gettys.
	Mask []string
	// CPUs and MemoryMiB size the machine: 2 and 2048 when zero.
	CPUs, MemoryMiB int
	// Timeout bounds the whole run, boot included: 20 minutes when zero.
	Timeout time.Duration
	// Cache is where the kernel is kept: CacheDir() when empty.
	Cache string
}

// Result is what a run left.
type Result struct {
	ExitCode int           // the command's exit status
	Output   string        // its output
	Boot     time.Duration // from starting QEMU to starting the command
	Total    time.Duration // from starting QEMU to its exit
	Kernel   string        // the kernel package booted
}

// Available reports why QEMU cannot run here, or "" if it can.
func Available() string { return available(exec.LookPath, os.Geteuid()) }

func available(lookPath func(string) (string, error), euid int) string {
	if _, err := lookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 is not installed (Debian's qemu-system-x86; make deps installs it)"
	}
	if euid != 0 {
		return "the VM needs root (it downloads the kernel with apt-get and exports / to the guest)"
	}
	return ""
}

// Masks are the units every run masks: sdbox.DefaultMask and the consoles' gettys.
func Masks(extra ...string) []string {
	return append(append(sdbox.DefaultMask(), "serial-getty@ttyS0.service", "getty@tty1.service"), extra...)
}

// Run boots a machine, runs o.Command in it and powers it off. It returns an error when the
// machine could not boot or did not finish the command, with the end of its console; a
// command that fails is not an error (Result.ExitCode).
func Run(ctx context.Context, o Options) (*Result, error) {
	if why := Available(); why != "" {
		return nil, errors.New("vmbox: " + why)
	}
	o = o.withDefaults()
	if o.Cache == "" {
		c, err := CacheDir()
		if err != nil {
			return nil, err
		}
		o.Cache = c
	}
	masks := Masks(o.Mask...)
	a, err := Prepare(ctx, o.Cache, masks)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vmbox-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		return nil, err
	}
	for name, src := range o.Files {
		if err := copyFile(filepath.Join(share, name), src); err != nil {
			return nil, fmt.Errorf("vmbox: file for the guest: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(share, "run.sh"), []byte(runScript(o.Command)), 0o755); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	console := filepath.Join(dir, "console.log")
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(a, o, share, console)...)
	var qemuOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vmbox: start qemu: %w", err)
	}
	var out bytes.Buffer
	w := io.Writer(&out)
	if o.Output != nil {
		w = io.MultiWriter(&out, o.Output)
	}
	done := make(chan struct{})
	go func() { tail(filepath.Join(share, "out"), w, done); close(done) }()
	werr := cmd.Wait()
	done <- struct{}{}
	<-done

	res := &Result{Output: out.String(), Total: time.Since(start), Kernel: a.Package}
	if up, err := os.ReadFile(filepath.Join(share, "started")); err == nil {
		if s, err := strconv.ParseFloat(strings.TrimSpace(string(up)), 64); err == nil {
			res.Boot = time.Duration(s * float64(time.Second))
		}
	}
	rc, rerr := os.ReadFile(filepath.Join(share, "rc"))
	if rerr != nil {
		why := "the guest did not run the command to its end"
		if ctx.Err() != nil {
			why = fmt.Sprintf("the guest did not finish within %v", o.Timeout)
		}
		return res, fmt.Errorf("vmbox: %s (qemu: %v %s); console:\n%s", why, werr, strings.TrimSpace(qemuOut.String()), lastLines(console, 40))
	}
	res.ExitCode, err = strconv.Atoi(strings.TrimSpace(string(rc)))
	if err != nil {
		return res, fmt.Errorf("vmbox: exit status %q: %w", rc, err)
	}
	return res, nil
}

func (o Options) withDefaults() Options {
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 2048
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Minute
	}
	return o
}

// runScript is run.sh in the shared folder: the guest's runner service runs it. The
// command's exit status lands in rc, last, then the guest powers off at once: everything
// it wrote is in a tmpfs anyway.
func runScript(command string) string {
	return fmt.Sprintf(`#!/bin/sh
cd %[1]s
echo "vmbox: systemd is $(systemctl is-system-running --wait)" >out
read up _ </proc/uptime; echo "$up" >started
/bin/sh -c %[2]s >>out 2>&1 </dev/null
echo $? >rc.tmp && mv rc.tmp rc
sync
systemctl poweroff -ff
`, ShareDir, shellQuote(command))
}

// qemuArgs boots a's kernel with an emulated CPU and no devices but the serial console
// and the two 9p exports.
func qemuArgs(a Assets, o Options, share, console string) []string {
	cmdline := "console=ttyS0 quiet panic=-1 rdinit=/init systemd.unified_cgroup_hierarchy=1 mitigations=off"
	return []string{
		"-accel", "tcg", "-cpu", "max", "-machine", "pc",
		"-smp", strconv.Itoa(o.CPUs), "-m", strconv.Itoa(o.MemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-monitor", "none",
		"-no-reboot", "-serial", "file:" + console,
		"-kernel", a.Kernel, "-initrd", a.Initrd, "-append", cmdline,
		"-virtfs", "local,path=/,mount_tag=" + rootTag + ",security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + share + ",mount_tag=" + shareTag + ",security_model=none,multidevs=remap",
	}
}

// tail copies what is appended to path to w until told to stop on done, then copies the
// rest and returns.
func tail(path string, w io.Writer, done chan struct{}) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		stop := false
		select {
		case <-done:
			stop = true
		case <-time.After(300 * time.Millisecond):
		}
		if f == nil {
			f, _ = os.Open(path)
		}
		if f != nil {
			io.Copy(w, f)
		}
		if stop {
			return
		}
	}
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// lastLines returns the last n lines of a file, for error messages.
func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return LastLines(string(data), n)
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ShellJoin quotes each of args as one word for /bin/sh and joins them.
func ShellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s as one word for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
