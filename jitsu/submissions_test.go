package jitsu

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/signpost"
)

// withoutPort returns n without port of appliance app, as in a names.json written before
// that port existed.
func withoutPort(n signpost.Names, app, port string) signpost.Names {
	out := signpost.Names{Domain: n.Domain}
	for _, a := range n.Appliances {
		if a.Name == app {
			a.Ports = slices.DeleteFunc(slices.Clone(a.Ports), func(p signpost.Port) bool { return p.Name == port })
		}
		out.Appliances = append(out.Appliances, a)
	}
	return out
}

// TestSubmissionsSRV asks a running DNS server, with miekg/dns's client over UDP and TCP,
// for the RFC 8314 submissions records: there with the default names, absent (and nothing
// else broken) with names from before the port existed.
func TestSubmissionsSRV(t *testing.T) {
	addrs := map[string][]netip.Addr{"mail": {netip.MustParseAddr("127.0.0.2")}}
	ns := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, tc := range []struct {
		name     string
		names    signpost.Names
		wantPort uint16 // 0: no such name
	}{
		{"default names", signpost.DefaultNames(""), 9465},
		{"old names without submissions", withoutPort(signpost.DefaultNames(""), "mail", "submissions"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z, err := NewZone(tc.names, addrs, ns, 300)
			if err != nil {
				t.Fatal(err)
			}
			_, addr := startDNS(t, DNSOptions{Zone: z})
			for _, net := range []string{"udp", "tcp"} {
				c := &dns.Client{Net: net, Timeout: 10 * time.Second}
				ask := func(qname string) *dns.Msg {
					t.Helper()
					q := new(dns.Msg)
					q.SetQuestion(qname, dns.TypeSRV)
					r, _, err := c.Exchange(q, addr)
					if err != nil {
						t.Fatalf("%s %s: %v", net, qname, err)
					}
					return r
				}
				for _, qname := range []string{"_submissions._tcp.home.arpa.", "_submissions._tcp.mail.home.arpa."} {
					r := ask(qname)
					if tc.wantPort == 0 {
						if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
							t.Errorf("%s %s: rcode %s, %d answers; want NXDOMAIN", net, qname, dns.RcodeToString[r.Rcode], len(r.Answer))
						}
						continue
					}
					if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
						t.Fatalf("%s %s: rcode %s, answers %v", net, qname, dns.RcodeToString[r.Rcode], r.Answer)
					}
					srv, ok := r.Answer[0].(*dns.SRV)
					if !ok || srv.Port != tc.wantPort || srv.Target != "mail.home.arpa." {
						t.Errorf("%s %s: answer %v, want SRV port %d target mail.home.arpa.", net, qname, r.Answer[0], tc.wantPort)
					}
				}
				// STARTTLS submission is there either way.
				r := ask("_submission._tcp.home.arpa.")
				if len(r.Answer) != 1 {
					t.Fatalf("%s _submission._tcp: %v", net, r.Answer)
				}
				if srv, ok := r.Answer[0].(*dns.SRV); !ok || srv.Port != 9587 {
					t.Errorf("%s _submission._tcp: %v", net, r.Answer)
				}
			}
		})
	}
}
