// Command dashboard is the dashboard appliance: it serves the owner's web dashboard
// (appliances, data history and restore, users, client setup) over HTTPS from a data
// directory, on the sockets jitsu or systemd pass it or on -listen, and can exit when it
// has been idle so that it runs only on demand.
//
//	dashboard -data DIR [-listen 127.0.0.1:8446] [-insecure-loopback] [-idle-exit 5m]
//	          [-jitsu-status http://127.0.0.1:8053/status] [-jitsu-token-file FILE]
//	          [-metrics 127.0.0.1:9446] [-log-format text|json]
//
// With -metrics it serves Prometheus metrics at /metrics on that address, which must be
// loopback (no credentials are asked): requests, latency, logins, restores, store commits.
//
// The stop buttons post to jitsu (BASE/appliances/NAME/stop, BASE being the status URL
// without its last path segment; jitsu.StopHandler serves it) with the token read
// from -jitsu-token-file (default DIR/jitsu.token, made by signpost.EnsureControlToken);
// when that file does not exist there are no stop buttons.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-home/hearth/dashboard"
	"github.com/hearth-home/hearth/signpost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	data        string
	listen      string
	insecure    bool
	idle        time.Duration
	jitsuStatus string
	tokenFile   string
	metrics     string
	logFormat   string
}

// maxTokenFile bounds the jitsu token file.
const maxTokenFile = 4096

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fl := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var c config
	fl.StringVar(&c.data, "data", "", "data directory: repos/, accounts, the home CA (required)")
	fl.StringVar(&c.listen, "listen", "127.0.0.1:8446", "address when not socket-activated: HTTPS, or plain HTTP with -insecure-loopback")
	fl.BoolVar(&c.insecure, "insecure-loopback", false, "serve -listen as plain HTTP (only on a loopback address)")
	fl.DurationVar(&c.idle, "idle-exit", 0, "exit after this long without an open connection (0: never)")
	fl.StringVar(&c.jitsuStatus, "jitsu-status", "http://127.0.0.1:8053/status", "jitsu's status JSON URL (empty: none)")
	fl.StringVar(&c.tokenFile, "jitsu-token-file", "", "file holding the token for jitsu's stop endpoint (default DATA/"+signpost.ControlTokenFile+")")
	fl.StringVar(&c.metrics, "metrics", "", "loopback address to serve Prometheus /metrics on (empty: none)")
	fl.StringVar(&c.logFormat, "log-format", "text", "log format: "+signpost.LogFormats)
	if err := fl.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	switch {
	case c.data == "":
		fmt.Fprintln(stderr, "dashboard: -data DIR is required")
		return 2
	case c.idle < 0:
		fmt.Fprintln(stderr, "dashboard: -idle-exit must not be negative")
		return 2
	case fl.NArg() > 0:
		fmt.Fprintf(stderr, "dashboard: unexpected arguments %q\n", fl.Args())
		return 2
	case c.insecure && !signpost.IsLoopbackAddr(c.listen):
		fmt.Fprintf(stderr, "dashboard: -insecure-loopback needs a loopback -listen address, not %q\n", c.listen)
		return 2
	case c.jitsuStatus != "" && !strings.HasPrefix(c.jitsuStatus, "http://") && !strings.HasPrefix(c.jitsuStatus, "https://"):
		fmt.Fprintf(stderr, "dashboard: -jitsu-status must be an http:// or https:// URL, not %q\n", c.jitsuStatus)
		return 2
	}
	logger, err := signpost.NewLogger(stderr, c.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "dashboard:", err)
		return 2
	}
	met := signpost.NewMetrics("dashboard")
	logger = slog.New(met.CountLogs(logger.Handler()))
	if c.tokenFile == "" {
		c.tokenFile = filepath.Join(c.data, signpost.ControlTokenFile)
	}
	if err := serve(ctx, logger, c, getenv, met); err != nil {
		logger.Error("dashboard stopped", "err", err)
		return 1
	}
	return 0
}

// readToken reads the jitsu token file; a missing file is no token.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("jitsu token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("jitsu token: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("jitsu token %s: over %d bytes", path, maxTokenFile)
	}
	return strings.TrimSpace(string(b)), nil
}

// serve runs the appliance until ctx ends, serving fails or it has been idle.
func serve(ctx context.Context, logger *slog.Logger, c config, getenv func(string) string, met *signpost.Metrics) error {
	token, err := readToken(c.tokenFile)
	if err != nil {
		return err
	}
	plain, secure := "", c.listen
	if c.insecure {
		plain, secure = c.listen, ""
	}
	env, err := signpost.OpenApplianceEnv(ctx, signpost.ApplianceOptions{Name: "dashboard", Data: c.data, Plain: plain, TLS: secure,
		MetricsAddr: c.metrics, Getenv: getenv, Logger: logger, Metrics: met})
	if err != nil {
		return err
	}
	h, err := dashboard.New(dashboard.Options{
		Repos: env.Repos, Accounts: env.Accounts, CA: env.CA, Names: env.Names,
		JitsuStatusURL: c.jitsuStatus, JitsuToken: token, Logger: logger, Registerer: met.Registry(),
		SessionFile: filepath.Join(c.data, "dashboard", "sessions.json"),
	})
	if err != nil {
		return errors.Join(err, env.Close())
	}
	err = signpost.ServeHTTP(ctx, env.Listeners, met.Middleware(h), signpost.ServeOptions{Logger: logger, IdleExit: c.idle})
	// The sessions are saved for the next start.
	return errors.Join(err, h.Close(), env.Close())
}
