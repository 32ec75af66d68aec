package release

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// releases makes a temporary directory with releases/NAME for each name,
// and returns it and the path of its release link, DIR/current, not made.
func releases(t *testing.T, names ...string) (dir, link string) {
	t.Helper()
	dir = t.TempDir()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, "releases", n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "current")
}

// leftovers fails t if dir holds a temporary link of Switch.
func leftovers(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".corral-") {
			t.Errorf("temporary link left behind: %s", e.Name())
		}
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	os.Remove(link)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestSwitch: a missing link is made, then switched, switched back and
// switched again, and each switch says what it replaced.
func TestSwitch(t *testing.T) {
	dir, link := releases(t, "v1", "v2")
	v1, v2 := filepath.Join(dir, "releases", "v1"), filepath.Join(dir, "releases", "v2")
	if got, err := Current(link); got != "" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Current of no link = %q, %v; want \"\" and fs.ErrNotExist", got, err)
	}
	for _, c := range []struct{ name, to, prev, want string }{
		{"missing link is made", v1, "", v1},
		{"switch", v2, v1, v2},
		{"switch back", v1, v2, v1},
		{"unclean dir is cleaned", v2 + "//./", v1, v2},
		{"same release again", v2, v2, v2},
	} {
		prev, err := Switch(link, c.to)
		if err != nil || prev != c.prev {
			t.Fatalf("%s: Switch(%s) = %q, %v; want %q", c.name, c.to, prev, err, c.prev)
		}
		if got, err := Current(link); err != nil || got != c.want {
			t.Errorf("%s: Current = %q, %v; want %q", c.name, got, err, c.want)
		}
		if target, _ := os.Readlink(link); target != c.want {
			t.Errorf("%s: the link's target is %q, want %q", c.name, target, c.want)
		}
	}
	leftovers(t, dir)
}

// TestCurrent: relative targets are resolved against the link's
// directory, absolute ones cleaned, dangling ones given as they are; a
// path that is not a link says what to do.
func TestCurrent(t *testing.T) {
	dir, link := releases(t, "v1", "v2")
	v2 := filepath.Join(dir, "releases", "v2")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, link, target, want string }{
		{"relative", link, "releases/v2", v2},
		{"relative with dot", link, "./releases/v2/", v2},
		{"relative upwards", filepath.Join(dir, "sub", "current"), "../releases/v2", v2},
		{"absolute unclean", link, dir + "//releases/./v2/", v2},
		{"dangling", link, filepath.Join(dir, "gone"), filepath.Join(dir, "gone")},
	} {
		symlink(t, c.target, c.link)
		if got, err := Current(c.link); err != nil || got != c.want {
			t.Errorf("%s: Current with target %q = %q, %v; want %q", c.name, c.target, got, err, c.want)
		}
	}

	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Current(real)
	if want := real + " is a directory, not a symbolic link: corral switches releases by replacing a link; move it aside and run: ln -s DIR " + real; err == nil || err.Error() != want {
		t.Errorf("Current of a directory = %v\nwant %s", err, want)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Current(file); err == nil || !strings.Contains(err.Error(), file+" is a file, not a symbolic link") {
		t.Errorf("Current of a file = %v", err)
	}
}

// TestSwitchRelative: a link with a relative target, as ln -s
// releases/v1 current makes, is switched, and the previous target comes
// back absolute.
func TestSwitchRelative(t *testing.T) {
	dir, link := releases(t, "v1", "v2")
	v1, v2 := filepath.Join(dir, "releases", "v1"), filepath.Join(dir, "releases", "v2")
	symlink(t, "releases/v1", link)
	if prev, err := Switch(link, v2); err != nil || prev != v1 {
		t.Errorf("Switch over a relative link = %q, %v; want %q", prev, err, v1)
	}
	if got, _ := Current(link); got != v2 {
		t.Errorf("Current = %q, want %q", got, v2)
	}
}

// TestSwitchDangling: a link whose target is gone is switched too.
func TestSwitchDangling(t *testing.T) {
	dir, link := releases(t, "v1")
	v1, gone := filepath.Join(dir, "releases", "v1"), filepath.Join(dir, "releases", "gone")
	symlink(t, gone, link)
	if prev, err := Switch(link, v1); err != nil || prev != gone {
		t.Errorf("Switch over a dangling link = %q, %v; want %q", prev, err, gone)
	}
	if got, _ := Current(link); got != v1 {
		t.Errorf("Current = %q, want %q", got, v1)
	}
	leftovers(t, dir)
}

