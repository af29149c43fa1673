package jitsu

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

func TestRRLRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRRL(RRLOptions{ResponsesPerSecond: 10, Burst: 5, Slip: 3})
		client := netip.MustParseAddr("192.0.2.7")
		neighbour := netip.MustParseAddr("192.0.2.200") // same /24
		count := func(n int) (sent, slipped, dropped int) {
			for range n {
				switch r.check(client) {
				case rrlSend:
					sent++
				case rrlSlip:
					slipped++
				default:
					dropped++
				}
			}
			return
		}
		if s, sl, d := count(11); s != 5 || sl != 2 || d != 4 {
			t.Fatalf("burst: %d sent, %d slipped, %d dropped; want 5, 2, 4", s, sl, d)
		}
		if r.check(neighbour) != rrlDrop {
			t.Error("same /24 has its own bucket")
		}
		time.Sleep(200 * time.Millisecond) // two tokens back
		if s, _, _ := count(4); s != 2 {
			t.Fatalf("after 200ms: %d sent, want 2", s)
		}
		time.Sleep(10 * time.Second) // full again, but no more than the burst
		if s, _, _ := count(10); s != 5 {
			t.Fatalf("after 10s: %d sent, want 5", s)
		}
	})
}

func TestRRLPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		same bool
	}{
		{"v4 same /24", "10.1.2.3", "10.1.2.250", true},
		{"v4 other /24", "10.1.2.3", "10.1.3.3", false},
		{"v4-mapped", "::ffff:10.1.2.3", "10.1.2.9", true},
		{"v6 same /56", "2001:db8:1:100::1", "2001:db8:1:1ff::2", true},
		{"v6 other /56", "2001:db8:1:100::1", "2001:db8:1:200::1", false},
		{"v4 vs v6", "0.0.0.0", "::", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := prefixKey(netip.MustParseAddr(tc.a)) == prefixKey(netip.MustParseAddr(tc.b))
			if got != tc.same {
				t.Errorf("same bucket = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestRRLBoundedMemory(t *testing.T) {
	r := newRRL(RRLOptions{Buckets: 128})
	n := 0
	for i := range r.shards {
		n += len(r.shards[i].buckets)
	}
	if n != 128 {
		t.Fatalf("%d buckets, want 128", n)
	}
	for i := range 100000 { // many prefixes: buckets are reused, never added
		r.check(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), 1}))
	}
	if newRRL(RRLOptions{Disabled: true}) != nil {
		t.Error("disabled limiter is not nil")
	}
}
