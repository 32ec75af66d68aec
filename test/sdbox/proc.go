package sdbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file reads /proc: processes (to find the container's systemd and to tell live boxes
// from stale ones) and mounts.

// procStat is what sdbox needs from /proc/PID/stat.
type procStat struct {
	comm  string
	state byte // R, S, D, Z (zombie), ...
	ppid  int
	start uint64 // starttime in clock ticks since boot: with the PID, identifies a process
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(data))
}

// parseStat parses the text of /proc/PID/stat, where comm may hold spaces and parentheses.
func parseStat(s string) (procStat, error) {
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("sdbox: malformed /proc stat %q", s)
	}
	// After comm: state(3) ppid(4) ... starttime(22); fields[0] is field 3.
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("sdbox: malformed /proc stat %q", s)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procStat{}, fmt.Errorf("sdbox: malformed /proc stat ppid %q", fields[1])
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("sdbox: malformed /proc stat starttime %q", fields[19])
	}
	return procStat{comm: s[open+1 : closing], state: fields[0][0], ppid: ppid, start: start}, nil
}

// pids lists the processes in /proc.
func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// findInit returns the PID of the container's systemd started by systemd-nspawn nspawnPID:
// its child (or grandchild, depending on how nspawn forks) named "systemd" that is PID 1 of
// its own PID namespace. 0 if there is none yet.
func findInit(nspawnPID int) int {
	stats := map[int]procStat{}
	for _, pid := range pids() {
		if st, err := readStat(pid); err == nil {
			stats[pid] = st
		}
	}
	for pid, st := range stats {
		if st.comm != "systemd" {
			continue
		}
		parent := st.ppid
		if parent != nspawnPID && stats[parent].ppid != nspawnPID {
			continue
		}
		if nsPID1(pid) {
			return pid
		}
	}
	return 0
}

// nsPID1 reports whether pid is PID 1 in its innermost PID namespace (the last NSpid field).
func nsPID1(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			return len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	return false
}

// procRef names a process across PID reuse: PID plus start time.
type procRef struct {
	pid   int
	start uint64
}

func (p procRef) String() string { return fmt.Sprintf("%d:%d", p.pid, p.start) }

// alive reports whether the process still runs (same PID, same start time, not a zombie).
func (p procRef) alive() bool {
	if p.pid <= 0 {
		return false
	}
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start && st.state != 'Z' && st.state != 'X'
}

func refOf(pid int) procRef {
	st, err := readStat(pid)
	if err != nil {
		return procRef{pid: pid}
	}
	return procRef{pid: pid, start: st.start}
}

func parseRef(s string) (procRef, bool) {
	p, st, ok := strings.Cut(s, ":")
	if !ok {
		return procRef{}, false
	}
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(st, 10, 64)
	return procRef{pid: pid, start: start}, err1 == nil && err2 == nil
}

// boxState is the state file of a box, dir/state on the box's tmpfs, read by CleanupStale
// of later runs: who owns the box and which processes run it.
type boxState struct {
	owner  procRef // the process that called Boot
	nspawn procRef // zero until started
	pid1   procRef // zero until found
}

func (b *Box) writeState() error {
	st := boxState{owner: refOf(os.Getpid())}
	if b.cmd != nil {
		st.nspawn = refOf(b.cmd.Process.Pid)
	}
	if b.pid1 > 0 {
		st.pid1 = refOf(b.pid1)
	}
	data := fmt.Sprintf("owner=%s\nnspawn=%s\npid1=%s\n", st.owner, st.nspawn, st.pid1)
	if err := os.WriteFile(filepath.Join(b.dir, "state"), []byte(data), 0o600); err != nil {
		return fmt.Errorf("sdbox: write state: %w", err)
	}
	return nil
}

func readState(dir string) (boxState, bool) {
	data, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		return boxState{}, false
	}
	var st boxState
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, _ := strings.Cut(line, "=")
		ref, _ := parseRef(v)
		switch k {
		case "owner":
			st.owner = ref
		case "nspawn":
			st.nspawn = ref
		case "pid1":
			st.pid1 = ref
		}
	}
	return st, true
}

// nspawnUsing reports whether a running systemd-nspawn has dir/root as its directory. This
// also sees boxes booted by hand with the shell recipe, which have no state file.
func nspawnUsing(dir string) bool {
	root := filepath.Join(dir, "root")
	for _, pid := range pids() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(data, []byte("nspawn")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "systemd-nspawn" {
			continue
		}
		for i, a := range args {
			if a == "--directory="+root || a == "-D"+root ||
				((a == "-D" || a == "--directory") && i+1 < len(args) && args[i+1] == root) {
				return true
			}
		}
	}
	return false
}

// mountsUnder returns the mount points at or below dir in this mount namespace, in the order
// of /proc/self/mountinfo (parents before children).
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("sdbox: %w", err)
	}
	defer f.Close()
	all, err := parseMountinfo(f)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range all {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	return out, nil
}

// parseMountinfo returns the mount points (field 5) of a mountinfo file, unescaped.
func parseMountinfo(r io.Reader) ([]string, error) {
	lines, err := mountinfoLines(r)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range lines {
		out = append(out, unescapeMount(f[4]))
	}
	return out, nil
}

// mountinfoLines splits a mountinfo file into the fields of each line (at least 5).
func mountinfoLines(r io.Reader) ([][]string, error) {
	var out [][]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 5 {
			out = append(out, f)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sdbox: read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for space, \011, \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
