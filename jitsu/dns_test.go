package jitsu

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/signpost"
)

// testNames is the default appliances plus "big", whose 64 AAAA records do not fit in a
// UDP answer.
func testNames(domain string) signpost.Names {
	n := signpost.DefaultNames(domain)
	n.Appliances = append(n.Appliances, signpost.Appliance{Name: "big",
		Ports: []signpost.Port{{Name: "https", Proto: "tcp", Port: 8500, TLS: true}}})
	return n
}

func testZone(t testing.TB, domain string, last byte) *Zone {
	t.Helper()
	big := make([]netip.Addr, 64)
	for i := range big {
		big[i] = netip.AddrFrom16([16]byte{0xfd, 15: byte(i + 1)})
	}
	addrs := map[string][]netip.Addr{
		"mail":     {netip.AddrFrom4([4]byte{127, 0, 0, last}), netip.MustParseAddr("::2")},
		"calendar": {netip.MustParseAddr("127.0.0.3")},
		"contacts": {netip.MustParseAddr("127.0.0.4")},
		"store":    {netip.MustParseAddr("127.0.0.5")},
		"big":      big,
	}
	z, err := NewZone(testNames(domain), addrs, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, 300)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// startDNS serves opts on 127.0.0.1, UDP and TCP on the same port, until the test ends.
func startDNS(t testing.TB, opts DNSOptions) (*DNSServer, string) {
	t.Helper()
	s := NewDNSServer(opts)
	var ln net.Listener
	var pcs []net.PacketConn
	for try := 0; ; try++ {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pcs, err = ListenUDP(context.Background(), ln.Addr().String(), 2)
		if err == nil {
			break
		}
		ln.Close()
		if try == 10 {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 3)
	go func() { errc <- s.ServeTCP(ln) }()
	for _, pc := range pcs {
		go func() { errc <- s.ServeUDP(pc) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		for range 3 {
			if err := <-errc; !errors.Is(err, ErrServerClosed) {
				t.Errorf("serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return s, ln.Addr().String()
}

// digResult is what dig printed.
type digResult struct {
	status, flags      string
	answer, authority  []string
	raw                string
	retriedTCP, hasOPT bool
}

var (
	reStatus = regexp.MustCompile(`status: ([A-Z]+)`)
	reFlags  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
)

// dig runs the real dig against addr.
func dig(t *testing.T, addr string, args ...string) digResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"@" + host, "-p", port, "+norec", "+time=3", "+tries=1"}, args...)
	out, err := exec.Command(testtool.Path(t, "dig", "bind9-dnsutils"), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	r := digResult{raw: string(out)}
	if m := reStatus.FindStringSubmatch(r.raw); m != nil {
		r.status = m[1]
	}
	if m := reFlags.FindStringSubmatch(r.raw); m != nil {
		r.flags = m[1]
	}
	r.retriedTCP = strings.Contains(r.raw, "retrying in TCP mode")
	r.hasOPT = strings.Contains(r.raw, "OPT PSEUDOSECTION")
	var sect *[]string
	for _, line := range strings.Split(r.raw, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			sect = &r.answer
		case strings.HasPrefix(line, ";; AUTHORITY SECTION"):
			sect = &r.authority
		case line == "" || strings.HasPrefix(line, ";"):
			sect = nil
		case sect != nil:
			*sect = append(*sect, strings.Join(strings.Fields(line), " "))
		}
	}
	return r
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

func TestDNSDig(t *testing.T) {
	testtool.Path(t, "dig", "bind9-dnsutils")
	_, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2)})
	soa := "SOA ns.home.arpa. hostmaster.home.arpa."
	for _, tc := range []struct {
		name, qname, qtype string
		status             string
		answer, authority  []string
		emptyAnswer        bool
	}{
		{name: "SOA", qname: "home.arpa", qtype: "SOA", status: "NOERROR", answer: []string{"home.arpa. 300 IN " + soa}},
		{name: "NS", qname: "home.arpa", qtype: "NS", status: "NOERROR", answer: []string{"home.arpa. 300 IN NS ns.home.arpa."}},
		{name: "A of ns", qname: "ns.home.arpa", qtype: "A", status: "NOERROR", answer: []string{"IN A 127.0.0.1"}},
		{name: "A", qname: "mail.home.arpa", qtype: "A", status: "NOERROR", answer: []string{"mail.home.arpa. 300 IN A 127.0.0.2"}},
		{name: "AAAA", qname: "mail.home.arpa", qtype: "AAAA", status: "NOERROR", answer: []string{"mail.home.arpa. 300 IN AAAA ::2"}},
		{name: "mixed case", qname: "MaIl.HOME.arpa", qtype: "A", status: "NOERROR", answer: []string{"MaIl.HOME.arpa. 300 IN A 127.0.0.2"}},
		{name: "SRV imap", qname: "_imap._tcp.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 9143 mail.home.arpa."}},
		{name: "SRV imaps", qname: "_imaps._tcp.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 9993 mail.home.arpa."}},
		{name: "SRV submission", qname: "_submission._tcp.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 9587 mail.home.arpa."}},
		{name: "SRV caldavs", qname: "_caldavs._tcp.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 8445 calendar.home.arpa."}},
		{name: "SRV carddavs", qname: "_carddavs._tcp.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 8444 contacts.home.arpa."}},
		{name: "SRV caldav no service", qname: "_caldav._tcp.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 0 ."}},
		{name: "SRV per appliance", qname: "_https._tcp.store.home.arpa", qtype: "SRV", status: "NOERROR", answer: []string{"SRV 0 0 8443 store.home.arpa."}},
		{name: "TXT caldavs", qname: "_caldavs._tcp.home.arpa", qtype: "TXT", status: "NOERROR", answer: []string{`TXT "path=/"`}},
		{name: "TXT carddavs", qname: "_carddavs._tcp.home.arpa", qtype: "TXT", status: "NOERROR", answer: []string{`TXT "path=/"`}},
		{name: "NXDOMAIN", qname: "nosuch.home.arpa", qtype: "A", status: "NXDOMAIN", authority: []string{soa}, emptyAnswer: true},
		{name: "NXDOMAIN loopback port", qname: "_http._tcp.store.home.arpa", qtype: "SRV", status: "NXDOMAIN", authority: []string{soa}, emptyAnswer: true},
		{name: "NODATA", qname: "mail.home.arpa", qtype: "MX", status: "NOERROR", authority: []string{soa}, emptyAnswer: true},
		{name: "NODATA no addresses", qname: "dashboard.home.arpa", qtype: "A", status: "NOERROR", authority: []string{soa}, emptyAnswer: true},
		{name: "NODATA empty non-terminal", qname: "_tcp.home.arpa", qtype: "A", status: "NOERROR", authority: []string{soa}, emptyAnswer: true},
		{name: "REFUSED outside", qname: "example.com", qtype: "A", status: "REFUSED", emptyAnswer: true},
		{name: "REFUSED suffix not a label", qname: "xhome.arpa", qtype: "A", status: "REFUSED", emptyAnswer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, proto := range []string{"+notcp", "+tcp"} {
				r := dig(t, addr, proto, tc.qname, tc.qtype)
				if r.status != tc.status {
					t.Fatalf("%s: status %q, want %q\n%s", proto, r.status, tc.status, r.raw)
				}
				if tc.status != "REFUSED" && !strings.Contains(" "+r.flags+" ", " aa ") {
					t.Errorf("%s: flags %q lack aa", proto, r.flags)
				}
				for _, w := range tc.answer {
					if !hasLine(r.answer, w) {
						t.Errorf("%s: answer %q lacks %q", proto, r.answer, w)
					}
				}
				for _, w := range tc.authority {
					if !hasLine(r.authority, w) {
						t.Errorf("%s: authority %q lacks %q", proto, r.authority, w)
					}
				}
				if tc.emptyAnswer && len(r.answer) != 0 {
					t.Errorf("%s: answer %q, want none", proto, r.answer)
				}
			}
		})
	}
}

