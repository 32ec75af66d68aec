// Command corrald is corral's coordinator: it keeps every pool's instances
// as the operator asked, over D-Bus, and serves the API the corral command
// uses. systemd runs it as corral.service. See corrald(8).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/api"
	"github.com/corral-pool/corral/internal/message"
	"github.com/corral-pool/corral/internal/pool"
	"github.com/corral-pool/corral/internal/relay"
	"github.com/corral-pool/corral/internal/units"
)

var version = "dev"

// Exit codes; corral.service restarts on any but exitConfig.
const (
	exitFailure = 1 // lost the bus, or another runtime failure: systemd restarts corrald
	exitConfig  = 2 // bad command line
)

func main() {
	if len(os.Args) > 1 {
		if os.Args[1] == "--version" {
			fmt.Println("corrald", version)
			return
		}
		fmt.Fprintln(os.Stderr, "usage: corrald (run by systemd as corral.service; see corrald(8))")
		os.Exit(exitConfig)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		// journald adds the time.
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, log)
	stop()
	if err != nil {
		log.Error("corrald stopped", "err", err)
		os.Exit(exitFailure)
	}
}

// assemble builds corrald's parts: the coordinator of the pool files in
// effect, acting through sd, and the message relay, whose socket and
// channels come back from the fd store when corrald restarts
// (docs/messages.md). Without a relay the pools run as ever; only messages
// fail, and msgs is nil.
func assemble(log *slog.Logger, sd *sddbus.Conn, fds []activation.FD) (pool.Parts, *relay.Relay) {
	stateDir := os.Getenv("STATE_DIRECTORY") // StateDirectory=corral
	if stateDir == "" {
		stateDir = "/var/lib/corral"
	}
	// The instances' ExecStopPost= writes each exit's cause there
	// (RuntimeDirectory=corral); without it corral list names systemd's
	// result only.
	if err := os.MkdirAll(units.ExitsDir, 0o755); err != nil {
		log.Warn("no exit records: corral list names systemd's result only", "err", err)
	}
	c := pool.New(pool.Config{
		PoolDir:  units.Dir,
		Store:    pool.Store{Path: stateDir + "/state.json"},
		CPUs:     runtime.NumCPU(),
		Log:      log,
		ExitsDir: units.ExitsDir,
	}, pool.NewSystemdBus(sd))
	workers := pool.NewWorkers(c, pool.ProcessUnit)
	msgs, err := relay.New(relay.Config{
		Inherited: fds,
		Identify:  workers.Worker,
		Store:     relay.NotifyStore{},
		Log:       log,
	})
	var parts pool.Parts
	if err != nil {
		log.Error("no messages: cannot open the message socket", "path", message.SocketPath, "err", err)
		parts, msgs = pool.Assemble(c, workers, nil), nil
	} else {
		parts = pool.Assemble(c, workers, msgs)
	}
	parts.Steer(fds, relay.NotifyStore{})
	return parts, msgs
}

func run(ctx context.Context, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sd, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer sd.Close()
	bus, err := godbus.ConnectSystemBus(godbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("connect to the system bus: %w", err)
	}
	defer bus.Close()

	fds, err := activation.FDs()
	if err != nil {
		log.Warn("inherited fds", "err", err)
	}
	parts, msgs := assemble(log, sd, fds)
	c := parts.Coordinator

	runErr := make(chan error, 2)
	go func() { runErr <- c.Run(ctx) }()
	go parts.Acceptance.Run(ctx)
	go parts.Recycler.Run(ctx)
	go parts.Steerer.Run(ctx)
	if parts.Pinger != nil {
		go parts.Pinger.Run(ctx)
	}
	if msgs != nil {
		go func() {
			if err := msgs.Run(ctx); err != nil {
				runErr <- err
			}
		}()
	}
	serveSockets(ctx, log, fds, parts)
	if err := pool.Watch(ctx, bus, c); err != nil {
		return err
	}
	if err := pool.Export(ctx, bus, parts); err != nil {
		return err
	}
	if err := c.Ping(ctx); err != nil {
		return err
	}
	lastStatus := status(ctx, parts.Status)
	if err := activation.Notify(ctx, "READY=1\nSTATUS="+lastStatus); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	log.Info("corrald ready", "version", version, "bus", api.BusName)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req"); err == nil && len(b) > 0 && b[0] == '0' {
		log.Warn("net.ipv4.tcp_migrate_req is 0: with balance = \"reuseport\", connections queued on the socket of an instance that stops for good are reset instead of moved to another instance",
			"fix", "sysctl -w net.ipv4.tcp_migrate_req=1 (corral's package sets it in /usr/lib/sysctl.d/50-corral.conf)")
	}

	return feed(ctx, log, bus, parts, runErr, lastStatus)
}

// feed feeds the watchdog through the coordinator's own loop, so a stuck
// loop gets corrald restarted, and keeps STATUS= following the pools, until
// ctx is done or corrald fails.
func feed(ctx context.Context, log *slog.Logger, bus *godbus.Conn, parts pool.Parts, runErr <-chan error, lastStatus string) error {
	c := parts.Coordinator
	tick := time.NewTicker(watchdogInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			activation.Stopping(context.Background())
			return nil
		case err := <-runErr:
			return err
		case <-bus.Context().Done():
			return errors.New("lost the system bus connection; systemd restarts corrald")
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			if err := c.Ping(pctx); err == nil {
				// STATUS= only when it changed: each change is a
				// PropertiesChanged signal to every subscriber.
				msg := "WATCHDOG=1"
				if st := status(pctx, parts.Status); st != lastStatus {
					msg, lastStatus = msg+"\nSTATUS="+st, st
				}
				activation.Notify(pctx, msg)
			} else {
				log.Error("coordinator does not answer", "err", err)
			}
			pcancel()
		}
	}
}

// watchdogInterval is half of WatchdogSec, or a minute without a watchdog
// (or one meant for another process: WATCHDOG_PID).
func watchdogInterval() time.Duration {
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		return d / 2
	}
	return time.Minute
}

func status(ctx context.Context, st *pool.Status) string {
	ps, err := st.ListPools(ctx)
	if err != nil {
		return "starting"
	}
	var want, up uint32
	for _, p := range ps {
		want += p.Desired
		up += p.Running
	}
	return fmt.Sprintf("%d pools, %d of %d instances running", len(ps), up, want)
}
