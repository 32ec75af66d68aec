package sdbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// staleAge is how old a box directory without a state file must be before CleanupStale takes
// it for a leftover rather than a box being set up right now.
const staleAge = 2 * time.Minute

// CleanupStale removes what crashed runs left behind. It looks only at directories named
// /run/sdbox.*, and takes one for a leftover when no running systemd-nspawn has it as its
// directory and either the process that booted it is gone (per its state file) or, without a
// state file, it is older than two minutes. For each leftover it kills the container's systemd
// if that outlived its nspawn, unmounts everything below the directory and removes it.
//
// It is best effort: it goes on past errors and returns them joined. Boot calls it; running it
// while other processes boot or use boxes is safe.
func CleanupStale() error {
	dirs, err := filepath.Glob(filepath.Join(runDir, dirPrefix+"*"))
	if err != nil {
		return fmt.Errorf("sdbox: %w", err)
	}
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, cleanupDir(dir))
	}
	errs = append(errs, removeStaleCgroups())
	return errors.Join(errs...)
}

func cleanupDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	if nspawnUsing(dir) {
		return nil
	}
	st, ok := readState(dir)
	switch {
	case ok && st.owner.alive():
		return nil // its process may still Close it
	case !ok && time.Since(fi.ModTime()) < staleAge:
		return nil // maybe being set up right now
	}
	if ok && st.pid1.alive() {
		if err := kill(st.pid1); err != nil {
			return fmt.Errorf("sdbox: stale box %s: %w", dir, err)
		}
	}
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("sdbox: stale box %s: %w", dir, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sdbox: stale box %s: %w", dir, err)
	}
	return nil
}

// kill sends SIGKILL to the process p (through a pidfd, so a reused PID is safe) and waits up
// to killTimeout for it to exit.
func kill(p procRef) error {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("pidfd_open %d: %w", p.pid, err)
	}
	defer unix.Close(fd)
	if !p.alive() { // checked after opening the pidfd: fd now names p or a dead process
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill %d: %w", p.pid, err)
	}
	// A pidfd becomes readable when its process exits.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(killTimeout)
	for {
		n, err := unix.Poll(fds, max(0, int(time.Until(deadline).Milliseconds())))
		switch {
		case n > 0:
			return nil
		case errors.Is(err, unix.EINTR) && time.Now().Before(deadline):
			continue
		case err != nil:
			return fmt.Errorf("wait for %d: %w", p.pid, err)
		default:
			return fmt.Errorf("process %d still alive %s after SIGKILL", p.pid, killTimeout)
		}
	}
}
