package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/corral-pool/corral/test/sdbox"
)

// The restart part of the steer suite: where the time from a SIGKILL to
// the replacement's READY=1 goes, the window in which the survivor of a
// kill carries the whole load. The pool is idle; each variant is a drop-in
// on the pool's instances, to price a part of what systemd does at each
// start, not a setting to drop: the sandbox is corral's (docs/security.md).

// restartVariants are the drop-ins measured, the first none.
var restartVariants = []struct{ name, dropin string }{
	{"as generated", ""},
	{"without the mount namespace's settings", "ProtectSystem=no\nProtectHome=no\nPrivateTmp=no\nPrivateDevices=no\nProtectKernelTunables=no\nProtectKernelModules=no\nProtectKernelLogs=no\nProtectControlGroups=no\nProtectClock=no\nProtectProc=default\nPrivateMounts=no\n"},
	{"without the system call filters", "SystemCallFilter=\nSystemCallArchitectures=\nRestrictAddressFamilies=\nRestrictNamespaces=no\nLockPersonality=no\nRestrictRealtime=no\nRestrictSUIDSGID=no\nMemoryDenyWriteExecute=no\n"},
	{"without ExecStopPost= (the exit record)", "ExecStopPost=\n"},
	{"ExecStopPost= a no-op (what any command there costs)", "ExecStopPost=\nExecStopPost=-+/bin/true\n"},
	{"without the network namespace (PrivateNetwork=, IPAddressDeny=)", "PrivateNetwork=no\nIPAddressDeny=\n"},
	{"without IPAddressDeny= (its cgroup BPF program)", "IPAddressDeny=\n"},
	{"without the user and IPC namespaces (PrivateUsers=, PrivateIPC=)", "PrivateUsers=no\nPrivateIPC=no\n"},
}

const restartKills = 5

// restartRow is one kill of the restart part, each span on the kernel's
// monotonic clock.
type restartRow struct {
	seen, begun, ready time.Duration // kill → systemd saw the exit → the start began → READY=1
	cpu                time.Duration // the replacement's CPU time, all its threads, until READY=1 (and a few ms after)
}

func restartRun(box *sdbox.Box, sh func(...string) (string, error), p steerPool) error {
	unit := p.name + "@2.service"
	dropin := "/etc/systemd/system/" + p.name + "@.service.d/zz-bench-restart.conf"
	fmt.Printf("### From a SIGKILL to the replacement's READY=1\n\n")
	fmt.Printf("%s@2, idle, killed %d times for each row, from the host; each row but the first is a drop-in on the pool's instances that prices a part of each start (the sandbox stays as corral generates it; docs/security.md). Spans on the kernel's monotonic clock: the kill, systemd's ActiveExitTimestamp (it saw the exit), InactiveExitTimestamp (the start began) and ActiveEnterTimestamp (READY=1); the replacement's CPU time, all its threads, from its fork on (the sandbox is set up in it before exec) until READY=1. Median, and the range.\n\n", p.name, restartKills)
	fmt.Printf("| instances | kill → exit seen | exit → start | start → READY=1 | kill → READY=1 | replacement's CPU until READY=1 |\n|---|---|---|---|---|---|\n")
	defer func() {
		sh("rm", "-f", dropin)
		sh("systemctl", "daemon-reload")
		sh("systemctl", "restart", unit)
	}()
	for _, v := range restartVariants {
		if v.dropin == "" {
			sh("rm", "-f", dropin)
		} else if err := box.WriteFile(dropin, []byte("[Service]\n"+v.dropin), 0o644); err != nil {
			return err
		}
		for _, c := range [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "restart", unit}} {
			if out, err := sh(c...); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
			}
		}
		var rows []restartRow
		for range restartKills {
			time.Sleep(500 * time.Millisecond)
			r, err := restartOnce(box, sh, unit)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			rows = append(rows, r)
		}
		col := func(f func(r restartRow) time.Duration) string {
			var ds []time.Duration
			for _, r := range rows {
				ds = append(ds, f(r))
			}
			return fmt.Sprintf("%s (%s–%s)", fmtMS(median(ds)), fmtMS(slices.Min(ds)), fmtMS(slices.Max(ds)))
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", v.name,
			col(func(r restartRow) time.Duration { return r.seen }),
			col(func(r restartRow) time.Duration { return r.begun - r.seen }),
			col(func(r restartRow) time.Duration { return r.ready - r.begun }),
			col(func(r restartRow) time.Duration { return r.ready }),
			col(func(r restartRow) time.Duration { return r.cpu }))
	}
	fmt.Println()
	return nil
}

// restartOnce kills unit's main process from the host and waits for its
// replacement's READY=1.
func restartOnce(box *sdbox.Box, sh func(...string) (string, error), unit string) (restartRow, error) {
	var r restartRow
	old, host, err := mainPID(box, sh, unit)
	if err != nil {
		return r, err
	}
	kill := monoNow()
	if err := syscall.Kill(host, syscall.SIGKILL); err != nil {
		return r, err
	}
	pid, active, err := awaitReplacement(sh, unit, old, kill, 10*time.Millisecond)
	if err != nil {
		return r, err
	}
	r.ready = active - kill
	if h, err := hostPID(box, int(pid)); err == nil {
		r.cpu = cpuTimes(map[string]int{"replacement": h})["replacement"]
	}
	at := func(prop string) (time.Duration, error) {
		us, err := showInt(sh, prop, unit)
		return time.Duration(us)*time.Microsecond - kill, err
	}
	if r.seen, err = at("ActiveExitTimestampMonotonic"); err != nil {
		return r, err
	}
	r.begun, err = at("InactiveExitTimestampMonotonic")
	return r, err
}
