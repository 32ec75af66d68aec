package units

import (
	"regexp"
	"strconv"
	"strings"
)

// ExitsDir holds one record of each instance's last exit, in a file named
// after the instance's unit (app@3.service): one line "SERVICE_RESULT
// EXIT_CODE EXIT_STATUS", systemd's variables of systemd.exec(5) separated
// by single spaces, such as "oom-kill killed KILL" or "exit-code exited 3";
// EXIT_CODE and EXIT_STATUS are empty when the instance had no main
// process. The instance's ExecStopPost= writes it after every stop; corrald
// reads it (ParseExit) and creates the directory. While corrald does not
// run there may be no directory, and nothing is recorded.
const ExitsDir = "/run/corral/exits"

// exitRecord is the shell command that writes the record in ExitsDir, with
// builtins only. "$$" is a literal "$" and %n the unit's name for systemd.
// stderr is redirected first, so that a missing ExitsDir costs no journal
// line; the failed write does not stop the shell.
const exitRecord = `echo "$${SERVICE_RESULT} $${EXIT_CODE} $${EXIT_STATUS}" 2>/dev/null >` + ExitsDir + `/%n; `

var (
	exitResultRE = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)
	exitSignalRE = regexp.MustCompile(`^[A-Z][A-Z0-9+]{0,15}$`) // without SIG: KILL, RTMIN+3
)

// ParseExit reads a record of ExitsDir, with or without its newline:
// systemd's SERVICE_RESULT ("success", "exit-code", "oom-kill",
// "watchdog"…), EXIT_CODE ("exited", "killed", "dumped" or "") and
// EXIT_STATUS (an exit status from 0 to 255 after "exited", a signal name
// without SIG after "killed" or "dumped", "" after ""). ok is false for a
// line that is not such a record.
func ParseExit(line string) (result, code, status string, ok bool) {
	f := strings.Split(strings.TrimSuffix(line, "\n"), " ")
	if len(f) != 3 || !exitResultRE.MatchString(f[0]) {
		return "", "", "", false
	}
	switch f[1] {
	case "":
		ok = f[2] == ""
	case "exited":
		n, err := strconv.Atoi(f[2])
		ok = err == nil && n >= 0 && n <= 255 && strconv.Itoa(n) == f[2]
	case "killed", "dumped":
		ok = exitSignalRE.MatchString(f[2])
	}
	if !ok {
		return "", "", "", false
	}
	return f[0], f[1], f[2], true
}
