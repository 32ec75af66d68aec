package cli

import (
	"context"
	"fmt"

	"github.com/corral-pool/corral/api"
)

// runScale is `corral scale POOL N|+N|-N|auto`.
func runScale(ctx context.Context, env *Env, args []string) error {
	_, operands, err := parseOptions("scale", args)
	if err != nil {
		return err
	}
	if len(operands) != 2 {
		return badUsage("scale", "give a pool and a count")
	}
	name, spec := operands[0], operands[1]
	if err := checkPoolName("scale", name); err != nil {
		return err
	}
	if err := checkSpec(spec); err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	pools, err := corrald.ListPools(ctx)
	if err != nil {
		return apiError(env, "list pools", name, err)
	}
	old, state, found := uint32(0), "", false
	for _, p := range pools {
		if p.Name == name {
			old, state, found = p.Desired, p.State, true
		}
	}
	if !found {
		return noPool(env, name)
	}
	n, err := corrald.Scale(ctx, name, spec)
	if err != nil {
		return apiError(env, "scale "+name+" "+spec, name, err)
	}
	count := fmt.Sprintf("%d instances", n)
	if n == 1 {
		count = "1 instance"
	}
	// A stopped pool keeps its count for when it starts: say that nothing
	// runs, and what starts it.
	stopped := ""
	if state == "stopped" {
		stopped = fmt.Sprintf("; the pool is stopped, so none runs: 'corral start %s' starts them", name)
	}
	switch {
	case spec == "auto":
		fmt.Fprintf(env.Stdout, "%s: %s (auto, one per CPU; was %d)%s\n", name, count, old, stopped)
	case n == old:
		fmt.Fprintf(env.Stdout, "%s: %s (unchanged)%s\n", name, count, stopped)
	default:
		fmt.Fprintf(env.Stdout, "%s: %s (was %d)%s\n", name, count, old, stopped)
	}
	return nil
}

func runStop(ctx context.Context, env *Env, args []string) error {
	return control(ctx, env, "stop", args, api.API.Stop, "stopped %[1]s; it stays stopped until 'corral start %[1]s'\n")
}

func runRestart(ctx context.Context, env *Env, args []string) error {
	return control(ctx, env, "restart", args, api.API.Restart, "restarted %s\n", drainOptions...)
}

func runCordon(ctx context.Context, env *Env, args []string) error {
	return control(ctx, env, "cordon", args, api.API.Cordon, "cordoned %[1]s: it keeps its connections and gets no new ones until 'corral uncordon %[1]s'\n")
}

func runUncordon(ctx context.Context, env *Env, args []string) error {
	return control(ctx, env, "uncordon", args, api.API.Uncordon, "uncordoned %s: new connections reach it again\n")
}

// drainOptions take a whole pool out of rotation while it restarts.
var drainOptions = []option{{long: "drain"}, {long: "drain-timeout", takesValue: true}}

// control runs `corral start|stop|restart POOL[@I]`: it checks the target,
// calls act and prints done with the target.
func control(ctx context.Context, env *Env, cmd string, args []string,
	act func(api.API, context.Context, string) error, done string, opts ...option) error {
	set, operands, err := parseOptions(cmd, args, opts...)
	if err != nil {
		return err
	}
	target, name, err := oneTarget(cmd, operands, "give one pool or instance")
	if err != nil {
		return err
	}
	corrald, closeAPI, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer closeAPI()
	if set["drain"] != "" && target != name {
		return badUsage(cmd, "--drain takes a whole pool out of rotation: give POOL, not %s", target)
	}
	return drained(ctx, env, cmd, set, corrald, name, func() error {
		if err := act(corrald, ctx, target); err != nil {
			return apiError(env, cmd+" "+target, name, err)
		}
		fmt.Fprintf(env.Stdout, done, target)
		return nil
	})
}
