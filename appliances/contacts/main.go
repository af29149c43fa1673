// Command contacts is the contacts appliance: it serves each user's address books over
// CardDAV from a data directory, on the sockets jitsu or systemd pass it or on -listen,
// and can exit when it has been idle so that it runs only on demand.
//
//	contacts -data DIR [-listen 127.0.0.1:8444] [-insecure-loopback] [-idle-exit 5m]
//	         [-metrics 127.0.0.1:9444] [-log-format json]
//
// With -metrics it serves Prometheus metrics at /metrics on that address, which must be
// loopback (no credentials are asked): requests, latency, store commits, repository sizes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hearth-home/hearth/contacts"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	data     string
	listen   string
	insecure bool
	idle     time.Duration
	metrics  string
	logFmt   string
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("contacts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.data, "data", "", "data directory: repos/, accounts, the home CA (required)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8444", "address when not socket-activated: HTTPS, or plain HTTP with -insecure-loopback")
	fs.BoolVar(&c.insecure, "insecure-loopback", false, "serve -listen as plain HTTP (only on a loopback address)")
	fs.DurationVar(&c.idle, "idle-exit", 0, "exit after this long without an open connection (0: never)")
	fs.StringVar(&c.metrics, "metrics", "", "loopback address to serve Prometheus /metrics on (empty: none)")
	fs.StringVar(&c.logFmt, "log-format", "text", "log format: "+signpost.LogFormats)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	switch {
	case c.data == "":
		fmt.Fprintln(stderr, "contacts: -data DIR is required")
		return 2
	case c.idle < 0:
		fmt.Fprintln(stderr, "contacts: -idle-exit must not be negative")
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "contacts: unexpected arguments %q\n", fs.Args())
		return 2
	case c.insecure && !signpost.IsLoopbackAddr(c.listen):
		fmt.Fprintf(stderr, "contacts: -insecure-loopback needs a loopback -listen address, not %q\n", c.listen)
		return 2
	}
	logger, err := signpost.NewLogger(stderr, c.logFmt)
	if err != nil {
		fmt.Fprintln(stderr, "contacts:", err)
		return 2
	}
	met := signpost.NewMetrics("contacts")
	logger = slog.New(met.CountLogs(logger.Handler()))
	if err := serve(ctx, logger, c, getenv, met); err != nil {
		logger.Error("contacts stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the appliance until ctx ends, serving fails or it has been idle.
func serve(ctx context.Context, logger *slog.Logger, c config, getenv func(string) string, met *signpost.Metrics) error {
	plain, secure := "", c.listen
	if c.insecure {
		plain, secure = c.listen, ""
	}
	env, err := signpost.OpenApplianceEnv(ctx, signpost.ApplianceOptions{Name: "contacts", Data: c.data, Plain: plain, TLS: secure,
		MetricsAddr: c.metrics, Getenv: getenv, Logger: logger, Metrics: met})
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
	h, err := contacts.NewHandler(contacts.Options{Repos: dav, Accounts: env.Accounts, Logger: logger})
	if err != nil {
		return errors.Join(err, env.Close())
	}
	err = signpost.ServeHTTP(ctx, env.Listeners, met.Middleware(signpost.RequireTLS(dav.Hold(h), env.Names.Port("contacts", "https"))),
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
