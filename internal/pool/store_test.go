package pool

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-pool/corral/api"
)

func TestStoreRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   State
		want State
	}{
		{
			name: "pools",
			in: State{Version: 1, Pools: map[string]Desired{
				"app": {Count: 4, Scaled: true, Held: []int{3}},
				"api": {Count: 8, Auto: true},
				"old": {Count: 2, Stopped: true, StoppedAt: t0},
			}},
			want: State{Version: 1, Pools: map[string]Desired{
				"app": {Count: 4, Scaled: true, Held: []int{3}},
				"api": {Count: 8, Auto: true},
				"old": {Count: 2, Stopped: true, StoppedAt: t0},
			}},
		},
		{
			name: "zero state",
			in:   State{},
			want: State{Version: StateVersion, Pools: map[string]Desired{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Store{Path: filepath.Join(t.TempDir(), "state.json")}
			if err := s.Save(tt.in); err != nil {
				t.Fatal(err)
			}
			got, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("loaded:\n got %+v\nwant %+v", got, tt.want)
			}
			fi, err := os.Stat(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode().Perm())
			}
			assertOnly(t, filepath.Dir(s.Path), "state.json")
		})
	}
}

func TestStoreFormat(t *testing.T) {
	// The format of docs/corrald.md: omitted fields stay out.
	s := Store{Path: filepath.Join(t.TempDir(), "state.json")}
	if err := s.Save(State{Version: 1, Pools: map[string]Desired{"app": {Count: 4, Scaled: true, Held: []int{3}}}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(`{"version": 1, "pools": {"app": {"count": 4, "scaled": true, "held": [3]}}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("file:\n got %s\nwant %v", b, want)
	}
}

func TestStoreSaveReplaces(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "state.json")}
	for n := 1; n <= 3; n++ {
		if err := s.Save(State{Pools: map[string]Desired{"app": {Count: n}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Pools["app"].Count != 3 || len(got.Pools) != 1 {
		t.Errorf("loaded %+v, want app with count 3", got)
	}
	assertOnly(t, filepath.Dir(s.Path), "state.json")
}

func TestStoreLoadMissing(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "state.json")}
	got, err := s.Load()
	if err != nil {
		t.Fatalf("Load of a missing file: %v", err)
	}
	want := State{Version: StateVersion, Pools: map[string]Desired{}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestStoreLoadCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		content string
		why     string // in the error
	}{
		{"not JSON", "{\"version\": 1, \"pools\": {\"app\": {\"count\": 4", "unexpected end of JSON input"},
		{"empty", "", "unexpected end of JSON input"},
		{"trailing garbage", `{"version": 1, "pools": {}} x`, "invalid character"},
		{"wrong type", `{"version": 1, "pools": {"app": {"count": "four"}}}`, "cannot unmarshal"},
		{"another version", `{"version": 2, "pools": {}}`, "version 2, want 1"},
		{"no version", `{"pools": {}}`, "version 0, want 1"},
		{"negative count", `{"version": 1, "pools": {"app": {"count": -1}}}`, "pool app: count -1"},
		{"bad held", `{"version": 1, "pools": {"app": {"count": 2, "held": [0]}}}`, "pool app: held instance 0"},
		{"nameless pool", `{"version": 1, "pools": {"": {"count": 2}}}`, "a pool without a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := Store{Path: filepath.Join(dir, "state.json"), Now: func() time.Time { return t0.Add(1500 * time.Millisecond) }}
			if err := os.WriteFile(s.Path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := s.Load()
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("err = %v, want ErrCorruptState", err)
			}
			aside := s.Path + ".corrupt-20250301T120001.500Z"
			for _, want := range []string{s.Path, tt.why, "moved it to " + aside} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if want := (State{Version: StateVersion, Pools: map[string]Desired{}}); !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			b, rerr := os.ReadFile(aside)
			if rerr != nil {
				t.Fatalf("moved-aside file: %v", rerr)
			}
			if string(b) != tt.content {
				t.Errorf("moved-aside file holds %q, want %q", b, tt.content)
			}
			assertOnly(t, dir, filepath.Base(aside))

			// The next Load starts afresh.
			if _, err := s.Load(); err != nil {
				t.Errorf("Load after the move: %v", err)
			}
		})
	}
}

func TestStoreLoadUnreadable(t *testing.T) {
	// A state "file" that is a directory cannot be read: an error, but not
	// a corrupt file, and nothing is moved.
	dir := t.TempDir()
	s := Store{Path: filepath.Join(dir, "state.json")}
	if err := os.Mkdir(s.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load()
	if err == nil || errors.Is(err, ErrCorruptState) {
		t.Fatalf("err = %v, want a read error", err)
	}
	assertOnly(t, dir, "state.json")
}

func TestStoreSaveFails(t *testing.T) {
	t.Run("rename over a directory", func(t *testing.T) {
		dir := t.TempDir()
		s := Store{Path: filepath.Join(dir, "state.json")}
		if err := os.MkdirAll(filepath.Join(s.Path, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := s.Save(State{Pools: map[string]Desired{"app": {Count: 1}}})
		if err == nil || !strings.Contains(err.Error(), s.Path) {
			t.Fatalf("err = %v, want an error naming %s", err, s.Path)
		}
		assertOnly(t, dir, "state.json")
	})
	t.Run("no directory", func(t *testing.T) {
		s := Store{Path: filepath.Join(t.TempDir(), "missing", "state.json")}
		err := s.Save(State{})
		if err == nil || !strings.Contains(err.Error(), s.Path) {
			t.Fatalf("err = %v, want an error naming %s", err, s.Path)
		}
	})
	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes into read-only directories")
		}
		dir := t.TempDir()
		s := Store{Path: filepath.Join(dir, "state.json")}
		if err := s.Save(State{Pools: map[string]Desired{"app": {Count: 1}}}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		err := s.Save(State{Pools: map[string]Desired{"app": {Count: 2}}})
		if err == nil || !strings.Contains(err.Error(), s.Path) {
			t.Fatalf("err = %v, want an error naming %s", err, s.Path)
		}
		assertOnly(t, dir, "state.json")
		got, err := s.Load()
		if err != nil || got.Pools["app"].Count != 1 {
			t.Errorf("after a failed Save: %+v, %v; want the old state", got, err)
		}
	})
}

// assertOnly fails unless dir holds exactly the named files.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

func FuzzStoreLoad(f *testing.F) {
	for _, seed := range []string{
		`{"version": 1, "pools": {"app": {"count": 4, "scaled": true, "held": [3]}}}`,
		`{"version": 1, "pools": {"app": {"count": 2, "stopped": true, "stopped_at": "2025-03-01T12:00:00Z"}}}`,
		`{"version": 1, "pools": null}`,
		`{"version": 1}`,
		`{"version": 2, "pools": {}}`,
		`{"version": 1, "pools": {"app": {"count": -1}}}`,
		`{"version": 1, "pools": {"app": {"held": [1e99]}}}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState(b)
		if err != nil {
			return
		}
		if st.Version != StateVersion || st.Pools == nil {
			t.Fatalf("parsed %q into %+v", b, st)
		}
		// What parses, saves and parses again the same.
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("marshal %+v: %v", st, err)
		}
		again, err := parseState(out)
		if err != nil {
			t.Fatalf("reparse %s: %v", out, err)
		}
		if !reflect.DeepEqual(normTimes(st), normTimes(again)) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", b, again, st)
		}
	})
}

