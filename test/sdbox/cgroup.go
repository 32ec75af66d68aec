package sdbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// With --keep-unit, systemd-nspawn creates "payload" (the container) and "supervisor"
// (itself) below its own cgroup, in each hierarchy systemd uses. Two nspawns in one cgroup
// would share /payload, so the systemd of one box would kill processes of the other when it
// stops a unit of the same name, or when it powers off. So every box gets its own cgroup,
// sdbox-XXXXXX below the caller's, and systemd-nspawn starts in it.

// systemdHierarchy is a cgroup hierarchy systemd tracks processes in.
type systemdHierarchy struct {
	v1name bool   // the named v1 hierarchy "name=systemd" (legacy and hybrid layouts); else v2
	mount  string // where it is mounted, e.g. /sys/fs/cgroup/systemd
	root   string // the mount's root within the hierarchy, usually "/"
}

// cgroupParents returns, for each systemd hierarchy mounted here, the directory of this
// process's own cgroup in it: /sys/fs/cgroup/systemd/ and /sys/fs/cgroup/unified/ on our
// hybrid machines, /sys/fs/cgroup/… on a unified one.
func cgroupParents() ([]string, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	defer mi.Close()
	hs, err := parseCgroupMounts(mi)
	if err != nil {
		return nil, err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	var dirs []string
	for _, h := range hs {
		p, ok := ownCgroup(string(own), h.v1name)
		if !ok {
			continue
		}
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(h.root, "/"))
		if !ok {
			continue // our cgroup is outside what is mounted here
		}
		dirs = append(dirs, filepath.Join(h.mount, rel))
	}
	if len(dirs) == 0 {
		return nil, errors.New("sdbox: no systemd cgroup hierarchy (name=systemd or cgroup2) is mounted")
	}
	return dirs, nil
}

// parseCgroupMounts finds the mounts of systemd's hierarchies in a mountinfo file.
func parseCgroupMounts(r io.Reader) ([]systemdHierarchy, error) {
	lines, err := mountinfoLines(r)
	if err != nil {
		return nil, err
	}
	var out []systemdHierarchy
	for _, f := range lines {
		// fields: id parent dev root mountpoint opts [optional...] - fstype source superopts
		sep := slices.Index(f, "-")
		if sep < 0 || len(f) < sep+4 {
			continue
		}
		fstype, superopts := f[sep+1], f[sep+3]
		h := systemdHierarchy{root: unescapeMount(f[3]), mount: unescapeMount(f[4])}
		switch {
		case fstype == "cgroup2":
		case fstype == "cgroup" && slices.Contains(strings.Split(superopts, ","), "name=systemd"):
			h.v1name = true
		default:
			continue
		}
		out = append(out, h)
	}
	return out, nil
}

// ownCgroup returns this process's cgroup path from /proc/self/cgroup text: in the
// name=systemd hierarchy, or in the v2 one ("0::/path").
func ownCgroup(procCgroup string, v1name bool) (string, bool) {
	for line := range strings.SplitSeq(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v1name && slices.Contains(strings.Split(parts[1], ","), "name=systemd") ||
			!v1name && parts[0] == "0" && parts[1] == "" {
			return parts[2], true
		}
	}
	return "", false
}

// makeCgroups creates name below each parent and returns the cgroup.procs files to join.
func (b *Box) makeCgroups() ([]string, error) {
	parents, err := cgroupParents()
	if err != nil {
		return nil, err
	}
	var procs []string
	for _, p := range parents {
		dir := filepath.Join(p, b.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sdbox: create cgroup: %w", err)
		}
		b.cgroups = append(b.cgroups, dir)
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	return procs, nil
}

// removeCgroups removes the box's cgroups, which must hold no process any more.
func (b *Box) removeCgroups() error {
	var errs []error
	for _, dir := range b.cgroups {
		errs = append(errs, removeCgroup(dir))
	}
	b.cgroups = nil
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup and the cgroups below it, deepest first. A cgroup that still
// holds processes cannot be removed (EBUSY), so this never disturbs a live box.
func removeCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sdbox: remove cgroup %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sdbox: remove cgroup: %w", err)
		}
	}
	return nil
}

// removeStaleCgroups removes sdbox-* cgroups below ours whose box directory is gone. Boot
// creates the directory before the cgroups and Close removes the cgroups first, so such a
// cgroup belongs to no box; one with processes left cannot be removed anyway.
func removeStaleCgroups() error {
	parents, err := cgroupParents()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range parents {
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			suffix, ok := strings.CutPrefix(e.Name(), "sdbox-")
			if !ok || !e.IsDir() {
				continue
			}
			if _, err := os.Lstat(filepath.Join(runDir, dirPrefix+suffix)); err == nil {
				continue
			}
			errs = append(errs, removeCgroup(filepath.Join(p, e.Name())))
		}
	}
	return errors.Join(errs...)
}
