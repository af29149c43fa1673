package jitsu

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/signpost"
)

// TestStartLANAnswers: an appliance listening on every address ("hearth up -lan") is
// answered to devices elsewhere with the LAN addresses only, never 127.0.0.1 (they would
// reach themselves), and to clients on this machine with 127.0.0.1; with no LAN address
// known, and for an appliance on loopback sockets only, every client gets 127.0.0.1.
func TestStartLANAnswers(t *testing.T) {
	names := signpost.Names{Domain: "home.arpa", Appliances: []signpost.Appliance{
		{Name: "store", Ports: []signpost.Port{
			{Name: "https", Proto: "tcp", Port: 1, TLS: true},
			{Name: "http", Proto: "tcp", Port: 2, Loopback: true},
		}},
		{Name: "mail", Ports: []signpost.Port{{Name: "imaps", Proto: "tcp", Port: 3, TLS: true}}},
	}}
	manifests := func() []Manifest {
		return []Manifest{
			{Name: "store", Exec: []string{testAppliance}, Sockets: []Socket{
				{Name: "https", Proto: "tcp", Addr: ":0"}, {Name: "http", Proto: "tcp", Addr: "127.0.0.1:0"},
			}},
			{Name: "mail", Exec: []string{testAppliance}, Sockets: []Socket{{Name: "imaps", Proto: "tcp", Addr: "127.0.0.1:0"}}},
		}
	}
	for _, tc := range []struct {
		name        string
		lan         []net.IP
		storeRemote []string
	}{
		{"LAN addresses", []net.IP{net.IPv4(192, 168, 1, 10), net.ParseIP("fe80::1"), net.IPv4(10, 0, 0, 7)}, []string{"10.0.0.7", "192.168.1.10"}},
		{"no LAN address", nil, []string{"127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := Start(t.Context(), Config{
				Names: names, Manifests: manifests(), DNSAddr: "127.0.0.1:0",
				LANAddrs: func() ([]net.IP, error) { return tc.lan, nil },
				Logger:   testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { j.Close(context.Background()) })
			answer := func(name string) []string {
				var out []string
				for _, rr := range exchange(t, j, name, dns.TypeA).Answer { // from loopback
					if a, ok := rr.(*dns.A); ok {
						out = append(out, a.A.String())
					}
				}
				slices.Sort(out)
				return out
			}
			remote := func(name string) []string {
				q := new(dns.Msg)
				q.SetQuestion(name, dns.TypeA)
				req, err := q.Pack()
				if err != nil {
					t.Fatal(err)
				}
				resp, _ := j.dns.handleUDP(req, make([]byte, 0, maxMsgSize), netip.MustParseAddr("192.168.1.50"), j.dns.tcpStats)
				m := new(dns.Msg)
				if err := m.Unpack(resp); err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, rr := range m.Answer {
					if a, ok := rr.(*dns.A); ok {
						out = append(out, a.A.String())
					}
				}
				slices.Sort(out)
				return out
			}
			if got := answer("store.home.arpa."); !slices.Equal(got, []string{"127.0.0.1"}) {
				t.Errorf("store.home.arpa A from loopback %v, want 127.0.0.1", got)
			}
			if got := remote("store.home.arpa."); !slices.Equal(got, tc.storeRemote) {
				t.Errorf("store.home.arpa A from the LAN %v, want %v", got, tc.storeRemote)
			}
			for _, ask := range []func(string) []string{answer, remote} {
				if got := ask("mail.home.arpa."); !slices.Equal(got, []string{"127.0.0.1"}) {
					t.Errorf("mail.home.arpa A %v, want 127.0.0.1", got)
				}
			}
			for _, sv := range j.Services() {
				if sv.Appliance == "store" && sv.Socket == "https" && (!sv.Wildcard || sv.Addr.Addr() != netip.MustParseAddr("127.0.0.1")) {
					t.Errorf("store https service %+v: want a wildcard reached at 127.0.0.1", sv)
				}
			}
		})
	}
}
