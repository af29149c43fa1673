package jitsu

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzDNSHandler feeds raw bytes to the packet handler: it must never panic, and a
// well-formed query gets an answer with its ID that parses.
func FuzzDNSHandler(f *testing.F) {
	for _, q := range []struct {
		name string
		t    uint16
		edns bool
	}{{"mail.home.arpa.", dns.TypeA, false}, {"_imaps._tcp.home.arpa.", dns.TypeSRV, true},
		{"big.home.arpa.", dns.TypeAAAA, true}, {"nosuch.home.arpa.", dns.TypeTXT, false}, {"example.com.", dns.TypeA, true}} {
		m := new(dns.Msg).SetQuestion(q.name, q.t)
		if q.edns {
			m.SetEdns0(4096, true)
		}
		b, _ := m.Pack()
		f.Add(b, true)
	}
	f.Add([]byte{0, 1, 2}, true)
	f.Add([]byte{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41}, false)
	s := NewDNSServer(DNSOptions{Zone: testZone(f, "home.arpa", 2), RateLimit: RRLOptions{Disabled: true}})
	c := new(counters)
	out := make([]byte, 0, maxMsgSize+16)
	f.Fuzz(func(t *testing.T, req []byte, udp bool) {
		resp, act := s.answer(s.zone.Load(), req, out, udp, false, c)
		if act == actReply && len(resp) < hdrLen {
			t.Fatalf("reply of %d bytes", len(resp))
		}
		if udp && len(resp) > ourUDPSize {
			t.Fatalf("UDP reply of %d bytes", len(resp))
		}
		q := new(dns.Msg)
		if q.Unpack(req) != nil || q.Response || q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 ||
			len(q.Answer) != 0 || len(q.Ns) != 0 || len(req) > maxMsgSize {
			return
		}
		if act != actReply {
			t.Fatalf("well-formed query %v: action %d", q, act)
		}
		m := new(dns.Msg)
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("answer to %v does not parse: %v (%x)", q, err, resp)
		}
		if m.Id != q.Id || !m.Response {
			t.Fatalf("answer id %d response %v, query id %d", m.Id, m.Response, q.Id)
		}
	})
}
