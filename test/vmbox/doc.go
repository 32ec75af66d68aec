// Package vmbox boots a real systemd with a full cgroup v2 (cpu, memory, io and pids
// controllers) in a QEMU virtual machine, for the checks a container cannot make:
// MemoryMax= and CPUQuota= enforced by the kernel, real CPU and memory accounting, the OOM
// killer, pressure stall information.
//
// The machine boots Debian's own kernel, downloaded with apt-get download and unpacked,
// never installed, and a small initramfs (busybox-static, from Debian too) that loads the
// virtio and 9p modules, mounts the host's root read-only over 9p, lays a tmpfs over it
// (overlayfs) and hands over to the host's own systemd. So the guest runs the host's /usr,
// /etc and /var, dpkg's database included, and `apt-get install ./x.deb` works inside;
// everything it writes disappears with it. It has no network device: only its own
// loopback.
//
// One Run is one boot: the command runs as root in a system service once the guest's
// systemd is up, its output streams to the caller, and the guest powers off when it ends.
// Files the guest must read or write go through a shared folder, /mnt/share inside.
//
//	res, err := vmbox.Run(ctx, vmbox.Options{
//		Files:   map[string]string{"checks.test": bin},
//		Command: "/mnt/share/checks.test -test.v",
//		Output:  os.Stderr,
//	})
//
// # NOTES
//
//   - Everything needs root, qemu-system-x86_64 (Debian's qemu-system-x86) and apt-get
//     access to Debian's archive for the first run; the kernel and busybox are kept in
//     the user's cache directory (CacheDir) after that.
//   - There is no usable hardware virtualisation on our machines, so QEMU emulates the CPU
//     (TCG): CPU-bound code runs about 15 times slower than on the host, fork and exec about
//     100 times, and a boot takes 10 to 20 s. Boot once for a batch of checks.
//   - Units enabled on the host are enabled in the guest too; Run masks sdbox.DefaultMask
//     and the consoles' gettys, and removes /usr/sbin/policy-rc.d, as sdbox does.
//   - The kernel's modules are not installed in the guest: the initramfs loads the few the
//     tests need (Modules) and nothing can load others.
package vmbox
