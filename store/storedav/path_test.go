package storedav

import (
	"errors"
	"testing"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want Target
		bad  bool
	}{
		{"root", "/", Target{Level: LevelRoot}, false},
		{"principal", "/alice/", Target{Level: LevelPrincipal, Owner: "alice"}, false},
		{"principal no slash", "/alice", Target{Level: LevelPrincipal, Owner: "alice"}, false},
		{"home", "/alice/things/", Target{Level: LevelHome, Owner: "alice"}, false},
		{"collection", "/alice/things/b/", Target{Level: LevelCollection, Owner: "alice", Collection: "b"}, false},
		{"object escaped", "/alice/things/b/a%20b%40c.vcf", Target{Level: LevelObject, Owner: "alice", Collection: "b", Resource: "a b@c.vcf"}, false},
		{"bad escape", "/alice/things/b/%zz", Target{}, true},
		{"relative", "alice/", Target{}, true},
		{"dotdot", "/alice/things/../x/", Target{}, true},
		{"encoded dotdot", "/alice/things/%2E%2E/", Target{}, true},
		{"encoded slash", "/alice/things/a%2Fb/", Target{}, true},
		{"wrong repo", "/alice/mail/", Target{}, true},
		{"percent in name", "/alice/things/b/a%25b", Target{}, true},
		{"too deep", "/alice/things/b/c/d", Target{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePath("things", c.in)
			if c.bad {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %+v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/", "/alice/things/b/x.vcf", "/a/things/%2e/", "/a/things/b%2fc", "//", "/alice/things/b/a%20b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tg, err := ParsePath("things", p)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		back, err := ParsePath("things", tg.Href("things"))
		if err != nil || back != tg {
			t.Fatalf("%q → %+v → %q → %+v, %v", p, tg, tg.Href("things"), back, err)
		}
		d, err := parseDecoded("things", decodedPathOf(tg))
		if tg.Level >= LevelCollection && (err != nil || d != tg) {
			t.Fatalf("decoded %+v: %+v %v", tg, d, err)
		}
	})
}

func decodedPathOf(t Target) string {
	if t.Level < LevelCollection {
		return "/"
	}
	return decodedPath(t, "things")
}