func TestDNSEDNS(t *testing.T) {
	testtool.Path(t, "dig", "bind9-dnsutils")
	_, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2)})
	if r := dig(t, addr, "mail.home.arpa", "A"); !r.hasOPT || !strings.Contains(r.raw, "udp: 1232") {
		t.Errorf("EDNS query: no OPT with udp 1232 in the answer\n%s", r.raw)
	}
	if r := dig(t, addr, "+noedns", "mail.home.arpa", "A"); r.hasOPT || r.status != "NOERROR" {
		t.Errorf("query without EDNS: got OPT or status %s\n%s", r.status, r.raw)
	}
	if r := dig(t, addr, "+edns=1", "+noednsneg", "mail.home.arpa", "A"); r.status != "BADVERS" {
		t.Errorf("EDNS version 1: status %s, want BADVERS\n%s", r.status, r.raw)
	}
}

func TestDNSTruncation(t *testing.T) {
	testtool.Path(t, "dig", "bind9-dnsutils")
	_, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2)})
	for _, opt := range []string{"+bufsize=512", "+noedns", "+bufsize=1232"} {
		r := dig(t, addr, opt, "+ignore", "big.home.arpa", "AAAA")
		if !strings.Contains(" "+r.flags+" ", " tc ") || len(r.answer) != 0 {
			t.Errorf("%s +ignore: flags %q and %d answers, want tc and none\n%s", opt, r.flags, len(r.answer), r.raw)
		}
		r = dig(t, addr, opt, "big.home.arpa", "AAAA")
		if !r.retriedTCP || len(r.answer) != 64 || r.status != "NOERROR" {
			t.Errorf("%s: retried over TCP %v, %d answers, status %s; want true, 64, NOERROR\n%s", opt, r.retriedTCP, len(r.answer), r.status, r.raw)
		}
	}
	// A small answer is not truncated with the smallest buffer.
	if r := dig(t, addr, "+bufsize=512", "mail.home.arpa", "A"); r.retriedTCP || len(r.answer) != 1 {
		t.Errorf("small answer: retried %v, %d answers\n%s", r.retriedTCP, len(r.answer), r.raw)
	}
}

