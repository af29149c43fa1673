package jitsu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

// Config is what Start runs: the appliances' manifests, the names they are served under,
// and where DNS listens.
type Config struct {
	// Names are the home domain and its appliances. Only appliances with a manifest are
	// published; their ports are rewritten to where their sockets really listen (a
	// manifest socket with port 0 gets one from the kernel), matched by socket name.
	Names signpost.Names
	// Manifests are the appliances to run (process backend: Exec; microVM backend: Image).
	Manifests []Manifest
	// DNSAddr is the UDP and TCP address of the DNS server, e.g. "127.0.0.1:5353"; port 0
	// picks a free one (see Jitsu.DNSAddr).
	DNSAddr string
	// Upstream is a resolver for names outside the zone ("": REFUSED).
	Upstream string
	// UDPSockets is the number of SO_REUSEPORT UDP sockets (<= 0: 2, or 1 without SO_REUSEPORT).
	UDPSockets int
	// Summon tunes the process backend; its Logger defaults to Logger.
	Summon SummonOptions
	// VM tunes the microVM backend; its Logger defaults to Logger.
	VM VMOptions
	// LANAddrs lists the addresses published for sockets listening on every address,
	// besides 127.0.0.1 (nil: signpost.LANAddrs).
	LANAddrs func() ([]net.IP, error)
	// Logger receives errors and notes; nil: slog.Default().
	Logger *slog.Logger
}

// Service is one socket of a running appliance as Start published it.
type Service struct {
	Appliance string         // e.g. "mail"
	Socket    string         // the port's name, e.g. "imaps"
	FQDN      string         // e.g. "mail.home.arpa"
	Addr      netip.AddrPort // where to connect: the socket's address, 127.0.0.1 for a wildcard
	Wildcard  bool           // the socket listens on every address
	TLS       bool           // implicit TLS, from Names
	Loopback  bool           // not published in SRV records
}

// Jitsu is a running jitsu: the appliances' sockets held by a Summoner (and the microVM
// backend), and the DNS server for their zone.
type Jitsu struct {
	logger   *slog.Logger
	summoner *Summoner
	vms      *VMBackend
	dns      *DNSServer
	names    signpost.Names
	dnsAddr  netip.AddrPort
	services []Service

	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
	failed  chan struct{} // closed when serving DNS failed, or by Close
	close   sync.Once
}

