package delivery

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"alice@home.arpa", "\"a b\"@x.org", "a@[127.0.0.1]", "@x", "a@", "a@b@c", "A+tag@EXAMPLE.net.", strings.Repeat("a", 70) + "@x.y"} {
		f.Add(s)
	}
	r, err := newRouter("home.arpa", []string{"example.net"}, map[string]string{"postmaster": "alice", "x@example.net": "bob"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			if !errors.Is(err, errBadAddress) {
				t.Fatalf("error %v does not match errBadAddress", err)
			}
			return
		}
		if len(a.Local) == 0 || len(a.Local) > maxLocalPart || len(a.Domain) == 0 || len(a.Domain) > maxDomain {
			t.Fatalf("limits not enforced: %+v", a)
		}
		if a.Domain != strings.ToLower(a.Domain) {
			t.Fatalf("domain not lower case: %q", a.Domain)
		}
		b, err := ParseAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip of %q: %+v, %v", a.String(), b, err)
		}
		if r.isLocalDomain(a.Domain) {
			if u := r.user(a); u == "" || u != strings.ToLower(u) {
				t.Fatalf("user %q for %q", u, s)
			}
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	good, err := encodeRecord(record{ID: strings.Repeat("ab", 16), User: "alice", From: "alice@home.arpa", To: []string{"x@example.org"},
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Attempts: 2, LastError: "451"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"id":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, errBadRecord) && !errors.Is(err, errBadAddress) {
				t.Fatalf("error %v matches no sentinel", err)
			}
			return
		}
		enc, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		r2, err := decodeRecord(enc)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %+v != %+v (%v)", r, r2, err)
		}
	})
}

func FuzzLoginServer(f *testing.F) {
	f.Add([]byte(nil), []byte("alice"), []byte("pw"))
	f.Add([]byte("alice"), []byte("pw"), []byte("more"))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		var gotUser, gotPass string
		l := &loginServer{check: func(u, p string) error { gotUser, gotPass = u, p; return nil }}
		done := false
		for _, resp := range [][]byte{a, b, c} {
			_, d, err := l.Next(resp)
			if done && err == nil {
				t.Fatal("a finished exchange accepted more")
			}
			if d {
				done = true
			}
		}
		if len(gotUser) > maxLoginField || len(gotPass) > maxLoginField {
			t.Fatal("oversize credentials checked")
		}
	})
}

func FuzzHeaderSection(f *testing.F) {
	f.Add([]byte("A: b\r\nC: d\r\n\r\nbody"), 100)
	f.Add([]byte("A: b\nC: d\n\nbody"), 5)
	f.Fuzz(func(t *testing.T, msg []byte, n int) {
		if n < 0 || n > 1<<20 {
			return
		}
		h := headerSection(msg, n)
		if bytes.Contains(bytes.ReplaceAll(h, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("bare LF in %q", h)
		}
		if len(bytes.ReplaceAll(h, []byte("\r\n"), []byte("\n"))) > max(n, 0)+bytes.Count(msg, []byte("\n")) {
			t.Fatalf("header of %d bytes over the limit %d", len(h), n)
		}
	})
}

func TestCompleteHeader(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in, wantPrefix string
	}{
		{"both missing", "Subject: x\r\n\r\nbody", "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <id1@h.test>\r\nSubject: x"},
		{"date present", "date: today\r\n\r\nbody", "Message-ID: <id1@h.test>\r\ndate: today"},
		{"both present", "Message-Id: <a@b>\r\nDate: x\r\n\r\nDate: in the body", "Message-Id: <a@b>"},
		{"only in the body", "Subject: x\r\n\r\nDate: x\r\nMessage-ID: y\r\n", "Date: Sun"},
		{"folded line is not a field", "Subject: x\r\n Date: y\r\n\r\n", "Date: Sun"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(completeHeader([]byte(tt.in), "id1", "h.test", now))
			if !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, tt.in) {
				t.Fatalf("got %q", got)
			}
		})
	}
}
