package jitsu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ErrServerClosed is returned by ServeUDP and ServeTCP after Shutdown.
var ErrServerClosed = errors.New("jitsu: DNS server closed")

// Defaults and limits of the DNS server.
const (
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultTCPIdleTimeout  = 10 * time.Second
	DefaultMaxTCPConns     = 256
	maxForwards            = 64   // forwarded queries in flight per server
	lookupQueue            = 1024 // OnLookup calls waiting; more are dropped
)

// DNSOptions configure a DNSServer.
type DNSOptions struct {
	// Zone is the home zone served; it can be replaced later with SetZone. Required.
	Zone *Zone
	// LocalZone, when set, is the zone answered to clients on loopback addresses: the
	// same names, but pointing at sockets that listen on loopback only, which a device
	// elsewhere must never be told about (it would connect to itself). nil: Zone.
	LocalZone *Zone
	// Upstream is the "host:port" of a resolver that names outside the zone are forwarded
	// to; empty means such queries are REFUSED.
	Upstream string
	// UpstreamTimeout bounds one forwarded query; 0 means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// OnLookup is called with an appliance's name when its name or one of its services is
	// queried: the hook that summons it. It is called from one goroutine, never on the
	// answer's path; when it falls behind, calls are dropped.
	OnLookup func(appliance string)
	// RateLimit configures response-rate limiting of UDP answers.
	RateLimit RRLOptions
	// UDPReaders is the number of goroutines reading each UDP socket; 0 means 2.
	UDPReaders int
	// TCPIdleTimeout closes a TCP connection without queries; 0 means DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration
	// MaxTCPConns bounds open TCP connections; 0 means DefaultMaxTCPConns.
	MaxTCPConns int
	// Logger receives errors; nil means slog.Default().
	Logger *slog.Logger
}

// DNSServer is jitsu's authoritative server for the home zone over UDP and TCP. Answers
// come pre-packed from the Zone; a query costs no allocation.
type DNSServer struct {
	opts    DNSOptions
	zone    atomic.Pointer[Zone]
	local   atomic.Pointer[Zone] // for loopback clients; nil: zone
	rrl     *rrl
	log     *slog.Logger
	lookups chan string
	fwdSem  chan struct{}
	tcpSem  chan struct{}
	once    sync.Once
	done    chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	pcs      map[net.PacketConn]struct{}
	lns      map[net.Listener]struct{}
	conns    map[net.Conn]struct{}
	counters []*counters
	tcpStats *counters
}

// NewDNSServer returns a server for opts; it serves once ServeUDP or ServeTCP is called.
func NewDNSServer(opts DNSOptions) *DNSServer {
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if opts.UDPReaders <= 0 {
		opts.UDPReaders = 2
	}
	if opts.TCPIdleTimeout <= 0 {
		opts.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if opts.MaxTCPConns <= 0 {
		opts.MaxTCPConns = DefaultMaxTCPConns
	}
	s := &DNSServer{
		opts:    opts,
		rrl:     newRRL(opts.RateLimit),
		log:     opts.Logger,
		lookups: make(chan string, lookupQueue),
		fwdSem:  make(chan struct{}, maxForwards),
		tcpSem:  make(chan struct{}, opts.MaxTCPConns),
		done:    make(chan struct{}),
		pcs:     make(map[net.PacketConn]struct{}),
		lns:     make(map[net.Listener]struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.tcpStats = new(counters)
	s.counters = append(s.counters, s.tcpStats)
	s.zone.Store(opts.Zone)
	s.local.Store(opts.LocalZone)
	return s
}

// SetZone replaces the zone atomically; queries in flight finish with the old one.
func (s *DNSServer) SetZone(z *Zone) { s.zone.Store(z) }

// SetLocalZone replaces the zone answered to loopback clients (nil: the main zone).
func (s *DNSServer) SetLocalZone(z *Zone) { s.local.Store(z) }

// zoneFor returns the zone a client at addr is answered from.
func (s *DNSServer) zoneFor(client netip.Addr) *Zone {
	if client.Unmap().IsLoopback() {
		if z := s.local.Load(); z != nil {
			return z
		}
	}
	return s.zone.Load()
}

// Zone returns the zone being served.
func (s *DNSServer) Zone() *Zone { return s.zone.Load() }

// start registers one serving goroutine; false after Shutdown.
func (s *DNSServer) start(register func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	register()
	s.wg.Add(1)
	s.once.Do(func() {
		if s.opts.OnLookup == nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case app := <-s.lookups:
					s.opts.OnLookup(app)
				case <-s.done:
					return
				}
			}
		}()
	})
	return true
}

