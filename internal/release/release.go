// Package release switches a pool's release link: a symbolic link, such
// as /srv/shop/current, that the pool's exec or working_directory goes
// through, pointed at one release directory at a time.
package release

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Current returns the directory the release link points at, as an
// absolute, clean path (a relative target is resolved against the link's
// directory). A link that does not exist gives "" and an error wrapping
// fs.ErrNotExist. A path that exists but is not a symbolic link gives an
// error that says what to do.
func Current(link string) (string, error) {
	fi, err := os.Lstat(link)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", notLink(link, fi)
	}
	target, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	return filepath.Abs(target)
}

func notLink(link string, fi fs.FileInfo) error {
	what := "a file"
	if fi.IsDir() {
		what = "a directory"
	}
	return fmt.Errorf("%s is %s, not a symbolic link: corral switches releases by replacing a link; move it aside and run: ln -s DIR %s", link, what, link)
}

// seq tells apart the temporary links of Switch calls that run at once.
var seq atomic.Uint64

// Switch points link at dir atomically: it makes a new symbolic link
// beside link, under a hidden temporary name, and renames it over link,
// then syncs the directory, so that a reader sees the old target or the
// new one, never none. dir must be an absolute path to an existing
// directory; Switch cleans it, and refuses one that is the link itself or
// whose resolution passes through the link. It returns the previous target
// ("" when link did not exist). A failure leaves link as it was and
// removes the temporary link.
func Switch(link, dir string) (prev string, err error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("release %q is not an absolute path: give the release directory's full path", dir)
	}
	dir = filepath.Clean(dir)
	abs, err := filepath.Abs(link)
	if err != nil {
		return "", err
	}
	if dir == abs {
		return "", fmt.Errorf("release %s is the release link itself: give the directory of a release", dir)
	}
	if through(abs, dir) {
		return "", fmt.Errorf("release %s goes through the release link %s, which would then point at itself: give a path to the release directory that does not pass through the link", dir, link)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("release %s does not exist: copy the release there first", dir)
	case err != nil:
		return "", fmt.Errorf("release %s: %w", dir, err)
	case !fi.IsDir():
		return "", fmt.Errorf("release %s is not a directory: a release is the directory that holds one version", dir)
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return "", notLink(link, fi)
	}
	prev, err = Current(link)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	parent := filepath.Dir(link)
	tmp := filepath.Join(parent, "."+filepath.Base(link)+".corral-"+strconv.Itoa(os.Getpid())+"-"+
		strconv.FormatUint(seq.Add(1), 36)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Symlink(dir, tmp); err != nil {
		return "", fmt.Errorf("make the new link beside %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("replace %s: %w", link, err)
	}
	// The link is switched: a failure to sync the directory is not one
	// of Switch, which could not undo it.
	if d, err := os.Open(parent); err == nil {
		d.Sync()
		d.Close()
	}
	return prev, nil
}

// maxHops bounds the symbolic links through resolves, as the kernel does
// (ELOOP after 40).
const maxHops = 40

// through reports whether resolving dir, an absolute clean path, passes
// through link, an absolute path: dir lies under link, or reaches it by
// way of other symbolic links. Switch would then make a link that points
// at itself.
func through(link, dir string) bool {
	link = filepath.Clean(link)
	if strings.HasPrefix(dir, link+"/") {
		return true
	}
	// The link as resolution meets it: its directory resolved, its name not.
	if parent, err := filepath.EvalSymlinks(filepath.Dir(link)); err == nil {
		link = filepath.Join(parent, filepath.Base(link))
	}
	done, rest := "/", strings.Split(dir, "/")
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, name)
		if next == link {
			return true
		}
		fi, err := os.Lstat(next)
		if err != nil {
			return false
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if hops++; hops > maxHops {
			return false
		}
		target, err := os.Readlink(next)
		if err != nil {
			return false
		}
		if filepath.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return false
}

// Remove deletes dir, an old release of link, with everything in it. It
// refuses, and leaves everything as it was, unless dir is an absolute,
// clean path to a directory (not a symbolic link) that lies beside the
// release link points at now, in the same parent directory, is not that
// release, and lies under the link's own directory (as
// /srv/shop/releases/41 lies under /srv/shop, of /srv/shop/current): so
// that it removes only what a release directory's place says is one of
// this link, never the running release, its parent or a path elsewhere
// that a pool's history happens to name.
func Remove(link, dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("old release %q is not an absolute, clean path: not removed", dir)
	}
	cur, err := Current(link)
	if err != nil {
		return fmt.Errorf("old release %s not removed: %w", dir, err)
	}
	abs, err := filepath.Abs(link)
	if err != nil {
		return err
	}
	switch {
	case dir == cur:
		return fmt.Errorf("old release %s is the one %s points at: not removed", dir, link)
	case filepath.Dir(dir) != filepath.Dir(cur) || filepath.Dir(dir) == dir:
		return fmt.Errorf("old release %s is not beside the current release %s (in %s): not removed; remove it by hand if it is one", dir, cur, filepath.Dir(cur))
	case !strings.HasPrefix(dir, filepath.Dir(abs)+"/"):
		return fmt.Errorf("old release %s is not under %s, the release link's directory: not removed; remove it by hand if it is one", dir, filepath.Dir(abs))
	case through(link, dir):
		return fmt.Errorf("old release %s goes through the release link %s: not removed", dir, link)
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed already
	case err != nil:
		return fmt.Errorf("old release %s: %w", dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("old release %s is a symbolic link, not a directory: not removed", dir)
	case !fi.IsDir():
		return fmt.Errorf("old release %s is not a directory: not removed", dir)
	}
	// RemoveAll does not follow symbolic links, inside dir or swapped in
	// meanwhile: it opens each directory relative to its parent, with
	// O_NOFOLLOW.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove old release %s: %w", dir, err)
	}
	return nil
}
