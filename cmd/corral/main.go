// Command corral operates corral's worker pools. See corral(1).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/cmd/corral/cli"
	"github.com/corral-pool/corral/internal/daemonconf"
	"github.com/corral-pool/corral/internal/units"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, PoolDir: units.Dir, DaemonConf: daemonconf.Path, CPUs: runtime.NumCPU(), Version: version,
		IsTerminal: cli.IsTerminal(os.Stdout.Fd()),
		Connect: func(ctx context.Context) (api.API, error) {
			c, err := api.Dial(ctx)
			if err != nil {
				return nil, err // not a nil *Client in a non-nil interface
			}
			return c, nil
		}}
	err := cli.Run(ctx, env, os.Args[1:])
	stop()
	if err == nil {
		return
	}
	code := cli.ExitInvalid
	var ee *cli.ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	fmt.Fprintln(os.Stderr, "corral:", err)
	os.Exit(code)
}
