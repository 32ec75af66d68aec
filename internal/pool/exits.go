package pool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/corral-pool/corral/internal/units"
	"golang.org/x/sys/unix"
)

// maxExitRecord bounds the read of one exit record: a line of systemd's words.
const maxExitRecord = 256

// lastExits sets Exit on the instances of o that failed or that systemd restarted, from
// the records their ExecStopPost= wrote in dir (units.ExitsDir), naming cfg's limits. A
// missing or unreadable record leaves Exit empty: the reasons then fall back to
// systemd's Result. dir "" reads nothing.
func lastExits(dir string, o Observed, cfg *units.Pool) {
	if dir == "" {
		return
	}
	for i, u := range o.Instances {
		if !u.Failed() && u.NRestarts == 0 && u.SubState != "auto-restart" {
			continue
		}
		if line, ok := readExit(filepath.Join(dir, u.Name)); ok {
			if result, code, status, ok := units.ParseExit(line); ok {
				u.Exit, u.ExitResult = ExitCause(result, code, status, cfg), result
				o.Instances[i] = u
			}
		}
	}
}

// readExit reads one record: a regular file, not followed through a link, at most
// maxExitRecord bytes.
func readExit(path string) (string, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	buf := make([]byte, maxExitRecord)
	n, _ := f.Read(buf)
	line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
	return string(line), n > 0
}

// ExitCause says, for humans, why an instance of cfg (nil if unknown) ended, from
// systemd's $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS (systemd.exec(5)); "" for a
// clean exit.
func ExitCause(result, code, status string, cfg *units.Pool) string {
	switch result {
	case "success", "":
		return ""
	case "oom-kill":
		if cfg != nil && cfg.MemoryMax != "" {
			return "out of memory (memory_max = " + cfg.MemoryMax + ")"
		}
		return "out of memory"
	case "watchdog", "hung": // hung: corrald's Pinger killed it (markHung)
		if cfg != nil && cfg.Watchdog > 0 {
			return fmt.Sprintf("hung: no answer for %s (watchdog = %q)", fmtDuration(cfg.Watchdog), cfg.Watchdog.String())
		}
		return "hung: the watchdog fired"
	case "timeout":
		if d := describeCode(code, status); d != "" {
			return "timed out starting or stopping; " + d
		}
		return "timed out starting or stopping"
	}
	if d := describeCode(code, status); d != "" {
		return d
	}
	return result
}

// describeCode turns systemd's EXIT_CODE and EXIT_STATUS into words.
func describeCode(code, status string) string {
	switch code {
	case "exited":
		return "exited with status " + status
	case "killed":
		return "killed by SIG" + strings.TrimPrefix(status, "SIG")
	case "dumped":
		return "dumped core on SIG" + strings.TrimPrefix(status, "SIG")
	}
	return ""
}
