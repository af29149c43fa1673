// Command store is the store appliance: it serves the versioned store's REST API and git
// smart HTTP from a data directory, on the sockets systemd passes it or on -listen, and can
// exit when it has been idle so that it runs only on demand.
//
//	store -data DIR [-listen 127.0.0.1:8088] [-idle-exit 5m] [-metrics 127.0.0.1:9188] [-log-format json]
//
// With -metrics it serves Prometheus metrics at /metrics on that address, which must be
// loopback (no credentials are asked): requests, latency, store commits, repository sizes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/backup"
	"github.com/hearth-home/hearth/store/storehttp"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("store", flag.ContinueOnError)
	data := fs.String("data", "", "data directory: repos/, accounts in repos/system/accounts.git (required)")
	listen := fs.String("listen", "127.0.0.1:8088", "plain HTTP address when not socket-activated (keep it on loopback; empty: none)")
	https := fs.String("https", "127.0.0.1:8443", "HTTPS address when not socket-activated (empty: none)")
	idle := fs.Duration("idle-exit", 0, "exit after this long without an open connection (0: never)")
	metricsAddr := fs.String("metrics", "", "loopback address to serve Prometheus /metrics on (empty: none)")
	logFormat := fs.String("log-format", "text", "log format: "+signpost.LogFormats)
	ts := addTailnetFlags(fs)
	if err := fs.Parse(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	switch {
	case *data == "":
		fmt.Fprintln(os.Stderr, "store: -data DIR is required")
		return 2
	case *idle < 0:
		fmt.Fprintln(os.Stderr, "store: -idle-exit must not be negative")
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "store: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger, err := signpost.NewLogger(os.Stderr, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "store:", err)
		return 2
	}
	met := signpost.NewMetrics("store")
	logger = slog.New(met.CountLogs(logger.Handler()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, logger, *data, *listen, *https, *idle, ts, met, *metricsAddr); err != nil {
		logger.Error("store stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the appliance until ctx ends, serving fails or it has been idle for idle.
// It serves HTTPS with a certificate from the home CA, and plain HTTP for loopback clients.
func serve(ctx context.Context, logger *slog.Logger, dataDir, listen, https string, idle time.Duration, ts tailnetFlags,
	met *signpost.Metrics, metricsAddr string) error {
	env, err := signpost.OpenApplianceEnv(ctx, signpost.ApplianceOptions{Name: "store", Data: dataDir, Plain: listen, TLS: https,
		MetricsAddr: metricsAddr, Logger: logger, Metrics: met})
	if err != nil {
		return err
	}
	listeners := env.Listeners
	tln, peerUser, leave, err := ts.join(ctx, logger, dataDir, env.Accounts)
	if err != nil {
		return errors.Join(err, env.Close())
	}
	defer leave()
	if tln != nil {
		listeners = append(listeners, signpost.TrustedListener(tln))
	}
	handler := storehttp.NewHandler(env.Repos, storehttp.Options{Auth: env.Accounts, Logger: logger, PeerUser: peerUser,
		RevertRules: backup.RevertRules()})
	err = signpost.ServeHTTP(ctx, listeners, met.Middleware(signpost.RequireTLS(handler, env.Names.Port("store", "https"))),
		signpost.ServeOptions{Logger: logger, IdleExit: idle})
	return errors.Join(err, env.Close())
}
