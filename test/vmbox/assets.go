package vmbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Assets are the files a boot needs.
type Assets struct {
	Package string // Debian's kernel package, such as linux-image-6.1.0-57-amd64
	Kernel  string // its vmlinuz
	Initrd  string // the initramfs for it
}

// CacheDir returns where Prepare keeps the kernel and busybox between runs: corral-vm in
// the user's cache directory.
func CacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("vmbox: no cache directory for the kernel (%w)", err)
	}
	return filepath.Join(dir, "corral-vm"), nil
}

// Prepare returns the assets for a boot that masks masks, downloading Debian's current
// kernel (the one linux-image-amd64 depends on) and busybox-static into cache/PACKAGE the
// first time, and building the initramfs when none matches.
func Prepare(ctx context.Context, cache string, masks []string) (Assets, error) {
	pkg, err := kernelPackage(ctx)
	if err != nil {
		return Assets{}, err
	}
	dir := filepath.Join(cache, pkg)
	if _, err := os.Stat(filepath.Join(dir, "unpacked")); err != nil {
		if err := unpack(ctx, dir, pkg, "busybox-static"); err != nil {
			return Assets{}, err
		}
	}
	a := Assets{Package: pkg}
	kernels, _ := filepath.Glob(filepath.Join(dir, pkg, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(dir, pkg, "lib", "modules", "*"))
	if len(kernels) != 1 || len(mods) != 1 {
		return Assets{}, fmt.Errorf("vmbox: %s in %s has %d kernels and %d module trees, want one of each: remove %s and run again", pkg, dir, len(kernels), len(mods), dir)
	}
	a.Kernel = kernels[0]
	busybox := filepath.Join(dir, "busybox-static", "bin", "busybox")
	sum := sha256.Sum256([]byte(initScript(Modules, masks) + strings.Join(Modules, ",")))
	a.Initrd = filepath.Join(dir, "initrd-"+hex.EncodeToString(sum[:6])+".img")
	if _, err := os.Stat(a.Initrd); err == nil {
		return a, nil
	}
	if err := buildInitrd(a.Initrd, busybox, mods[0], masks); err != nil {
		return Assets{}, fmt.Errorf("vmbox: initramfs for %s: %w", pkg, err)
	}
	return a, nil
}

// kernelPackage returns the kernel package that linux-image-amd64 depends on.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := command(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", fmt.Errorf("vmbox: which kernel: %w (run apt-get update)", err)
	}
	return kernelOf(out)
}

// kernelOf reads the kernel package out of `apt-cache depends linux-image-amd64`.
func kernelOf(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("vmbox: apt-cache depends linux-image-amd64 names no kernel package: run apt-get update and try again")
}

// unpack downloads pkgs with apt-get download and unpacks each into dir/PACKAGE with
// dpkg-deb -x: nothing is installed.
func unpack(ctx context.Context, dir string, pkgs ...string) error {
	dl := filepath.Join(dir, "download")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := command(ctx, dl, "apt-get", append([]string{"download", "-q"}, pkgs...)...); err != nil {
		return fmt.Errorf("vmbox: download the kernel: %w (check that apt reaches Debian's archive; apt-get update)", err)
	}
	for _, p := range pkgs {
		debs, _ := filepath.Glob(filepath.Join(dl, p+"_*.deb"))
		if len(debs) != 1 {
			return fmt.Errorf("vmbox: apt-get download %s left %d files in %s, want 1", p, len(debs), dl)
		}
		if _, err := command(ctx, "", "dpkg-deb", "-x", debs[0], filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("vmbox: unpack %s: %w", p, err)
		}
	}
	if err := os.RemoveAll(dl); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "unpacked"), nil, 0o644)
}

// command runs name in dir and returns its output; the error carries stderr.
func command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
