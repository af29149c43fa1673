package signpost

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

func TestCertifiable(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"192.168.1.20", true},
		{"10.1.2.3", true},
		{"172.16.0.9", true},
		{"100.101.102.103", true}, // a tailnet (CGNAT) address
		{"fd12::1", true},
		{"fe80::1", true},
		{"8.8.8.8", false},
		{"172.32.0.1", false},
		{"2001:db8::1", false},
	} {
		if got := certifiable(net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("certifiable(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}

// TestLANAddrs: whatever this machine's interfaces are, every address returned is one the
// home CA may certify, and a certificate for it verifies.
func TestLANAddrs(t *testing.T) {
	ips, err := LANAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		if !certifiable(ip) || ip.IsLoopback() {
			t.Errorf("LANAddrs returned %v", ip)
		}
	}
	t.Logf("LAN addresses: %v", ips)
	ca, err := OpenCA(t.TempDir(), CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertificatePEM())
	for _, ip := range ips {
		if ip.IsLinkLocalUnicast() {
			continue // needs a zone to dial
		}
		ln, err := tls.Listen("tcp", net.JoinHostPort(ip.String(), "0"), ca.ServerConfig(nil, ips))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: ip.String()})
		if err != nil {
			t.Errorf("TLS to LAN address %v, trusting only the home CA: %v", ip, err)
		} else {
			c.Close()
		}
		ln.Close()
	}
}
