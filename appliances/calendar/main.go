// Command calendar is the calendar appliance: it serves users' calendars over CalDAV from a
// data directory, on the sockets jitsu or systemd pass it (LISTEN_FDS; the one named
// "https" speaks TLS) or on -listen, and can exit when idle so that it runs only on demand.
//
//	calendar -data DIR [-listen 127.0.0.1:8445] [-insecure-loopback] [-idle-exit 5m]
//	         [-metrics 127.0.0.1:9445] [-log-format json]
//
// With -metrics it serves Prometheus metrics at /metrics on that address, which must be
// loopback (no credentials are asked): requests, latency, store commits, repository sizes.
//
// -listen serves HTTPS with a certificate from the home CA; with -insecure-loopback it
// serves plain HTTP instead, which is allowed only on a loopback address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hearth-home/hearth/calendar"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

func main() {
	os.Exit(run())
}

// config is what the flags asked for.
type config struct {
	data, listen string
	insecure     bool
	idle         time.Duration
	metrics      string
	logFmt       string
}

func run() int {
	fs := flag.NewFlagSet("calendar", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.data, "data", "", "data directory: repos/, accounts, the home CA (required)")
	fs.StringVar(&c.listen, "listen", "", "address when not socket-activated (default: 127.0.0.1 and the calendar port of names.json)")
	fs.BoolVar(&c.insecure, "insecure-loopback", false, "serve plain HTTP on -listen, which must be a loopback address")
	fs.DurationVar(&c.idle, "idle-exit", 0, "exit after this long without an open connection (0: never)")
	fs.StringVar(&c.metrics, "metrics", "", "loopback address to serve Prometheus /metrics on (empty: none)")
	fs.StringVar(&c.logFmt, "log-format", "text", "log format: "+signpost.LogFormats)
	if err := fs.Parse(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if err := c.check(fs.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "calendar:", err)
		return 2
	}
	logger, err := signpost.NewLogger(os.Stderr, c.logFmt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "calendar:", err)
		return 2
	}
	met := signpost.NewMetrics("calendar")
	logger = slog.New(met.CountLogs(logger.Handler()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, logger, c, met); err != nil {
		logger.Error("calendar stopped", "err", err)
		return 1
	}
	return 0
}

// check validates the flags.
func (c config) check(args []string) error {
	switch {
	case c.data == "":
		return errors.New("-data DIR is required")
	case c.idle < 0:
		return errors.New("-idle-exit must not be negative")
	case len(args) > 0:
		return fmt.Errorf("unexpected arguments %q", args)
	case c.insecure && c.listen == "":
		return errors.New("-insecure-loopback needs -listen with a loopback address")
	}
	if c.insecure {
		if _, _, err := net.SplitHostPort(c.listen); err != nil {
			return fmt.Errorf("-listen %q: %w", c.listen, err)
		}
		if !signpost.IsLoopbackAddr(c.listen) {
			return fmt.Errorf("-insecure-loopback: %q is not a loopback address", c.listen)
		}
	}
	return nil
}

// serve runs the appliance until ctx ends, serving fails or it has been idle long enough.
func serve(ctx context.Context, logger *slog.Logger, c config, met *signpost.Metrics) error {
	names, err := signpost.ReadNames(c.data)
	if err != nil {
		return err
	}
	port := names.Port("calendar", "https")
	plain, secure := "", c.listen
	if secure == "" {
		secure = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	}
	if c.insecure {
		plain, secure = c.listen, ""
	}
	env, err := signpost.OpenApplianceEnv(ctx, signpost.ApplianceOptions{Name: "calendar", Data: c.data, Plain: plain, TLS: secure,
		MetricsAddr: c.metrics, Logger: logger, Metrics: met})
	if err != nil {
		return err
	}
	// The users' repositories are recycled when idle, which drops the store's caches;
	// the accounts keep theirs.
	dav, err := storedav.NewRecyclingRepos(filepath.Join(c.data, "repos"), &store.Options{Logger: logger, OnCommit: met.OnCommit})
	if err != nil {
		return errors.Join(err, env.Close())
	}
	defer dav.Close()
	h, err := calendar.NewHandler(calendar.Options{Repos: dav, Accounts: env.Accounts, Logger: logger})
	if err != nil {
		return errors.Join(err, env.Close())
	}
	err = signpost.ServeHTTP(ctx, env.Listeners, met.Middleware(signpost.RequireTLS(dav.Hold(h), port)),
		signpost.ServeOptions{Logger: logger, IdleExit: c.idle, OnIdle: idleHook(logger, h, dav)})
	return errors.Join(err, env.Close())
}

// idleHook drops the caches when the appliance goes idle, so that the memory released
// then includes them; the next requests fill them again.
func idleHook(logger *slog.Logger, h interface{ DropCaches() }, dav *storedav.RecyclingRepos) func() {
	return func() {
		h.DropCaches()
		if _, err := dav.Recycle(); err != nil {
			logger.Warn("recycling repositories", "err", err)
		}
	}
}