// TestSwitchRefuses: bad releases are refused with one line saying what
// to do, the link is left as it was and no temporary link stays.
func TestSwitchRefuses(t *testing.T) {
	dir, link := releases(t, "v1")
	v1 := filepath.Join(dir, "releases", "v1")
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	os.Mkdir(filepath.Join(v1, "sub"), 0o755)
	if _, err := Switch(link, v1); err != nil {
		t.Fatal(err)
	}
	// Other ways to the link: a link to it, and a link to its directory.
	symlink(t, link, filepath.Join(dir, "alias"))
	symlink(t, dir, filepath.Join(dir, "top"))
	for _, c := range []struct{ name, to, want string }{
		{"relative", "releases/v1", `release "releases/v1" is not an absolute path: give the release directory's full path`},
		{"missing", filepath.Join(dir, "missing"), "release " + filepath.Join(dir, "missing") + " does not exist: copy the release there first"},
		{"not a directory", filepath.Join(dir, "file"), "release " + filepath.Join(dir, "file") + " is not a directory: a release is the directory that holds one version"},
		{"the link", link, "release " + link + " is the release link itself: give the directory of a release"},
		{"the link unclean", link + "/", "is the release link itself"},
		{"under the link", filepath.Join(link, "sub"), "release " + filepath.Join(link, "sub") + " goes through the release link " + link + ", which would then point at itself: give a path to the release directory that does not pass through the link"},
		{"a link to the link", filepath.Join(dir, "alias"), "goes through the release link"},
		{"under a link to the link", filepath.Join(dir, "alias", "sub"), "goes through the release link"},
		{"through a linked parent", filepath.Join(dir, "top", "current", "sub"), "goes through the release link"},
	} {
		_, err := Switch(link, c.to)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Switch(%s) = %v\nwant one line with %q", c.name, c.to, err, c.want)
		}
		if got, err := Current(link); got != v1 || err != nil {
			t.Errorf("%s: after Switch(%s) the link points at %q, %v", c.name, c.to, got, err)
		}
	}
	leftovers(t, dir)
}

