package sdbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors that callers branch on, for example to print what to install.
var (
	ErrNotRoot  = errors.New("sdbox: must run as root (mounts and systemd-nspawn need it): run it with sudo")
	ErrNoNspawn = errors.New("sdbox: systemd-nspawn not found: run 'apt-get install systemd-container'")
)

const (
	// runDir holds every box as runDir/sdbox.XXXXXX; CleanupStale only touches that prefix.
	runDir    = "/run"
	dirPrefix = "sdbox."

	// Bounds of Close: the poweroff request, the orderly shutdown (about 2 s measured) and
	// the wait after SIGKILL.
	poweroffRequestTimeout = 10 * time.Second
	shutdownTimeout        = 30 * time.Second
	killTimeout            = 10 * time.Second
	unmountTimeout         = 5 * time.Second

	// execPath is PATH for commands run inside the box and for systemd-nspawn.
	execPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// DefaultMask returns the units Boot masks in every box: units that, when enabled on the host,
// would start in the box and then listen on the host's ports (the network namespace is
// shared unless Options.NetNS is set), reconfigure the host's network or clock, take dpkg's
// lock while a test installs a package, or run jobs at random times. Masking a unit that is
// not installed is harmless. The result is a fresh slice.
func DefaultMask() []string {
	return []string{
		// databases, web servers, containers: listen on the host's ports
		"postgresql.service", "mysql.service", "mariadb.service", "redis-server.service",
		"memcached.service", "nginx.service", "apache2.service", "docker.service",
		"docker.socket", "containerd.service",
		// load balancer and monitoring (Debian 12's haproxy, prometheus and
		// prometheus-node-exporter enable these; prometheus-node-exporter-collectors
		// enables the timers): listen on 80/443, 9090, 9100 or run jobs at random times
		"haproxy.service", "prometheus.service", "prometheus-node-exporter.service",
		"prometheus-node-exporter-apt.timer", "prometheus-node-exporter-ipmitool-sensor.timer",
		"prometheus-node-exporter-mellanox-hca-temp.timer", "prometheus-node-exporter-nvme.timer",
		"prometheus-node-exporter-smartmon.timer",
		// remote access and mail: listen on 22, 25
		"ssh.service", "ssh.socket", "exim4.service", "postfix.service",
		// network and clock of the shared namespace belong to the host
		"networking.service", "NetworkManager.service", "systemd-networkd.service",
		"systemd-networkd.socket", "systemd-networkd-wait-online.service",
		"systemd-resolved.service", "systemd-timesyncd.service", "chrony.service",
		"ntp.service", "ntpsec.service", "avahi-daemon.service", "avahi-daemon.socket",
		// dpkg/apt lock holders and timed jobs
		"apt-daily.timer", "apt-daily.service", "apt-daily-upgrade.timer",
		"apt-daily-upgrade.service", "unattended-upgrades.service", "dpkg-db-backup.timer",
		"dpkg-db-backup.service", "man-db.timer", "man-db.service", "e2scrub_all.timer",
		"e2scrub_reap.service", "fstrim.timer", "cron.service", "anacron.service",
		"anacron.timer",
	}
}

// Options configure Boot. The zero value is ready to use.
type Options struct {
	// Mask lists units to mask inside the box in addition to DefaultMask, for example a
	// daemon enabled on this host that would interfere. Names only ("foo.service"), no paths.
	Mask []string

	// NetNS, if not empty, is the path of a network namespace the container runs in
	// (systemd-nspawn --network-namespace-path), for example /run/netns/NAME made by
	// `ip netns add` or the Path of a test/netns Host: the box then has that namespace's
	// interfaces, addresses and ports instead of the host's. Empty: the host's network
	// namespace, shared.
	NetNS string

	// Capabilities are added to the container's bounding set
	// (systemd-nspawn --capability), and SystemCalls to its seccomp filter
	// (--system-call-filter): steering in the kernel needs CAP_BPF,
	// CAP_NET_ADMIN, CAP_PERFMON and the bpf and pidfd_getfd system calls (KernelSteering).
	Capabilities, SystemCalls []string

	// Log, if not nil, receives the tail of the container's console log and the boot jobs
	// still pending when Boot fails. Nil: the details are dropped (the error still says what
	// failed).
	Log io.Writer
}

// KernelSteering are the Options under which corrald can steer connections
// in the kernel inside a box (docs/steering.md): systemd-nspawn keeps
// CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON from a container, and the bpf and pidfd_getfd
// system calls, by default; CAP_SYS_PTRACE it keeps.
func KernelSteering(o Options) Options {
	o.Capabilities = append(o.Capabilities, "CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON")
	o.SystemCalls = append(o.SystemCalls, "bpf", "pidfd_getfd")
	return o
}

// A Box is a running systemd in a container. Its methods are safe for concurrent use; Close
// ends it.
type Box struct {
	dir   string   // runDir/sdbox.XXXXXX: a tmpfs holding upper, work, root, console.log, state
	name  string   // machine name (hostname inside)
	netns string   // Options.NetNS: the network namespace's path, or "" for the host's
	caps  []string // Options.Capabilities
	calls []string // Options.SystemCalls

	cgroups []string // the box's own cgroup in each systemd hierarchy (see cgroup.go)

	cmd    *exec.Cmd     // systemd-nspawn
	exited chan struct{} // closed when systemd-nspawn has exited

	pid1  int // the container's systemd on the host, 0 until found
	pidfd int // pidfd of pid1, -1 if none

	closeOnce sync.Once
	closeErr  error
}

// Boot starts a real systemd as PID 1 of a systemd-nspawn container over a copy-on-write
// overlay of the host's root (tmpfs upper), waits until `systemctl is-system-running` says
// running or degraded, and returns the box. ctx bounds the boot only; the box lives until
// Close. Before booting, Boot removes /usr/sbin/policy-rc.d inside the box, masks
// DefaultMask and opts.Mask, and calls CleanupStale (ignoring its error).
//
// On error nothing is left behind: no mount, no process, no directory.
func Boot(ctx context.Context, opts Options) (*Box, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	nspawn, err := exec.LookPath("systemd-nspawn")
	if err != nil {
		return nil, ErrNoNspawn
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return nil, fmt.Errorf("sdbox: nsenter not found: run 'apt-get install util-linux': %w", err)
	}
	masks := append(DefaultMask(), opts.Mask...)
	for _, u := range masks {
		if err := checkUnitName(u); err != nil {
			return nil, err
		}
	}
	if opts.NetNS != "" {
		if err := checkNetNS(opts.NetNS); err != nil {
			return nil, err
		}
	}
	_ = CleanupStale()

	dir, err := os.MkdirTemp(runDir, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("sdbox: create box directory: %w", err)
	}
	b := &Box{
		dir:    dir,
		name:   "sdbox-" + strings.TrimPrefix(filepath.Base(dir), dirPrefix),
		netns:  opts.NetNS,
		caps:   opts.Capabilities,
		calls:  opts.SystemCalls,
		exited: make(chan struct{}),
		pidfd:  -1,
	}
	fail := func(err error) (*Box, error) {
		if opts.Log != nil {
			b.report(opts.Log)
		}
		if cerr := b.Close(); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
		}
		return nil, err
	}
	if err := b.mount(); err != nil {
		return fail(err)
	}
	if err := b.writeState(); err != nil {
		return fail(err)
	}
	if err := b.prepare(masks); err != nil {
		return fail(err)
	}
	if err := b.start(nspawn); err != nil {
		return fail(err)
	}
	if err := b.findPID1(ctx); err != nil {
		return fail(err)
	}
	if err := b.writeState(); err != nil {
		return fail(err)
	}
	if err := b.waitRunning(ctx); err != nil {
		return fail(err)
	}
	return b, nil
}

