// Package sdbox boots a throwaway real systemd for integration tests, on a machine where
// systemd is not PID 1: our Debian 12 build and CI machines, where we are root but PID 1 is
// something else.
//
// A Box is systemd 252 running as PID 1 of a systemd-nspawn container whose root is a
// copy-on-write overlay of the host's root with a tmpfs as upper layer: the container sees the
// host's /usr, /etc and /var (dpkg's database included, so `apt-get install ./x.deb` works
// inside) and everything it changes disappears with Close. It has its own PID, mount, UTS and
// IPC namespaces, its own D-Bus system bus and journald. By default it shares the host's
// network namespace: a socket that systemd opens inside on 127.0.0.1:8080 is reachable from
// the host. With Options.NetNS it runs in the network namespace at that path instead (see
// package test/netns, which makes one with its own address on a veth): it then has that
// namespace's interfaces, addresses and ports, and nothing of the host's network, loopback
// included.
//
//	func TestInstall(t *testing.T) {
//		box := sdbox.New(t, sdbox.Options{})   // boots, or t.Fatal; Close runs in t.Cleanup
//		if err := box.WriteFile("/srv/app.toml", cfg, 0o644); err != nil {
//			t.Fatal(err)
//		}
//		out, _, err := box.Exec(ctx, "systemctl", "start", "app.target")
//		...
//	}
//
// Everything needs root (mounts, systemd-nspawn) and the systemd-container package
// (apt-get install systemd-container).
//
// # NOTES
//
//   - A test that cannot boot fails (New calls t.Fatal): a skipped integration suite tests
//     nothing.
//   - nspawn mounts fresh tmpfs on /tmp and /run inside: a file written there through Root
//     before or after boot is hidden from the container. WriteFile refuses such paths; use
//     /srv or /opt.
//   - The machine image ships /usr/sbin/policy-rc.d (exit 101), which makes
//     deb-systemd-invoke start nothing. Boot deletes it inside the box (a whiteout in the
//     overlay; the host keeps its copy), so a package install really starts its units.
//   - Units enabled on the host are enabled in the box too. Boot masks DefaultMask (daemons
//     that listen on ports, touch the network configuration or take dpkg's lock) plus
//     Options.Mask, with symlinks to /dev/null in the box's /etc/systemd/system.
//   - Without Options.NetNS the network namespace is the host's: pick ports nothing else
//     uses, and expect a port to be busy if something on the host listens on it. With it,
//     the box's ports are its own (two boxes in two namespaces may both listen on
//     0.0.0.0:8080), 127.0.0.1 inside is the namespace's loopback, and the host reaches the
//     box only through the namespace's addresses. Boot checks that the path is a network
//     namespace; it does not create or remove it.
//   - Cgroup controllers are read-only inside (the host's hybrid layout owns them):
//     MemoryCurrent= and CPUUsageNSec= read [not set] and MemoryMax=/CPUQuota= are not
//     enforced. Tests must not depend on them in a Box.
//   - Boxes live under /run/sdbox.XXXXXX. If a test process dies without Close, the next Boot
//     (or CleanupStale) unmounts and removes the leftovers once no systemd-nspawn uses them.
//   - Boxes may run one after the other or side by side, in one process or in several (go
//     test runs packages in parallel). systemd-nspawn --keep-unit puts the container in
//     "payload" below its own cgroup, so each box starts nspawn in its own cgroup,
//     sdbox-XXXXXX below the caller's, in each systemd hierarchy (name=systemd and cgroup2
//     on our hybrid machines); otherwise two boxes would share unit cgroups and kill each
//     other's processes. They do share the host's ports, unless each has its own
//     Options.NetNS.
//   - systemd-nspawn runs in its own process group (a Ctrl-C meant for the test does not
//     power the box off behind its back) with SIGTERM as parent-death signal: if the test
//     process dies, nspawn powers the container off.
package sdbox
