package vmbox

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Modules are the kernel modules the initramfs loads, with their dependencies before them:
// virtio_pci and 9p for the host's root, overlay for the guest's writable layer, and
// inet_diag/tcp_diag for the sock_diag queries of corrald (listenq).
var Modules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay", "inet_diag", "tcp_diag"}

// shareTag and rootTag name the two 9p exports; ShareDir is where the guest mounts the
// shared folder.
const (
	rootTag  = "hostroot"
	shareTag = "share"
	ShareDir = "/mnt/share"
)

// runnerUnit is the guest's service that runs Options.Command.
const runnerUnit = "vmbox-run.service"

// initScript is /init of the initramfs: it loads the modules, builds the guest's root (the
// host's root over 9p, read-only, under a tmpfs) and starts systemd in it, masking masks
// and enabling runnerUnit.
func initScript(mods, masks []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "vmbox: $*"; poweroff -f; }
`)
	for _, m := range mods {
		fmt.Fprintf(&b, "insmod /mod/%s.ko || fail 'insmod %s'\n", m, m)
	}
	fmt.Fprintf(&b, `mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose %[1]s /lower || fail 'mount the host root'
mount -t tmpfs -o mode=0755,size=75%% upper /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /root || fail 'overlay'
# The guest's own empty /tmp: systemd-tmpfiles would empty the host's over 9p, file by
# file, at every boot (minutes).
mount -t tmpfs -o mode=1777,nosuid,nodev tmp /root/tmp
mkdir -p /root%[3]s
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none %[2]s /root%[3]s || fail 'mount the shared folder'
# The host may be a container: without this systemd would think so too, and ignore
# the kernel command line.
rm -f /root/.dockerenv /root/run/.containerenv
# deb-systemd-invoke would start nothing (exit 101).
rm -f /root/usr/sbin/policy-rc.d
# man-db's trigger rebuilds its index at every package install: minutes under emulation.
rm -f /root/var/lib/man-db/auto-update
`, rootTag, shareTag, ShareDir)
	for _, u := range masks {
		fmt.Fprintf(&b, "ln -sf /dev/null '/root/etc/systemd/system/%s'\n", u)
	}
	fmt.Fprintf(&b, `cat >/root/etc/systemd/system/%[1]s <<'EOF'
[Unit]
Description=vmbox: the command of the run
After=basic.target
[Service]
Type=simple
ExecStart=/bin/sh %[2]s/run.sh
EOF
mkdir -p /root/etc/systemd/system/multi-user.target.wants
ln -sf ../%[1]s /root/etc/systemd/system/multi-user.target.wants/%[1]s
umount /proc /sys /dev
exec switch_root /root /lib/systemd/systemd
`, runnerUnit, ShareDir)
	return b.String()
}

// moduleFiles returns the paths of mods and of the modules they depend on, each after its
// dependencies, found under dir (a kernel's lib/modules/VERSION). Dependencies come from
// each module's .modinfo section ("depends=a,b").
func moduleFiles(dir string, mods []string) ([]string, error) {
	byName := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(d.Name(), ".ko"); ok && !d.IsDir() {
			byName[strings.ReplaceAll(name, "-", "_")] = path
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(m string, chain []string) error
	visit = func(m string, chain []string) error {
		switch state[m] {
		case 1:
			return fmt.Errorf("module %s depends on itself through %s", m, strings.Join(chain, " -> "))
		case 2:
			return nil
		}
		path, ok := byName[m]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) is not in %s: is the kernel built with it as a module?", m, strings.Join(chain, " -> "), dir)
		}
		state[m] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, m)); err != nil {
				return err
			}
		}
		state[m] = 2
		order = append(order, path)
		return nil
	}
	for _, m := range mods {
		if err := visit(m, []string{"initramfs"}); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDepends reads the "depends=" entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	return parseDepends(data), nil
}

// parseDepends returns the modules named by the "depends=" entry of modinfo data
// (NUL-separated key=value entries).
func parseDepends(modinfo []byte) []string {
	for _, e := range bytes.Split(modinfo, []byte{0}) {
		if v, ok := bytes.CutPrefix(e, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps
		}
	}
	return nil
}

// cpioFile is one entry of an initramfs.
type cpioFile struct {
	name string // without a leading "/"
	mode uint32 // type and permission bits, as in stat(2)
	data []byte
}

const (
	modeDir = 0o040000
	modeReg = 0o100000
)

// writeCPIO writes files as a gzip-compressed cpio archive in the "newc" format, which the
// kernel unpacks as the initramfs.
func writeCPIO(w io.Writer, files []cpioFile) error {
	z := gzip.NewWriter(w)
	for i, f := range append(files, cpioFile{name: "TRAILER!!!"}) {
		name := f.name + "\x00"
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			i+1, f.mode, 0, 0, 1, 0, len(f.data), 0, 0, 0, 0, len(name), 0)
		if _, err := io.WriteString(z, hdr+name+pad(len(hdr)+len(name))); err != nil {
			return err
		}
		if _, err := z.Write(f.data); err != nil {
			return err
		}
		if _, err := io.WriteString(z, pad(len(f.data))); err != nil {
			return err
		}
	}
	return z.Close()
}

// pad returns the NULs that align n bytes to 4.
func pad(n int) string { return strings.Repeat("\x00", (4-n%4)%4) }

// buildInitrd writes the initramfs: busybox, the modules and /init.
func buildInitrd(path, busybox, modDir string, masks []string) error {
	mods, err := moduleFiles(modDir, Modules)
	if err != nil {
		return err
	}
	files := []cpioFile{}
	for _, d := range []string{"bin", "mod", "proc", "sys", "dev", "lower", "rw", "root"} {
		files = append(files, cpioFile{name: d, mode: modeDir | 0o755})
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	files = append(files, cpioFile{name: "bin/busybox", mode: modeReg | 0o755, data: bb})
	var names []string
	for _, m := range mods {
		data, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		names = append(names, name)
		files = append(files, cpioFile{name: "mod/" + name + ".ko", mode: modeReg | 0o644, data: data})
	}
	files = append(files, cpioFile{name: "init", mode: modeReg | 0o755, data: []byte(initScript(names, masks))})
	var buf bytes.Buffer
	if err := writeCPIO(&buf, files); err != nil {
		return err
	}
	return writeAtomic(path, buf.Bytes())
}

// writeAtomic writes data to path through a temporary file in the same folder.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
