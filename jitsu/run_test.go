package jitsu

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/signpost"
)

// startTestJitsu runs Start with the test appliance as "greeter" (a public socket "greet"
// and a loopback one "admin", both on free ports) and as "other" with no names entry.
func startTestJitsu(t *testing.T) *Jitsu {
	t.Helper()
	names := signpost.Names{Domain: "home.arpa", Appliances: []signpost.Appliance{
		{Name: "greeter", Ports: []signpost.Port{
			{Name: "greet", Proto: "tcp", Port: 1, TLS: true},
			{Name: "admin", Proto: "tcp", Port: 2, Loopback: true},
			{Name: "unserved", Proto: "tcp", Port: 3},
		}},
		{Name: "absent", Ports: []signpost.Port{{Name: "https", Proto: "tcp", Port: 4}}},
	}}
	j, err := Start(t.Context(), Config{
		Names: names,
		Manifests: []Manifest{{
			Name: "greeter", Exec: []string{testAppliance},
			Sockets: []Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0"}, {Name: "admin", Proto: "tcp", Addr: "127.0.0.1:0"}},
		}},
		DNSAddr:  "127.0.0.1:0",
		LANAddrs: func() ([]net.IP, error) { return nil, nil },
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	return j
}

func exchange(t *testing.T, j *Jitsu, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, j.DNSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStartPublishesRealPorts: the names resolve to where the sockets listen, SRV carries
// the ports the kernel chose, loopback sockets and unserved ports are not published, an
// appliance without a manifest is left out, a lookup summons, and Close ends the process.
func TestStartPublishesRealPorts(t *testing.T) {
	j := startTestJitsu(t)
	svcs := j.Services()
	if len(svcs) != 2 || svcs[0].Socket != "greet" || svcs[1].Socket != "admin" || !svcs[0].TLS || !svcs[1].Loopback {
		t.Fatalf("services %+v", svcs)
	}
	greetAddr, _ := j.Summoner().Addr("greeter", "greet")
	if svcs[0].Addr.String() != greetAddr.String() || svcs[0].FQDN != "greeter.home.arpa" {
		t.Fatalf("service %+v, socket at %s", svcs[0], greetAddr)
	}

	for _, tc := range []struct {
		name  string
		qtype uint16
		check func(*dns.Msg) bool
	}{
		{"A is loopback", dns.TypeA, func(r *dns.Msg) bool {
			return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 1))
		}},
		{"SRV has the real port", dns.TypeSRV, func(r *dns.Msg) bool {
			return len(r.Answer) == 1 && int(r.Answer[0].(*dns.SRV).Port) == int(svcs[0].Addr.Port()) && len(r.Extra) == 1
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "greeter.home.arpa."
			if tc.qtype == dns.TypeSRV {
				q = "_greet._tcp.greeter.home.arpa."
			}
			if r := exchange(t, j, q, tc.qtype); r.Rcode != dns.RcodeSuccess || !tc.check(r) {
				t.Fatalf("%s: %v", q, r)
			}
		})
	}
	for _, q := range []string{"_admin._tcp.greeter.home.arpa.", "_unserved._tcp.greeter.home.arpa.", "absent.home.arpa."} {
		if r := exchange(t, j, q, dns.TypeSRV); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: want NXDOMAIN, got %v", q, r)
		}
	}
	// The lookups above summoned the greeter.
	st := waitFor(t, j.Summoner(), "greeter", "summoned by lookup", func(s ApplianceStatus) bool { return s.State == StateRunning })
	pid, c := greet(t, svcs[0].Addr.String())
	c.Close()
	if pid != st.PID {
		t.Fatalf("greeted by %d, running %d", pid, st.PID)
	}

	srv := httptest.NewServer(j.StatusHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Appliances []ApplianceStatus }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || len(body.Appliances) != 1 || body.Appliances[0].PID != pid {
		t.Fatalf("status %+v %v", body, err)
	}

	if err := j.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		t.Fatalf("appliance %d still runs after Close", pid)
	}
	if _, err := net.DialTimeout("tcp", svcs[0].Addr.String(), time.Second); err == nil {
		t.Fatal("socket still open after Close")
	}
	select {
	case <-j.Failed():
	default:
		t.Fatal("Failed not closed after Close")
	}
}

func TestStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	names := signpost.Names{Domain: "home.arpa", Appliances: []signpost.Appliance{{Name: "a", Ports: []signpost.Port{{Name: "p", Proto: "tcp", Port: 1}}}}}
	m := Manifest{Name: "a", Exec: []string{testAppliance}, Sockets: []Socket{{Name: "p", Proto: "tcp", Addr: "127.0.0.1:0"}}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"bad manifest", Config{Names: names, Manifests: []Manifest{{Name: "A!"}}, DNSAddr: "127.0.0.1:0"}, ErrInvalidManifest},
		{"twice", Config{Names: names, Manifests: []Manifest{m, m}, DNSAddr: "127.0.0.1:0"}, ErrInvalidManifest},
		{"bad names", Config{Names: signpost.Names{Domain: ".."}, DNSAddr: "127.0.0.1:0"}, signpost.ErrInvalidNames},
		{"socket taken", Config{Names: names, DNSAddr: "127.0.0.1:0", Manifests: []Manifest{{Name: "a", Exec: []string{"x"},
			Sockets: []Socket{{Name: "p", Proto: "tcp", Addr: taken.Addr().String()}}}}}, nil},
		{"bad DNS address", Config{Names: names, Manifests: []Manifest{m}, DNSAddr: "nowhere"}, nil},
		{"DNS port taken", Config{Names: names, Manifests: []Manifest{m}, DNSAddr: taken.Addr().String()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = testLogger(t)
			j, err := Start(t.Context(), tc.cfg)
			if err == nil {
				j.Close(context.Background())
				t.Fatal("started")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// TestMeasureSummonDNS runs a few summons starting from the DNS query, cold and warm.
func TestMeasureSummonDNS(t *testing.T) {
	j := startTestJitsu(t)
	for _, warm := range []bool{false, true} {
		st, err := MeasureSummonDNS(t.Context(), j, "greeter", "greet", MeasureOptions{Runs: 5, Warm: warm})
		if err != nil {
			t.Fatal(err)
		}
		if st.Runs != 5 || st.Min <= 0 || st.Min > st.P50 || st.P50 > st.Max {
			t.Fatalf("warm=%v: %v", warm, st)
		}
		t.Logf("warm=%v: %v", warm, st)
	}
	if got := status(t, j.Summoner(), "greeter").Summons; got < 5 {
		t.Fatalf("%d summons after 5 cold runs", got)
	}
	if _, err := MeasureSummonDNS(t.Context(), j, "nobody", "greet", MeasureOptions{Runs: 1, Warm: true}); err == nil {
		t.Fatal("measured an appliance that does not exist")
	}
}

func TestServerAddrs(t *testing.T) {
	lan := func() ([]net.IP, error) {
		return []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("fe80::1"), net.ParseIP("127.0.1.1"), net.ParseIP("2001:db8::7")}, nil
	}
	noLAN := func() ([]net.IP, error) { return nil, nil }
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name          string
		listen        string
		lan           func() ([]net.IP, error)
		public, local []netip.Addr
	}{
		{"one address", "192.0.2.1", lan, []netip.Addr{a("192.0.2.1")}, []netip.Addr{a("192.0.2.1")}},
		{"loopback", "127.0.0.1", lan, []netip.Addr{a("127.0.0.1")}, []netip.Addr{a("127.0.0.1")}},
		{"every IPv4 address", "0.0.0.0", lan, []netip.Addr{a("192.0.2.7"), a("2001:db8::7")}, []netip.Addr{a("127.0.0.1")}},
		{"every address", "::", lan, []netip.Addr{a("192.0.2.7"), a("2001:db8::7")}, []netip.Addr{a("127.0.0.1")}},
		{"every address, no LAN", "0.0.0.0", noLAN, []netip.Addr{a("127.0.0.1")}, []netip.Addr{a("127.0.0.1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			public, local := serverAddrs(a(tc.listen), tc.lan)
			if !slices.Equal(public, tc.public) || !slices.Equal(local, tc.local) {
				t.Errorf("got %v / %v, want %v / %v", public, local, tc.public, tc.local)
			}
		})
	}
}