// mount mounts a tmpfs on b.dir and the overlay of / on b.dir/root.
func (b *Box) mount() error {
	if err := unix.Mount("tmpfs", b.dir, "tmpfs", 0, "mode=0700"); err != nil {
		return fmt.Errorf("sdbox: mount tmpfs on %s: %w", b.dir, err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(b.dir, d), 0o755); err != nil {
			return fmt.Errorf("sdbox: %w", err)
		}
	}
	data := fmt.Sprintf("lowerdir=/,upperdir=%s/upper,workdir=%s/work", b.dir, b.dir)
	if err := unix.Mount("overlay", b.Root(), "overlay", 0, data); err != nil {
		return fmt.Errorf("sdbox: mount overlay of / on %s: %w", b.Root(), err)
	}
	return nil
}

// prepare edits the box's root before boot: no policy-rc.d, masked units.
func (b *Box) prepare(masks []string) error {
	r, err := os.OpenRoot(b.Root())
	if err != nil {
		return fmt.Errorf("sdbox: %w", err)
	}
	defer r.Close()
	if err := r.Remove("usr/sbin/policy-rc.d"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sdbox: remove policy-rc.d in the box: %w", err)
	}
	for _, u := range masks {
		link := path.Join("etc/systemd/system", u)
		if err := r.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sdbox: mask %s: %w", u, err)
		}
		if err := r.Symlink("/dev/null", link); err != nil {
			return fmt.Errorf("sdbox: mask %s: %w", u, err)
		}
	}
	return nil
}

