package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-pool/corral/api"
)

// defaultDrainWait is how long corral drain waits for connections to end.
const defaultDrainWait = time.Minute

// drainWait reads a drain's wait from option key of opts.
func drainWait(cmd, key string, opts map[string]string) (time.Duration, error) {
	v, ok := opts[key]
	if !ok {
		return defaultDrainWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > api.MaxDrainWait {
		return 0, badUsage(cmd, "bad --%s %q: give a duration from 0s to %v, such as 30s or 5m", key, v, api.MaxDrainWait)
	}
	return d, nil
}

// runDrain is `corral drain POOL`: the HAProxy agent answers drain from now
// on, and corral waits until the pool's connections end or --timeout
// passes, and says which.
func runDrain(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("drain", args, option{long: "timeout", takesValue: true})
	if err != nil {
		return err
	}
	name, err := onePool("drain", operands, "give one pool")
	if err != nil {
		return err
	}
	wait, err := drainWait("drain", "timeout", opts)
	if err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	return drain(ctx, env, corrald, name, wait)
}

// drain drains pool name and reports how it went.
func drain(ctx context.Context, env *Env, corrald api.API, name string, wait time.Duration) error {
	r, err := corrald.Drain(ctx, name, wait)
	if err != nil {
		return apiError(env, "drain "+name, name, err)
	}
	told := ""
	switch {
	case r.Watched && !r.Told:
		told = "; no balancer has asked since: it may still send connections"
	case !r.Watched:
		told = "; no balancer asked corrald's agent in the last minute"
	}
	switch {
	case r.Left == 0:
		fmt.Fprintf(env.Stdout, "%s: drained; no connection left after %v%s\n", name, r.Waited.Round(time.Millisecond), told)
	default:
		fmt.Fprintf(env.Stdout, "%s: drained; %d connection(s) still open after %v (the timeout): they are served to their end%s\n",
			name, r.Left, r.Waited.Round(time.Millisecond), told)
	}
	return nil
}

// runUndrain is `corral undrain POOL`.
func runUndrain(ctx context.Context, env *Env, args []string) error {
	_, operands, err := parseOptions("undrain", args)
	if err != nil {
		return err
	}
	name, err := onePool("undrain", operands, "give one pool")
	if err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	if err := corrald.Undrain(ctx, name); err != nil {
		return apiError(env, "undrain "+name, name, err)
	}
	fmt.Fprintf(env.Stdout, "%s: back in rotation\n", name)
	return nil
}

// drained runs act on pool name with the pool out of its balancers'
// rotation, when opts has --drain: it drains first (waiting as
// --drain-timeout says) and undrains after, unless the pool was drained
// already. A failed act leaves the pool drained, and the error says so.
func drained(ctx context.Context, env *Env, cmd string, opts map[string]string, corrald api.API, name string, act func() error) error {
	if opts["drain"] == "" {
		if _, ok := opts["drain-timeout"]; ok {
			return badUsage(cmd, "--drain-timeout needs --drain")
		}
		return act()
	}
	wait, err := drainWait(cmd, "drain-timeout", opts)
	if err != nil {
		return err
	}
	was := false
	if ps, err := corrald.ListPools(ctx); err == nil {
		for _, p := range ps {
			was = was || p.Name == name && p.Drained
		}
	}
	if err := drain(ctx, env, corrald, name, wait); err != nil {
		return err
	}
	if err := act(); err != nil {
		return fmt.Errorf("%w (%s stays drained: 'corral undrain %s' when it serves again)", err, name, name)
	}
	if was {
		fmt.Fprintf(env.Stdout, "%s: stays drained, as it was before\n", name)
		return nil
	}
	if err := corrald.Undrain(ctx, name); err != nil {
		return apiError(env, "undrain "+name, name, err)
	}
	fmt.Fprintf(env.Stdout, "%s: back in rotation\n", name)
	return nil
}
