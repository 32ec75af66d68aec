package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/corral-pool/corral/activation"
	"github.com/corral-pool/corral/internal/agent"
	"github.com/corral-pool/corral/internal/daemonconf"
	"github.com/corral-pool/corral/internal/metrics"
	"github.com/corral-pool/corral/internal/pool"
)

// serveSockets serves the metrics and the HAProxy agent on the sockets
// PID 1 passed (corral-metrics.socket, corral-agent.socket, which
// corral-generator makes from corral.toml), until ctx is done. corrald
// opens no network socket itself.
func serveSockets(ctx context.Context, log *slog.Logger, fds []activation.FD, parts pool.Parts) {
	conf, err := daemonconf.Load(daemonconf.Path)
	if err != nil {
		log.Error("corral.toml: no metrics or agent socket is generated until it is fixed", "err", err)
	}
	passed := map[string]net.Listener{}
	for _, fd := range fds {
		if (fd.Name == daemonconf.MetricsFD || fd.Name == daemonconf.AgentFD) && fd.Listener != nil {
			passed[fd.Name] = fd.Listener
		}
	}
	for _, w := range []struct{ name, addr, unit string }{
		{daemonconf.MetricsFD, conf.Metrics, "corral-metrics.socket"},
		{daemonconf.AgentFD, conf.Agent, "corral-agent.socket"},
	} {
		ln := passed[w.name]
		switch {
		case w.addr != "" && ln == nil:
			log.Warn(w.unit+" passed no socket although corral.toml sets one",
				"address", w.addr, "fix", daemonconf.ApplyCommand(w.unit))
		case w.addr != "" && !daemonconf.SameAddress(w.addr, ln.Addr().String()):
			log.Warn(w.unit+" listens on another address than corral.toml sets: a socket takes a new address only when restarted",
				"listens", ln.Addr().String(), "corral.toml", w.addr, "fix", daemonconf.ApplyCommand(w.unit))
		case w.addr == "" && ln != nil && err == nil:
			log.Warn(w.unit+" still listens although corral.toml sets no address for it",
				"listens", ln.Addr().String(), "fix", daemonconf.ApplyCommand(w.unit))
		}
	}
	if ln := passed[daemonconf.MetricsFD]; ln != nil {
		srv := &http.Server{
			Handler:           metrics.Handler(metrics.Registry(parts.Status, version)),
			ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		context.AfterFunc(ctx, func() { srv.Close() })
		log.Info("metrics", "address", ln.Addr().String(), "path", "/metrics")
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics stopped", "err", err)
			}
		}()
	}
	if ln := passed[daemonconf.AgentFD]; ln != nil {
		log.Info("HAProxy agent", "address", ln.Addr().String())
		go func() {
			if err := (&agent.Server{Pools: parts.Status, Checked: parts.Drainer.Checked}).Serve(ctx, ln); err != nil {
				log.Error("HAProxy agent stopped", "err", err)
			}
		}()
	}
}
