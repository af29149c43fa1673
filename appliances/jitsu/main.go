// Command jitsu is Hearth's summoning DNS server: it answers for the home zone, holds every
// built-in appliance's sockets, and starts an appliance when its name is looked up or its
// socket is connected to.
//
//	jitsu -data DIR [-dns 127.0.0.1:5353] [-status 127.0.0.1:8053] [-bin DIR] [-upstream ADDR]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	if err := fs.Parse(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: jitsu -data DIR [-dns ADDR] [-status ADDR] [-bin DIR] [-upstream ADDR]")
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
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, logger, *data, *dnsAddr, *status, *bin, *upstream); err != nil {
		logger.Error("jitsu stopped", "err", err)
		return 1
	}
	return 0
}

// serve registers the built-in appliances, answers DNS and serves the status until ctx ends.
func serve(ctx context.Context, logger *slog.Logger, dataDir, dnsAddr, statusAddr, binDir, upstream string) error {
	names, err := signpost.ReadNames(dataDir)
	if err != nil {
		return err
	}
	met := newMetrics()
	summoner := jitsu.NewSummoner(jitsu.SummonOptions{Logger: logger, BaseEnv: os.Environ(), OnSummon: met.observe})
	met.summoner = summoner
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		summoner.Close(cctx)
	}()
	addrs := map[string][]netip.Addr{}
	for _, m := range jitsu.BuiltinManifests(binDir, dataDir, names) {
		if err := summoner.Add(ctx, m); err != nil {
			return err
		}
		addrs[m.Name] = listenAddrs(summoner, m)
	}
	nsAddr, err := netip.ParseAddrPort(dnsAddr)
	if err != nil {
		return fmt.Errorf("-dns %q: %w", dnsAddr, err)
	}
	zone, err := jitsu.NewZone(names, addrs, []netip.Addr{nsAddr.Addr()}, 0)
	if err != nil {
		return err
	}
	dns := jitsu.NewDNSServer(jitsu.DNSOptions{
		Zone: zone, Upstream: upstream, Logger: logger,
		OnLookup: func(appliance string) { summoner.SummonAsync(appliance) },
	})
	met.dns = dns
	pcs, err := jitsu.ListenUDP(ctx, dnsAddr, 2)
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", dnsAddr)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	closed := func(err error) error { // the DNS server's end after Shutdown is no failure
		if errors.Is(err, jitsu.ErrServerClosed) {
			return nil
		}
		return err
	}
	for _, pc := range pcs {
		g.Go(func() error { return closed(dns.ServeUDP(pc)) })
	}
	g.Go(func() error { return closed(dns.ServeTCP(tcp)) })
	if statusAddr != "" {
		ln, err := net.Listen("tcp", statusAddr)
		if err != nil {
			return err
		}
		h := statusHandler(summoner, dns, met)
		g.Go(func() error {
			return signpost.ServeHTTP(gctx, []net.Listener{ln}, h, signpost.ServeOptions{Logger: logger})
		})
	}
	logger.Info("jitsu up", "zone", names.Domain, "dns", dnsAddr, "status", statusAddr)
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return dns.Shutdown(sctx)
	})
	return g.Wait()
}

// listenAddrs are the addresses an appliance's sockets listen on, which its DNS name
// resolves to: loopback for sockets bound to it, the LAN addresses for wildcard ones.
func listenAddrs(s *jitsu.Summoner, m jitsu.Manifest) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, sock := range m.Sockets {
		addr, err := s.Addr(m.Name, sock.Name)
		if err != nil {
			continue
		}
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			continue
		}
		if !ap.Addr().IsUnspecified() {
			add(ap.Addr().Unmap())
			continue
		}
		add(netip.MustParseAddr("127.0.0.1"))
		if lan, err := signpost.LANAddrs(); err == nil {
			for _, ip := range lan {
				if a, ok := netip.AddrFromSlice(ip); ok && !a.IsLinkLocalUnicast() {
					add(a.Unmap())
				}
			}
		}
	}
	return out
}

// statusHandler serves jitsu's state as JSON at /status (the appliances and DNS counters)
// and as Prometheus metrics at /metrics.
func statusHandler(s *jitsu.Summoner, dns *jitsu.DNSServer, met *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(met.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Appliances []jitsu.ApplianceStatus `json:"appliances"`
			DNS        jitsu.DNSStats          `json:"dns"`
		}{s.Status(), dns.Stats()})
	})
	return mux
}