// lookedUp queues the summon hook for app without blocking.
func (s *DNSServer) lookedUp(app string) {
	if app == "" || s.opts.OnLookup == nil {
		return
	}
	select {
	case s.lookups <- app:
	default:
	}
}

// ServeUDP answers queries arriving on pc until Shutdown (then it returns ErrServerClosed)
// or a read error. Several sockets bound with SO_REUSEPORT (ListenUDP) spread the load.
func (s *DNSServer) ServeUDP(pc net.PacketConn) error {
	c := new(counters)
	if !s.start(func() { s.pcs[pc] = struct{}{}; s.counters = append(s.counters, c) }) {
		pc.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()
	errc := make(chan error, s.opts.UDPReaders)
	for range s.opts.UDPReaders {
		go func() { errc <- s.readUDP(pc, c) }()
	}
	var err error
	for range s.opts.UDPReaders {
		if e := <-errc; err == nil {
			err = e
		}
		pc.Close() // one reader failing stops the others
	}
	s.mu.Lock()
	delete(s.pcs, pc)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	return fmt.Errorf("jitsu: serve UDP %s: %w", pc.LocalAddr(), err)
}

// readUDP is one reader of pc.
func (s *DNSServer) readUDP(pc net.PacketConn, c *counters) error {
	buf := make([]byte, maxMsgSize)
	out := make([]byte, 0, maxMsgSize+16)
	uc, _ := pc.(*net.UDPConn)
	for {
		var n int
		var from netip.AddrPort
		var err error
		if uc != nil {
			n, from, err = uc.ReadFromUDPAddrPort(buf)
		} else {
			var a net.Addr
			n, a, err = pc.ReadFrom(buf)
			if ua, ok := a.(*net.UDPAddr); ok {
				from = ua.AddrPort()
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		resp, act := s.handleUDP(buf[:n], out, from.Addr(), c)
		switch act {
		case actReply:
			if uc != nil {
				_, err = uc.WriteToUDPAddrPort(resp, from)
			} else {
				_, err = pc.WriteTo(resp, net.UDPAddrFromAddrPort(from))
			}
			if err != nil {
				s.log.Debug("jitsu: dns: write", "to", from, "err", err)
			}
		case actForward:
			s.forwardUDP(pc, bytes.Clone(buf[:n]), from, c)
		}
	}
}

// handleUDP answers one datagram from client, applying the rate limit.
func (s *DNSServer) handleUDP(req, out []byte, client netip.Addr, c *counters) ([]byte, action) {
	slip := false
	if s.rrl != nil && len(req) >= hdrLen && req[2]&flagQR == 0 {
		switch s.rrl.check(client) {
		case rrlDrop:
			c.rateLimited.Add(1)
			return out[:0], actDrop
		case rrlSlip:
			c.rateLimited.Add(1)
			c.slipped.Add(1)
			slip = true
		}
	}
	return s.answer(s.zoneFor(client), req, out, true, slip, c)
}

// forwardUDP forwards req to the upstream in the background; when too many are in flight
// it answers SERVFAIL at once.
func (s *DNSServer) forwardUDP(pc net.PacketConn, req []byte, to netip.AddrPort, c *counters) {
	select {
	case s.fwdSem <- struct{}{}:
	default:
		out := s.errorReply(req, make([]byte, 0, hdrLen), rcodeServF, c)
		pc.WriteTo(out, net.UDPAddrFromAddrPort(to))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.fwdSem }()
		resp := s.forward(req, true, c)
		if resp != nil {
			if _, err := pc.WriteTo(resp, net.UDPAddrFromAddrPort(to)); err != nil {
				s.log.Debug("jitsu: dns: write forwarded answer", "to", to, "err", err)
			}
		}
	}()
}

// forward asks the upstream and returns the packed answer for the client (SERVFAIL when
// the upstream fails), sized for UDP when udp is set.
func (s *DNSServer) forward(req []byte, udp bool, c *counters) []byte {
	m := new(dns.Msg)
	if err := m.Unpack(req); err != nil || len(m.Question) != 1 {
		return s.errorReply(req, make([]byte, 0, hdrLen), rcodeFormE, c)
	}
	id := m.Id
	m.Id = dns.Id()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout)
	defer cancel()
	cl := &dns.Client{Net: "udp", Timeout: s.opts.UpstreamTimeout}
	resp, _, err := cl.ExchangeContext(ctx, m, s.opts.Upstream)
	if err == nil && resp.Truncated {
		cl.Net = "tcp"
		resp, _, err = cl.ExchangeContext(ctx, m, s.opts.Upstream)
	}
	if err != nil {
		s.log.Debug("jitsu: dns: forward", "upstream", s.opts.Upstream, "name", m.Question[0].Name, "err", err)
		resp = new(dns.Msg)
		resp.SetRcode(m, dns.RcodeServerFailure)
	}
	resp.Id = id
	if udp {
		size := minUDPSize
		if o := m.IsEdns0(); o != nil {
			size = max(minUDPSize, int(o.UDPSize()))
		}
		resp.Truncate(size)
	}
	out, err := resp.Pack()
	if err != nil {
		s.log.Debug("jitsu: dns: pack forwarded answer", "err", err)
		return s.errorReply(req, make([]byte, 0, hdrLen), rcodeServF, c)
	}
	c.rcode[resp.Rcode&0x1F].Add(1)
	return out
}

// ServeTCP answers queries on connections accepted from ln until Shutdown (then it returns
// ErrServerClosed) or an accept error. A connection stays open for any number of queries
// until it is idle for TCPIdleTimeout; answers come in the order of the queries.
func (s *DNSServer) ServeTCP(ln net.Listener) error {
	if !s.start(func() { s.lns[ln] = struct{}{} }) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.mu.Lock()
			delete(s.lns, ln)
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			return fmt.Errorf("jitsu: serve TCP %s: %w", ln.Addr(), err)
		}
		select {
		case s.tcpSem <- struct{}{}:
		default:
			s.log.Debug("jitsu: dns: too many TCP connections", "from", conn.RemoteAddr())
			conn.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			<-s.tcpSem
			continue
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() { <-s.tcpSem }()
			s.serveConn(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		}()
	}
}

