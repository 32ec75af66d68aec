package units

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// goodPool is a valid pool file's text; the caller makes the port unique.
const goodPool = "exec = [\"/bin/true\"]\n"

// TestPoolFileRules: the pool directory takes only regular files owned by
// root (here: the test's uid), not writable by group or others, and links
// only to files beside them; a FIFO or a device is refused at once; a draft
// outside the directory is held only to the type and size rules.
func TestPoolFileRules(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	h := fakeHost(nil)
	h.PoolDir = dir
	h.PoolFileOwner = uint32(os.Getuid())

	port := 0
	write := func(d, name, text string, mode os.FileMode) string {
		f := filepath.Join(d, name)
		port++
		text = fmt.Sprintf("listen = [\"127.0.0.1:%d\"]\n", port) + text
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return f
	}
	link := func(target, name string) string {
		f := filepath.Join(dir, name)
		if err := os.Symlink(target, f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	fifo := func(d, name string) string {
		f := filepath.Join(d, name)
		if err := syscall.Mkfifo(f, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}

	ok := write(dir, "ok.toml", goodPool, 0o644)
	cases := map[string]string{ // file: what the error says, "" for none
		ok:                                     "",
		write(dir, "ro.toml", goodPool, 0o400): "",
		write(dir, "gw.toml", goodPool, 0o664): "is writable by its group or others (mode 0664)",
		write(dir, "ow.toml", goodPool, 0o646): "is writable by its group or others (mode 0646)",
		fifo(dir, "fifo.toml"):                 "is not a regular file (a FIFO)",
		link(ok, "inside.toml"):                "",
		link(write(outside, "x.toml", goodPool, 0o644), "out.toml"):                           "outside " + dir + ", whose owner could run code as any user: copy the file into",
		link(filepath.Join(dir, "nothing"), "dangling.toml"):                                  "is a link that leads nowhere",
		link("/dev/null", "null.toml"):                                                        "outside",
		write(dir, "big.toml", goodPool+strings.Repeat("# padding\n", MaxFileSize/10), 0o644): "is larger than 64 KiB",
		// A draft beside the pool directory: writable by others is its
		// owner's business, but a FIFO still blocks nobody.
		write(outside, "draft.toml", goodPool, 0o666): "",
		fifo(outside, "draftfifo.toml"):               "is not a regular file (a FIFO)",
	}
	if os.Getuid() == 0 {
		f := write(dir, "bob.toml", goodPool, 0o644)
		if err := os.Chown(f, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		cases[f] = "is owned by uid 1000, not root, and what it says runs as any user: 'chown root: bob.toml'"
	}
	for f, want := range cases {
		done := make(chan error, 1)
		go func() { _, err := h.Load(f); done <- err }()
		var err error
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) blocked", f)
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("Load(%s) = %v, want no error", f, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("Load(%s) = %v, want %q", f, err, want)
		}
	}

	// LoadAll, as the generator and corrald use it: the refused files are
	// errors naming them, the others load.
	files, err := PoolFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	pools, errs := LoadAll(files, h)
	var names []string
	for _, p := range pools {
		names = append(names, p.Name)
	}
	// ok.toml is refused only because inside.toml, a link to it, took its
	// address first.
	if strings.Join(names, " ") != "inside ro" {
		t.Errorf("LoadAll loaded %v, want [inside ro]; errors: %v", names, errs)
	}
}
