package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine is what the report says about where it ran.
type machine struct {
	cpu                   string
	cores                 int
	os, kernel, systemd   string
	node, pm2, wrk, goVer string
	gnuplot, corral       string
	date                  time.Time

	// The share of the machine's CPU in use (by anything) over 2 s before
	// the run and after it, when nothing of the benchmark runs: 0 on a
	// quiet machine.
	busyBefore, busyAfter float64
}

// describe gathers the machine's CPU, OS and the versions of the tools.
func describe(ctx context.Context, cfg config) machine {
	m := machine{cores: runtime.NumCPU(), goVer: runtime.Version(), date: time.Now(), pm2: "-", corral: "-"}
	first := func(name string, args ...string) string {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(c, name, args...).CombinedOutput() // wrk -v exits 1
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if line == "" {
			return "?"
		}
		return line
	}
	m.node = "node " + first("node", "--version")
	m.wrk = wrkVersion(first("wrk", "-v"))
	m.kernel = "Linux " + first("uname", "-r")
	sd := strings.Fields(first("systemctl", "--version")) // systemd 252 (252.39-1~deb12u2)
	m.systemd = strings.Join(sd[:min(2, len(sd))], " ")
	m.gnuplot = first("gnuplot", "--version")
	m.os = "Linux"
	if v, err := os.ReadFile("/etc/debian_version"); err == nil {
		m.os = "Debian " + strings.TrimSpace(string(v))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// busy samples /proc/stat over d: the fraction of all CPUs that were not
// idle.
func busy(ctx context.Context, d time.Duration) float64 {
	b0, t0, err := cpuTimes()
	if err != nil {
		return -1
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return -1
	}
	b1, t1, err := cpuTimes()
	if err != nil || t1 <= t0 {
		return -1
	}
	return float64(b1-b0) / float64(t1-t0)
}

// cpuTimes reads the busy and total jiffies of all CPUs from /proc/stat.
func cpuTimes() (busy, total uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseCPUTimes(string(data))
}

func parseCPUTimes(stat string) (busy, total uint64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest and guest_nice are inside user and nice already
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// pm2Version reads pm2's version from its package.json.
func pm2Version(packageJSON string) (string, error) {
	data, err := os.ReadFile(packageJSON)
	if err != nil {
		return "", err
	}
	var p struct{ Version string }
	if err := json.Unmarshal(data, &p); err != nil {
		return "", err
	}
	return "pm2 " + p.Version, nil
}

// A procSnap is the CPU time of every process and of the whole machine at
// one moment, to tell how much CPU other work took during a run.
type procSnap struct {
	busy  uint64         // user + nice + system of all CPUs, in ticks
	steal uint64         // time the hypervisor gave this machine's CPUs to others
	cpu   map[int]uint64 // utime + stime of each process, in ticks
	ppid  map[int]int
}

// userHZ is the unit of /proc's CPU times: 100 on every Linux that
// exports them (USER_HZ).
const userHZ = 100

// snapshot reads /proc/stat and /proc/*/stat; a process that exits while
// it reads is skipped.
func snapshot() procSnap {
	s := procSnap{cpu: map[int]uint64{}, ppid: map[int]int{}}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		s.busy, s.steal = userTicks(string(data))
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if ppid, ticks, ok := parseProcStat(string(data)); ok {
			s.cpu[pid], s.ppid[pid] = ticks, ppid
		}
	}
	return s
}

// userTicks is user + nice + system from /proc/stat's first line, CPU time
// that processes were charged for (not interrupts, not idle), and steal.
func userTicks(stat string) (busy, steal uint64) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	for i := 1; i <= 3 && i < len(f); i++ {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		busy += v
	}
	if len(f) > 8 {
		steal, _ = strconv.ParseUint(f[8], 10, 64)
	}
	return busy, steal
}

// parseProcStat reads the parent and utime + stime from /proc/PID/stat.
func parseProcStat(s string) (ppid int, ticks uint64, ok bool) {
	i := strings.LastIndexByte(s, ')') // the command may hold spaces and ')'
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, state
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return ppid, ut + st, true
}

// otherCPU is the CPU time that other work took between a and b: steal
// (a virtual machine's CPUs given to other machines), plus what processes
// outside the benchmark used: the machine's user + nice + system time, less what the
// processes descending from roots (this program, and so wrk, the box and
// the systems; pm2's daemon) and kernel threads used, less wrk's own
// (exited by b). Processes that both started and ended in between count as
// other: a compiler run by someone else does.
func otherCPU(a, b procSnap, roots []int, wrk time.Duration) time.Duration {
	ours := func(pid int) bool {
		for seen := 0; pid > 0 && seen < 64; seen++ {
			if slices.Contains(roots, pid) {
				return true
			}
			pid = b.ppid[pid]
		}
		return false
	}
	total := int64(b.busy) - int64(a.busy) + int64(b.steal) - int64(a.steal)
	for pid, t1 := range b.cpu {
		t0, ok := a.cpu[pid]
		if !ok || t1 < t0 {
			t0 = 0 // started in between (or a reused pid)
		}
		if ours(pid) || pid == 2 || b.ppid[pid] == 2 { // kthreadd and its threads
			total -= int64(t1 - t0)
		}
	}
	d := time.Duration(total)*time.Second/userHZ - wrk
	return max(d, 0)
}