// TestSwitchNotLink: a release link that is a directory or a file is
// refused, and left untouched.
func TestSwitchNotLink(t *testing.T) {
	dir, _ := releases(t, "v1")
	v1 := filepath.Join(dir, "releases", "v1")
	real, file := filepath.Join(dir, "real"), filepath.Join(dir, "file")
	os.Mkdir(real, 0o755)
	os.WriteFile(filepath.Join(real, "keep"), []byte("x"), 0o644)
	os.WriteFile(file, []byte("x"), 0o644)
	for _, c := range []struct {
		link, want string
		dir        bool
	}{
		{real, real + " is a directory, not a symbolic link: corral switches releases by replacing a link; move it aside and run: ln -s DIR " + real, true},
		{file, file + " is a file, not a symbolic link: corral switches releases by replacing a link; move it aside and run: ln -s DIR " + file, false},
	} {
		prev, err := Switch(c.link, v1)
		if err == nil || err.Error() != c.want || prev != "" {
			t.Errorf("Switch(%s) = %q, %v\nwant %s", c.link, prev, err, c.want)
		}
		fi, err := os.Lstat(c.link)
		if err != nil || fi.IsDir() != c.dir || fi.Mode()&fs.ModeSymlink != 0 {
			t.Errorf("%s was touched: %v, %v", c.link, fi, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(real, "keep")); err != nil || string(b) != "x" {
		t.Errorf("the directory's content changed: %q, %v", b, err)
	}
	leftovers(t, dir)
}

// TestSwitchAtomic: a reader never finds the link missing, nor pointing
// anywhere but at one of the releases, while it is switched 1000 times.
func TestSwitchAtomic(t *testing.T) {
	dir, link := releases(t, "v1", "v2")
	v := []string{filepath.Join(dir, "releases", "v1"), filepath.Join(dir, "releases", "v2")}
	if _, err := Switch(link, v[0]); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, missing atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			reads.Add(1)
			if _, err := os.Stat(link); err != nil {
				missing.Add(1)
			}
			if target, err := os.Readlink(link); err != nil || !slices.Contains(v, target) {
				missing.Add(1)
			}
		}
	}()
	for k := range 1000 {
		if _, err := Switch(link, v[(k+1)%2]); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := missing.Load(); n != 0 {
		t.Errorf("the link was missing or wrong %d times in %d reads", n, reads.Load())
	}
	leftovers(t, dir)
}

// TestRemove: an old release beside the current one goes, with what it
// holds but not what its links point at; the current release, paths
// elsewhere, links and files are refused and left as they were.
func TestRemove(t *testing.T) {
	dir, link := releases(t, "v1", "v2", "v3")
	rel := filepath.Join(dir, "releases")
	v1, v2, v3 := filepath.Join(rel, "v1"), filepath.Join(rel, "v2"), filepath.Join(rel, "v3")
	if _, err := Switch(link, v2); err != nil {
		t.Fatal(err)
	}
	// v1 holds a file and a link out of it, to a file that must stay.
	keep := filepath.Join(dir, "keep")
	os.WriteFile(keep, []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(v1, "bin"), 0o755)
	os.WriteFile(filepath.Join(v1, "bin", "app"), []byte("x"), 0o755)
	symlink(t, keep, filepath.Join(v1, "bin", "keep"))
	symlink(t, v3, filepath.Join(rel, "v3-alias"))
	os.WriteFile(filepath.Join(rel, "notes"), nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "elsewhere", "v0"), 0o755)

	if err := Remove(link, v1); err != nil {
		t.Fatalf("Remove(v1) = %v", err)
	}
	if _, err := os.Lstat(v1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("v1 after Remove: %v", err)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "x" {
		t.Errorf("the file v1 linked to: %q, %v", b, err)
	}
	if err := Remove(link, v1); err != nil {
		t.Errorf("Remove(v1) again = %v, want nil (gone already)", err)
	}
	for _, c := range []struct{ name, dir, want string }{
		{"current", v2, "is the one " + link + " points at: not removed"},
		{"relative", "releases/v3", "is not an absolute, clean path"},
		{"unclean", rel + "/./v3", "is not an absolute, clean path"},
		{"elsewhere", filepath.Join(dir, "elsewhere", "v0"), "is not beside the current release " + v2},
		{"the releases' directory", rel, "is not beside the current release"},
		{"the link's directory", dir, "is not beside the current release"},
		{"a link", filepath.Join(rel, "v3-alias"), "is a symbolic link, not a directory: not removed"},
		{"a file", filepath.Join(rel, "notes"), "is not a directory"},
		{"root", "/", "is not beside the current release"},
	} {
		err := Remove(link, c.dir)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Remove(%s) = %v\nwant one line with %q", c.name, c.dir, err, c.want)
		}
	}
	for _, p := range []string{v2, v3, filepath.Join(rel, "v3-alias"), filepath.Join(rel, "notes"), filepath.Join(dir, "elsewhere", "v0")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s after the refusals: %v", p, err)
		}
	}
	// Releases beside each other, but not under the link's directory.
	other := t.TempDir()
	os.MkdirAll(filepath.Join(other, "a"), 0o755)
	os.MkdirAll(filepath.Join(other, "b"), 0o755)
	if _, err := Switch(link, filepath.Join(other, "b")); err != nil {
		t.Fatal(err)
	}
	if err := Remove(link, filepath.Join(other, "a")); err == nil || !strings.Contains(err.Error(), "is not under "+dir+", the release link's directory") {
		t.Errorf("Remove of a release outside the link's directory = %v", err)
	}
	// A release directory that holds the link itself.
	top := t.TempDir()
	os.MkdirAll(filepath.Join(top, "shop"), 0o755)
	os.MkdirAll(filepath.Join(top, "v9"), 0o755)
	inner := filepath.Join(top, "shop", "current")
	if _, err := Switch(inner, filepath.Join(top, "v9")); err != nil {
		t.Fatal(err)
	}
	if err := Remove(inner, filepath.Join(top, "shop")); err == nil || !strings.Contains(err.Error(), "the release link's directory") {
		t.Errorf("Remove of the link's own directory = %v", err)
	}
}
