// Command mail is the mail appliance: it serves IMAP (and IMAPS) from the versioned store
// and receives mail over LMTP, SMTP and submission, on the sockets systemd or jitsu pass it
// or on addresses given by flags, and can exit when idle so that it runs only on demand.
//
//	mail -data DIR [-imap 127.0.0.1:1143] [-imaps 127.0.0.1:1993] [-lmtp 127.0.0.1:1024]
//	     [-smtp 127.0.0.1:1025] [-submission 127.0.0.1:1587] [-submissions 127.0.0.1:1465]
//	     [-idle-exit 5m]
//	     [-domain home.arpa] [-extra-domains a.org,b.org] [-aliases FILE]
//	     [-smarthost host:port] [-smarthost-credentials FILE] [-max-message-size BYTES]
//	     [-metrics 127.0.0.1:9124] [-log-format json] [-imap-max-conns 500]
//	     [-imap-idle-timeout 35m] [-imap-command-timeout 1m] [-imap-max-commands-per-second 1000]
//
// Socket-activated, the descriptors are named (LISTEN_FDNAMES) imap, imaps, lmtp, smtp,
// submission and submissions, as in signpost.DefaultNames; imaps and submissions (implicit
// TLS, RFC 8314) get TLS from the home CA, imap, smtp and submission offer STARTTLS with the
// same certificate. Every name is optional: sockets derived from an older names.json
// without submissions simply leave it out.
//
// Prometheus metrics are served at /metrics over plain HTTP on the socket named "metrics"
// or on -metrics, which must be a loopback address (no credentials are asked): connections
// and bytes per socket, IMAP commands by status, SMTP/LMTP replies by class and logins (as
// far as plain-text connections show them, see metrics.go), store commits, log records by
// level.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/mail/delivery"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// Limits on the files the flags name.
const (
	maxAliasesFile     = 1 << 20
	maxAliases         = 10000
	maxCredentialsFile = 4 << 10
)

// listenerNames are the socket names the appliance serves, in LISTEN_FDNAMES.
var listenerNames = []string{"imap", "imaps", "lmtp", "smtp", "submission", "submissions"}

// metricsSocket is the name of the socket-activated listener for /metrics (plain HTTP).
const metricsSocket = "metrics"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv))
}

// config is everything the flags say.
type config struct {
	data          string
	addrs         map[string]string // by listener name
	idle          time.Duration
	domain        string
	extraDomains  []string
	aliasesFile   string
	smarthost     string
	smarthostCred string
	smarthostTLS  string
	maxMessage    int64
	metrics       string
	logFormat     string
	imap          mail.ServerOptions // its limits; TLSConfig and Logger are set by run
}

// maxIMAPConns bounds -imap-max-conns: each connection costs memory and a goroutine.
const maxIMAPConns = 100000

func parseFlags(args []string) (config, int, bool) {
	fs := flag.NewFlagSet("mail", flag.ContinueOnError)
	c := config{addrs: map[string]string{}}
	fs.StringVar(&c.data, "data", "", "data directory: repos/, ca/, names.json (required)")
	addr := map[string]*string{}
	for _, n := range listenerNames {
		addr[n] = fs.String(n, "", n+" address when not socket-activated (empty: none)")
	}
	fs.DurationVar(&c.idle, "idle-exit", 0, "exit after this long without an open connection (0: never)")
	fs.StringVar(&c.domain, "domain", "", "home mail domain (default: the home domain of names.json)")
	extra := fs.String("extra-domains", "", "comma-separated further domains whose mail reaches the same users")
	fs.StringVar(&c.aliasesFile, "aliases", "", "file of aliases, one \"address: user\" a line (# comments)")
	fs.StringVar(&c.smarthost, "smarthost", "", "host:port that outgoing mail is relayed through (empty: refuse outgoing mail)")
	fs.StringVar(&c.smarthostCred, "smarthost-credentials", "", "file holding \"user:password\" for the smarthost")
	fs.StringVar(&c.smarthostTLS, "smarthost-tls", "starttls", "smarthost encryption: starttls, starttls-required, tls or none")
	fs.Int64Var(&c.maxMessage, "max-message-size", delivery.DefaultMaxMessageBytes, "largest message accepted, in bytes")
	fs.IntVar(&c.imap.MaxConns, "imap-max-conns", mail.DefaultMaxConns, "most open IMAP connections")
	fs.DurationVar(&c.imap.IdleTimeout, "imap-idle-timeout", mail.DefaultIdleTimeout, "how long a logged-in IMAP client may stay silent (at least 30m, RFC 9051)")
	fs.DurationVar(&c.imap.CommandTimeout, "imap-command-timeout", mail.DefaultCommandTimeout, "how long an IMAP client may take to send one command")
	fs.Float64Var(&c.imap.MaxCommandsPerSecond, "imap-max-commands-per-second", mail.DefaultMaxCommandsPerSecond, "sustained IMAP command rate per connection (negative: unlimited)")
	fs.StringVar(&c.metrics, "metrics", "", "loopback address to serve Prometheus /metrics on when not socket-activated (empty: none)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: "+signpost.LogFormats)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return c, 0, false
	} else if err != nil {
		return c, 2, false
	}
	for n, a := range addr {
		if *a != "" {
			c.addrs[n] = *a
		}
	}
	for _, d := range strings.Split(*extra, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.extraDomains = append(c.extraDomains, d)
		}
	}
	var problem string
	switch {
	case c.data == "":
		problem = "-data DIR is required"
	case c.idle < 0:
		problem = "-idle-exit must not be negative"
	case c.maxMessage < 1 || c.maxMessage > delivery.MaxMaxMessageBytes:
		problem = fmt.Sprintf("-max-message-size must be from 1 to %d", delivery.MaxMaxMessageBytes)
	case c.smarthostCred != "" && c.smarthost == "":
		problem = "-smarthost-credentials needs -smarthost"
	case c.imap.MaxConns < 1 || c.imap.MaxConns > maxIMAPConns:
		problem = fmt.Sprintf("-imap-max-conns must be from 1 to %d", maxIMAPConns)
	case c.imap.IdleTimeout < 30*time.Minute:
		problem = "-imap-idle-timeout must be at least 30m (RFC 9051)"
	case c.imap.CommandTimeout < time.Second:
		problem = "-imap-command-timeout must be at least 1s"
	case c.imap.MaxCommandsPerSecond == 0:
		problem = "-imap-max-commands-per-second must not be 0 (negative: unlimited)"
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected arguments %q", fs.Args())
	}
	if _, err := smarthostTLS(c.smarthostTLS); err != nil && problem == "" {
		problem = err.Error()
	}
	if _, err := signpost.NewLogger(os.Stderr, c.logFormat); err != nil && problem == "" {
		problem = err.Error()
	}
	if problem != "" {
		fmt.Fprintln(os.Stderr, "mail:", problem)
		return c, 2, false
	}
	return c, 0, true
}

