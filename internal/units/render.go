package units

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-pool/corral/internal/message"
)

// File is one file the generator writes into systemd's generator directory.
type File struct {
	// Name is the path relative to the output directory, such as
	// "app@.service" or "multi-user.target.wants/app.target".
	Name string
	// Data is the unit file's text; empty when Link is set.
	Data []byte
	// Link, when set, makes the file a symbolic link with this target.
	Link string
}

// Count returns how many instances the pool's target starts: Instances,
// or cpus when Instances is 0 ("auto"). cpus below 1 count as 1.
func (p *Pool) Count(cpus int) int {
	if p.Instances > 0 {
		return p.Instances
	}
	return max(cpus, 1)
}

// Render returns the unit files of a pool, in a stable order: the worker
// template, the socket unit(s), the target and, with StartOnBoot, the
// link that starts the target at boot. cpus is the number of usable CPUs,
// for instances = "auto". Render is pure: it neither reads nor writes the
// host.
func Render(p *Pool, cpus int) []File {
	files := []File{
		{Name: p.Name + "@.service", Data: renderService(p)},
	}
	if p.Balance == BalanceShared {
		files = append(files, File{Name: p.Name + ".socket", Data: renderSocket(p)})
	} else {
		files = append(files, File{Name: p.Name + "@.socket", Data: renderSocket(p)})
	}
	files = append(files, File{Name: p.Name + ".target", Data: renderTarget(p, p.Count(cpus))})
	if p.StartOnBoot {
		files = append(files, File{Name: "multi-user.target.wants/" + p.Name + ".target", Link: "../" + p.Name + ".target"})
	}
	return files
}

// UnitNames returns the names of the units Render creates for a pool
// called name, in both balance modes, so callers can check they shadow
// nothing.
func UnitNames(name string) []string {
	return []string{name + ".target", name + "@.service", name + ".socket", name + "@.socket", name + ".service"}
}

// HintCommand is run after an instance stops (ExecStopPost=) with one of
// the results of HintCases; see corral(1), `corral hint`.
const HintCommand = "/usr/bin/corral hint"

// HintCases returns the "EXIT_CODE:EXIT_STATUS" pairs (systemd.exec(5))
// after which `corral hint` may have something to say about an instance of
// p. ExecStopPost= runs it only after those: systemd waits for
// ExecStopPost= before it restarts a crashed instance, and starting corral
// cost every replacement 20 to 40 ms, while a shell's case costs about 1.
// The test of the hints in corral's cli keeps the two in step.
func HintCases(p *Pool) []string {
	cases := []string{"exited:200", "exited:203", "exited:216", "exited:217", "exited:218", "exited:226", "exited:228", "exited:233",
		"killed:SYS", "dumped:SYS"}
	if !p.Sandbox.WriteExecuteMemory {
		for _, sig := range []string{"TRAP", "ILL", "SEGV", "ABRT", "BUS"} {
			cases = append(cases, "killed:"+sig, "dumped:"+sig)
		}
	}
	return cases
}

// HintResults are the SERVICE_RESULTs (systemd.exec(5)) after which
// `corral hint` has something to say whatever the exit: the kernel's OOM
// killer, and the watchdog.
func HintResults() []string { return []string{"oom-kill", "watchdog"} }

// hintLine is the ExecStopPost= command line: a shell that records the
// exit in ExitsDir, then runs HintCommand only after the results of
// HintCases ("$$" is a literal "$" for systemd).
func hintLine(p *Pool) string {
	var pats []string
	for _, r := range HintResults() {
		pats = append(pats, r+":*")
	}
	for _, c := range HintCases(p) {
		pats = append(pats, "*:"+c)
	}
	return `/bin/sh -c '` + exitRecord + `case "$${SERVICE_RESULT}:$${EXIT_CODE}:$${EXIT_STATUS}" in ` + strings.Join(pats, "|") + `) exec ` + HintCommand + `;; esac'`
}

type unitWriter struct{ strings.Builder }

func (w *unitWriter) section(name string) {
	if w.Len() > 0 {
		w.WriteString("\n")
	}
	w.WriteString("[" + name + "]\n")
}

func (w *unitWriter) set(key, value string) {
	w.WriteString(key + "=" + value + "\n")
}

// setIf sets key unless value is "" (the pool file does not set it).
func (w *unitWriter) setIf(key, value string) {
	if value != "" {
		w.set(key, value)
	}
}

// escSpec escapes systemd's specifier character.
func escSpec(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// quote quotes one word for ExecStart=, which systemd splits into words
// with C unescaping, expanding specifiers (%) and variables ($).
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	return `"` + r.Replace(s) + `"`
}

// quoteEnv is quote for the lines that expand no $ variables, where "$$"
// would stay "$$": Environment=, ReadWritePaths=.
func quoteEnv(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%")
	return `"` + r.Replace(s) + `"`
}

func systemdDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

func (w *unitWriter) unitHeader(p *Pool, what string) {
	w.WriteString("# Generated by corral-generator from " + p.Path + "; edit that file, not this one.\n")
	w.section("Unit")
	desc := "corral pool " + p.Name
	if p.Description != "" {
		desc = p.Description + " (corral pool " + p.Name + ")"
	}
	w.set("Description", escSpec(desc)+what)
	w.set("Documentation", "man:corral.toml(5)")
	w.set("SourcePath", escSpec(p.Path))
}

