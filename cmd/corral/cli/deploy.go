package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/corral-pool/corral/api"
)

// deployJSON is the --json report of deploy and rollback (corral(1)
// documents it).
type deployJSON struct {
	Pool       string     `json:"pool"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	OK         bool       `json:"ok"`
	RolledBack bool       `json:"rolled_back"`
	Instance   string     `json:"instance,omitempty"` // "app@3": where the gate failed
	Reason     string     `json:"reason,omitempty"`
	Log        string     `json:"log,omitempty"`
	Error      string     `json:"error,omitempty"`
	Steps      []stepJSON `json:"steps"`
}

type stepJSON struct {
	Instance string  `json:"instance,omitempty"`
	Phase    string  `json:"phase"`
	Release  string  `json:"release,omitempty"`
	Seconds  float64 `json:"seconds,omitempty"`
	Error    string  `json:"error,omitempty"`
	Done     int     `json:"done"`
	Total    int     `json:"total"`
}

// runDeploy is `corral deploy POOL DIR`: the pool's release link switched
// to DIR, a canary, the rest, each gated; rolled back by corrald when the
// gate fails (exit 1).
func runDeploy(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("deploy", args, option{long: "json"})
	if err != nil {
		return err
	}
	if len(operands) != 2 || operands[1] == "" {
		return badUsage("deploy", "give a pool and a release directory")
	}
	name, dir := operands[0], operands[1]
	if err := checkPoolName("deploy", name); err != nil {
		return err
	}
	// corrald takes an absolute path only: a relative one is the caller's.
	if dir, err = filepath.Abs(dir); err != nil {
		return failed("deploy %s: %v", name, err)
	}
	return deployAs(ctx, env, "deploy", name, opts["json"] != "", func(c api.API, progress func(api.DeployStep)) (api.DeployReport, error) {
		return c.Deploy(ctx, name, dir, progress)
	})
}

// runRollback is `corral rollback POOL`: the release before, deployed the
// same way.
func runRollback(ctx context.Context, env *Env, args []string) error {
	opts, operands, err := parseOptions("rollback", args, option{long: "json"})
	if err != nil {
		return err
	}
	name, err := onePool("rollback", operands, "give one pool")
	if err != nil {
		return err
	}
	return deployAs(ctx, env, "rollback", name, opts["json"] != "", func(c api.API, progress func(api.DeployStep)) (api.DeployReport, error) {
		return c.Rollback(ctx, name, progress)
	})
}

// deployAs runs a deploy or a rollback (cmd) of pool name, shown as it
// goes or, with asJSON, as one report at the end.
func deployAs(ctx context.Context, env *Env, cmd, name string, asJSON bool,
	run func(api.API, func(api.DeployStep)) (api.DeployReport, error)) error {
	corrald, done, err := connect(ctx, env)
	if err != nil {
		return err
	}
	defer done()
	t0 := time.Now()
	var steps []stepJSON
	rep, err := run(corrald, func(st api.DeployStep) {
		inst := ""
		if st.Index > 0 {
			inst = api.InstanceTarget(st.Pool, st.Index)
		}
		steps = append(steps, stepJSON{Instance: inst, Phase: st.Phase, Release: st.Release, Seconds: st.Took.Seconds(), Error: st.Err, Done: st.Done, Total: st.Total})
		if !asJSON {
			printStep(env, inst, st)
		}
	})
	if asJSON {
		out := deployJSON{Pool: name, From: rep.From, To: rep.To, OK: err == nil, RolledBack: rep.RolledBack, Reason: rep.Reason, Log: rep.Log, Steps: steps}
		if rep.Instance > 0 {
			out.Instance = api.InstanceTarget(name, rep.Instance)
		}
		if out.Steps == nil {
			out.Steps = []stepJSON{}
		}
		if err != nil {
			out.Error = err.Error()
		}
		if werr := writeJSON(env.Stdout, out); werr != nil {
			return werr
		}
	}
	switch {
	case errors.Is(err, api.ErrNoRelease), errors.Is(err, api.ErrBusy), errors.Is(err, api.ErrRolledBack), errors.Is(err, api.ErrBadArgument):
		return failed("%s %s: %w", cmd, name, err)
	case err != nil:
		return apiError(env, cmd+" "+name, name, err)
	}
	if !asJSON {
		ready := 0
		for _, s := range steps {
			if s.Phase == "ready" && s.Release == rep.To {
				ready++
			}
		}
		fmt.Fprintf(env.Stdout, "%s: %d instance(s) on %s in %v\n", name, ready, rep.To, time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// printStep prints one step of a deploy.
func printStep(env *Env, inst string, st api.DeployStep) {
	switch st.Phase {
	case "switched":
		fmt.Fprintf(env.Stdout, "%s: release link on %s\n", st.Pool, st.Release)
	case "restarting":
		fmt.Fprintf(env.Stdout, "%s restarting on %s (%d of %d ready)\n", inst, st.Release, st.Done, st.Total)
	case "ready":
		fmt.Fprintf(env.Stdout, "%s ready in %v (%d of %d)\n", inst, st.Took.Round(time.Millisecond), st.Done, st.Total)
	case "healthy":
		fmt.Fprintf(env.Stdout, "%s answered the health request\n", inst)
	case "canary":
		fmt.Fprintf(env.Stdout, "%s is the canary: watched alone for %v\n", inst, st.Took)
	case "rolling back":
		who := inst
		if who == "" {
			who = st.Pool // the gate failed for the whole pool
		}
		fmt.Fprintf(env.Stdout, "%s failed: %s; rolling back to %s\n", who, st.Err, st.Release)
	case "rolled back":
		fmt.Fprintf(env.Stdout, "%s: back on %s\n", st.Pool, st.Release)
	case "removed":
		fmt.Fprintf(env.Stdout, "%s: removed old release %s (beyond keep_releases)\n", st.Pool, st.Release)
	case "kept":
		fmt.Fprintf(env.Stdout, "%s: %s\n", st.Pool, st.Err)
	}
}