func run(args []string, getenv func(string) string) int {
	c, code, ok := parseFlags(args)
	if !ok {
		return code
	}
	logger, _ := signpost.NewLogger(os.Stderr, c.logFormat) // checked by parseFlags
	met := signpost.NewMetrics("mail")
	logger = slog.New(met.CountLogs(logger.Handler()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, logger, c, getenv, met); err != nil {
		logger.Error("mail stopped", "err", err)
		return 1
	}
	return 0
}

func smarthostTLS(s string) (delivery.SmarthostTLS, error) {
	switch s {
	case "starttls", "":
		return delivery.STARTTLSIfOffered, nil
	case "starttls-required":
		return delivery.STARTTLSRequired, nil
	case "tls":
		return delivery.ImplicitTLS, nil
	case "none":
		return delivery.NoTLS, nil
	}
	return 0, fmt.Errorf("-smarthost-tls %q: want starttls, starttls-required, tls or none", s)
}

// listeners returns the sockets to serve by name: the ones passed by socket activation,
// or else the ones the flags name.
func listeners(getenv func(string) string, addrs map[string]string) (map[string]net.Listener, error) {
	act, err := signpost.ListenersByName(getenv)
	if err != nil {
		return nil, err
	}
	if act != nil {
		for n := range act {
			if !slices.Contains(listenerNames, n) && n != metricsSocket {
				for _, l := range act {
					l.Close()
				}
				return nil, fmt.Errorf("mail: socket %q passed: want names %s", n, strings.Join(listenerNames, ", "))
			}
		}
		return act, nil
	}
	out := map[string]net.Listener{}
	for _, n := range listenerNames {
		a, ok := addrs[n]
		if !ok {
			continue
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, fmt.Errorf("mail: listen %s on %s: %w", n, a, err)
		}
		out[n] = l
	}
	if len(out) == 0 {
		return nil, errors.New("mail: nothing to serve: pass -imap, -imaps, -lmtp, -smtp, -submission or -submissions, or sockets by LISTEN_FDS")
	}
	return out, nil
}

// readAliases reads "address: user" lines.
func readAliases(path string) (map[string]string, error) {
	b, err := readSmall(path, maxAliasesFile)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("mail: aliases %s line %d: want \"address: user\"", path, n)
		}
		if len(out) >= maxAliases {
			return nil, fmt.Errorf("mail: aliases %s: more than %d", path, maxAliases)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// readCredentials reads "user:password" (one line) from a file.
func readCredentials(path string) (user, password string, err error) {
	b, err := readSmall(path, maxCredentialsFile)
	if err != nil {
		return "", "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	user, password, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("mail: smarthost credentials %s: want \"user:password\"", path)
	}
	return user, password, nil
}

func readSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("mail: %s: over %d bytes", path, max)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return nil, fmt.Errorf("mail: read %s: %w", path, err)
	}
	return b, nil
}

