package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-pool/corral/api"
)

// runReload is `corral reload POOL`: a rolling restart onto the current
// binaries and units, shown as it goes. It exits 1 when an instance does
// not come back; the instances not yet reloaded keep serving.
func runReload(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("reload", args, drainOptions...)
	if err != nil {
		return err
	}
	name, err := onePool("reload", operands, "give one pool")
	if err != nil {
		return err
	}
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	return drained(ctx, env, "reload", opts, corrald, name, func() error { return reload(ctx, env, corrald, name) })
}

// reload runs a rolling reload of pool name, shown as it goes.
func reload(ctx context.Context, env *Env, corrald api.API, name string) error {
	t0 := time.Now()
	total := 0
	err := corrald.Reload(ctx, name, func(st api.ReloadStep) {
		total = st.Total
		switch st.Phase {
		case "restarting":
			fmt.Fprintf(env.Stdout, "%s@%d restarting (%d of %d ready)\n", st.Pool, st.Index, st.Done, st.Total)
		case "ready":
			fmt.Fprintf(env.Stdout, "%s@%d ready in %v (%d of %d)\n", st.Pool, st.Index, st.Took.Round(time.Millisecond), st.Done, st.Total)
		case "failed":
			fmt.Fprintf(env.Stdout, "%s@%d failed after %v: %s\n", st.Pool, st.Index, st.Took.Round(time.Millisecond), st.Err)
		}
	})
	if err != nil {
		return apiError(env, "reload "+name, name, err)
	}
	fmt.Fprintf(env.Stdout, "%s: reloaded %d instance(s) in %v\n", name, total, time.Since(t0).Round(time.Millisecond))
	return nil
}
