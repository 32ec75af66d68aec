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
	"time"
)

// Current returns the directory the release link points at, as an
// absolute, clean path (a relative target is resolved against the link's
// directory). A link that does not exist gives "" and an error wrapping
// fs.ErrNotExist; a path that is not a symbolic link gives an error that
// says what to do.
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
	return filepath.Clean(target), nil
}

func notLink(link string, fi fs.FileInfo) error {
	what := "a file"
	if fi.IsDir() {
		what = "a directory"
	}
	return fmt.Errorf("%s is %s, not a symbolic link: corral switches releases by replacing a link; move it aside and run: ln -s DIR %s", link, what, link)
}

// Switch points link at dir atomically: it makes a new symbolic link
// beside link and renames it over link, then syncs the directory, so that
// a reader sees the old target or the new one, never none. dir must be an
// absolute path to an existing directory, other than the link. It returns
// the previous target ("" when link did not exist). A failure leaves link
// as it was.
func Switch(link, dir string) (prev string, err error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("release %q is not an absolute path: give the release directory's full path", dir)
	}
	dir = filepath.Clean(dir)
	if dir == filepath.Clean(link) {
		return "", fmt.Errorf("release %s is the release link itself: give a release directory", dir)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("release %s does not exist: copy the release there first", dir)
	case err != nil:
		return "", fmt.Errorf("release %s: %v", dir, err)
	case !fi.IsDir():
		return "", fmt.Errorf("release %s is not a directory: a release is the directory that holds one version", dir)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		if lr, err := filepath.EvalSymlinks(link); err == nil && lr == real && isLink(dir) {
			return "", fmt.Errorf("release %s resolves through a link to where %s points: give the release directory itself", dir, link)
		}
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return "", notLink(link, fi)
	}
	prev, err = Current(link)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	parent := filepath.Dir(link)
	tmp := filepath.Join(parent, "."+filepath.Base(link)+".corral-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Symlink(dir, tmp); err != nil {
		return "", fmt.Errorf("make the new link beside %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("replace %s: %w", link, err)
	}
	if d, err := os.Open(parent); err == nil {
		d.Sync()
		d.Close()
	}
	return prev, nil
}

func isLink(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}
