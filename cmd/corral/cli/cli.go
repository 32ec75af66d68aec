// Package cli implements the corral command. Run is what main calls; tests
// call it directly.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corral-pool/corral/api"
)

// Exit codes of the corral command, documented in corral(1).
const (
	ExitOK         = 0 // success
	ExitInvalid    = 1 // a pool file is invalid (validate), or the operation failed
	ExitUsage      = 2 // bad command line
	ExitDenied     = 3 // corrald refused: not root and not in the corral group
	ExitNotRunning = 4 // corrald is not running
)

// ExitError carries the exit code main should use.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// usageError is a bad command line: exit code ExitUsage.
func usageError(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// failed is an operation that failed: exit code ExitInvalid.
func failed(format string, args ...any) error {
	return &ExitError{Code: ExitInvalid, Err: fmt.Errorf(format, args...)}
}

// Env is what commands need from outside: tests replace its parts.
type Env struct {
	Stdout, Stderr io.Writer
	// Stdin is where 'corral broadcast POOL -' reads its message.
	Stdin io.Reader
	// PoolDir is where pool files live (units.Dir on a host).
	PoolDir string
	// CPUs is the number of usable CPUs, for instances = "auto".
	CPUs int
	// DaemonConf is corrald's settings file (daemonconf.Path on a host):
	// status shows the HAProxy agent's answer when it sets [agent]. ""
	// reads none.
	DaemonConf string
	// Version is the program's version.
	Version string

	// Connect opens a client of corrald's D-Bus API (api.Dial on a
	// host). Commands that talk to corrald call it once per run and close
	// the result if it is an io.Closer. If nil, those commands fail.
	Connect func(ctx context.Context) (api.API, error)
	// Now returns the current time; times are shown in its location.
	// If nil, time.Now.
	Now func() time.Time
	// Journal runs journalctl with args, copying its standard output to
	// stdout, until journalctl exits or ctx is done. It returns
	// ErrJournalDenied when the journal cannot be read. If nil, Journalctl.
	Journal func(ctx context.Context, args []string, stdout io.Writer) error
	// IsTerminal is true when Stdout is a terminal (see IsTerminal): monit
	// redraws in place, and crash-loops are highlighted.
	IsTerminal bool
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Env) journal(ctx context.Context, args []string, stdout io.Writer) error {
	if e.Journal != nil {
		return e.Journal(ctx, args, stdout)
	}
	return Journalctl(ctx, args, stdout)
}

type command struct {
	name    string
	alias   string
	args    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

func (c command) usage() string { return strings.TrimSpace("corral " + c.name + " " + c.args) }

var commands []command

func init() {
	commands = []command{
		{"list", "ls", "[--json]", "show every pool and its instances: state, pid, uptime, restarts, cpu, memory", runList},
		{"status", "", "POOL [--json]", "show one pool and each of its instances in detail", runStatus},
		{"scale", "", "POOL N|+N|-N|auto", "set how many instances a pool runs (auto: one per CPU)", runScale},
		{"start", "", "POOL[@I] | NAME --listen ADDR [-i N|auto] [-e K=V] [--cwd DIR] -- COMMAND [ARG...]", "start a pool, or one instance; with a command, make pool NAME for it first", runStart},
		{"stop", "", "POOL[@I]", "stop a pool, or one instance; it stays stopped until started", runStop},
		{"restart", "", "POOL[@I] [--drain [--drain-timeout D]]", "restart every instance of a pool, or one instance; --drain: out of the balancers' rotation meanwhile", runRestart},
		{"delete", "del", "POOL", "stop a pool, remove its file, its units and its state", runDelete},
		{"apply", "", "", "make the pool files in effect: validate, reload units, roll changed pools", runApply},
		{"reload", "", "POOL [--drain [--drain-timeout D]]", "rolling restart onto new binaries and units, each instance ready before the next", runReload},
		{"deploy", "", "POOL DIR [--json]", "point the pool's release link at DIR: a canary, then the rest, each checked; rolled back by itself when one fails", runDeploy},
		{"rollback", "", "POOL [--json]", "deploy the release before the current one", runRollback},
		{"drain", "", "POOL [--timeout D]", "take a pool out of its balancers' rotation (HAProxy agent) and wait for its connections to end", runDrain},
		{"undrain", "", "POOL", "put a drained pool back in its balancers' rotation", runUndrain},
		{"cordon", "", "POOL@I", "send no new connections to an instance; it keeps those it has (steering in the kernel)", runCordon},
		{"uncordon", "", "POOL@I", "let new connections reach a cordoned instance again", runUncordon},
		{"broadcast", "", "POOL MESSAGE|- [--wait] [--timeout D] [--json]", "deliver a message to every running instance of a pool; --wait prints each reply", runBroadcast},
		{"send", "", "POOL@I MESSAGE|- [--wait] [--timeout D] [--json]", "deliver a message to one instance; --wait prints its reply", runSend},
		{"logs", "", "POOL [-f] [-n N] [--instance I]", "show the instances' journal, each line prefixed with its instance", runLogs},
		{"monit", "", "[POOL] [--interval D] [--count N]", "live view of instances (cpu %, memory, restarts) and latest log lines", runMonit},
		{"validate", "", "[FILE...]", "check pool files as the generator does (default: every file in the pool directory)", runValidate},
		{"hint", "", "", "(run by systemd after a worker stops) say which pool setting stopped it", runHint},
		{"version", "", "", "print corral's version", func(_ context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usageError("version takes no arguments")
			}
			fmt.Fprintln(env.Stdout, "corral", env.Version)
			return nil
		}},
		{"help", "", "[COMMAND]", "show this help, or one command's", runHelp},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name || c.alias != "" && c.alias == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: corral COMMAND [ARGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands {
		name := c.name
		if c.alias != "" {
			name += ", " + c.alias
		}
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(name+" "+c.args), c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "list, status, scale, start, stop, restart, reload, deploy, rollback, broadcast,")
	fmt.Fprintln(w, "send and monit ask corrald (corral.service); scale, start, stop, restart, reload,")
	fmt.Fprintln(w, "deploy, rollback, broadcast and send need root or the corral group. logs reads")
	fmt.Fprintln(w, "the journal.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 failed operation or invalid pool file, 2 bad command line,")
	fmt.Fprintln(w, "3 permission denied, 4 corrald not running. See corral(1).")
}

func runHelp(_ context.Context, env *Env, args []string) error {
	switch len(args) {
	case 0:
		usage(env.Stdout)
		return nil
	case 1:
		c, ok := lookup(args[0])
		if !ok {
			return usageError("help: unknown command %q: run 'corral help' for the list", args[0])
		}
		commandHelp(env.Stdout, c)
		return nil
	}
	return usageError("help takes at most one command; usage: corral help [COMMAND]")
}

func commandHelp(w io.Writer, c command) {
	fmt.Fprintln(w, "usage:", c.usage())
	fmt.Fprintln(w, " ", c.summary)
	if c.alias != "" {
		fmt.Fprintf(w, "  alias: corral %s\n", c.alias)
	}
	fmt.Fprintln(w, "  see corral(1)")
}

// wantsHelp reports whether args ask for a command's help (-h or --help
// before any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "--help":
			return true
		}
	}
	return false
}

// Run runs the corral command line args (without the program name).
func Run(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		usage(env.Stderr)
		return &ExitError{Code: ExitUsage, Err: errors.New("no command given: run 'corral help'")}
	}
	name := args[0]
	switch name {
	case "-h", "--help":
		name = "help"
	case "-v", "--version":
		name = "version"
	}
	c, ok := lookup(name)
	if !ok {
		return usageError("unknown command %q: run 'corral help' for the list", args[0])
	}
	if c.name != "hint" && c.name != "help" && wantsHelp(args[1:]) {
		commandHelp(env.Stdout, c)
		return nil
	}
	return explain(c.run(ctx, env, args[1:]), args)
}