// start runs systemd-nspawn and the goroutine that owns its exit.
func (b *Box) start(nspawn string) error {
	procs, err := b.makeCgroups()
	if err != nil {
		return err
	}
	console, err := os.OpenFile(b.consolePath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sdbox: %w", err)
	}
	defer console.Close() // the child holds its own copy
	// A shell joins the box's cgroups, then becomes systemd-nspawn (same PID).
	const joinThenExec = `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; shift; n=$((n-1)); done; exec "$@"`
	args := append([]string{"-c", joinThenExec, "sdbox", strconv.Itoa(len(procs))}, procs...)
	args = append(args, nspawn,
		"--quiet",
		"--register=no", "--keep-unit", // no host systemd, no machined
		"--machine="+b.name,
		"--directory="+b.Root(),
		"--boot",
		"--console=read-only",
		"--link-journal=no", // the journal stays in the box
	)
	if b.netns != "" {
		args = append(args, "--network-namespace-path="+b.netns)
	}
	if len(b.caps) > 0 {
		args = append(args, "--capability="+strings.Join(b.caps, ","))
	}
	if len(b.calls) > 0 {
		args = append(args, "--system-call-filter="+strings.Join(b.calls, " "))
	}
	b.cmd = exec.Command("/bin/sh", args...)
	b.cmd.Env = []string{"PATH=" + execPath}
	b.cmd.Stdout = console
	b.cmd.Stderr = console
	b.cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // the terminal's Ctrl-C is for us, not for nspawn
		Pdeathsig: syscall.SIGTERM, // if we die, nspawn powers the container off
	}
	if err := b.cmd.Start(); err != nil {
		b.cmd = nil
		return fmt.Errorf("sdbox: start systemd-nspawn: %w", err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.exited)
	}()
	return nil
}

