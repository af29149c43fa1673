package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/store"
)

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"simple", "INBOX/42", true},
		{"deep", "calendars/home/abc.ics", true},
		{"unicode", "Adressbücher/ÿ", true},
		{"dotfile", ".gitignore", true},
		{"max length", strings.Repeat("a/", 511) + "aa", true},
		{"empty", "", false},
		{"leading slash", "/a", false},
		{"trailing slash", "a/", false},
		{"empty segment", "a//b", false},
		{"dot", "a/./b", false},
		{"dotdot", "a/../b", false},
		{"dotgit", "a/.git/b", false},
		{"dotgit upper", ".GIT", false},
		{"nul", "a\x00b", false},
		{"newline", "a\nb", false},
		{"backslash", `a\b`, false},
		{"not utf8", "a\xffb", false},
		{"too long", strings.Repeat("a", store.MaxKeyLen+1), false},
		{"segment too long", strings.Repeat("a", store.MaxSegmentLen+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := store.CheckKey(tc.key)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("CheckKey(%q) = %v, want ErrInvalid", tc.key, err)
			}
		})
	}
}

// FuzzCheckKey: validation never panics, and a valid key is a clean path git can hold:
// its segments are non-empty, not . or .., and re-joining them gives the key back.
func FuzzCheckKey(f *testing.F) {
	for _, s := range []string{"INBOX/42", "a//b", "../x", ".git", "a\x00", "ü/ÿ", strings.Repeat("x/", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if store.CheckKey(key) != nil {
			return
		}
		segs := strings.Split(key, "/")
		for _, s := range segs {
			if s == "" || s == "." || s == ".." || strings.EqualFold(s, ".git") || strings.ContainsAny(s, "\x00\\\n") {
				t.Fatalf("CheckKey accepted %q", key)
			}
		}
		if strings.Join(segs, "/") != key || len(key) > store.MaxKeyLen {
			t.Fatalf("CheckKey accepted %q", key)
		}
		if store.CheckPrefix(key) != nil {
			t.Fatalf("a valid key %q is not a valid prefix", key)
		}
	})
}

// FuzzCheckBranch: a valid branch name is never a commit id and has no ".." or ".lock".
func FuzzCheckBranch(f *testing.F) {
	for _, s := range []string{"main", "feature/x", "a..b", "x.lock", "HEAD", strings.Repeat("a", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if store.CheckBranch(name) != nil {
			return
		}
		if store.IsHash(name) || strings.Contains(name, "..") || strings.HasSuffix(name, ".lock") || strings.HasPrefix(name, "/") {
			t.Fatalf("CheckBranch accepted %q", name)
		}
	})
}

func TestMergeRulesFor(t *testing.T) {
	marker := func(n string) store.MergeRule {
		return func(store.MergeCase) ([]byte, error) { return []byte(n), nil }
	}
	rules := store.MergeRules{{Pattern: "INBOX/*", Rule: marker("0")}, {Pattern: "flags", Rule: marker("1")}, {Pattern: "*.ics", Rule: marker("2")}}
	for _, tc := range []struct {
		key  string
		want int // index of the rule, -1 for none
	}{
		{"INBOX/42", 0},
		{"INBOX/42/flags", 1},
		{"a/b/c/flags", 1},
		{"flags", 1},
		{"calendars/home/x.ics", 2},
		{"INBOX", -1},
		{"notflags", -1},
	} {
		got := "none"
		if rule := rules.For(tc.key); rule != nil {
			v, _ := rule(store.MergeCase{Key: tc.key})
			got = string(v)
		}
		want := "none"
		if tc.want >= 0 {
			want = fmt.Sprint(tc.want)
		}
		if got != want {
			t.Errorf("For(%q) chose rule %s, want %s", tc.key, got, want)
		}
	}
}
