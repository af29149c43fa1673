package jitsu

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// MaxMeasureRuns bounds MeasureOptions.Runs.
const MaxMeasureRuns = 100000

// MeasureOptions tune MeasureSummon.
type MeasureOptions struct {
	// Runs is the number of connections timed (<= 0: 100; at most MaxMeasureRuns).
	Runs int
	// Warm leaves the appliance running between runs (warm latency); otherwise each run
	// first stops it, so every connection summons it cold.
	Warm bool
	// Send is written right after connecting, for appliances that speak only when spoken
	// to (e.g. "GET / HTTP/1.0\r\n\r\n"); nil for those that greet first.
	Send []byte
	// Timeout bounds each run (<= 0: 10s).
	Timeout time.Duration
}

// LatencyStats summarises measured latencies.
type LatencyStats struct {
	Runs                    int
	Min, P50, P90, P99, Max time.Duration
}

// String formats s on one line.
func (s LatencyStats) String() string {
	return fmt.Sprintf("runs=%d min=%v p50=%v p90=%v p99=%v max=%v", s.Runs, s.Min, s.P50, s.P90, s.P99, s.Max)
}

// MeasureSummon times connections to socket of appliance name, which s runs: from the
// start of connect to the first byte the appliance sends. Unless opts.Warm, each run first
// stops the appliance, so it measures the whole summon (jitsu noticing the connection,
// starting the process, the appliance accepting and answering).
func MeasureSummon(ctx context.Context, s *Summoner, name, socket string, opts MeasureOptions) (LatencyStats, error) {
	runs := opts.Runs
	if runs <= 0 {
		runs = 100
	}
	if runs > MaxMeasureRuns {
		return LatencyStats{}, fmt.Errorf("jitsu: measure %q: %d runs, at most %d", name, runs, MaxMeasureRuns)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	addr, err := s.Addr(name, socket)
	if err != nil {
		return LatencyStats{}, err
	}
	dialAddr := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		dialAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port)) // listening everywhere
	}
	ds := make([]time.Duration, 0, runs)
	var d net.Dialer
	for i := range runs {
		if !opts.Warm {
			if err := s.Stop(ctx, name); err != nil {
				return LatencyStats{}, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		c, err := d.DialContext(rctx, "tcp", dialAddr)
		if err != nil {
			cancel()
			return LatencyStats{}, fmt.Errorf("jitsu: measure %q: run %d: %w", name, i, err)
		}
		if dl, ok := rctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		var b [1]byte
		if len(opts.Send) > 0 {
			_, err = c.Write(opts.Send)
		}
		if err == nil {
			_, err = io.ReadFull(c, b[:])
		}
		ds = append(ds, time.Since(t0))
		c.Close()
		cancel()
		if err != nil {
			return LatencyStats{}, fmt.Errorf("jitsu: measure %q: run %d: %w", name, i, err)
		}
	}
	return summarise(ds), nil
}

// summarise returns the order statistics of ds (nearest rank).
func summarise(ds []time.Duration) LatencyStats {
	if len(ds) == 0 {
		return LatencyStats{}
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	q := func(p int) time.Duration {
		i := (len(ds)*p + 99) / 100 // nearest rank, 1-based
		return ds[max(i-1, 0)]
	}
	return LatencyStats{Runs: len(ds), Min: ds[0], P50: q(50), P90: q(90), P99: q(99), Max: ds[len(ds)-1]}
}

// MeasureSummonDNS times what a client does to reach appliance name of j from nothing:
// send a DNS query for the SRV record _SOCKET._tcp.NAME.ZONE to j's DNS server over UDP,
// read the answer (target port, and the target's address from the additional section),
// connect there and read the appliance's first byte. The lookup summons the appliance
// while the client connects. Unless opts.Warm, each run first stops it (cold).
func MeasureSummonDNS(ctx context.Context, j *Jitsu, name, socket string, opts MeasureOptions) (LatencyStats, error) {
	runs := opts.Runs
	if runs <= 0 {
		runs = 100
	}
	if runs > MaxMeasureRuns {
		return LatencyStats{}, fmt.Errorf("jitsu: measure %q: %d runs, at most %d", name, runs, MaxMeasureRuns)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	srv := "_" + socket + "._tcp." + name + "." + j.names.Domain + "."
	dnsAddr := j.DNSAddr().String()
	ds := make([]time.Duration, 0, runs)
	for i := range runs {
		if !opts.Warm {
			if err := j.stop(ctx, name); err != nil {
				return LatencyStats{}, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		err := dnsConnectGreet(rctx, dnsAddr, srv, opts.Send)
		ds = append(ds, time.Since(t0))
		cancel()
		if err != nil {
			return LatencyStats{}, fmt.Errorf("jitsu: measure %q from DNS: run %d: %w", name, i, err)
		}
	}
	return summarise(ds), nil
}

// stop stops appliance name on whichever backend runs it.
func (j *Jitsu) stop(ctx context.Context, name string) error {
	if j.vms != nil && j.vms.Has(name) {
		return j.vms.Stop(ctx, name)
	}
	return j.summoner.Stop(ctx, name)
}

// dnsConnectGreet looks up SRV record srv at the DNS server dnsAddr, connects to the
// target and reads one byte (after writing send, if any).
func dnsConnectGreet(ctx context.Context, dnsAddr, srv string, send []byte) error {
	q := new(dns.Msg)
	q.SetQuestion(srv, dns.TypeSRV)
	c := &dns.Client{Net: "udp"}
	if dl, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(dl)
	}
	r, _, err := c.ExchangeContext(ctx, q, dnsAddr)
	if err != nil {
		return fmt.Errorf("DNS: %w", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("DNS: %s %s", srv, dns.RcodeToString[r.Rcode])
	}
	var port uint16
	var target string
	for _, rr := range r.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			port, target = s.Port, s.Target
			break
		}
	}
	var ip net.IP
	for _, rr := range r.Extra {
		if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, target) {
			ip = a.A
			break
		}
	}
	if port == 0 || ip == nil {
		return fmt.Errorf("DNS: %s: no SRV record with an address: %v", srv, r.Answer)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(int(port))))
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			return err
		}
	}
	var b [1]byte
	_, err = io.ReadFull(conn, b[:])
	return err
}
