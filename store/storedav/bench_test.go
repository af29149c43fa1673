package storedav

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// BenchmarkSyncOneChangeIn10000 measures sync-collection of a 10 000-object collection
// on the git store after one object changed: the answer is one response.
func BenchmarkSyncOneChangeIn10000(b *testing.B) {
	ctx := context.Background()
	repos, err := store.OpenRepos(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer repos.Close()
	as, err := repos.Open(ctx, signpost.AccountsRepo, true)
	if err != nil {
		b.Fatal(err)
	}
	acct := signpost.NewAccounts(as, signpost.AccountsOptions{Logger: quiet})
	if err := acct.Add(ctx, "alice", pw); err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(Options{Kind: testKind(), Repos: repos, Accounts: acct, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	c := h.Collections()
	if err := c.Create(ctx, "alice", "big", Meta{}); err != nil {
		b.Fatal(err)
	}
	s, err := repos.Open(ctx, "alice/things", false)
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	for start := 0; start < n; start += 4000 {
		var ops []store.Op
		for i := start; i < min(start+4000, n); i++ {
			uid := fmt.Sprintf("uid-%05d", i)
			res := uid + ".t"
			ops = append(ops, store.Op{Key: objKey("big", res), Value: []byte(thing(uid, "NOTE:item"))},
				store.Op{Key: uidKey("big", uid), Value: []byte(res)})
		}
		if _, err := s.Commit(ctx, store.Change{Author: store.Signature{Name: "bench"}, Message: "fill", Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
	token, err := c.Head(ctx, "alice")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Put(ctx, "alice", "big", "uid-00042.t", []byte(thing("uid-00042", "NOTE:changed")), Conditions{}); err != nil {
		b.Fatal(err)
	}
	body := syncBody(DefaultSyncTokenBase + string(token))
	req := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("REPORT", "/alice/things/big/", strings.NewReader(body))
		r.SetBasicAuth("alice", pw)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := req()
	if w.Code != http.StatusMultiStatus || strings.Count(w.Body.String(), "<d:response>") != 1 {
		b.Fatalf("%d %s", w.Code, w.Body.String())
	}
	b.ResetTimer()
	for b.Loop() {
		req()
	}
}

// benchEnv is a git-backed handler with user alice and a collection "big" of n objects.
func benchEnv(b *testing.B, n int) (*Handler, store.Hash) {
	ctx := context.Background()
	repos, err := store.OpenRepos(b.TempDir(), &store.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { repos.Close() })
	as, err := repos.Open(ctx, signpost.AccountsRepo, true)
	if err != nil {
		b.Fatal(err)
	}
	acct := signpost.NewAccounts(as, signpost.AccountsOptions{Logger: quiet})
	if err := acct.Add(ctx, "alice", pw); err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(Options{Kind: testKind(), Repos: repos, Accounts: acct, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := h.Collections().Create(ctx, "alice", "big", Meta{}); err != nil {
		b.Fatal(err)
	}
	s, err := repos.Open(ctx, "alice/things", false)
	if err != nil {
		b.Fatal(err)
	}
	for start := 0; start < n; start += 4000 {
		var ops []store.Op
		for i := start; i < min(start+4000, n); i++ {
			uid := fmt.Sprintf("uid-%05d", i)
			res := uid + ".t"
			ops = append(ops, store.Op{Key: objKey("big", res), Value: []byte(thing(uid, "NOTE:item"))},
				store.Op{Key: uidKey("big", uid), Value: []byte(res)})
		}
		if _, err := s.Commit(ctx, store.Change{Author: store.Signature{Name: "bench"}, Message: "fill", Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
	head, err := h.Collections().Head(ctx, "alice")
	if err != nil {
		b.Fatal(err)
	}
	return h, head
}

func serve(h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.SetBasicAuth("alice", pw)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// BenchmarkPropfindDepth1 lists 500 objects with their ETags.
func BenchmarkPropfindDepth1(b *testing.B) {
	h, _ := benchEnv(b, 500)
	body := `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`
	if w := serve(h, "PROPFIND", "/alice/things/big/", body, "Depth", "1"); w.Code != 207 || strings.Count(w.Body.String(), "<d:response>") != 501 {
		b.Fatalf("%d", w.Code)
	}
	for b.Loop() {
		serve(h, "PROPFIND", "/alice/things/big/", body, "Depth", "1")
	}
}

// BenchmarkPropfindDepth0 asks a collection for its sync token and ctag.
func BenchmarkPropfindDepth0(b *testing.B) {
	h, _ := benchEnv(b, 500)
	body := `<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/><d:sync-token/><d:displayname/></d:prop></d:propfind>`
	for b.Loop() {
		serve(h, "PROPFIND", "/alice/things/big/", body, "Depth", "0")
	}
}

// BenchmarkSyncInitial500 is sync-collection with an empty token over 500 objects.
func BenchmarkSyncInitial500(b *testing.B) {
	h, _ := benchEnv(b, 500)
	for b.Loop() {
		serve(h, "REPORT", "/alice/things/big/", syncBody(""))
	}
}
