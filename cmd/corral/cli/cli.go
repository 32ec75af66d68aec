// Package cli implements the corral command. Run is what main calls; tests
// call it directly.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes of the corral command.
const (
	ExitOK      = 0 // success
	ExitInvalid = 1 // a pool file is invalid (validate), or the operation failed
	ExitUsage   = 2 // bad command line
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

// Env is what commands need from outside: tests replace its parts.
type Env struct {
	Stdout, Stderr io.Writer
	// PoolDir is where pool files live (units.Dir on a host).
	PoolDir string
	// CPUs is the number of usable CPUs, for instances = "auto".
	CPUs int
	// Version is the program's version.
	Version string
}

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"validate", "[FILE...]", "check pool files as the generator does (default: every file in the pool directory)", runValidate},
		{"hint", "", "(run by systemd after a worker stops) say which pool setting stopped it", runHint},
		{"version", "", "print corral's version", func(_ context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usageError("version takes no arguments")
			}
			fmt.Fprintln(env.Stdout, "corral", env.Version)
			return nil
		}},
		{"help", "", "show this help", func(_ context.Context, env *Env, _ []string) error {
			usage(env.Stdout)
			return nil
		}},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: corral COMMAND [ARGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Pools are started and stopped with systemctl: systemctl start NAME.target")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 invalid pool or failed operation, 2 bad command line. See corral(1).")
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
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, env, args[1:])
		}
	}
	return usageError("unknown command %q: run 'corral help' for the list", args[0])
}
