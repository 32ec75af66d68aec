package cli

import "golang.org/x/sys/unix"

// IsTerminal reports whether fd is a terminal, for Env.IsTerminal:
// main passes os.Stdout.Fd().
func IsTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}
