package signpost

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// ServeOptions tune ServeHTTP. The zero value is usable.
type ServeOptions struct {
	// Logger receives start, idle and shutdown events. nil: slog.Default().
	Logger *slog.Logger
	// IdleExit, when positive, makes ServeHTTP return once no connection has been open
	// for that long (counted from the start too), so an appliance runs only on demand.
	IdleExit time.Duration
	// ReleaseMemory is how long the server must have had no open connection before it
	// returns freed memory to the operating system (a login's argon2id run alone leaves
	// 19 MiB behind), so an idle appliance stays small (0: 1s; < 0: never). It acts on
	// the whole process, which is what an appliance's main wants.
	ReleaseMemory time.Duration
	// OnIdle, when set, runs each time memory is about to be released (see
	// ReleaseMemory): the place for an appliance to drop caches, so that the release
	// returns their memory too. It runs on its own goroutine while no connection is open;
	// a request may arrive while it runs.
	OnIdle func()
	// ShutdownGrace is how long requests in flight get when serving stops (<= 0: 10s);
	// connections still open then are closed.
	ShutdownGrace time.Duration
}

// ServeHTTP serves h on every listener with sensible server timeouts until ctx ends,
// serving fails, or the server has been idle for opts.IdleExit; then it shuts down
// gracefully. It is what every HTTP appliance's main runs.
func ServeHTTP(ctx context.Context, listeners []net.Listener, h http.Handler, opts ServeOptions) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	grace := opts.ShutdownGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ConnContext:       markTrusted,
	}
	var hooks []func(net.Conn, http.ConnState)
	if opts.IdleExit > 0 {
		hooks = append(hooks, idleExit(opts.IdleExit, func() {
			logger.Info("idle, exiting", "after", opts.IdleExit)
			cancel()
		}))
	}
	release := opts.ReleaseMemory
	if release == 0 {
		release = time.Second
	}
	if release > 0 {
		onIdle := opts.OnIdle
		hooks = append(hooks, whenIdle(release, func() {
			if onIdle != nil {
				onIdle()
			}
			debug.FreeOSMemory()
		}))
	}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		for _, h := range hooks {
			h(c, st)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, ln := range listeners {
		logger.Info("serving", "addr", ln.Addr().String())
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("signpost: serve %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("requests still running at shutdown; closing their connections", "err", err)
			return srv.Close()
		}
		return nil
	})
	return g.Wait()
}

// whenIdle returns an http.Server.ConnState hook that calls fn each time the server has
// had no open connection for d after having had one.
func whenIdle(d time.Duration, fn func()) func(net.Conn, http.ConnState) {
	var mu sync.Mutex
	open := 0
	var timer *time.Timer
	return func(_ net.Conn, state http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch state {
		case http.StateNew:
			open++
			if timer != nil {
				timer.Stop()
			}
		case http.StateClosed, http.StateHijacked:
			open--
			if open == 0 {
				if timer == nil {
					timer = time.AfterFunc(d, fn)
				} else {
					timer.Reset(d)
				}
			}
		}
	}
}

// idleExit returns an http.Server.ConnState hook that calls exit once no connection has
// been open for d. The clock starts now, so a server nobody connects to exits too.
func idleExit(d time.Duration, exit func()) func(net.Conn, http.ConnState) {
	var mu sync.Mutex
	open := 0
	timer := time.AfterFunc(d, func() {
		mu.Lock()
		idle := open == 0
		mu.Unlock()
		if idle {
			exit()
		}
	})
	return func(_ net.Conn, state http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch state {
		case http.StateNew:
			open++
			timer.Stop()
		case http.StateClosed, http.StateHijacked:
			open--
			if open == 0 {
				timer.Reset(d)
			}
		}
	}
}

// HTTPListeners returns the listeners an HTTP appliance serves on. When the process was
// socket-activated (jitsu, systemd), those sockets: the one named "https" in
// LISTEN_FDNAMES serves TLS with cfg, the others plain HTTP. Otherwise it listens on
// plainAddr (plain HTTP; keep it on loopback, where RequireTLS lets credentials through)
// and tlsAddr (HTTPS), each unless empty. getenv is os.Getenv in a main.
func HTTPListeners(getenv func(string) string, plainAddr, tlsAddr string, cfg *tls.Config) ([]net.Listener, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	ls, names, err := activated(getenv)
	if err != nil {
		return nil, err
	}
	if ls != nil {
		for i, name := range names {
			if name == "https" {
				ls[i] = tls.NewListener(ls[i], cfg)
			}
		}
		return ls, nil
	}
	var out []net.Listener
	for _, a := range []struct {
		addr   string
		secure bool
	}{{plainAddr, false}, {tlsAddr, true}} {
		if a.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("signpost: listen: %w", err)
		}
		if a.secure {
			ln = tls.NewListener(ln, cfg)
		}
		out = append(out, ln)
	}
	if len(out) == 0 {
		return nil, errors.New("signpost: no address to listen on")
	}
	return out, nil
}