func TestDNSForward(t *testing.T) {
	testtool.Path(t, "dig", "bind9-dnsutils")
	_, upstream := startDNS(t, DNSOptions{Zone: testZone(t, "example.test", 9)})
	s, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2), Upstream: upstream})
	for _, proto := range []string{"+notcp", "+tcp"} {
		r := dig(t, addr, proto, "mail.example.test", "A")
		if r.status != "NOERROR" || !hasLine(r.answer, "mail.example.test. 300 IN A 127.0.0.9") {
			t.Errorf("%s: forwarded: status %s answer %q\n%s", proto, r.status, r.answer, r.raw)
		}
		if r := dig(t, addr, proto, "nosuch.example.test", "A"); r.status != "NXDOMAIN" {
			t.Errorf("%s: forwarded NXDOMAIN: status %s\n%s", proto, r.status, r.raw)
		}
		// The upstream's big answer is truncated to the client's UDP size, then retried.
		if r := dig(t, addr, proto, "big.example.test", "AAAA"); len(r.answer) != 64 {
			t.Errorf("%s: forwarded big answer: %d records\n%s", proto, len(r.answer), r.raw)
		}
	}
	if got := s.Stats().Forwarded; got != 7 { // 3 over UDP, 3 over TCP, dig's TCP retry of the big one
		t.Errorf("Stats().Forwarded = %d, want 7", got)
	}

	// An upstream that does not answer gives SERVFAIL.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	_, addr2 := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2), Upstream: dead.LocalAddr().String(), UpstreamTimeout: 200 * time.Millisecond})
	if r := dig(t, addr2, "mail.example.test", "A"); r.status != "SERVFAIL" {
		t.Errorf("dead upstream: status %s, want SERVFAIL\n%s", r.status, r.raw)
	}
}

