package pool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcessUnit returns the unit that process pid runs in, from its cgroup in
// /proc, as sd_pid_get_unit does: no call to systemd, so a local user who
// connects in a loop costs PID 1 nothing. A worker cannot move itself out
// of its unit's cgroup: without Delegate= the cgroups are root's.
func ProcessUnit(_ context.Context, pid uint32) (string, error) {
	if pid == 0 {
		return "", fmt.Errorf("no process id")
	}
	data, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/cgroup")
	if err != nil {
		if os.IsNotExist(err) {
			return "", fmt.Errorf("process %d has exited", pid)
		}
		return "", fmt.Errorf("cannot read the cgroup of process %d: %w", pid, err)
	}
	return unitOfCgroup(data)
}

// unitOfCgroup returns the unit in the contents of /proc/PID/cgroup: the
// first component of the unified (or name=systemd) path that is not a
// slice, e.g. app@3.service in /system.slice/system-app.slice/app@3.service;
// "" for a process in no unit.
func unitOfCgroup(data []byte) (string, error) {
	// On a legacy or hybrid host systemd tracks units in name=systemd.
	var path, named string
	for line := range bytes.Lines(data) {
		line = bytes.TrimRight(line, "\n")
		id, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		ctrl, p, ok := bytes.Cut(rest, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case string(id) == "0" && len(ctrl) == 0:
			path = string(p)
		case string(ctrl) == "name=systemd":
			named = string(p)
		}
	}
	if named != "" {
		path = named
	}
	if path == "" {
		return "", fmt.Errorf("no systemd cgroup in /proc/PID/cgroup")
	}
	if strings.HasPrefix(path, "/..") {
		return "", nil // outside the cgroup namespace of corrald's systemd
	}
	for c := range strings.SplitSeq(path, "/") {
		if c == "" || strings.HasSuffix(c, ".slice") {
			continue
		}
		if !strings.Contains(c, ".") {
			break // a cgroup of its own, not a unit's
		}
		return c, nil
	}
	return "", nil // the root cgroup or a slice: no unit
}
