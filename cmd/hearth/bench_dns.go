package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
)

// Ports of the three servers during "hearth bench dns".
const (
	benchJitsuPort = 15300
	benchNSDPort   = 15301
	benchKnotPort  = 15302
)

func cmdBenchDNS(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "bench dns", "[-peers DIR] [-duration D]")
	peers := fs.String("peers", "../shared/peers", "directory with run-peer and dns/queries.txt")
	dur := fs.Duration("duration", 10*time.Second, "how long dnsperf runs against each server")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if *dur < time.Second || *dur > time.Hour {
		fmt.Fprintln(s.err, "hearth bench dns: -duration must be between 1s and 1h")
		return 2
	}
	if err := benchDNS(ctx, s, *peers, *dur); err != nil {
		fmt.Fprintln(s.err, "hearth bench dns:", err)
		return 1
	}
	return 0
}

// dnsperfResult is what one dnsperf run reported.
type dnsperfResult struct {
	sent, completed, lost int
	qps                   float64
	rcodes                string
}

// benchZone is jitsu's equivalent of peers/dns/home.arpa.zone.
func benchZone() (*jitsu.Zone, error) {
	names := signpost.Names{Domain: "home.arpa", Appliances: []signpost.Appliance{
		{Name: "mail", Ports: []signpost.Port{
			{Name: "imaps", Proto: "tcp", Port: 993, TLS: true},
			{Name: "submission", Proto: "tcp", Port: 587},
		}},
		{Name: "calendar", Ports: []signpost.Port{{Name: "https", Proto: "tcp", Port: 443, TLS: true}}},
		{Name: "files"}, {Name: "media"}, {Name: "printer"},
	}}
	ip := netip.MustParseAddr
	return jitsu.NewZone(names, map[string][]netip.Addr{
		"mail":     {ip("127.0.0.2"), ip("::2")},
		"calendar": {ip("127.0.0.3"), ip("::3")},
		"files":    {ip("127.0.0.4")},
		"media":    {ip("127.0.0.5")},
		"printer":  {ip("127.0.0.6")},
	}, []netip.Addr{ip("127.0.0.1")}, 300)
}

// benchDNS runs dnsperf against jitsu, NSD and Knot serving the same zone.
func benchDNS(ctx context.Context, s stdio, peers string, dur time.Duration) error {
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		return errors.New("dnsperf is not installed (Debian package dnsperf)")
	}
	queries := filepath.Join(peers, "dns", "queries.txt")
	if _, err := os.Stat(queries); err != nil {
		return fmt.Errorf("queries: %w (set -peers)", err)
	}
	tmp, err := os.MkdirTemp("", "hearth-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	z, err := benchZone()
	if err != nil {
		return err
	}
	srv := jitsu.NewDNSServer(jitsu.DNSOptions{Zone: z, RateLimit: jitsu.RRLOptions{Disabled: true}, UDPReaders: 1})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(benchJitsuPort))
	pcs, err := jitsu.ListenUDP(ctx, addr, 4)
	if err != nil {
		return err
	}
	for _, pc := range pcs {
		go srv.ServeUDP(pc)
	}
	defer srv.Shutdown(context.Background())

	type row struct {
		name string
		res  dnsperfResult
		note string
	}
	var rows []row
	run := func(name string, port int) {
		if err := waitDNS(ctx, port); err != nil {
			rows = append(rows, row{name: name, note: err.Error()})
			return
		}
		fmt.Fprintf(s.err, "dnsperf against %s for %s...\n", name, dur)
		r, err := runDNSPerf(ctx, dnsperf, queries, port, dur)
		if err != nil {
			rows = append(rows, row{name: name, note: err.Error()})
			return
		}
		rows = append(rows, row{name: name, res: r})
	}
	run("jitsu", benchJitsuPort)
	for _, peer := range []struct {
		name, bin string
		port      int
	}{{"nsd", "nsd", benchNSDPort}, {"knot", "knotd", benchKnotPort}} {
		if _, err := exec.LookPath(peer.bin); err != nil {
			rows = append(rows, row{name: peer.name, note: fmt.Sprintf("not installed (Debian package %s)", peer.name)})
			continue
		}
		pid, err := startPeer(ctx, peers, peer.name, filepath.Join(tmp, peer.name), peer.port)
		if err != nil {
			rows = append(rows, row{name: peer.name, note: err.Error()})
			continue
		}
		run(peer.name, peer.port)
		if p, err := os.FindProcess(pid); err == nil {
			p.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}

	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "server\tqps\tsent\tcompleted\tlost\trcodes\t\n")
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\n", r.name, r.note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%d\t%d\t%s\t\n", r.name, r.res.qps, r.res.sent, r.res.completed, r.res.lost, r.res.rcodes)
	}
	tw.Flush()
	st := srv.Stats()
	fmt.Fprintf(s.out, "jitsu counted %d responses: %v\n", sum(st.Rcodes), st.Rcodes)
	return nil
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// startPeer starts a reference server with peers/run-peer and returns its pid.
func startPeer(ctx context.Context, peers, name, dir string, port int) (int, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(peers, "run-peer"), name, dir, strconv.Itoa(port)).Output()
	if err != nil {
		return 0, fmt.Errorf("run-peer %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, fmt.Errorf("run-peer %s printed %q, not a pid", name, out)
	}
	return pid, nil
}

// waitDNS waits until 127.0.0.1:port answers SOA home.arpa, for up to 10 s.
func waitDNS(ctx context.Context, port int) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	q := new(dns.Msg).SetQuestion("home.arpa.", dns.TypeSOA)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _, err := c.ExchangeContext(ctx, q, addr)
		if err == nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no answer on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runDNSPerf runs dnsperf (10 clients, 2 threads, as in the reference figures) and parses
// its summary.
func runDNSPerf(ctx context.Context, dnsperf, queries string, port int, dur time.Duration) (dnsperfResult, error) {
	cmd := exec.CommandContext(ctx, dnsperf, "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", queries,
		"-l", strconv.Itoa(int(dur.Seconds())), "-c", "10", "-T", "2", "-q", "500")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return dnsperfResult{}, fmt.Errorf("dnsperf: %w: %s", err, bytes.TrimSpace(out))
	}
	var r dnsperfResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Queries sent:") && len(f) >= 3:
			r.sent, _ = strconv.Atoi(f[2])
		case strings.HasPrefix(line, "Queries completed:") && len(f) >= 3:
			r.completed, _ = strconv.Atoi(f[2])
		case strings.HasPrefix(line, "Queries lost:") && len(f) >= 3:
			r.lost, _ = strconv.Atoi(f[2])
		case strings.HasPrefix(line, "Queries per second:") && len(f) >= 4:
			r.qps, _ = strconv.ParseFloat(f[3], 64)
		case strings.HasPrefix(line, "Response codes:"):
			r.rcodes = strings.TrimSpace(strings.TrimPrefix(line, "Response codes:"))
		}
	}
	if r.sent == 0 {
		return r, fmt.Errorf("dnsperf printed no summary: %s", bytes.TrimSpace(out))
	}
	return r, nil
}
