package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/corral-pool/corral/api"
)

// connect opens corrald's API. The returned func closes it.
func connect(ctx context.Context, env *Env) (api.API, func(), error) {
	if env.Connect == nil {
		return nil, nil, failed("this corral cannot reach corrald: it was built without a D-Bus client")
	}
	corrald, err := env.Connect(ctx)
	if err != nil {
		if errors.Is(err, api.ErrNotRunning) || errors.Is(err, api.ErrDenied) {
			return nil, nil, err
		}
		return nil, nil, failed("cannot reach corrald on the system bus: %w", err)
	}
	closeAPI := func() {
		if c, ok := corrald.(io.Closer); ok {
			c.Close()
		}
	}
	return corrald, closeAPI, nil
}

// explain turns corrald's refusals into one actionable line with their
// exit codes; args is the command line, to repeat under sudo.
func explain(err error, args []string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, api.ErrOtherPool):
		return &ExitError{Code: ExitDenied, Err: err} // corrald's words say it all
	case errors.Is(err, api.ErrDenied):
		return &ExitError{Code: ExitDenied, Err: fmt.Errorf(
			"permission denied: run 'sudo corral %s' or join the corral group (sudo usermod -aG corral $USER, then log in again)",
			shellJoin(args))}
	case errors.Is(err, api.ErrNotRunning):
		return &ExitError{Code: ExitNotRunning, Err: errors.New("corrald is not running: sudo systemctl start corral.service")}
	}
	return err
}

// apiError explains an error of corrald's API call op ("scale app 4") on
// pool name: unknown pools and instances, bad specs. Denials and a missing
// corrald are left for explain.
func apiError(env *Env, op, name string, err error) error {
	switch {
	case errors.Is(err, api.ErrDenied), errors.Is(err, api.ErrNotRunning):
		return err
	case errors.Is(err, api.ErrNoPool):
		return noPool(env, name)
	case errors.Is(err, api.ErrNoInstance):
		return failed("%s: no such instance: 'corral status %s' lists its instances, 'corral scale %s N' sets how many run", op, name, name)
	case errors.Is(err, api.ErrBadSpec):
		return failed("%s: %w; a pool runs 1 to %d instances: give N, +N, -N or auto", op, err, api.MaxInstances)
	}
	return failed("%s: %w", op, err)
}

func noPool(env *Env, name string) error {
	return failed("no pool %q: 'corral list' shows the pools; pool files live in %s", name, env.PoolDir)
}

// checkPoolName checks a pool name given on the command line.
func checkPoolName(cmd, name string) error {
	if err := api.CheckPoolName(name); err != nil {
		return badUsage(cmd, "%v", err)
	}
	return nil
}

// onePool returns the one operand of cmd, a pool's name; without exactly
// one, a usage error that says want.
func onePool(cmd string, operands []string, want string) (string, error) {
	if len(operands) != 1 {
		return "", badUsage(cmd, "%s", want)
	}
	return operands[0], checkPoolName(cmd, operands[0])
}

// oneTarget returns the one operand of cmd, "POOL" or "POOL@I", and the
// pool's name; without exactly one, a usage error that says want.
func oneTarget(cmd string, operands []string, want string) (target, name string, err error) {
	if len(operands) != 1 {
		return "", "", badUsage(cmd, "%s", want)
	}
	name, err = parseTarget(cmd, operands[0])
	return operands[0], name, err
}

// parseTarget checks "POOL" or "POOL@I" and returns the pool's name.
func parseTarget(cmd, target string) (string, error) {
	name, _, err := api.ParseTarget(target)
	if err != nil {
		return "", badUsage(cmd, "%v", err)
	}
	return name, nil
}

// checkSpec checks a scale spec: "N", "+N", "-N" or "auto".
func checkSpec(spec string) error {
	if _, err := api.ParseScale(spec); err != nil {
		return badUsage("scale", "%v", err)
	}
	return nil
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
