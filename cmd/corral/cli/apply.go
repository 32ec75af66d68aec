package cli

import (
	"context"
	"fmt"

	"github.com/corral-pool/corral/api"
)

// runApply is `corral apply`: corrald validates every pool file, reloads
// systemd's units and reconciles each pool, and this prints what it did.
// An invalid file changes nothing: exit 1 with the problems.
func runApply(ctx context.Context, env *Env, args []string) error {
	_, operands, err := parseOptions("apply", args)
	if err != nil {
		return err
	}
	if len(operands) != 0 {
		return badUsage("apply", "takes no arguments; it applies every file in "+env.PoolDir)
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	report, err := corrald.Apply(ctx)
	if err != nil {
		return apiError(env, "apply", "", err)
	}
	failed := 0
	for _, c := range report {
		fmt.Fprintln(env.Stdout, changeLine(c))
		if c.Action == "failed" {
			failed++
		}
	}
	if failed > 0 {
		return &ExitError{Code: ExitInvalid, Err: fmt.Errorf("apply: %d pool(s) failed: see above", failed)}
	}
	return nil
}

// changeLine is one line of an apply's report: "app: reloaded (worker unit
// changed: rolling reload)".
func changeLine(c api.Change) string {
	line := c.Pool + ": " + c.Action
	if c.Detail != "" {
		line += " (" + c.Detail + ")"
	}
	return line
}