// findPID1 finds the container's systemd: a child (or grandchild) of systemd-nspawn whose
// comm is "systemd" and whose PID in its own namespace is 1.
func (b *Box) findPID1(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if pid := findInit(b.cmd.Process.Pid); pid > 0 {
			b.pid1 = pid
			if fd, err := unix.PidfdOpen(pid, 0); err == nil {
				b.pidfd = fd
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sdbox: wait for the container's systemd (child of systemd-nspawn %d): %w",
				b.cmd.Process.Pid, context.Cause(ctx))
		case <-b.exited:
			return fmt.Errorf("sdbox: systemd-nspawn exited during boot: %s", b.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

// waitRunning waits for `systemctl is-system-running --wait` to say running or degraded.
func (b *Box) waitRunning(ctx context.Context) error {
	var last string
	for {
		out, _, err := b.Exec(ctx, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		switch state {
		case "running", "degraded":
			return nil
		case "maintenance", "stopping":
			return fmt.Errorf("sdbox: boot: systemd is %s", state)
		}
		if state != "" {
			last = state
		} else if err != nil {
			last = err.Error() // typically: the bus is not up yet
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sdbox: boot: systemd not running or degraded (last: %s): %w", last, context.Cause(ctx))
		case <-b.exited:
			return fmt.Errorf("sdbox: systemd-nspawn exited during boot: %s", b.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Root returns the path on the host of the container's root (the overlay mount). Files
// written under it appear in the container, except under /tmp and /run, which nspawn and
// systemd cover with tmpfs inside. Prefer WriteFile, which refuses those paths and does not
// follow symlinks out of the box.
func (b *Box) Root() string { return filepath.Join(b.dir, "root") }

// PID returns the host PID of the container's systemd (PID 1 inside): `nsenter -t PID -a`
// enters the box.
func (b *Box) PID() int { return b.pid1 }

// Done returns a channel that is closed when systemd-nspawn has exited: after Close, or when
// the container died on its own.
func (b *Box) Done() <-chan struct{} { return b.exited }

// Command returns a command that runs args inside the box, in all its namespaces, with a clean
// environment (PATH, HOME=/root, LANG=C.UTF-8). Set Stdin, Stdout and Stderr as with any
// exec.Cmd. Cancelling ctx kills nsenter; the program inside may outlive it until Close.
func (b *Box) Command(ctx context.Context, args ...string) *exec.Cmd {
	nsargs := append([]string{"--target", strconv.Itoa(b.pid1), "--all", "--root", "--wd", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsargs...)
	cmd.Env = []string{"PATH=" + execPath, "HOME=/root", "LANG=C.UTF-8"}
	cmd.WaitDelay = 5 * time.Second // a daemon started inside may hold our pipes
	return cmd
}

// Exec runs args inside the box and returns what it wrote. The error names the command and
// includes the exit status (errors.As finds the *exec.ExitError) and the trimmed stderr.
func (b *Box) Exec(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	if len(args) == 0 {
		return "", "", errors.New("sdbox: exec: no command")
	}
	var o, e bytes.Buffer
	cmd := b.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(e.String())
		if msg != "" {
			msg = ": " + msg
		}
		return o.String(), e.String(), fmt.Errorf("sdbox: exec %q: %w%s", args, err, msg)
	}
	return o.String(), e.String(), nil
}

// WriteFile writes data to the file at path inside the box (absolute, as the container sees
// it), creating parent directories with mode 0755 and setting perm exactly. It writes
// through the overlay, so the container sees the file at once, before or after boot. It
// refuses paths under /tmp, /run, /dev, /proc and /sys (covered inside the container) and
// never follows a symlink out of the box: an absolute symlink on the way is an error.
func (b *Box) WriteFile(name string, data []byte, perm os.FileMode) error {
	rel, err := boxPath(name)
	if err != nil {
		return err
	}
	r, err := os.OpenRoot(b.Root())
	if err != nil {
		return fmt.Errorf("sdbox: write %s: %w", name, err)
	}
	defer r.Close()
	if dir := path.Dir(rel); dir != "." {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("sdbox: write %s: %w", name, err)
		}
	}
	if err := r.WriteFile(rel, data, perm); err != nil {
		return fmt.Errorf("sdbox: write %s: %w", name, err)
	}
	if err := r.Chmod(rel, perm); err != nil { // WriteFile keeps an old file's mode and applies the umask
		return fmt.Errorf("sdbox: write %s: %w", name, err)
	}
	return nil
}

// boxPath checks a path inside the box for WriteFile and returns it relative to the root.
func boxPath(name string) (string, error) {
	if !path.IsAbs(name) || path.Clean(name) != name || name == "/" {
		return "", fmt.Errorf("sdbox: write %q: want a clean absolute path of a file inside the box", name)
	}
	for _, hidden := range []string{"/tmp", "/run", "/dev", "/proc", "/sys"} {
		if name == hidden || strings.HasPrefix(name, hidden+"/") {
			return "", fmt.Errorf("sdbox: write %s: %s is covered by another file system inside the box; use /srv or /opt", name, hidden)
		}
	}
	return strings.TrimPrefix(name, "/"), nil
}

// checkUnitName accepts a unit name for masking: no path, a type suffix.
func checkUnitName(u string) error {
	if u == "" || strings.ContainsAny(u, "/\x00") || strings.HasPrefix(u, ".") || !strings.Contains(u, ".") {
		return fmt.Errorf("sdbox: mask %q: want a unit name such as foo.service", u)
	}
	return nil
}

// checkNetNS checks Options.NetNS: the absolute path of a network namespace (an nsfs file
// of type CLONE_NEWNET), so that a wrong path fails Boot with a clear error rather than in
// the console log of a container that never started.
func checkNetNS(p string) error {
	const want = "want the absolute path of a network namespace, such as /run/netns/NAME"
	if !filepath.IsAbs(p) {
		return fmt.Errorf("sdbox: Options.NetNS %q: %s", p, want)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("sdbox: Options.NetNS: %w: create it first (netns.New, or ip netns add NAME)", err)
	}
	defer f.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return fmt.Errorf("sdbox: Options.NetNS %s: %w", p, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("sdbox: Options.NetNS %s is not a namespace file: %s", p, want)
	}
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("sdbox: Options.NetNS %s: namespace type: %w", p, err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("sdbox: Options.NetNS %s is a namespace of another kind: %s", p, want)
	}
	return nil
}

// Close powers the box off and removes it: `systemctl poweroff`, a bounded wait for
// systemd-nspawn to exit, then SIGKILL to the container's systemd and to nspawn (by PID), then
// it unmounts the overlay and the tmpfs and removes the directory. Every wait is bounded;
// Close takes about 0.1 s normally and about a minute at worst. It is idempotent,
// safe for concurrent use and on a nil *Box, and always safe to defer. The error reports
// what could not be cleaned up.
func (b *Box) Close() error {
	if b == nil {
		return nil
	}
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Box) close() error {
	var errs []error
	if b.cmd != nil {
		errs = append(errs, b.shutdown())
	}
	if b.pidfd >= 0 {
		unix.Close(b.pidfd)
		b.pidfd = -1
	}
	errs = append(errs, b.removeCgroups()) // before the directory: see removeStaleCgroups
	errs = append(errs, b.unmount())
	// nspawn's own leftovers, if it was killed: only our machine's.
	_ = os.Remove(filepath.Join("/run/systemd/nspawn/propagate", b.name))
	return errors.Join(errs...)
}

// shutdown stops the container and waits for systemd-nspawn to exit, escalating to SIGKILL.
func (b *Box) shutdown() error {
	select {
	case <-b.exited:
		return nil
	default:
	}
	asked := false
	if b.pid1 > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), poweroffRequestTimeout)
		_, _, err := b.Exec(ctx, "systemctl", "poweroff", "--no-block")
		cancel()
		asked = err == nil
	}
	if !asked {
		// nspawn turns SIGTERM into SIGRTMIN+3 for the container's systemd: poweroff.
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-b.exited:
		return nil
	case <-time.After(shutdownTimeout):
	}
	if b.pidfd >= 0 {
		_ = unix.PidfdSendSignal(b.pidfd, unix.SIGKILL, nil, 0) // ends the whole PID namespace
	}
	_ = b.cmd.Process.Kill()
	select {
	case <-b.exited:
		return fmt.Errorf("sdbox: %s did not power off within %s; killed it", b.name, shutdownTimeout)
	case <-time.After(killTimeout):
		return fmt.Errorf("sdbox: systemd-nspawn (pid %d) did not exit after SIGKILL", b.cmd.Process.Pid)
	}
}

// unmount unmounts the overlay and the tmpfs and removes the directory.
func (b *Box) unmount() error {
	if err := unmountAll(b.dir); err != nil {
		return err
	}
	if err := os.Remove(b.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sdbox: %w", err)
	}
	return nil
}

// unmountAll unmounts every mount at or below dir, deepest first, retrying while busy.
func unmountAll(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		errs = append(errs, unmount(mounts[i]))
	}
	return errors.Join(errs...)
}

// unmount unmounts target, retrying for a while if it is busy, then detaching it lazily.
func unmount(target string) error {
	deadline := time.Now().Add(unmountTimeout)
	for {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // EINVAL: not (or no longer) a mount point
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
		default:
			if derr := unix.Unmount(target, unix.MNT_DETACH); derr == nil {
				return fmt.Errorf("sdbox: unmount %s: %w (detached lazily)", target, err)
			}
			return fmt.Errorf("sdbox: unmount %s: %w", target, err)
		}
	}
}

func (b *Box) consolePath() string { return filepath.Join(b.dir, "console.log") }

// report writes what helps to understand a failed boot: the console's tail and pending jobs.
func (b *Box) report(w io.Writer) {
	fmt.Fprintf(w, "--- %s: last lines of the console log\n%s\n", b.name, b.consoleTail(60))
	if b.pid1 == 0 {
		return
	}
	select {
	case <-b.exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _, err := b.Exec(ctx, "systemctl", "list-jobs", "--no-pager")
	if err != nil {
		out = err.Error()
	}
	fmt.Fprintf(w, "--- %s: systemctl list-jobs\n%s\n", b.name, out)
}

// consoleTail returns the last n lines of the console log.
func (b *Box) consoleTail(n int) string {
	data, err := os.ReadFile(b.consolePath())
	if err != nil {
		return err.Error()
	}
	return tail(string(data), n)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