// serve runs the appliance until ctx ends, serving fails or it has been idle for c.idle.
func serve(ctx context.Context, logger *slog.Logger, c config, getenv func(string) string, met *signpost.Metrics) error {
	if err := os.MkdirAll(c.data, 0o700); err != nil {
		return err
	}
	ca, names, err := signpost.OpenHomeCA(c.data, signpost.CAOptions{Logger: logger})
	if err != nil {
		return err
	}
	lns, err := listeners(getenv, c.addrs)
	if err != nil {
		return err
	}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k) // the descriptors are ours now, not our children's
	}
	closeListeners := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	metricsLn, ok := lns[metricsSocket]
	delete(lns, metricsSocket)
	if !ok && c.metrics != "" {
		if metricsLn, err = signpost.MetricsListener(c.metrics); signpost.MetricsUnavailable(err) {
			logger.Warn("serving without /metrics", "err", err)
			metricsLn = nil
		} else if err != nil {
			closeListeners()
			return err
		}
	}
	if metricsLn != nil {
		mctx, cancel := context.WithCancel(ctx)
		defer cancel() // the metrics stop with the appliance
		go met.ServeMetrics(mctx, metricsLn, logger)
	}
	mm := newMailMetrics(met)
	for name, ln := range lns {
		lns[name] = mm.wrap(name, ln)
	}
	ips, err := signpost.LANAddrs()
	if err != nil {
		logger.Warn("no LAN addresses in certificates", "err", err)
	}
	tlsConfig := ca.ServerConfig(names.DNSNames(), ips)

	dopts := delivery.Options{
		Domain:          c.domain,
		ExtraDomains:    c.extraDomains,
		MaxMessageBytes: c.maxMessage,
		TLSConfig:       tlsConfig,
		Logger:          logger,
	}
	if dopts.Domain == "" {
		dopts.Domain = names.Domain
	}
	if c.aliasesFile != "" {
		if dopts.Aliases, err = readAliases(c.aliasesFile); err != nil {
			closeListeners()
			return err
		}
	}
	if c.smarthost != "" {
		mode, _ := smarthostTLS(c.smarthostTLS)
		sh := &delivery.Smarthost{Addr: c.smarthost, TLS: mode}
		if c.smarthostCred != "" {
			if sh.User, sh.Password, err = readCredentials(c.smarthostCred); err != nil {
				closeListeners()
				return err
			}
		}
		dopts.Smarthost = sh
	}

	repos, err := store.OpenRepos(filepath.Join(c.data, "repos"), &store.Options{Logger: logger, OnCommit: met.OnCommit})
	if err != nil {
		closeListeners()
		return err
	}
	defer func() {
		if err := repos.Close(); err != nil {
			logger.Error("close repositories", "err", err)
		}
	}()
	met.WatchRepoSizes(repos.Root(), 0)
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: logger})
	if err != nil {
		closeListeners()
		return err
	}
	if dopts.Smarthost != nil {
		if dopts.Outbox, err = repos.Open(ctx, delivery.OutboxRepo, true); err != nil {
			closeListeners()
			return err
		}
	}
	backend, err := mail.NewBackend(repos, mail.Options{Accounts: accounts, Logger: logger, AppendLimit: c.maxMessage})
	if err != nil {
		closeListeners()
		return err
	}
	defer backend.Close()
	imapSrv := newIMAPServer(backend, c.imap, tlsConfig, logger)
	deliv, err := delivery.NewServer(backend, delivery.AccountsUsers(accounts), dopts)
	if err != nil {
		closeListeners()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	for name, ln := range lns {
		logger.Info("serving", "proto", name, "addr", ln.Addr().String())
		g.Go(func() error {
			var err error
			switch name {
			case "imap":
				err = imapSrv.Serve(ln)
			case "imaps":
				err = imapSrv.ServeTLS(ln)
			case "lmtp":
				err = deliv.ServeLMTP(ln)
			case "smtp":
				err = deliv.ServeSMTP(ln)
			case "submission":
				err = deliv.ServeSubmission(ln)
			case "submissions":
				err = deliv.ServeSubmissionTLS(ln)
			}
			if gctx.Err() != nil || err == nil {
				return nil // stopping: the servers were shut down
			}
			return fmt.Errorf("mail: serve %s: %w", name, err)
		})
	}
	g.Go(func() error {
		watchIdle(gctx, idleOptions{
			exit:    c.idle,
			release: time.Second,
			open:    func() int { return imapSrv.OpenConns() + deliv.OpenConns() },
			onExit: func() {
				logger.Info("idle, exiting", "after", c.idle)
				cancel()
			},
		})
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer scancel()
		return errors.Join(imapSrv.Shutdown(sctx), ignoreClosed(deliv.Shutdown(sctx)))
	})
	return g.Wait()
}

func ignoreClosed(err error) error {
	if errors.Is(err, delivery.ErrServerClosed) {
		return nil
	}
	return err
}