// normTimes makes times comparable with DeepEqual.
func normTimes(st State) State {
	for n, d := range st.Pools {
		if !d.StoppedAt.IsZero() {
			d.StoppedAt = d.StoppedAt.UTC()
		}
		if len(d.Held) == 0 {
			d.Held = nil
		}
		st.Pools[n] = d
	}
	return st
}

// TestStoreClampsCounts: a state file cannot make a pool's count, or a held
// instance, larger than api.MaxInstances (every reconcile is sized by the
// count: 2³¹−1 made corrald fail on every start).
func TestStoreClampsCounts(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "state.json")}
	if err := os.WriteFile(s.Path, []byte(`{"version":1,"pools":{"app":{"count":2147483647,"held":[3,99999]},"api":{"count":4}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Pools["app"]; d.Count != api.MaxInstances || !slices.Equal(d.Held, []int{3}) {
		t.Errorf("app: %+v, want count %d and held [3]", d, api.MaxInstances)
	}
	if d := st.Pools["api"]; d.Count != 4 {
		t.Errorf("api: %+v, want count 4", d)
	}
}

func TestParseInstanceLimits(t *testing.T) {
	for unit, want := range map[string]int{
		"app@1.service":    1,
		"app@1024.service": 1024,
		"app@1025.service": 0,
		"app@99999":        0,
		"app@0":            0,
		"app@01":           0,
		"app@-1":           0,
	} {
		_, i, ok := api.ParseInstance(unit)
		if ok != (want > 0) || i != want {
			t.Errorf("ParseInstance(%q) = %d, %v; want %d", unit, i, ok, want)
		}
	}
}
