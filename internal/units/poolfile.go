package units

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxFileSize is the largest pool file read; real ones are a few hundred
// bytes.
const MaxFileSize = 64 << 10

// readPoolFile reads a pool file as every reader of pool files must:
//   - only a regular file is opened, so a FIFO or a device named x.toml is
//     refused at once instead of blocking the generator at boot or corrald's
//     loop for ever (it is opened non-blocking, and checked again once open);
//   - at most MaxFileSize bytes;
//   - in the pool directory (h.PoolDir), where what a file says runs as any
//     user but root: the file must be owned by h.PoolFileOwner (root) and
//     not writable by its group or others, and a link may point only to a
//     file in the same directory.
//
// Files elsewhere (a draft given to `corral validate`) are not held to the
// pool directory's rules: they are not installed.
func (h Host) readPoolFile(path string) ([]byte, error) {
	trusted := h.PoolDir != "" && filepath.Dir(filepath.Clean(path)) == filepath.Clean(h.PoolDir)
	real := path
	lfi, err := os.Lstat(path)
	if err != nil {
		return nil, errors.New(readErrMsg(err))
	}
	if lfi.Mode()&fs.ModeSymlink != 0 {
		if real, err = filepath.EvalSymlinks(path); err != nil {
			return nil, fmt.Errorf("is a link that leads nowhere (%s): fix or remove it", readErrMsg(err))
		}
		if trusted {
			dir, err := filepath.EvalSymlinks(h.PoolDir)
			if err != nil {
				return nil, errors.New(readErrMsg(err))
			}
			if filepath.Dir(real) != dir {
				return nil, fmt.Errorf("is a link to %s, outside %s, whose owner could run code as any user: copy the file into %s instead of linking to it", real, h.PoolDir, h.PoolDir)
			}
		}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, errors.New(readErrMsg(err))
	}
	if err := h.checkPoolFile(fi, trusted); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, errors.New(readErrMsg(err))
	}
	defer f.Close()
	// What was opened, not what was looked at a moment before.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := h.checkPoolFile(fi, trusted); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("is larger than %d KiB: a pool file is a few lines", MaxFileSize>>10)
	}
	return data, nil
}

// checkPoolFile applies readPoolFile's rules to what stat said of a file.
func (h Host) checkPoolFile(fi fs.FileInfo, trusted bool) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("is not a regular file (%s): a pool file must be one; remove it", fileType(fi.Mode()))
	}
	if fi.Size() > MaxFileSize {
		return fmt.Errorf("is larger than %d KiB: a pool file is a few lines", MaxFileSize>>10)
	}
	if !trusted {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("cannot tell its owner")
	}
	if st.Uid != h.PoolFileOwner {
		return fmt.Errorf("is owned by uid %d, not root, and what it says runs as any user: 'chown root: %s' once you trust its content", st.Uid, fi.Name())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("is writable by its group or others (mode %04o), who could then run code as any user: 'chmod go-w %s'", fi.Mode().Perm(), fi.Name())
	}
	return nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}
