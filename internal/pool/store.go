package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/corral-pool/corral/api"
)

// StateVersion is the version of the state file's format that this
// package reads and writes.
const StateVersion = 1

// DefaultStatePath is where corrald keeps its state (StateDirectory=corral).
const DefaultStatePath = "/var/lib/corral/state.json"

// ErrCorruptState is wrapped by the error of Store.Load when the state file
// cannot be parsed; the file has then been moved aside.
var ErrCorruptState = errors.New("pool: corrupt state file")

// State is what corrald keeps across its restarts and reboots: the desired
// state of every pool, by pool name.
//
//	{"version": 1, "pools": {"app": {"count": 4, "scaled": true, "held": [3]}}}
type State struct {
	Version int                `json:"version"`
	Pools   map[string]Desired `json:"pools"`
}

// Store keeps a State in a file. It has a single writer: corrald's
// coordinator goroutine; two processes or goroutines saving at once would
// not corrupt the file (every Save is atomic) but the last one would win.
type Store struct {
	// Path is the state file, e.g. DefaultStatePath. Its directory must
	// exist.
	Path string
	// Now is the clock that names moved-aside corrupt files; nil means
	// time.Now.
	Now func() time.Time
}

// Load reads the state. A missing file is an empty State (version
// StateVersion, no pools) and no error. A file that cannot be parsed, or
// is of another version, is moved aside to Path+".corrupt-"+a UTC
// timestamp: Load returns an empty State and an error wrapping
// ErrCorruptState that names where the file went, and the caller logs it
// and goes on. Other errors (permission denied) are returned with an
// empty State, the file untouched. Pools is never nil.
func (s Store) Load() (State, error) {
	empty := State{Version: StateVersion, Pools: map[string]Desired{}}
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return empty, fmt.Errorf("pool: load state: %w", err)
	}
	st, perr := parseState(b)
	if perr == nil {
		return st, nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	aside := s.Path + ".corrupt-" + now().UTC().Format("20060102T150405.000Z")
	if err := os.Rename(s.Path, aside); err != nil {
		return empty, fmt.Errorf("%w %s: %w; could not move it aside: %w", ErrCorruptState, s.Path, perr, err)
	}
	return empty, fmt.Errorf("%w %s: %w; moved it to %s, starting from the pool files", ErrCorruptState, s.Path, perr, aside)
}

// parseState decodes and checks a state file.
func parseState(b []byte) (State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, err
	}
	if st.Version != StateVersion {
		return State{}, fmt.Errorf("version %d, want %d", st.Version, StateVersion)
	}
	if st.Pools == nil {
		st.Pools = map[string]Desired{}
	}
	for name, d := range st.Pools {
		if name == "" {
			return State{}, errors.New("a pool without a name")
		}
		if d.Count < 0 {
			return State{}, fmt.Errorf("pool %s: count %d", name, d.Count)
		}
		for _, h := range d.Held {
			if h < 1 {
				return State{}, fmt.Errorf("pool %s: held instance %d", name, h)
			}
		}
		// No pool runs more than api.MaxInstances, whatever the file
		// says: a count read from it sizes every reconcile.
		d.Count = min(d.Count, api.MaxInstances)
		d.Held = slices.DeleteFunc(d.Held, func(h int) bool { return h > api.MaxInstances })
		st.Pools[name] = d
	}
	return st, nil
}

// Save writes st atomically: to a temporary file in Path's directory,
// synced and made mode 0644, renamed over Path, then the directory
// synced. Readers see the old state or the new one, never a part. On
// failure the temporary file is removed and Path is left as it was
// (unless only the final directory sync failed). A zero st.Version is
// written as StateVersion.
func (s Store) Save(st State) (err error) {
	if st.Version == 0 {
		st.Version = StateVersion
	}
	if st.Pools == nil {
		st.Pools = map[string]Desired{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("pool: save state %s: %w", s.Path, err)
	}
	b = append(b, '\n')
	dir, base := filepath.Split(s.Path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("pool: save state %s: %w", s.Path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("pool: save state %s: %w", s.Path, err)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), s.Path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("pool: save state %s: %w", s.Path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return d.Close()
}
