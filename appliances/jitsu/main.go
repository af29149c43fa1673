// Command jitsu is Hearth's summoning DNS server: it answers for the home zone, holds every
// built-in appliance's sockets, and starts an appliance when its name is looked up or its
// socket is connected to.
//
//	jitsu -data DIR [-dns 127.0.0.1:5353] [-status 127.0.0.1:8053] [-bin DIR] [-upstream ADDR] [-manifests FILE] [-log-format json]
//
// Appliances in the manifests file with an image run as microVMs under QEMU; they are
// published in DNS when DIR/names.json names them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("jitsu", flag.ContinueOnError)
	data := fs.String("data", "", "data directory (required)")
	dnsAddr := fs.String("dns", "127.0.0.1:5353", "DNS address (UDP and TCP)")
	status := fs.String("status", "127.0.0.1:8053", "status endpoint address (empty: none)")
	bin := fs.String("bin", "", "directory of the appliance binaries (default: this program's directory)")
	upstream := fs.String("upstream", "", "resolver for names outside the home zone (empty: REFUSED)")
	manifests := fs.String("manifests", "", "file of extra appliance manifests, e.g. microVM images (JSON, see jitsu.DecodeManifests)")
	logFormat := fs.String("log-format", "text", "log format: "+signpost.LogFormats)
	if err := fs.Parse(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: jitsu -data DIR [-dns ADDR] [-status ADDR] [-bin DIR] [-upstream ADDR] [-manifests FILE]")
		return 2
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, "jitsu:", err)
			return 1
		}
		*bin = filepath.Dir(exe)
	}
	logger, err := signpost.NewLogger(os.Stderr, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jitsu:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, logger, *data, *dnsAddr, *status, *bin, *upstream, *manifests); err != nil {
		logger.Error("jitsu stopped", "err", err)
		return 1
	}
	return 0
}

// serve registers the built-in appliances, answers DNS and serves the status until ctx ends.
func serve(ctx context.Context, logger *slog.Logger, dataDir, dnsAddr, statusAddr, binDir, upstream, manifestsFile string) error {
	names, err := signpost.ReadNames(dataDir)
	if err != nil {
		return err
	}
	ms := jitsu.BuiltinManifests(binDir, dataDir, names, logger)
	if manifestsFile != "" {
		extra, err := jitsu.LoadManifests(manifestsFile)
		if err != nil {
			return err
		}
		ms = append(ms, extra...)
	}
	met, err := newMetrics()
	if err != nil {
		return err
	}
	j, err := jitsu.Start(ctx, jitsu.Config{
		Names:     names,
		Manifests: ms,
		DNSAddr:   dnsAddr,
		Upstream:  upstream,
		Summon:    jitsu.SummonOptions{Logger: logger, BaseEnv: os.Environ(), OnSummon: met.observe},
		VM:        jitsu.VMOptions{Logger: logger, OnSummon: met.observe},
		Logger:    logger,
	})
	if err != nil {
		return err
	}
	met.status, met.dns = j.Status, j.DNSServer()
	g, gctx := errgroup.WithContext(ctx)
	if statusAddr != "" {
		ln, err := net.Listen("tcp", statusAddr)
		if err != nil {
			return errors.Join(err, closeJitsu(ctx, j))
		}
		token, err := signpost.EnsureControlToken(dataDir)
		if err != nil {
			ln.Close()
			return errors.Join(err, closeJitsu(ctx, j))
		}
		h := statusHandler(j, met, token)
		g.Go(func() error {
			return signpost.ServeHTTP(gctx, []net.Listener{ln}, h, signpost.ServeOptions{Logger: logger})
		})
	}
	logger.Info("jitsu up", "zone", names.Domain, "dns", j.DNSAddr(), "status", statusAddr)
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-j.Failed():
		}
		return closeJitsu(ctx, j)
	})
	return g.Wait()
}

// closeJitsu stops DNS and the appliances, waiting up to 15 s for them.
func closeJitsu(ctx context.Context, j *jitsu.Jitsu) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return j.Close(cctx)
}

// statusHandler serves jitsu's state as JSON at /status (the appliances and DNS counters)
// and as Prometheus metrics at /metrics, and the stop endpoint the dashboard uses (with
// the control token of the data directory).
func statusHandler(j *jitsu.Jitsu, met *metrics, token string) http.Handler {
	mux := j.ControlHandler(token)
	mux.Handle("GET /metrics", met.reg.Handler())
	return mux
}
