// Command corral-generator is a systemd generator (systemd.generator(7)):
// it turns every valid pool file in /etc/corral/pools.d into units in
// systemd's generator directory, and the addresses of corrald's metrics and
// HAProxy agent in /etc/corral/corral.toml into the socket units that
// listen for corrald (package daemonconf). It runs at boot and at every
// daemon-reload, before D-Bus and maybe before /var, so it only reads the
// pool files and writes units. A broken pool file skips that pool only;
// its error goes to the kernel log, which reaches the journal, and
// `corral validate` prints the same error. It always exits 0 once it has
// its arguments, so that it never stands in the way of boot.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/corral-pool/corral/internal/daemonconf"
	"github.com/corral-pool/corral/internal/units"
)

func main() {
	if len(os.Args) != 2 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: corral-generator NORMAL-DIR [EARLY-DIR LATE-DIR] (run by systemd at boot and daemon-reload)")
		os.Exit(2)
	}
	log := kmsg()
	run(os.Args[1], units.Dir, runtime.NumCPU(), units.DefaultHost(), log)
	daemon(os.Args[1], daemonconf.Path, log)
}

// daemon generates the socket units of corrald's settings at confPath into
// outDir. A broken file generates none: corrald says why too.
func daemon(outDir, confPath string, log io.Writer) {
	c, err := daemonconf.Load(confPath)
	if err != nil {
		logf(log, 3, "%v (no metrics or agent socket generated)", err)
		return
	}
	for _, u := range c.Units() {
		if err := units.WriteFile(outDir, units.File{Name: u.Name, Data: []byte(u.Data), Link: u.Link}); err != nil {
			logf(log, 3, "%v", err)
		}
	}
}

// run generates the units of every pool in poolDir into outDir and logs
// what it skipped.
func run(outDir, poolDir string, cpus int, host units.Host, log io.Writer) {
	files, err := units.PoolFiles(poolDir)
	if err != nil {
		logf(log, 3, "%v", err)
		return
	}
	skipped, warnings, err := units.Generate(files, outDir, cpus, host)
	for _, e := range skipped {
		logf(log, 3, "%v (pool skipped: no units generated; run 'corral validate')", e)
	}
	for _, e := range warnings {
		logf(log, 4, "%v (units generated; instances may fail to start)", e)
	}
	if err != nil {
		logf(log, 3, "%v", err)
	}
}

// logf writes one kernel-log line with a syslog priority, as generators
// must log: /dev/kmsg reaches the journal once journald runs.
func logf(w io.Writer, prio int, format string, args ...any) {
	fmt.Fprintf(w, "<%d>corral-generator[%d]: %s\n", prio, os.Getpid(), fmt.Sprintf(format, args...))
}

// kmsg returns /dev/kmsg, or stderr when it cannot be opened (in a
// container, or when run by hand).
func kmsg() io.Writer {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return os.Stderr
	}
	return f
}
