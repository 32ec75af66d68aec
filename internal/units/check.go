package units

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// SystemUnitDirs are the directories where systemd looks for unit files
// that an administrator or a package installed. The generator's own output
// directories are deliberately absent.
var SystemUnitDirs = []string{
	"/etc/systemd/system",
	"/run/systemd/system",
	"/usr/local/lib/systemd/system",
	"/lib/systemd/system",
	"/usr/lib/systemd/system",
}

// reservedNames are pool names refused whatever the host has installed:
// corral's own units and systemd's well-known ones.
var reservedNames = map[string]bool{
	"corral": true, "corrald": true, "default": true, "multi-user": true, "graphical": true,
	"basic": true, "sysinit": true, "sockets": true, "timers": true, "paths": true,
	"network": true, "network-online": true, "local-fs": true, "remote-fs": true,
	"emergency": true, "rescue": true, "shutdown": true, "reboot": true, "poweroff": true,
	"halt": true, "system": true, "user": true, "init": true, "getty": true, "systemd": true,
}

// Host is what the checks that look beyond the pool file need to know about
// the machine. The zero value is not useful; use DefaultHost.
type Host struct {
	// UnitDirs are searched for units a pool would shadow.
	UnitDirs []string
	// LookupUser returns a user's uid, or an error if there is no such user.
	LookupUser func(name string) (uid int, err error)
	// LookupGroup returns a group's gid, or an error if there is no such group.
	LookupGroup func(name string) (gid int, err error)
	// Stat is os.Stat; tests replace it.
	Stat func(name string) (fs.FileInfo, error)
	// PoolDir is the directory whose files are installed pools, held to
	// stricter rules (readPoolFile); "" holds none to them.
	PoolDir string
	// PoolFileOwner is the uid that must own the files in PoolDir: root.
	PoolFileOwner uint32
}

// DefaultHost looks at the running machine.
func DefaultHost() Host {
	return Host{
		UnitDirs: SystemUnitDirs,
		LookupUser: func(name string) (int, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(u.Uid)
		},
		LookupGroup: func(name string) (int, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(g.Gid)
		},
		Stat:    os.Stat,
		PoolDir: Dir,
	}
}

// Shadows returns an error if the pool's name is reserved, its units
// would hide units that exist on the host (ssh.socket, nginx.service…), its
// user or group is root under another name, or the name of its dynamic user
// is an account on the host, which systemd would run its workers as. The
// generator skips such a pool.
func (h Host) Shadows(p *Pool) *Error {
	if reservedNames[p.Name] {
		return &Error{File: p.Path, Msg: fmt.Sprintf("pool name %q is reserved for systemd or corral: rename the file", p.Name)}
	}
	// What the file names is refused by the parser; another name for uid or
	// gid 0 only here, where the accounts are known.
	if uid, err := h.LookupUser(p.User); p.User != "" && err == nil && uid == 0 {
		return &Error{File: p.Path, Msg: fmt.Sprintf("user %q is uid 0, root under another name: workers never run as root; remove user to run as a dynamic user, or name an unprivileged one", p.User)}
	}
	if gid, err := h.LookupGroup(p.Group); p.Group != "" && err == nil && gid == 0 {
		return &Error{File: p.Path, Msg: fmt.Sprintf("group %q is gid 0, root's group under another name: remove group, or name an unprivileged one", p.Group)}
	}
	if p.User == "" {
		if u := DynamicUserName(p.Name); h.exists(u) {
			return &Error{File: p.Path, Msg: fmt.Sprintf("pool %q would run as a dynamic user named %s, but an account of that name exists, and systemd would run the workers as it: remove that account, rename the file, or set user = %q to run as it on purpose", p.Name, u, u)}
		}
	}
	for _, u := range UnitNames(p.Name) {
		for _, d := range h.UnitDirs {
			f := filepath.Join(d, u)
			if fi, err := h.Stat(f); err == nil && !fi.IsDir() {
				return &Error{File: p.Path, Msg: fmt.Sprintf("pool %q would shadow %s, which exists on this system: rename the file to another pool name", p.Name, f)}
			}
		}
	}
	return nil
}

