package storehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// FuzzDecodeChange feeds arbitrary bodies to the decoding of the JSON request bodies
// (commits, merge, revert, branches, fast-forward, repositories). Decoding never panics,
// fails only with ErrInvalid or ErrTooLarge, and what it accepts survives a round trip.
func FuzzDecodeChange(f *testing.F) {
	for _, s := range []string{
		`{"branch":"main","parent":"0000000000000000000000000000000000000000","author":{"name":"a","email":"a@b"},"message":"m","time":"2024-01-02T03:04:05Z","ops":[{"key":"a/b","value":"aGk=","ifMatch":"0123456789abcdef0123456789abcdef01234567"},{"key":"c","delete":true},{"key":"d","copy":"0123456789abcdef0123456789abcdef01234567"}]}`,
		`{"into":"main","from":"side","author":{"name":"a","email":"a@b"},"message":"merge"}`,
		`{"branch":"main","prefix":"INBOX","to":"0123456789abcdef0123456789abcdef01234567","message":"undo"}`,
		`{"name":"feature","from":"main"}`,
		`{"to":"0123456789abcdef0123456789abcdef01234567"}`,
		`{"name":"alice/mail"}`,
		`{"ops":[{"key":"a","value":null}]}`,
		`{"time":"2024-01-02T03:04:05.123+01:00","ops":[]}`,
		`{"ops":[{"key":"\u0000","value":"!!"}]}`,
		`{} {}`,
		`{"unknown":1}`,
		`null`,
		`[1,2]`,
		`"\xff"`,
		``,
		`{"message":"` + strings.Repeat("x", 100) + `"}`,
	} {
		f.Add([]byte(s))
	}
	targets := []func() any{
		func() any { return new(store.Change) },
		func() any { return new(store.MergeRequest) },
		func() any { return new(store.RevertRequest) },
		func() any { return new(branchRequest) },
		func() any { return new(fastForwardRequest) },
		func() any { return new(repoRequest) },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, target := range targets {
			v := target()
			err := decodeJSON(bytes.NewReader(data), int64(len(data)), v)
			if err != nil {
				if !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrTooLarge) {
					t.Fatalf("decode %T: error %v is neither ErrInvalid nor ErrTooLarge", v, err)
				}
				continue
			}
			// One byte less than the body must not be accepted as the same value, unless
			// only trailing white space was cut.
			if len(data) > 0 && len(bytes.TrimRight(data, " \t\r\n")) == len(data) {
				if err := decodeJSON(bytes.NewReader(data), int64(len(data)-1), target()); err == nil {
					t.Fatalf("decode %T of %q accepted with a limit one byte short", v, data)
				}
			}
			if c, ok := v.(*store.Change); ok {
				if err := store.CheckChange(c, 0); err != nil && !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrTooLarge) && !errors.Is(err, store.ErrConflict) {
					t.Fatalf("CheckChange: unexpected error %v", err)
				}
			}
			b1, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("re-encode %T %+v: %v", v, v, err)
			}
			v2 := target()
			if err := decodeJSON(bytes.NewReader(b1), int64(len(b1)), v2); err != nil {
				t.Fatalf("decode of re-encoded %s: %v", b1, err)
			}
			b2, err := json.Marshal(v2)
			if err != nil || !bytes.Equal(b1, b2) {
				t.Fatalf("round trip changed %s to %s (%v)", b1, b2, err)
			}
		}
	})
}

// FuzzKeyPath checks the mapping between keys and URL paths: valid keys round-trip
// through keyPath, a URL and keyFromPath; any escaped path decodes without panicking to a
// valid key or ErrInvalid; routing any path never panics.
func FuzzKeyPath(f *testing.F) {
	for _, s := range []string{
		"a", "INBOX/42", "a b/c", "ü/ß€", "100%/x?y#z", "a+b;c=d@e:f$g&h,i", "a%2Fb", "a/%2e%2E/b",
		"..", ".", "a//b", "/a", "a/", "", "%00", "%zz", "%", "a%2", ".git/x", "x/.GIT",
		strings.Repeat("s", store.MaxSegmentLen+1), strings.Repeat("k/", store.MaxKeyLen/2) + "k",
		"\x7f", "a\\b", "\xff\xfe", "%C3%A9", "~user/'quote'/\"dq\"/<>",
	} {
		f.Add(s)
	}
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPost}
	f.Fuzz(func(t *testing.T, s string) {
		if store.CheckKey(s) == nil {
			p := keyPath(s)
			if got, err := keyFromPath(p); err != nil || got != s {
				t.Fatalf("keyFromPath(keyPath(%q)) = %q, %v", s, got, err)
			}
			// As a client sends it and a server parses it.
			u, err := url.Parse("http://h/api/repos/alice/mail/keys/" + p)
			if err != nil {
				t.Fatalf("URL for %q: %v", s, err)
			}
			sent := u.RequestURI()
			parsed, err := url.ParseRequestURI(sent)
			if err != nil {
				t.Fatalf("server cannot parse %q: %v", sent, err)
			}
			tail, ok := strings.CutPrefix(parsed.EscapedPath(), "/api/repos/alice/mail/keys/")
			if !ok {
				t.Fatalf("path %q lost its prefix", parsed.EscapedPath())
			}
			if got, err := keyFromPath(tail); err != nil || got != s {
				t.Fatalf("key %q sent as %q came back as %q, %v", s, sent, got, err)
			}
		}
		if k, err := keyFromPath(s); err == nil {
			if err := store.CheckKey(k); err != nil {
				t.Fatalf("keyFromPath(%q) = %q, an invalid key: %v", s, k, err)
			}
		} else if !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("keyFromPath(%q): error %v is not ErrInvalid", s, err)
		}
		for _, m := range methods {
			for _, ep := range []string{"keys/", "list/", "history/", "branches/", ""} {
				serve, arg, err := route(m, ep+s)
				if err == nil && serve == nil {
					t.Fatalf("route(%s, %q) returned neither an endpoint nor an error", m, ep+s)
				}
				if err == nil && arg != "" && store.CheckPrefix(arg) != nil && store.CheckBranch(arg) != nil {
					t.Fatalf("route(%s, %q) accepted argument %q", m, ep+s, arg)
				}
			}
		}
	})
}
