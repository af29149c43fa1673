package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"
)

// Limits of "hearth bench up" and of reading a welcome.
const (
	maxBenchUpRuns   = 100
	maxWelcomeLines  = 1000
	maxWelcomeLine   = 64 << 10
	probeReadLimit   = 512
	upAnswerDeadline = 30 * time.Second // for one run to answer everywhere
)

func cmdBenchUp(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "bench up", "[-runs N] [-hearth PATH] [-bin DIR]")
	runs := fs.Int("runs", 7, "starts timed, fresh and again on the same data each")
	hearthBin := fs.String("hearth", "", "hearth binary to start (default: this one)")
	bin := fs.String("bin", "", "directory of the appliance binaries (default: go build ./appliances/... from the source)")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if *runs < 1 || *runs > maxBenchUpRuns {
		fmt.Fprintf(s.err, "hearth bench up: -runs must be 1..%d\n", maxBenchUpRuns)
		return 2
	}
	if err := benchUp(ctx, s, *runs, *hearthBin, *bin); err != nil {
		fmt.Fprintln(s.err, "hearth bench up:", err)
		return 1
	}
	return 0
}

// benchUp times "hearth up" as a person sees it, from starting the process until every
// service answers (DNS for every appliance, IMAP and SMTP greetings, HTTPS 401 from the
// store, contacts and calendar), with the appliances cold (started on demand by these
// first connections) and their binaries built. Fresh: a new data directory each run (CA,
// admin password); again: the same data directory started once more.
func benchUp(ctx context.Context, s stdio, runs int, hearthBin, bin string) error {
	tmp, err := os.MkdirTemp("", "hearth-bench-up-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if hearthBin == "" {
		if hearthBin, err = os.Executable(); err != nil {
			return err
		}
	}
	if bin == "" {
		root, ok := moduleRoot()
		if !ok {
			return errors.New("not inside Hearth's source: pass -bin DIR")
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			return fmt.Errorf("%w (pass -bin DIR)", err)
		}
		bin = filepath.Join(tmp, "bin")
		logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := buildAppliances(ctx, logger, goBin, root, bin); err != nil {
			return err
		}
	}
	var fresh, again []time.Duration
	var services int
	for i := range runs {
		data := filepath.Join(tmp, "data"+strconv.Itoa(i))
		for _, first := range []bool{true, false} {
			took, n, err := timeUp(ctx, hearthBin, data, bin)
			if err != nil {
				return err
			}
			services = n
			if first {
				fresh = append(fresh, took)
			} else {
				again = append(again, took)
			}
		}
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "hearth up until all %d services answer (%d runs)\tmin\tmedian\tmax\t\n", services, runs)
	for _, r := range []struct {
		name string
		ds   []time.Duration
	}{{"fresh data directory (CA, admin)", fresh}, {"existing data directory", again}} {
		slices.Sort(r.ds)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.name, roundMs(r.ds[0]), roundMs(r.ds[len(r.ds)/2]), roundMs(r.ds[len(r.ds)-1]))
	}
	return tw.Flush()
}

func roundMs(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

// timeUp starts "hearth up" on data, waits until every service it prints answers, stops it
// with SIGINT and checks that it exits with status 0. It returns the time from the start
// until everything answered and the number of services probed.
func timeUp(ctx context.Context, hearthBin, data, bin string) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, upAnswerDeadline)
	defer cancel()
	cmd := exec.Command(hearthBin, "up", "-data", data, "-dns", "127.0.0.1:0", "-status", "127.0.0.1:0", "-free-ports", "-bin", bin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr tailBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-done
		}
	}()
	tableCh := make(chan upTable, 1)
	readErr := make(chan error, 1)
	go func() {
		t, err := readWelcome(stdout)
		if err != nil {
			readErr <- err
			return
		}
		tableCh <- t
		io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	var t upTable
	select {
	case t = <-tableCh:
	case err := <-readErr:
		return 0, 0, fmt.Errorf("hearth up: %w; stderr:\n%s", err, stderr.String())
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("hearth up printed no welcome: %w; stderr:\n%s", ctx.Err(), stderr.String())
	}
	roots, err := loadRoots(filepath.Join(data, "ca", "ca.crt"))
	if err != nil {
		return 0, 0, err
	}
	if err := probeUp(ctx, t, roots); err != nil {
		return 0, 0, fmt.Errorf("%w; stderr:\n%s", err, stderr.String())
	}
	took := time.Since(start)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		return 0, 0, err
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			return 0, 0, fmt.Errorf("hearth up after SIGINT: %w; stderr:\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("hearth up did not stop after SIGINT: %w", ctx.Err())
	}
	return took, len(t.services) + 1, nil
}

// tailBuffer keeps the last 8 KiB written to it; safe for concurrent use.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// loadRoots returns a pool holding the PEM certificates of path.
func loadRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read the CA: no certificate in %s", path)
	}
	return pool, nil
}

// upService is one row of the welcome's service table.
type upService struct {
	appliance, socket, fqdn string
	addr                    netip.AddrPort // 127.0.0.1 for a socket on every address
	tls                     bool
}

// upTable is what readWelcome gathers from the welcome of "hearth up".
type upTable struct {
	services []upService
	dns      netip.AddrPort
	status   string // "" when not printed
	password string // "" when the run created no user
	lines    []string
}

