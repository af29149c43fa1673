package backup

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

const (
	vA = "1111111111111111111111111111111111111111 10 2026-01-01T00:00:00Z"
	vB = "2222222222222222222222222222222222222222 20 2026-01-01T00:00:00Z"
)

func chunk(lines ...string) []byte {
	return []byte(mailIndexHeader + "\n" + strings.Join(append(lines, ""), "\n"))
}

func TestMergeMailIndex(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs []byte
		want               []byte // nil with wantErr false: deleted
		wantErr            bool
	}{
		{"both add different uids",
			chunk("1 " + vA), chunk("1 "+vA, "2 "+vB), chunk("1 "+vA, "3 "+vB),
			chunk("1 "+vA, "2 "+vB, "3 "+vB), false},
		{"flags merged as sets",
			chunk("1 " + vA + " \\Seen"), chunk("1 " + vA + " \\Seen \\Flagged"), chunk("1 " + vA + " \\Seen \\Answered"),
			chunk("1 " + vA + " \\Seen \\Flagged \\Answered"), false},
		{"a flag removed on one side goes",
			chunk("1 " + vA + " \\Seen"), chunk("1 " + vA), chunk("1 " + vA + " \\Seen $Work"),
			chunk("1 " + vA + " $Work"), false},
		{"expunge wins over a flag change",
			chunk("1 "+vA, "2 "+vB), chunk("2 " + vB), chunk("1 "+vA+" \\Seen", "2 "+vB),
			chunk("2 " + vB), false},
		{"uids sort numerically",
			nil, chunk("9 " + vA), chunk("10 " + vB),
			chunk("9 "+vA, "10 "+vB), false},
		{"uid collision", chunk(), chunk("5 " + vA), chunk("5 " + vB), nil, true},
		{"all expunged and chunk deleted", chunk("1 " + vA), nil, chunk("1 " + vA + " \\Seen"), nil, false},
		{"not an index", chunk(), []byte("garbage"), chunk(), nil, true},
		{"bad line", chunk(), chunk("x y"), chunk(), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergeMailIndex(store.MergeCase{Key: "index/0123456789abcdef/0", Base: tc.base, Ours: tc.ours, Theirs: tc.theirs})
			if tc.wantErr {
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("err %v, want a conflict", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.want) {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
			if tc.want == nil && got != nil {
				t.Fatalf("got %q, want deleted", got)
			}
		})
	}
}

func TestMergeMailMeta(t *testing.T) {
	older, newer := time.Unix(1000, 0), time.Unix(2000, 0)
	got, err := MergeMailMeta(store.MergeCase{Key: "meta/x",
		Base:   []byte(`{"name":"INBOX","uidNext":3}`),
		Ours:   []byte(`{"name":"INBOX","uidNext":7}`),
		Theirs: []byte(`{"name":"Renamed","uidNext":4}`), OursTime: older, TheirsTime: newer})
	if err != nil || string(got) != `{"name":"Renamed","uidNext":7}` {
		t.Fatalf("got %s, %v", got, err)
	}
	if _, err := MergeMailMeta(store.MergeCase{Key: "meta/x", Ours: []byte("{"), Theirs: []byte("{}")}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("bad JSON: %v", err)
	}
}

func TestMergeJSONSet(t *testing.T) {
	got, err := MergeJSONSet(store.MergeCase{Key: "subscriptions",
		Base: []byte(`["INBOX","Old"]`), Ours: []byte(`["INBOX","A"]`), Theirs: []byte(`["INBOX","Old","B"]`)})
	if err != nil || string(got) != `["A","B","INBOX"]` {
		t.Fatalf("got %s, %v", got, err)
	}
}

func TestMergeRulesChoose(t *testing.T) {
	rules := MergeRules()
	msg := rules.For("msg/0123456789abcdef/0/5")
	if _, err := msg(store.MergeCase{Key: "msg/0123456789abcdef/0/5", Ours: []byte("a"), Theirs: []byte("b")}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("message collision: %v", err)
	}
	lww := rules.For("objects/family/x.vcf")
	got, err := lww(store.MergeCase{Ours: []byte("a"), Theirs: []byte("b"), OursTime: time.Unix(1, 0), TheirsTime: time.Unix(2, 0)})
	if err != nil || string(got) != "b" {
		t.Fatalf("contacts: %q, %v", got, err)
	}
}

// FuzzMergeMailIndex: whatever the chunks hold, the rule answers a chunk, a deletion or a
// conflict, never a panic, and a merged chunk parses again.
func FuzzMergeMailIndex(f *testing.F) {
	f.Add(chunk("1 "+vA), chunk("1 "+vA, "2 "+vB), chunk("1 "+vA+" \\Seen"))
	f.Add([]byte(""), []byte("hearth-mail-index 1\n1 a b c"), []byte("x"))
	f.Fuzz(func(t *testing.T, base, ours, theirs []byte) {
		got, err := MergeMailIndex(store.MergeCase{Key: "index/x/0", Base: base, Ours: ours, Theirs: theirs})
		if err != nil {
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("error %v is not a conflict", err)
			}
			return
		}
		if got != nil {
			if _, err := parseIndex(got); err != nil {
				t.Fatalf("merged chunk does not parse: %v\n%q", err, got)
			}
		}
	})
}
