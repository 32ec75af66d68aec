package release

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

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

// TestSwitch: a missing link is made, a link is switched and switched
// back, and each switch says what it replaced.
func TestSwitch(t *testing.T) {
	dir, link := releases(t, "v1", "v2")
	v1, v2 := filepath.Join(dir, "releases", "v1"), filepath.Join(dir, "releases", "v2")
	if _, err := Current(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Current of no link = %v", err)
	}
	for _, c := range []struct{ to, prev string }{{v1, ""}, {v2, v1}, {v1 + "/", v2}} {
		prev, err := Switch(link, c.to)
		if err != nil || prev != c.prev {
			t.Fatalf("Switch(%s) = %q, %v; want %q", c.to, prev, err, c.prev)
		}
		if got, err := Current(link); err != nil || got != filepath.Clean(c.to) {
			t.Errorf("Current after Switch(%s) = %q, %v", c.to, got, err)
		}
	}
	// A relative target, as ln -s releases/v2 current makes.
	os.Remove(link)
	os.Symlink("releases/v2", link)
	if got, err := Current(link); err != nil || got != v2 {
		t.Errorf("Current of a relative link = %q, %v", got, err)
	}
	// A dangling old target is replaced too.
	os.Remove(link)
	os.Symlink(filepath.Join(dir, "gone"), link)
	if prev, err := Switch(link, v1); err != nil || prev != filepath.Join(dir, "gone") {
		t.Errorf("Switch over a dangling link = %q, %v", prev, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("left behind: %v", ents)
	}
}

// TestSwitchRefuses: bad releases and a link that is not one are refused
// with what to do, and nothing changes.
func TestSwitchRefuses(t *testing.T) {
	dir, link := releases(t, "v1")
	v1 := filepath.Join(dir, "releases", "v1")
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	if _, err := Switch(link, v1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ to, want string }{
		{"releases/v1", "not an absolute path"},
		{filepath.Join(dir, "missing"), "does not exist"},
		{filepath.Join(dir, "file"), "not a directory"},
		{link, "the release link itself"},
	} {
		_, err := Switch(link, c.to)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Switch(%s) = %v, want %q", c.to, err, c.want)
		}
		if got, _ := Current(link); got != v1 {
			t.Errorf("after Switch(%s) the link points at %s", c.to, got)
		}
	}
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	_, err := Switch(real, v1)
	if err == nil || !strings.Contains(err.Error(), "is a directory, not a symbolic link") {
		t.Errorf("Switch of a directory = %v", err)
	}
	if _, err := Current(real); err == nil {
		t.Error("Current of a directory: no error")
	}
	if fi, err := os.Lstat(real); err != nil || !fi.IsDir() {
		t.Errorf("the directory was touched: %v", err)
	}
}

// TestSwitchAtomic: a reader never finds the link missing while it
// switches back and forth.
func TestSwitchAtomic(t *testing.T) {
	dir, link := releases(t, "v1", "v2")
	v := []string{filepath.Join(dir, "releases", "v1"), filepath.Join(dir, "releases", "v2")}
	Switch(link, v[0])
	var stop atomic.Bool
	var missing atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := os.Stat(link); err != nil {
				missing.Add(1)
			}
		}
	}()
	for k := range 1000 {
		if _, err := Switch(link, v[k%2]); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := missing.Load(); n != 0 {
		t.Errorf("the link was missing %d times", n)
	}
}