var (
	welcomeRow      = regexp.MustCompile(`^  ([a-z0-9-]+) ([a-z0-9-]+) +(\S+) +(\S+) +(yes|no|STARTTLS)\b`)
	welcomeDNS      = regexp.MustCompile(`^  dns +\S+ +(\S+) +udp\+tcp$`)
	welcomeStatus   = regexp.MustCompile(`^  status +(\S+) +no`)
	welcomePassword = regexp.MustCompile(`^Created user \S+ with password (\S+)$`)
)

// readWelcome reads the welcome of "hearth up" up to its last line and returns the
// service table in it; it reads no further.
func readWelcome(r io.Reader) (upTable, error) {
	var t upTable
	br := bufio.NewReader(r)
	for len(t.lines) < maxWelcomeLines {
		line, err := readLine(br)
		if err != nil {
			return t, fmt.Errorf("read the welcome after %d lines: %w", len(t.lines), err)
		}
		t.lines = append(t.lines, line)
		if line == welcomeLast {
			if len(t.services) == 0 || !t.dns.IsValid() {
				return t, errors.New("the welcome lists no services or no DNS address")
			}
			return t, nil
		}
		if m := welcomeRow.FindStringSubmatch(line); m != nil {
			addr := strings.Replace(m[4], "*:", "127.0.0.1:", 1)
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return t, fmt.Errorf("service %s %s: address %q: %w", m[1], m[2], m[4], err)
			}
			t.services = append(t.services, upService{appliance: m[1], socket: m[2], fqdn: m[3], addr: ap, tls: m[5] == "yes"})
		}
		if m := welcomeDNS.FindStringSubmatch(line); m != nil {
			ap, err := netip.ParseAddrPort(m[1])
			if err != nil {
				return t, fmt.Errorf("DNS address %q: %w", m[1], err)
			}
			t.dns = ap
		}
		if m := welcomeStatus.FindStringSubmatch(line); m != nil {
			t.status = m[1]
		}
		if m := welcomePassword.FindStringSubmatch(line); m != nil {
			t.password = m[1]
		}
	}
	return t, fmt.Errorf("no end of the welcome in %d lines", maxWelcomeLines)
}

// readLine reads one line without its newline, at most maxWelcomeLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxWelcomeLine {
			return "", fmt.Errorf("a line longer than %d bytes", maxWelcomeLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// probeUp checks, all at once, that every service of t answers as it should: DNS gives
// each appliance's address, IMAP servers greet "* OK", SMTP, submission and LMTP greet
// "220", and the store, contacts and calendar answer HTTP requests without credentials
// with 401 (other HTTP appliances with anything but a 5xx). TLS is verified against roots.
func probeUp(ctx context.Context, t upTable, roots *x509.CertPool) error {
	g, ctx := errgroup.WithContext(ctx)
	asked := map[string]bool{}
	for _, sv := range t.services {
		g.Go(func() error {
			if err := probeService(ctx, sv, roots); err != nil {
				return fmt.Errorf("%s %s at %s: %w", sv.appliance, sv.socket, sv.addr, err)
			}
			return nil
		})
		if asked[sv.fqdn] {
			continue
		}
		asked[sv.fqdn] = true
		g.Go(func() error {
			var want []netip.Addr
			for _, o := range t.services {
				if o.fqdn == sv.fqdn {
					want = append(want, o.addr.Addr())
				}
			}
			return probeDNS(ctx, t.dns, sv.fqdn, want)
		})
	}
	return g.Wait()
}

// probeDNS asks the DNS server at server for the A records of name and checks that they
// hold every address of want.
func probeDNS(ctx context.Context, server netip.AddrPort, name string, want []netip.Addr) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, server.String())
	if err != nil {
		return fmt.Errorf("DNS %s: %w", name, err)
	}
	if in.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("DNS %s: %s", name, dns.RcodeToString[in.Rcode])
	}
	var got []netip.Addr
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A); ok {
				got = append(got, ip.Unmap())
			}
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return fmt.Errorf("DNS %s: answer %v lacks %s", name, got, w)
		}
	}
	return nil
}

// probeService checks that one socket answers as its kind of service should.
func probeService(ctx context.Context, sv upService, roots *x509.CertPool) error {
	tlsConf := &tls.Config{RootCAs: roots, ServerName: sv.fqdn, MinVersion: tls.VersionTLS12}
	switch {
	case sv.socket == "http" || sv.socket == "https":
		scheme, path := "http", "/"
		if sv.socket == "https" {
			scheme = "https"
		}
		if sv.appliance == "store" {
			path = "/api/repos"
		}
		tr := &http.Transport{
			TLSClientConfig:   tlsConf,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, sv.addr.String())
			},
		}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(sv.fqdn, strconv.Itoa(int(sv.addr.Port())))+path, nil)
		if err != nil {
			return err
		}
		client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch sv.appliance {
		case "store", "contacts", "calendar":
			if resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("GET %s without credentials: %s, want 401", path, resp.Status)
			}
		default:
			if resp.StatusCode >= 500 {
				return fmt.Errorf("GET %s: %s", path, resp.Status)
			}
		}
		return nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", sv.addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if sv.tls {
		tc := tls.Client(conn, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	line, err := bufio.NewReaderSize(io.LimitReader(conn, probeReadLimit), probeReadLimit).ReadString('\n')
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	want := "220 "
	if strings.HasPrefix(sv.socket, "imap") {
		want = "* OK"
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("greeting %q, want %q", strings.TrimSpace(line), want)
	}
	return nil
}