// Start opens every manifest's sockets, builds the zone from where they listen, and
// serves DNS until Close. On error nothing is left open.
func Start(ctx context.Context, cfg Config) (_ *Jitsu, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Summon.Logger == nil {
		cfg.Summon.Logger = logger
	}
	if cfg.VM.Logger == nil {
		cfg.VM.Logger = logger
	}
	if err := validateAll(cfg.Manifests); err != nil {
		return nil, err
	}
	if err := cfg.Names.Validate(); err != nil {
		return nil, fmt.Errorf("jitsu: start: %w", err)
	}
	j := &Jitsu{logger: logger, summoner: NewSummoner(cfg.Summon), failed: make(chan struct{})}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			j.summoner.Close(cctx)
			if j.vms != nil {
				j.vms.Close(cctx)
			}
		}
	}()
	addrOf := map[string]func(socket string) (net.Addr, error){}
	for _, m := range cfg.Manifests {
		if m.Image != "" {
			if j.vms == nil {
				j.vms = NewVMBackend(cfg.VM)
			}
			if err := j.vms.Add(ctx, m); err != nil {
				return nil, err
			}
			addrOf[m.Name] = func(sock string) (net.Addr, error) { return j.vms.Addr(m.Name, sock) }
			continue
		}
		if err := j.summoner.Add(ctx, m); err != nil {
			return nil, err
		}
		addrOf[m.Name] = func(sock string) (net.Addr, error) { return j.summoner.Addr(m.Name, sock) }
	}
	lan := cfg.LANAddrs
	if lan == nil {
		lan = signpost.LANAddrs
	}

	// The published names: appliances with a manifest, ports where the sockets listen.
	names := signpost.Names{Domain: cfg.Names.Domain}
	addrs := map[string][]netip.Addr{}      // answered to clients elsewhere
	localAddrs := map[string][]netip.Addr{} // answered to clients on this machine
	for _, a := range cfg.Names.Appliances {
		get := addrOf[a.Name]
		if get == nil {
			continue
		}
		pub := signpost.Appliance{Name: a.Name}
		// Two views of the A/AAAA records: devices elsewhere get the addresses they can
		// reach (the LAN addresses for a socket on every address, never 127.0.0.1, which
		// would be themselves); clients on this machine get loopback addresses.
		var as, local []netip.Addr
		for _, p := range a.Ports {
			addr, err := get(p.Name)
			if err != nil {
				continue // a port the manifest does not serve
			}
			ap, err := netip.ParseAddrPort(addr.String())
			if err != nil {
				return nil, fmt.Errorf("jitsu: start: %s socket %q: %w", a.Name, p.Name, err)
			}
			p.Port = int(ap.Port())
			pub.Ports = append(pub.Ports, p)
			s := Service{Appliance: a.Name, Socket: p.Name, FQDN: names.FQDN(a.Name), Addr: ap, TLS: p.TLS, Loopback: p.Loopback}
			switch {
			case ap.Addr().IsUnspecified():
				s.Wildcard = true
				s.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
				local = append(local, s.Addr.Addr())
				as = append(as, lanAddrs(lan)...)
			case ap.Addr().Unmap().IsLoopback():
				local = append(local, ap.Addr().Unmap())
			default:
				as = append(as, ap.Addr().Unmap())
				local = append(local, ap.Addr().Unmap())
			}
			j.services = append(j.services, s)
		}
		if len(as) == 0 {
			as = slices.Clone(local) // nothing reachable from elsewhere: answer what there is
		}
		for _, v := range []*[]netip.Addr{&as, &local} {
			slices.SortStableFunc(*v, func(x, y netip.Addr) int { return x.Compare(y) })
			*v = slices.Compact(*v)
		}
		addrs[a.Name] = as
		localAddrs[a.Name] = local
		names.Appliances = append(names.Appliances, pub)
	}
	j.names = names

	udpN := cfg.UDPSockets
	if udpN <= 0 {
		udpN = 2
		if !haveReusePort {
			udpN = 1
		}
	}
	pcs, tcp, err := listenDNS(ctx, cfg.DNSAddr, udpN)
	if err != nil {
		return nil, err
	}
	j.dnsAddr, _ = netip.ParseAddrPort(pcs[0].LocalAddr().String())
	nsAddrs, localNS := serverAddrs(j.dnsAddr.Addr(), lan)
	zone, err := NewZone(names, addrs, nsAddrs, 0)
	var localZone *Zone
	if err == nil && (!maps.EqualFunc(addrs, localAddrs, slices.Equal) || !slices.Equal(nsAddrs, localNS)) {
		localZone, err = NewZone(names, localAddrs, localNS, 0)
	}
	if err != nil {
		for _, pc := range pcs {
			pc.Close()
		}
		tcp.Close()
		return nil, err
	}
	j.dns = NewDNSServer(DNSOptions{
		Zone: zone, LocalZone: localZone, Upstream: cfg.Upstream, Logger: logger,
		OnLookup: func(appliance string) {
			if j.vms != nil && j.vms.Has(appliance) {
				j.vms.SummonAsync(appliance)
				return
			}
			j.summoner.SummonAsync(appliance)
		},
	})
	serve := func(f func() error) {
		j.wg.Go(func() {
			if err := f(); err != nil && !errors.Is(err, ErrServerClosed) {
				j.errOnce.Do(func() {
					j.err = err
					close(j.failed)
				})
			}
		})
	}
	for _, pc := range pcs {
		serve(func() error { return j.dns.ServeUDP(pc) })
	}
	serve(func() error { return j.dns.ServeTCP(tcp) })
	return j, nil
}