func TestDNSOnLookup(t *testing.T) {
	testtool.Path(t, "dig", "bind9-dnsutils")
	got := make(chan string, 16)
	_, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2), OnLookup: func(app string) { got <- app }})
	for _, tc := range []struct{ qname, qtype, want string }{
		{"mail.home.arpa", "A", "mail"},
		{"nosuch.home.arpa", "A", ""}, // no call: checked by the next case's value
		{"_caldavs._tcp.home.arpa", "SRV", "calendar"},
		{"ns.home.arpa", "A", ""},
		{"_https._tcp.store.home.arpa", "SRV", "store"},
		{"contacts.home.arpa", "MX", "contacts"},
	} {
		dig(t, addr, tc.qname, tc.qtype)
		if tc.want == "" {
			continue
		}
		select {
		case app := <-got:
			if app != tc.want {
				t.Errorf("%s %s: OnLookup(%q), want %q", tc.qname, tc.qtype, app, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %s: OnLookup not called", tc.qname, tc.qtype)
		}
	}
}

// exchangeRaw sends b over UDP from conn and returns the reply, or nil after wait.
func exchangeRaw(t *testing.T, conn net.Conn, b []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestDNSMalformed(t *testing.T) {
	s, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2)})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		name  string
		req   []byte
		rcode int
	}{
		{"garbage after a header", append([]byte{0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}, "\xff\xfe garbage"...), dns.RcodeFormatError},
		{"no question", []byte{0xbe, 0xef, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}, dns.RcodeFormatError},
		{"two questions", append([]byte{0xbe, 0xef, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0}, "\x04mail\x00\x00\x01\x00\x01\x04mail\x00\x00\x01\x00\x01"...), dns.RcodeFormatError},
		{"pointer in question", append([]byte{0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, "\xc0\x0c\x00\x01\x00\x01"...), dns.RcodeFormatError},
		{"truncated OPT", append([]byte{0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1}, "\x04mail\x04home\x04arpa\x00\x00\x01\x00\x01\x00\x00\x29"...), dns.RcodeFormatError},
		{"notify opcode", append([]byte{0xbe, 0xef, 0x20, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, "\x04home\x04arpa\x00\x00\x06\x00\x01"...), dns.RcodeNotImplemented},
		{"chaos class", append([]byte{0xbe, 0xef, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, "\x07version\x04bind\x00\x00\x10\x00\x03"...), dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := exchangeRaw(t, conn, tc.req, 5*time.Second)
			m := new(dns.Msg)
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("reply %x does not parse: %v", resp, err)
			}
			if m.Id != 0xbeef || !m.Response || m.Rcode != tc.rcode {
				t.Errorf("reply id %#x response %v rcode %s, want 0xbeef true %s", m.Id, m.Response, dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
	// Too short for a header, and responses: dropped. The next query's answer is the
	// first thing to come back.
	for _, junk := range [][]byte{{1, 2, 3}, {0xbe, 0xef, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := conn.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	q := new(dns.Msg).SetQuestion("mail.home.arpa.", dns.TypeA)
	q.Id = 0x1234
	b, _ := q.Pack()
	m := new(dns.Msg)
	if err := m.Unpack(exchangeRaw(t, conn, b, 5*time.Second)); err != nil || m.Id != 0x1234 || len(m.Answer) != 1 {
		t.Errorf("query after junk: id %#x, %d answers, err %v", m.Id, len(m.Answer), err)
	}
	if st := s.Stats(); st.Dropped != 2 || st.Rcodes["FORMERR"] != 5 || st.Queries["A"] != 1 {
		t.Errorf("stats %+v: want 2 dropped, 5 FORMERR, 1 A query", st)
	}
}

func TestDNSRateLimit(t *testing.T) {
	s := NewDNSServer(DNSOptions{Zone: testZone(t, "home.arpa", 2), RateLimit: RRLOptions{ResponsesPerSecond: 10}})
	frozen := time.Unix(1e9, 0)
	s.rrl.now = func() time.Time { return frozen } // no token comes back during the flood
	_, addr := startWith(t, s)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const flood = 100
	var full, slipped int
	for i := range flood {
		q := new(dns.Msg).SetQuestion("mail.home.arpa.", dns.TypeA)
		q.Id = uint16(i)
		b, _ := q.Pack()
		// Replies to this client are sent in order: waiting for the one after the last
		// dropped reply would take long, so each is read with a short deadline only when
		// it is expected (every reply within the burst, every 2nd beyond).
		want := i < 10 || (i-10)%2 == 1
		wait := 5 * time.Second
		if !want {
			wait = 20 * time.Millisecond
		}
		resp := exchangeRaw(t, conn, b, wait)
		if resp == nil {
			continue
		}
		m := new(dns.Msg)
		if err := m.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Truncated && len(m.Answer) == 0:
			slipped++
		case len(m.Answer) == 1:
			full++
		}
	}
	if full != 10 || slipped != 45 {
		t.Errorf("flood of %d: %d full answers, %d slipped; want 10 and 45", flood, full, slipped)
	}
	if st := s.Stats(); st.RateLimited != 90 || st.Slipped != 45 {
		t.Errorf("stats: %d rate-limited, %d slipped; want 90 and 45", st.RateLimited, st.Slipped)
	}
	// TCP is not limited, and another client prefix has its own bucket.
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	for range 20 {
		m, _, err := c.Exchange(new(dns.Msg).SetQuestion("mail.home.arpa.", dns.TypeA), addr)
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("TCP during the limit: %v %v", m, err)
		}
	}
	if got := s.rrl.check(netip.MustParseAddr("127.0.1.1")); got != rrlSend {
		t.Errorf("another /24: verdict %d, want send", got)
	}
}

// startWith serves an existing server like startDNS.
func startWith(t testing.TB, s *DNSServer) (*DNSServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeTCP(ln)
	go s.ServeUDP(pc)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, ln.Addr().String()
}

func TestDNSTCPManyQueries(t *testing.T) {
	_, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2)})
	conn, err := dns.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Pipelined: 300 queries written before any answer is read (miekg/dns's own server
	// closes after 128).
	const n = 300
	go func() {
		for i := range n {
			q := new(dns.Msg).SetQuestion("mail.home.arpa.", dns.TypeA)
			q.Id = uint16(i)
			if err := conn.WriteMsg(q); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := range n {
		m, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if m.Id != uint16(i) || len(m.Answer) != 1 {
			t.Fatalf("answer %d: id %d, %d records", i, m.Id, len(m.Answer))
		}
	}
}

func TestDNSSetZone(t *testing.T) {
	s, addr := startDNS(t, DNSOptions{Zone: testZone(t, "home.arpa", 2)})
	c := &dns.Client{Timeout: 5 * time.Second}
	ask := func() string {
		m, _, err := c.Exchange(new(dns.Msg).SetQuestion("mail.home.arpa.", dns.TypeA), addr)
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("exchange: %v %v", m, err)
		}
		return m.Answer[0].(*dns.A).A.String()
	}
	if got := ask(); got != "127.0.0.2" {
		t.Fatalf("before SetZone: %s", got)
	}
	s.SetZone(testZone(t, "home.arpa", 7))
	if got := ask(); got != "127.0.0.7" {
		t.Fatalf("after SetZone: %s", got)
	}
}

func TestNewZoneErrors(t *testing.T) {
	good := signpost.DefaultNames("")
	withNS := signpost.DefaultNames("")
	withNS.Appliances = append(withNS.Appliances, signpost.Appliance{Name: "ns"})
	many := make([]netip.Addr, MaxAddrsPerName+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	for _, tc := range []struct {
		name  string
		names signpost.Names
		addrs map[string][]netip.Addr
		ttl   uint32
	}{
		{"bad domain", signpost.Names{Domain: "Not A Domain"}, nil, 0},
		{"appliance called ns", withNS, nil, 0},
		{"unknown appliance", good, map[string][]netip.Addr{"nope": {netip.MustParseAddr("10.0.0.1")}}, 0},
		{"too many addresses", good, map[string][]netip.Addr{"mail": many}, 0},
		{"invalid address", good, map[string][]netip.Addr{"mail": {{}}}, 0},
		{"ttl too long", good, nil, MaxTTL + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewZone(tc.names, tc.addrs, nil, tc.ttl); err == nil {
				t.Fatal("NewZone succeeded")
			}
		})
	}
	if _, err := NewZone(good, nil, nil, 0); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestAnswerAllocs(t *testing.T) {
	s := NewDNSServer(DNSOptions{Zone: testZone(t, "home.arpa", 2), RateLimit: RRLOptions{Disabled: true}})
	c := new(counters)
	out := make([]byte, 0, maxMsgSize)
	for _, q := range []struct {
		name string
		t    uint16
	}{{"mail.home.arpa.", dns.TypeA}, {"_imaps._tcp.home.arpa.", dns.TypeSRV}, {"nosuch.home.arpa.", dns.TypeA}, {"big.home.arpa.", dns.TypeAAAA}} {
		m := new(dns.Msg).SetQuestion(q.name, q.t)
		m.SetEdns0(1232, false)
		req, _ := m.Pack()
		if n := testing.AllocsPerRun(100, func() { s.answer(s.zone.Load(), req, out, true, false, c) }); n != 0 {
			t.Errorf("%s: %v allocations per answer, want 0", q.name, n)
		}
	}
}

func BenchmarkAnswer(b *testing.B) {
	s := NewDNSServer(DNSOptions{Zone: testZone(b, "home.arpa", 2), RateLimit: RRLOptions{Disabled: true}})
	c := new(counters)
	out := make([]byte, 0, maxMsgSize)
	for _, q := range []struct {
		name string
		t    uint16
		edns bool
	}{{"mail.home.arpa.", dns.TypeA, false}, {"_imaps._tcp.home.arpa.", dns.TypeSRV, true}, {"nosuch.home.arpa.", dns.TypeA, true}} {
		m := new(dns.Msg).SetQuestion(q.name, q.t)
		if q.edns {
			m.SetEdns0(1232, false)
		}
		req, _ := m.Pack()
		b.Run(dns.TypeToString[q.t]+"/"+strings.TrimSuffix(q.name, ".home.arpa."), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.answer(s.zone.Load(), req, out, true, false, c)
			}
		})
	}
}

// BenchmarkUDP measures whole round trips over loopback with one client.
func BenchmarkUDP(b *testing.B) {
	_, addr := startDNS(b, DNSOptions{Zone: testZone(b, "home.arpa", 2), RateLimit: RRLOptions{Disabled: true}})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req, _ := new(dns.Msg).SetQuestion("mail.home.arpa.", dns.TypeA).Pack()
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		conn.Write(req)
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
