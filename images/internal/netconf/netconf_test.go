package netconf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func TestMessages(t *testing.T) {
	addr, err := AddAddr(3, 2, netip.MustParsePrefix("10.0.2.15/24"))
	if err != nil {
		t.Fatal(err)
	}
	route, err := AddDefaultRoute(4, netip.MustParseAddr("10.0.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		msg      []byte
		typ      uint16
		seq      uint32
		contains []byte
	}{
		{"link up", LinkUp(1, 2), rtmNewLink, 1, nil},
		{"address", addr, rtmNewAddr, 3, []byte{10, 0, 2, 15}},
		{"route", route, rtmNewRoute, 4, []byte{10, 0, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := binary.NativeEndian.Uint32(tc.msg); int(n) != len(tc.msg) || n%4 != 0 {
				t.Fatalf("length field %d, message %d bytes", n, len(tc.msg))
			}
			if got := binary.NativeEndian.Uint16(tc.msg[4:]); got != tc.typ {
				t.Errorf("type %d, want %d", got, tc.typ)
			}
			if got := binary.NativeEndian.Uint32(tc.msg[8:]); got != tc.seq {
				t.Errorf("seq %d, want %d", got, tc.seq)
			}
			if tc.contains != nil && !contains(tc.msg, tc.contains) {
				t.Errorf("message lacks %v", tc.contains)
			}
		})
	}
	if addr[nlmsgHdrLen+1] != 24 {
		t.Errorf("prefix length %d, want 24", addr[nlmsgHdrLen+1])
	}
	if _, err := AddAddr(1, 1, netip.MustParsePrefix("fe80::1/64")); err == nil {
		t.Error("IPv6 address accepted")
	}
	if _, err := AddDefaultRoute(1, netip.MustParseAddr("::1")); err == nil {
		t.Error("IPv6 gateway accepted")
	}
}

func contains(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return true
		}
	}
	return false
}

// ack builds a netlink error message (an acknowledgement when errno is 0).
func ack(seq uint32, errno int32) []byte {
	p := make([]byte, 4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(p, uint32(-errno))
	return message(nlmsgError, 0, seq, p)
}

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		seq   uint32
		errno int32
		err   bool
	}{
		{"success", ack(5, 0), 5, 0, false},
		{"exists", ack(5, 17), 5, 17, false},
		{"other seq then ours", append(ack(4, 1), ack(5, 0)...), 5, 0, false},
		{"no ack for us", ack(4, 0), 5, 0, true},
		{"empty", nil, 1, 0, true},
		{"bad length", []byte{200, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, 1, 0, true},
		{"short error", message(nlmsgError, 0, 1, nil), 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errno, err := ParseAck(tc.in, tc.seq)
			if (err != nil) != tc.err || errno != tc.errno {
				t.Fatalf("ParseAck = %d, %v; want %d, error %v", errno, err, tc.errno, tc.err)
			}
			if err != nil && !errors.Is(err, ErrBadMessage) {
				t.Errorf("error %v is not ErrBadMessage", err)
			}
		})
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add(ack(1, 0), uint32(1))
	f.Add(append(ack(4, 1), ack(5, 0)...), uint32(5))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		ParseAck(b, seq) // must not panic
	})
}