func renderService(p *Pool) []byte {
	var w unitWriter
	w.unitHeader(p, ", instance %i")
	w.set("PartOf", p.Name+".target")
	sock := p.Name + ".socket"
	if p.Balance.PerInstance() {
		sock = p.Name + "@%i.socket"
	}
	w.set("Requires", sock)
	w.set("After", sock)
	w.set("StartLimitIntervalSec", systemdDuration(p.Restart.Interval))
	w.set("StartLimitBurst", strconv.Itoa(p.Restart.Burst))

	w.section("Service")
	if p.Readiness == ReadinessNotify {
		w.set("Type", "notify")
		w.set("NotifyAccess", "main")
	} else {
		w.set("Type", "exec")
	}
	w.set("Sockets", sock)
	// The listening sockets' O_NONBLOCK lives on the open file
	// description, which all instances of a shared pool share: with the
	// default NonBlocking=no, every start of one instance would switch it
	// to blocking for its running siblings, whose accept(2) could then
	// block in the kernel (and their listener's Close with it).
	w.set("NonBlocking", "yes")
	args := make([]string, len(p.Exec))
	for i, a := range p.Exec {
		args[i] = quote(a)
	}
	w.set("ExecStart", strings.Join(args, " "))
	corral := quoteEnv("CORRAL_POOL="+p.Name) + " CORRAL_INSTANCE=%i " + quoteEnv("CORRAL_STOP_TIMEOUT="+p.StopTimeout.String()) +
		" " + quoteEnv(message.EnvSocket+"="+message.SocketPath)
	if p.Watchdog > 0 {
		// For the worker and corrald, whatever the readiness.
		corral += " " + quoteEnv("CORRAL_WATCHDOG="+p.Watchdog.String())
	}
	w.set("Environment", corral)
	w.set("Environment", quoteEnv("CORRAL_LISTEN="+listenList(p)))
	for _, kv := range environment(p) {
		w.set("Environment", quoteEnv(kv))
	}
	if p.WorkingDirectory != "" {
		w.set("WorkingDirectory", escSpec(p.WorkingDirectory))
	}
	w.set("SyslogIdentifier", p.Name+"@%i")
	// After a failure, one journal line naming the setting to change. "+":
	// outside the sandbox, which would cost a crashed instance's
	// replacement ~50 ms of namespace setup; it only reads systemd's
	// EXIT_* variables and the root-owned pool file.
	w.set("ExecStopPost", "-+"+hintLine(p))
	w.set("Restart", p.Restart.Policy)
	w.set("RestartSec", systemdDuration(p.Restart.Delay))
	w.set("TimeoutStartSec", systemdDuration(p.StartTimeout))
	w.set("TimeoutStopSec", systemdDuration(p.StopTimeout))
	w.set("KillMode", "mixed")
	if p.Watchdog > 0 && p.Readiness == ReadinessNotify {
		// A simple worker sends no WATCHDOG=1: corrald pings it instead.
		w.set("WatchdogSec", systemdDuration(p.Watchdog))
		w.set("WatchdogSignal", p.WatchdogSignal)
	}
	w.setIf("CPUQuota", p.CPUQuota)
	if p.CPUWeight > 0 {
		w.set("CPUWeight", strconv.Itoa(p.CPUWeight))
	}
	w.setIf("TasksMax", p.TasksMax)
	w.setIf("MemoryHigh", p.MemoryHigh)
	w.setIf("MemoryMax", p.MemoryMax)
	if p.OpenFiles > 0 {
		w.set("LimitNOFILE", strconv.Itoa(p.OpenFiles))
	}
	w.WriteString("\n# Sandbox: corral's defaults; loosen them in [sandbox] of the pool file.\n")
	for _, kv := range Hardening(p) {
		w.set(kv.Key, kv.Value)
	}
	return []byte(w.String())
}

// listenList is CORRAL_LISTEN: the pool's listen addresses, space-separated,
// in the order of their file descriptors (3, 4, …).
func listenList(p *Pool) string {
	addrs := make([]string, len(p.Listen))
	for i, l := range p.Listen {
		addrs[i] = l.Address
	}
	return strings.Join(addrs, " ")
}

// environment returns the pool's environment as KEY=VALUE, sorted, with the
// Node preload put first in NODE_OPTIONS when it is on.
func environment(p *Pool) []string {
	env := maps.Clone(p.Environment)
	if p.NodePreload {
		opts := "--require=" + NodePreloadPath
		if o := env["NODE_OPTIONS"]; o != "" {
			opts += " " + o
		}
		if env == nil {
			env = map[string]string{}
		}
		env["NODE_OPTIONS"] = opts
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func renderSocket(p *Pool) []byte {
	var w unitWriter
	if p.Balance == BalanceShared {
		w.unitHeader(p, ", listening socket")
	} else {
		w.unitHeader(p, ", listening socket of instance %i")
	}
	w.section("Socket")
	for _, l := range p.Listen {
		w.set("ListenStream", escSpec(l.Stream()))
	}
	w.set("FileDescriptorName", p.Name)
	if p.Balance == BalanceShared {
		// A socket with Accept=no must name a loadable service, not a
		// template: a connection while no instance runs starts instance 1.
		w.set("Service", p.Name+"@1.service")
	} else {
		w.set("ReusePort", "yes")
	}
	w.set("NoDelay", "yes")
	return []byte(w.String())
}

func renderTarget(p *Pool, n int) []byte {
	var w unitWriter
	w.unitHeader(p, fmt.Sprintf(", %d instances", n))
	inst := make([]string, n)
	for i := range inst {
		inst[i] = fmt.Sprintf("%s@%d.service", p.Name, i+1)
	}
	// Several short lines rather than one long one.
	for i := 0; i < n; i += 16 {
		line := strings.Join(inst[i:min(i+16, n)], " ")
		w.set("Wants", line)
		w.set("After", line)
	}
	return []byte(w.String())
}
