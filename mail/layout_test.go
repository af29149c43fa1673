package mail

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/hearth-home/hearth/store"
)

func TestChunkRoundTrip(t *testing.T) {
	es := []entry{
		{UID: 256, Version: store.BlobHash([]byte("a")), Size: 1, Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))},
		{UID: 300, Version: store.BlobHash([]byte("b")), Size: 99, Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Flags: []imap.Flag{imap.FlagSeen, "$Label1"}},
	}
	got, err := decodeChunk(encodeChunk(es), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].UID != 256 || !got[0].Date.Equal(es[0].Date) || got[0].Date.Format(time.RFC3339) != es[0].Date.Format(time.RFC3339) ||
		!slices.Equal(got[1].Flags, es[1].Flags) || got[1].Version != es[1].Version || got[1].Size != 99 {
		t.Errorf("round trip: %+v", got)
	}
}

func TestDecodeChunkErrors(t *testing.T) {
	v := string(store.BlobHash([]byte("a")))
	tests := []struct {
		name  string
		in    string
		chunk uint32
	}{
		{"no header", "1 " + v + " 1 2024-01-02T03:04:05Z\n", 0},
		{"wrong chunk", indexHeader + "1 " + v + " 1 2024-01-02T03:04:05Z\n", 1},
		{"out of order", indexHeader + "2 " + v + " 1 2024-01-02T03:04:05Z\n1 " + v + " 1 2024-01-02T03:04:05Z\n", 0},
		{"zero uid", indexHeader + "0 " + v + " 1 2024-01-02T03:04:05Z\n", 0},
		{"bad version", indexHeader + "1 xyz 1 2024-01-02T03:04:05Z\n", 0},
		{"negative size", indexHeader + "1 " + v + " -1 2024-01-02T03:04:05Z\n", 0},
		{"bad date", indexHeader + "1 " + v + " 1 yesterday\n", 0},
		{"bad flag", indexHeader + "1 " + v + " 1 2024-01-02T03:04:05Z (x\n", 0},
		{"unterminated", indexHeader + "1 " + v + " 1 2024-01-02T03:04:05Z", 0},
		{"too few fields", indexHeader + "1 " + v + "\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeChunk([]byte(tc.in), tc.chunk); !errors.Is(err, errLayout) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not json", "{"},
		{"unknown field", `{"name":"a","uidValidity":1,"uidNext":1,"x":1}`},
		{"empty name", `{"name":"","uidValidity":1,"uidNext":1}`},
		{"zero validity", `{"name":"a","uidValidity":0,"uidNext":1}`},
		{"bad special use", `{"name":"a","uidValidity":1,"uidNext":1,"specialUse":"\\Nope"}`},
		{"empty level", `{"name":"a//b","uidValidity":1,"uidNext":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeMeta([]byte(tc.in)); !errors.Is(err, errLayout) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func FuzzDecodeChunk(f *testing.F) {
	v := string(store.BlobHash([]byte("a")))
	f.Add([]byte(indexHeader+"1 "+v+" 1 2024-01-02T03:04:05Z \\Seen $x\n"), uint32(0))
	f.Add([]byte(indexHeader), uint32(3))
	f.Add([]byte("garbage"), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint32) {
		es, err := decodeChunk(b, chunk)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decodeChunk(encodeChunk(es), chunk)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(es) {
			t.Fatalf("round trip changed length %d -> %d", len(es), len(again))
		}
		for i := range es {
			if again[i].UID != es[i].UID || again[i].Version != es[i].Version || again[i].Size != es[i].Size ||
				!again[i].Date.Equal(es[i].Date) || !slices.Equal(again[i].Flags, es[i].Flags) {
				t.Fatalf("round trip changed %+v -> %+v", es[i], again[i])
			}
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(mailboxMeta{Name: "INBOX", UIDValidity: 7, UIDNext: 3, SpecialUse: imap.MailboxAttrSent}))
	f.Add([]byte(`{"name":"a/b","uidValidity":1,"uidNext":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		again, err := decodeMeta(encodeMeta(m))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again.Name != m.Name || again.UIDValidity != m.UIDValidity || again.UIDNext != m.UIDNext || again.SpecialUse != m.SpecialUse || !again.Created.Equal(m.Created) {
			t.Fatalf("round trip %+v -> %+v", m, again)
		}
	})
}

func FuzzParseAddressField(f *testing.F) {
	f.Add(`Friends: bob@example.org, "Carl" <carl@example.net>;, dave@example.com`)
	f.Add(`(c) erin@example.org (Erin)`)
	f.Add(`=?utf-8?q?caf=C3=A9?= <x@y>`)
	f.Fuzz(func(t *testing.T, s string) {
		addrs := parseAddressField(s)
		depth := 0
		for _, a := range addrs {
			switch {
			case a.IsGroupStart():
				depth++
			case a.IsGroupEnd():
				depth--
			}
			if depth < 0 || depth > 1 {
				t.Fatalf("unbalanced groups in %q: %+v", s, addrs)
			}
		}
		if depth != 0 {
			t.Fatalf("unclosed group in %q: %+v", s, addrs)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte(groupMsg))
	f.Add([]byte("Subject: x\r\n\r\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := parseMessage(b)
		if p.envelope == nil {
			t.Fatal("nil envelope")
		}
		matchBody(b, "x", true)
	})
}
