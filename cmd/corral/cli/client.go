package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/corral-pool/corral/pool"
	"github.com/corral-pool/corral/units"
)

// poolNameRE is units' rule for pool names (units/parse.go's nameRE).
var poolNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

const maxPoolName = 64 // units' maxNameLen

// connect opens corrald's API. The returned func closes it.
func connect(ctx context.Context, env *Env) (pool.API, func(), error) {
	if env.Connect == nil {
		return nil, nil, failed("this corral cannot reach corrald: it was built without a D-Bus client")
	}
	api, err := env.Connect(ctx)
	if err != nil {
		if errors.Is(err, pool.ErrNotRunning) || errors.Is(err, pool.ErrDenied) {
			return nil, nil, err
		}
		return nil, nil, failed("cannot reach corrald on the system bus: %w", err)
	}
	closeAPI := func() {
		if c, ok := api.(io.Closer); ok {
			c.Close()
		}
	}
	return api, closeAPI, nil
}

// explain turns corrald's refusals into one actionable line with their
// exit codes; args is the command line, to repeat under sudo.
func explain(err error, args []string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pool.ErrOtherPool):
		return &ExitError{Code: ExitDenied, Err: err} // corrald's words say it all
	case errors.Is(err, pool.ErrDenied):
		return &ExitError{Code: ExitDenied, Err: fmt.Errorf(
			"permission denied: run 'sudo corral %s' or join the corral group (sudo usermod -aG corral $USER, then log in again)",
			shellJoin(args))}
	case errors.Is(err, pool.ErrNotRunning):
		return &ExitError{Code: ExitNotRunning, Err: errors.New("corrald is not running: sudo systemctl start corral.service")}
	}
	return err
}

// apiError explains an error of corrald's API call op ("scale app 4") on
// pool name: unknown pools and instances, bad specs. Denials and a missing
// corrald are left for explain.
func apiError(env *Env, op, name string, err error) error {
	switch {
	case errors.Is(err, pool.ErrDenied), errors.Is(err, pool.ErrNotRunning):
		return err
	case errors.Is(err, pool.ErrNoPool):
		return noPool(env, name)
	case errors.Is(err, pool.ErrNoInstance):
		return failed("%s: no such instance: 'corral status %s' lists its instances, 'corral scale %s N' sets how many run", op, name, name)
	case errors.Is(err, pool.ErrBadSpec):
		return failed("%s: %w; a pool runs 1 to %d instances: give N, +N, -N or auto", op, err, units.MaxInstances)
	}
	return failed("%s: %w", op, err)
}

func noPool(env *Env, name string) error {
	return failed("no pool %q: 'corral list' shows the pools; pool files live in %s", name, env.PoolDir)
}

// checkPoolName checks a pool name given on the command line.
func checkPoolName(cmd, name string) error {
	if len(name) > maxPoolName || !poolNameRE.MatchString(name) {
		return badUsage(cmd, "bad pool name %q: a pool name has letters, digits, '-', '_' and '.', starts with a letter or digit and is at most %d long", name, maxPoolName)
	}
	return nil
}

// parseTarget checks "POOL" or "POOL@I" and returns the pool's name.
func parseTarget(cmd, target string) (string, error) {
	name, inst, hasInst := strings.Cut(target, "@")
	if err := checkPoolName(cmd, name); err != nil {
		return "", err
	}
	if hasInst {
		i, err := strconv.Atoi(inst)
		if err != nil || i < 1 || i > units.MaxInstances || strconv.Itoa(i) != inst {
			return "", badUsage(cmd, "bad instance in %q: give POOL@I with I a number from 1 to %d, e.g. %s@1", target, units.MaxInstances, name)
		}
	}
	return name, nil
}

// checkSpec checks a scale spec: "N", "+N", "-N" or "auto".
func checkSpec(spec string) error {
	if spec == "auto" {
		return nil
	}
	digits := strings.TrimLeft(spec, "+-")
	if len(spec)-len(digits) <= 1 {
		n, err := strconv.Atoi(digits)
		if err == nil && strconv.Itoa(n) == digits && n >= 1 && n <= units.MaxInstances {
			return nil
		}
	}
	return badUsage("scale", "bad count %q: give N (1 to %d), +N or -N to add or remove N, or auto for one per CPU", spec, units.MaxInstances)
}

// shellJoin quotes args for a shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