// serveConn answers the queries of one TCP connection.
func (s *DNSServer) serveConn(conn net.Conn) {
	r := bufio.NewReaderSize(conn, 4096)
	req := make([]byte, maxMsgSize)
	out := make([]byte, 2, maxMsgSize+18)
	c := s.tcpStats
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		client = ap.Addr()
	}
	for {
		conn.SetReadDeadline(time.Now().Add(s.opts.TCPIdleTimeout))
		if _, err := io.ReadFull(r, req[:2]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(req))
		if _, err := io.ReadFull(r, req[:n]); err != nil {
			return
		}
		resp, act := s.answer(s.zoneFor(client), req[:n], out[2:], false, false, c)
		switch act {
		case actDrop:
			continue
		case actForward:
			resp = s.forward(req[:n], false, c)
			if resp == nil {
				continue
			}
		}
		frame := append(out[:0], 0, 0)
		frame = append(frame, resp...)
		binary.BigEndian.PutUint16(frame, uint16(len(resp)))
		conn.SetWriteDeadline(time.Now().Add(s.opts.TCPIdleTimeout))
		if _, err := conn.Write(frame); err != nil {
			return
		}
	}
}

// Shutdown closes every socket and connection and waits until the serving goroutines have
// stopped, or ctx is done.
func (s *DNSServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		for pc := range s.pcs {
			pc.Close()
		}
		for ln := range s.lns {
			ln.Close()
		}
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jitsu: DNS shutdown: %w", ctx.Err())
	}
}
