package pool

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// TestUnitCacheRace: a read that overlapped an invalidation is not cached,
// so a unit that failed again (same listed state, newer InactiveEnter) is
// read afresh next time.
func TestUnitCacheRace(t *testing.T) {
	var c unitCache
	st := sddbus.UnitStatus{Name: "app@1.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
	old := Unit{Name: st.Name, LoadState: "loaded", ActiveState: "failed", SubState: "failed", InactiveEnter: time.Unix(100, 0)}

	gen := c.begin(st.Name)
	c.invalidate(st.Name) // the signal of the next failure arrives mid-read
	c.put(old, gen)
	if _, ok := c.get(st); ok {
		t.Fatal("a read that overlapped an invalidation was cached")
	}

	gen = c.begin(st.Name)
	c.put(old, gen)
	if u, ok := c.get(st); !ok || u != old {
		t.Fatalf("get = %+v, %v; want the unit read", u, ok)
	}
	st.ActiveState = "active"
	if _, ok := c.get(st); ok {
		t.Error("cached unit returned though its listed state changed")
	}
	st.ActiveState = "failed"
	gen = c.begin(st.Name)
	c.invalidate("")
	c.put(old, gen)
	if _, ok := c.get(st); ok {
		t.Error("a read that overlapped an invalidation of everything was cached")
	}
}

func TestParsePressure(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"some avg10=1.53 avg60=0.40 avg300=0.08 total=1234567\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 1.53, true},
		{"some avg10=100.00 avg60=0 avg300=0 total=0", 100, true},
		{"full avg10=5.00 avg60=0 avg300=0 total=0\n", 0, false},
		{"some avg60=1.00", 0, false},
		{"some avg10=NaN avg60=0", 0, false},
		{"some avg10=-1", 0, false},
		{"", 0, false},
	} {
		got, err := parsePressure(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parsePressure(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParsePressure(f *testing.F) {
	f.Add("some avg10=1.53 avg60=0.40 avg300=0.08 total=1234567\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	f.Add("some avg10=")
	f.Fuzz(func(t *testing.T, s string) {
		x, err := parsePressure(s)
		if err == nil && (x < 0 || x > 100 || math.IsNaN(x)) {
			t.Errorf("parsePressure(%q) = %v, outside 0..100", s, x)
		}
	})
}

// BenchmarkCgroupRead: what a scrape pays per running instance on a host
// whose cgroups account for it: cpu.stat and memory.current, from a cgroup
// of this machine (skipped where there is none).
func BenchmarkCgroupRead(b *testing.B) {
	var dir string
	for _, pattern := range []string{CgroupRoot + "/*/*", CgroupRoot + "/unified/*"} {
		ms, _ := filepath.Glob(pattern + "/cpu.stat")
		if len(ms) > 0 {
			dir = filepath.Dir(ms[0])
			break
		}
	}
	if dir == "" {
		b.Skip("no cgroup v2 directory with cpu.stat here")
	}
	s := &SystemdBus{cgDirs: map[string]string{"app@1.service": dir}}
	b.Logf("reading %s", dir)
	for b.Loop() {
		_, _ = s.readCgroup(context.Background(), "app@1.service", "cpu.stat")
		_, _ = s.readCgroup(context.Background(), "app@1.service", "memory.current")
	}
}

// TestOpenFiles: a file kept open reads what it holds now; one removed and
// made again is opened again.
func TestOpenFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "memory.current")
	var o openFiles
	for _, want := range []string{"1\n", "22\n"} {
		if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := o.read(p); err != nil || string(b) != want {
			t.Errorf("read = %q, %v; want %q", b, err, want)
		}
	}
	os.Remove(p)
	os.WriteFile(p, []byte("333\n"), 0o644)
	// A regular file keeps its old content through its open fd; a cgroup
	// file fails instead. Either way the next read is of a whole file.
	if b, err := o.read(p); err != nil || (string(b) != "333\n" && string(b) != "22\n") {
		t.Errorf("after the file was made again: %q, %v", b, err)
	}
	if _, err := o.read(filepath.Join(dir, "nope")); err == nil {
		t.Error("a missing file read")
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 10000), 0o644)
	if b, err := o.read(big); err != nil || len(b) != 10000 {
		t.Errorf("a file of 10000 bytes: %d, %v", len(b), err)
	}
}
