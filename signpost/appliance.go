package signpost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/hearth-home/hearth/store"
)

// ApplianceOptions say what OpenApplianceEnv opens for an HTTP appliance.
type ApplianceOptions struct {
	// Name is the appliance's name, for log lines.
	Name string
	// Data is the data directory (made if missing).
	Data string
	// Plain and TLS are the addresses to listen on when the process was not
	// socket-activated: plain HTTP (keep it on loopback) and HTTPS, each unless empty.
	Plain, TLS string
	// MetricsAddr, when set, is the loopback address /metrics is served on.
	MetricsAddr string
	// Getenv reads the socket-activation variables; nil means os.Getenv.
	Getenv func(string) string
	// Logger receives the appliance's log records; nil means slog.Default().
	Logger *slog.Logger
	// Metrics counts store commits and serves /metrics; nil means no metrics.
	Metrics *Metrics
}

// ApplianceEnv is what every HTTP appliance starts from: the home CA and names, its
// listeners, the data directory's repositories and the accounts in them.
type ApplianceEnv struct {
	CA        *CA
	Names     Names
	Listeners []net.Listener
	Repos     *store.Repos
	Accounts  *Accounts

	stopMetrics context.CancelFunc
}

// OpenApplianceEnv does the start-up HTTP appliances share: it makes the data directory,
// serves /metrics (until Close), opens the home CA, takes the sockets handed over by
// systemd or jitsu (LISTEN_FDS; the one named "https" gets TLS with a certificate for the
// home names and LAN addresses) or listens on the given addresses, and opens the
// repositories and the accounts.
func OpenApplianceEnv(ctx context.Context, o ApplianceOptions) (_ *ApplianceEnv, err error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := os.MkdirAll(o.Data, 0o700); err != nil {
		return nil, err
	}
	env := &ApplianceEnv{stopMetrics: func() {}}
	defer func() {
		if err != nil {
			closeListeners(env.Listeners)
			env.Close()
		}
	}()
	if o.MetricsAddr != "" && o.Metrics != nil {
		ln, err := MetricsListener(o.MetricsAddr)
		switch {
		case MetricsUnavailable(err):
			logger.Warn("serving without /metrics", "err", err)
		case err != nil:
			return nil, err
		default:
			mctx, cancel := context.WithCancel(ctx)
			env.stopMetrics = cancel
			go o.Metrics.ServeMetrics(mctx, ln, logger)
		}
	}
	env.CA, env.Names, err = OpenHomeCA(o.Data, CAOptions{Logger: logger})
	if err != nil {
		return nil, err
	}
	ips, lerr := LANAddrs()
	if lerr != nil {
		logger.Warn("no LAN addresses in certificates", "err", lerr)
	}
	env.Listeners, err = HTTPListeners(getenv, o.Plain, o.TLS, env.CA.ServerConfig(env.Names.DNSNames(), ips))
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k) // the descriptors are ours now, not our children's
	}
	sopts := &store.Options{Logger: logger}
	if o.Metrics != nil {
		sopts.OnCommit = o.Metrics.OnCommit
	}
	env.Repos, err = store.OpenRepos(filepath.Join(o.Data, "repos"), sopts)
	if err != nil {
		return nil, err
	}
	env.Accounts, err = OpenAccounts(ctx, env.Repos, AccountsOptions{Logger: logger})
	if err != nil {
		return nil, err
	}
	if o.Metrics != nil {
		o.Metrics.WatchRepoSizes(env.Repos.Root(), 0)
	}
	for _, ln := range env.Listeners {
		logger.Info(o.Name+" listening", "addr", ln.Addr().String())
	}
	return env, nil
}

// Close closes the repositories (and the accounts in them) and stops serving /metrics.
// The listeners belong to whoever serves them.
func (e *ApplianceEnv) Close() error {
	e.stopMetrics()
	if e.Repos == nil {
		return nil
	}
	if err := e.Repos.Close(); err != nil {
		return fmt.Errorf("close repositories: %w", err)
	}
	return nil
}

// closeListeners closes ls, for a start-up that fails after taking them.
func closeListeners(ls []net.Listener) error {
	var errs []error
	for _, ln := range ls {
		errs = append(errs, ln.Close())
	}
	return errors.Join(errs...)
}
