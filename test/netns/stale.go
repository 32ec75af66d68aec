package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// CleanupStale removes what test processes that died without Close left behind. It looks
// only at names this package makes (corral-X-Y: namespaces in /run/netns, interfaces, lock
// files in /run, and last-resort routes with metric 4294967295), and removes a name's
// leftovers when its lock is free (the process that made it is gone) and no process runs in
// its namespace.
//
// It is best effort: it goes on past errors and returns them joined. New calls it; running
// it while other processes make or use Hosts is safe.
func CleanupStale(ctx context.Context) error {
	ip, err := prerequisites()
	if err != nil {
		return err
	}
	return cleanupStale(ctx, ip)
}

func cleanupStale(ctx context.Context, ip string) error {
	var errs []error
	names := map[string]bool{}
	add := func(name string) {
		if _, ok := parseName(name); ok {
			names[name] = true
		}
	}
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("netns: %w", err))
	}
	for _, e := range ents {
		add(e.Name())
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		errs = append(errs, fmt.Errorf("netns: list interfaces: %w", err))
	}
	for _, i := range ifaces {
		add(i.Name)
	}
	locks, _ := filepath.Glob(filepath.Join(runDir, namePrefix+"*"+lockSuffix))
	for _, l := range locks {
		add(strings.TrimSuffix(filepath.Base(l), lockSuffix))
	}
	routes, err := listRoutes(ctx, ip)
	errs = append(errs, err)
	for _, r := range routes {
		if p, ok := r.prefix(); ok && p.Bits() == 24 && private10.Contains(p.Addr()) && r.isGuard(p) {
			add(nameFor(p))
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, name := range sorted {
		errs = append(errs, cleanupName(ip, name))
	}
	return errors.Join(errs...)
}

// cleanupName removes the leftovers of name unless a live process holds its lock or runs in
// its namespace.
func cleanupName(ip, name string) error {
	subnet, _ := parseName(name)
	h := newHost(ip, subnet)
	f, err := lock(name)
	if errors.Is(err, errTaken) {
		return nil // a live Host
	}
	if err != nil {
		return err
	}
	busy, err := inUse(h.Path)
	if err == nil && !busy {
		err = h.remove()
	}
	if err != nil {
		err = fmt.Errorf("netns: stale %s: %w", name, err)
	}
	return errors.Join(err, unlock(name, f))
}

// inUse reports whether a process runs in the network namespace at path (false if there is
// no such file).
func inUse(path string) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("netns: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("netns: stat %s: no inode", path)
	}
	want := netLink(st.Ino)
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false, fmt.Errorf("netns: %w", err)
	}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "ns/net")); err == nil && l == want {
			return true, nil
		}
	}
	return false, nil
}

// netLink returns what /proc/PID/ns/net links to for the namespace of inode ino.
func netLink(ino uint64) string { return "net:[" + strconv.FormatUint(ino, 10) + "]" }