// listenDNS opens n UDP sockets and a TCP listener on the same address; with port 0 it
// retries a few times when the UDP port it got is taken for TCP.
func listenDNS(ctx context.Context, addr string, n int) ([]net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("jitsu: DNS address %q: %w", addr, err)
	}
	tries := 1
	if p, err := strconv.Atoi(port); err == nil && p == 0 {
		tries = 10
	}
	for i := 0; ; i++ {
		pcs, err := ListenUDP(ctx, addr, n)
		if err != nil {
			return nil, nil, err
		}
		var lc net.ListenConfig
		tcp, err := lc.Listen(ctx, "tcp", pcs[0].LocalAddr().String())
		if err == nil {
			return pcs, tcp, nil
		}
		for _, pc := range pcs {
			pc.Close()
		}
		if i+1 >= tries {
			return nil, nil, fmt.Errorf("jitsu: listen TCP %s: %w", addr, err)
		}
	}
}

// Summoner returns the process backend.
func (j *Jitsu) Summoner() *Summoner { return j.summoner }

// VMs returns the microVM backend, or nil when no manifest has an image.
func (j *Jitsu) VMs() *VMBackend { return j.vms }

// DNSServer returns the DNS server.
func (j *Jitsu) DNSServer() *DNSServer { return j.dns }

// DNSAddr returns the address DNS is served on (UDP and TCP).
func (j *Jitsu) DNSAddr() netip.AddrPort { return j.dnsAddr }

// Names returns the names as published: appliances with a manifest, real ports.
func (j *Jitsu) Names() signpost.Names { return j.names }

// Services returns every published socket, appliance by appliance in the order of Names.
func (j *Jitsu) Services() []Service { return slices.Clone(j.services) }

// Failed is closed when serving DNS has failed (Close returns the error) or by Close.
func (j *Jitsu) Failed() <-chan struct{} { return j.failed }

// Status reports every appliance of both backends.
func (j *Jitsu) Status() []ApplianceStatus {
	st := j.summoner.Status()
	if j.vms != nil {
		st = append(st, j.vms.Status()...)
	}
	return st
}

// StatusHandler serves GET /status: the appliances and the DNS counters as JSON.
func (j *Jitsu) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Appliances []ApplianceStatus `json:"appliances"`
			DNS        DNSStats          `json:"dns"`
		}{j.Status(), j.dns.Stats()})
	})
}

// Close stops DNS and every appliance (SIGTERM, then SIGKILL after the grace period or
// when ctx ends; VMs likewise) and waits for them; it returns the error that made DNS
// serving fail, if any. Only the first call does anything.
func (j *Jitsu) Close(ctx context.Context) error {
	var err error
	j.close.Do(func() {
		errs := []error{j.dns.Shutdown(ctx)}
		j.wg.Wait()
		errs = append(errs, j.summoner.Close(ctx))
		if j.vms != nil {
			errs = append(errs, j.vms.Close(ctx))
		}
		j.errOnce.Do(func() { close(j.failed) })
		errs = append(errs, j.err)
		err = errors.Join(errs...)
	})
	return err
}

// serverAddrs returns the DNS server's own addresses as the zone publishes them (ns.ZONE):
// for devices elsewhere and for clients on this machine. A server on one address is that
// address for both; one on every address (0.0.0.0, ::) is reached at the machine's LAN
// addresses from elsewhere and at 127.0.0.1 from here, never at the unspecified address.
func serverAddrs(listen netip.Addr, lan func() ([]net.IP, error)) (public, local []netip.Addr) {
	listen = listen.Unmap()
	if !listen.IsUnspecified() {
		return []netip.Addr{listen}, []netip.Addr{listen}
	}
	local = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	public = lanAddrs(lan)
	if len(public) == 0 {
		public = local // nothing reachable from elsewhere: answer what there is
	}
	slices.SortFunc(public, func(x, y netip.Addr) int { return x.Compare(y) })
	return slices.Compact(public), local
}

// lanAddrs returns the addresses lan lists that devices elsewhere can reach: neither
// loopback nor link-local (nil when lan fails).
func lanAddrs(lan func() ([]net.IP, error)) []netip.Addr {
	ips, err := lan()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok && !a.IsLinkLocalUnicast() && !a.Unmap().IsLoopback() {
			out = append(out, a.Unmap())
		}
	}
	return out
}