// Check reports what would stop the pool's instances from starting on this
// host, or expose what they write: a missing or non-executable exec[0], a
// missing user or working directory, files a dynamic user cannot read,
// writable_paths without a user of their own. `corral validate` reports
// these as errors; the generator only logs them, since at boot a file
// system holding the application may not be mounted yet.
func (h Host) Check(p *Pool) Errors {
	var errs Errors
	add := func(format string, args ...any) {
		errs = append(errs, &Error{File: p.Path, Msg: fmt.Sprintf(format, args...)})
	}
	dynamic := p.User == ""
	if p.User != "" {
		if !h.exists(p.User) {
			add("user %q does not exist: create it ('adduser --system %s') or remove user to run as a dynamic user", p.User, p.User)
		}
	}
	if p.Group != "" {
		if _, err := h.LookupGroup(p.Group); err != nil {
			add("group %q does not exist: create it ('addgroup --system %s') or remove group", p.Group, p.Group)
		}
	}
	if len(p.Exec) > 0 && path.IsAbs(p.Exec[0]) {
		bin := p.Exec[0]
		fi, err := h.Stat(bin)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			add("exec[0] %s does not exist: install it or fix the path ('command -v %s' finds it)", bin, path.Base(bin))
		case err != nil:
			add("exec[0] %s: %v", bin, err)
		case fi.IsDir():
			add("exec[0] %s is a directory, not a program", bin)
		case fi.Mode().Perm()&0o111 == 0:
			add("exec[0] %s is not executable: chmod +x it", bin)
		case dynamic && fi.Mode().Perm()&0o001 == 0:
			add("exec[0] %s is not executable by others, so the pool's dynamic user cannot run it: chmod o+x it, or set user to its owner", bin)
		case dynamic:
			if d := h.hiddenDir(bin); d != "" {
				add("exec[0] %s is inside %s, which others cannot enter, so the pool's dynamic user cannot run it: chmod o+x %s, or set user to its owner", bin, d, d)
			}
		}
		if dynamic {
			for i, a := range p.Exec[1:] {
				if !path.IsAbs(a) {
					continue
				}
				fi, err := h.Stat(a)
				if err != nil || fi.IsDir() {
					continue // not a file argument
				}
				if fi.Mode().Perm()&0o004 == 0 {
					add("exec[%d] %s is not readable by others, so the pool's dynamic user cannot read it: chmod o+r it, or set user to its owner", i+1, a)
				} else if d := h.hiddenDir(a); d != "" {
					add("exec[%d] %s is inside %s, which others cannot enter: chmod o+x %s, or set user to its owner", i+1, a, d, d)
				}
			}
		}
	}
	if wd := p.WorkingDirectory; wd != "" {
		fi, err := h.Stat(wd)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			add("working_directory %s does not exist: create it or fix the path", wd)
		case err != nil:
			add("working_directory %s: %v", wd, err)
		case !fi.IsDir():
			add("working_directory %s is not a directory", wd)
		case dynamic && (fi.Mode().Perm()&0o001 == 0 || h.hiddenDir(wd) != ""):
			add("working_directory %s cannot be entered by the pool's dynamic user: chmod o+x it and its parents, or set user to its owner", wd)
		}
	}
	if dynamic {
		// What a dynamic user writes keeps its uid, which systemd gives
		// to another service once the pool stops: that one could read
		// and change it. A Check, not a parse error, so that a pool
		// already running is warned about at boot, not dropped.
		for _, w := range p.Sandbox.WritablePaths {
			add("sandbox.writable_paths %s with a dynamic user: what the workers write there keeps a uid that systemd later gives to another service, which could then read and change it; set user to an account that owns %s, or remove it from writable_paths", w, w)
		}
	}
	return errs
}

// hiddenDir returns the first ancestor directory of p that others cannot
// enter (no o+x), or "".
func (h Host) hiddenDir(p string) string {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		fi, err := h.Stat(d)
		if err != nil {
			return ""
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return d
		}
	}
	return ""
}

// PoolFiles returns the pool files in dir, sorted by name: regular files
// and links to them named NAME.toml; hidden files and editor backups are
// not pool files. A missing dir holds no pools.
func PoolFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("units: read pool directory: %w", err)
	}
	var files []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, Ext) || n == Ext {
			continue
		}
		if e.IsDir() {
			continue
		}
		files = append(files, filepath.Join(dir, n))
	}
	sort.Strings(files)
	return files, nil
}

// LoadAll parses the given pool files and checks them against each other
// and the host: a pool that fails to parse, shadows a unit on the host, or
// listens on an address an earlier pool (in file order) already uses is
// left out of pools, and its problems are in errs. The pools returned are
// the ones a generator may render.
func LoadAll(files []string, h Host) (pools []*Pool, errs Errors) {
	type owned struct {
		l    Listen
		pool string
	}
	var used []owned
	for _, f := range files {
		p, data, err := h.load(f)
		if err != nil {
			var es Errors
			if errors.As(err, &es) {
				errs = append(errs, es...)
			} else {
				errs = append(errs, &Error{File: f, Msg: err.Error()})
			}
			continue
		}
		if e := h.Shadows(p); e != nil {
			errs = append(errs, e)
			continue
		}
		conflict := false
		for _, l := range p.Listen {
			for _, o := range used {
				if l.Overlaps(o.l) {
					line, col := newLocator(data).find("listen")
					errs = append(errs, &Error{File: f, Line: line, Col: col,
						Msg: fmt.Sprintf("listen address %s overlaps %s of pool %q: give each pool its own port or socket path", l.Address, o.l.Address, o.pool)})
					conflict = true
				}
			}
		}
		if conflict {
			continue
		}
		for _, l := range p.Listen {
			used = append(used, owned{l, p.Name})
		}
		pools = append(pools, p)
	}
	return pools, errs
}

// exists reports whether name is a user on the host.
func (h Host) exists(name string) bool {
	_, err := h.LookupUser(name)
	return err == nil
}
