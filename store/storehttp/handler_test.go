package storehttp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

func TestAuthentication(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "a", "1")
	tests := []struct {
		name   string
		user   string
		header map[string]string
		want   int
	}{
		{"no credentials", "-", nil, http.StatusUnauthorized},
		{"wrong password", "-", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:nope"))}, http.StatusUnauthorized},
		{"unknown user", "mallory", nil, http.StatusUnauthorized},
		{"bad token", "token:token-mallory", nil, http.StatusUnauthorized},
		{"empty bearer", "-", map[string]string{"Authorization": "Bearer "}, http.StatusUnauthorized},
		{"other scheme", "-", map[string]string{"Authorization": "Digest x"}, http.StatusUnauthorized},
		{"password", "", nil, http.StatusOK},
		{"token", "token:token-alice", nil, http.StatusOK},
		{"lowercase bearer", "-", map[string]string{"Authorization": "bearer token-alice"}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/repos", "/api/repos/alice/mail/keys/a", "/alice/mail.git/info/refs", "/nothing/here"} {
				a := e.do(t, call{method: "GET", path: path, user: tc.user, header: tc.header})
				if tc.want == http.StatusUnauthorized {
					if a.status != tc.want {
						t.Errorf("GET %s: status %d, want %d", path, a.status, tc.want)
					}
					if got := a.header.Get("WWW-Authenticate"); got != `Basic realm="hearth"` {
						t.Errorf("GET %s: WWW-Authenticate %q", path, got)
					}
					a.errorMessage(t)
				} else if a.status == http.StatusUnauthorized {
					t.Errorf("GET %s: 401 with valid credentials", path)
				}
			}
		})
	}
}

func TestNoAuthenticatorRejectsAll(t *testing.T) {
	e := newEnv(t, Options{}, func(h *Handler) { h.auth = nil })
	if a := e.do(t, call{method: "GET", path: "/api/repos"}); a.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", a.status)
	}
}

func TestRepos(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "a", "1")
	e.commit("bob/mail", "", "a", "1")
	e.commit("alice/contacts", "", "a", "1")

	var list reposAnswer
	a := e.do(t, call{method: "GET", path: "/api/repos"})
	a.json(t, &list)
	if want := []string{"alice/contacts", "alice/mail"}; !slices.Equal(list.Repos, want) {
		t.Errorf("alice's repos = %q, want %q", list.Repos, want)
	}
	a = e.do(t, call{method: "GET", path: "/api/repos", user: "storetest"})
	a.json(t, &list)
	if list.Repos == nil || len(list.Repos) != 0 {
		t.Errorf("storetest's repos = %#v, want an empty list", list.Repos)
	}

	tests := []struct {
		name string
		body string
		want int
	}{
		{"create", `{"name":"alice/notes"}`, http.StatusCreated},
		{"exists", `{"name":"alice/notes"}`, http.StatusOK},
		{"another user's", `{"name":"bob/notes"}`, http.StatusNotFound},
		{"another user's existing", `{"name":"bob/mail"}`, http.StatusNotFound},
		{"bad name", `{"name":"Alice/notes"}`, http.StatusBadRequest},
		{"no owner", `{"name":"notes"}`, http.StatusBadRequest},
		{"unknown field", `{"name":"alice/x","owner":"alice"}`, http.StatusBadRequest},
		{"two values", `{"name":"alice/x"}{"name":"alice/y"}`, http.StatusBadRequest},
		{"not JSON", `name=alice/x`, http.StatusBadRequest},
		{"empty", ``, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, call{method: "POST", path: "/api/repos", body: tc.body})
			if a.status != tc.want {
				t.Fatalf("status %d (%s), want %d", a.status, a.body, tc.want)
			}
			if tc.want >= 400 {
				a.errorMessage(t)
			}
		})
	}
	if _, err := e.repos.Open(context.Background(), "bob/notes", false); err == nil {
		t.Error("alice created bob/notes")
	}
	if _, err := e.repos.Open(context.Background(), "alice/notes", false); err != nil {
		t.Errorf("alice/notes was not created: %v", err)
	}
	if a := e.do(t, call{method: "DELETE", path: "/api/repos"}); a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") == "" {
		t.Errorf("DELETE /api/repos: %d, Allow %q; want 405 with Allow", a.status, a.header.Get("Allow"))
	}
}

func TestAuthorisation(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("bob/mail", "", "a", "1")
	// bob/mail exists, bob/none does not: alice gets the same answer for both.
	for _, c := range []call{
		{method: "GET", path: "/api/repos/bob/mail/keys/a"},
		{method: "GET", path: "/api/repos/bob/none/keys/a"},
		{method: "PUT", path: "/api/repos/bob/mail/keys/a", body: "x"},
		{method: "PUT", path: "/api/repos/bob/none/keys/a", body: "x"},
		{method: "GET", path: "/api/repos/bob/mail/log"},
		{method: "POST", path: "/api/repos/bob/mail/commits", body: `{"ops":[{"key":"a"}]}`},
		{method: "GET", path: "/bob/mail.git/info/refs?service=git-upload-pack"},
		{method: "POST", path: "/bob/none.git/git-receive-pack"},
	} {
		a := e.do(t, c)
		if a.status != http.StatusNotFound {
			t.Errorf("%s %s as alice: status %d, want 404", c.method, c.path, a.status)
			continue
		}
		if ea := a.errorMessage(t); ea.Error != "repository not found" {
			t.Errorf("%s %s: message %q reveals more than 'repository not found'", c.method, c.path, ea.Error)
		}
	}
	if _, err := e.repos.Open(context.Background(), "bob/none", false); err == nil {
		t.Error("alice's requests created bob/none")
	}
	if v, _, err := e.store("bob/mail").Get(context.Background(), "", "a"); err != nil || string(v) != "1" {
		t.Errorf("bob/mail a = %q, %v; alice changed it", v, err)
	}
	// bob himself is served.
	if a := e.do(t, call{method: "GET", path: "/api/repos/bob/mail/keys/a", user: "bob"}); a.status != http.StatusOK || string(a.body) != "1" {
		t.Errorf("bob reading his repository: %d %q", a.status, a.body)
	}
}

func TestBadPaths(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "a/b", "1")
	long := strings.Repeat("k/", store.MaxKeyLen/2) + "k"
	tests := []struct {
		name   string
		method string
		path   string
		want   int
	}{
		{"dot dot", "GET", "/api/repos/alice/mail/keys/a/../b", http.StatusBadRequest},
		{"escaped dot dot", "GET", "/api/repos/alice/mail/keys/a/%2E%2E/b", http.StatusBadRequest},
		{"dot", "GET", "/api/repos/alice/mail/keys/a/./b", http.StatusBadRequest},
		{"empty segment", "GET", "/api/repos/alice/mail/keys/a//b", http.StatusBadRequest},
		{"trailing slash", "GET", "/api/repos/alice/mail/keys/a/", http.StatusBadRequest},
		{"empty key", "GET", "/api/repos/alice/mail/keys/", http.StatusBadRequest},
		{"no key", "GET", "/api/repos/alice/mail/keys", http.StatusBadRequest},
		{"NUL", "GET", "/api/repos/alice/mail/keys/a%00b", http.StatusBadRequest},
		{"control character", "PUT", "/api/repos/alice/mail/keys/a%0Ab", http.StatusBadRequest},
		{"backslash", "GET", "/api/repos/alice/mail/keys/a%5Cb", http.StatusBadRequest},
		{"not UTF-8", "GET", "/api/repos/alice/mail/keys/a%FFb", http.StatusBadRequest},
		{".git segment", "PUT", "/api/repos/alice/mail/keys/x/.GIT/y", http.StatusBadRequest},
		{"segment too long", "GET", "/api/repos/alice/mail/keys/" + strings.Repeat("s", store.MaxSegmentLen+1), http.StatusBadRequest},
		{"key too long", "PUT", "/api/repos/alice/mail/keys/" + long, http.StatusBadRequest},
		{"path too long", "GET", "/api/repos/alice/mail/keys/" + strings.Repeat("%41", maxPathLen/3+1), http.StatusBadRequest},
		{"history bad key", "GET", "/api/repos/alice/mail/history/a/../b", http.StatusBadRequest},
		{"list bad prefix", "GET", "/api/repos/alice/mail/list/a//b", http.StatusBadRequest},
		{"bad repo name", "GET", "/api/repos/alice/Mail/keys/a", http.StatusBadRequest},
		{"repo without name", "GET", "/api/repos/alice", http.StatusBadRequest},
		{"bad branch", "DELETE", "/api/repos/alice/mail/branches/a..b", http.StatusBadRequest},
		{"bad branch param", "PUT", "/api/repos/alice/mail/keys/a?branch=a..b", http.StatusBadRequest},
		{"bad rev", "GET", "/api/repos/alice/mail/keys/a/b?rev=a..b", http.StatusBadRequest},
		{"bad limit", "GET", "/api/repos/alice/mail/log?limit=ten", http.StatusBadRequest},
		{"bad diff prefix", "GET", "/api/repos/alice/mail/diff?prefix=a/", http.StatusBadRequest},
		{"unknown endpoint", "GET", "/api/repos/alice/mail/nothing", http.StatusNotFound},
		{"unknown api", "GET", "/api/other", http.StatusNotFound},
		{"endpoint with tail", "GET", "/api/repos/alice/mail/log/x", http.StatusNotFound},
		{"not git", "GET", "/alice/mail/info/refs", http.StatusNotFound},
		{"wrong method", "POST", "/api/repos/alice/mail/keys/a", http.StatusMethodNotAllowed},
		{"wrong method on log", "DELETE", "/api/repos/alice/mail/log", http.StatusMethodNotAllowed},
		{"fine", "GET", "/api/repos/alice/mail/keys/a/b", http.StatusOK},
		{"escaped fine", "GET", "/api/repos/alice/mail/keys/%61/b", http.StatusOK},
		{"encoded slash is a slash", "GET", "/api/repos/alice/mail/keys/a%2Fb", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, call{method: tc.method, path: tc.path, body: "v"})
			if a.status != tc.want {
				t.Fatalf("%s %s: status %d (%s), want %d", tc.method, tc.path, a.status, a.body, tc.want)
			}
			if a.status >= 400 {
				a.errorMessage(t)
			}
			if a.status == http.StatusMethodNotAllowed && a.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// Requests the net/http client refuses to send.
	for _, target := range []string{"/api/repos/alice/mail/keys/a%zzb", "/api/repos/alice/mail/keys/a%2", "/api/repos/alice/mail/keys/a/../../../b"} {
		if got := e.rawStatus(t, "PUT", target); got != http.StatusBadRequest {
			t.Errorf("raw PUT %s: status %d, want 400", target, got)
		}
	}
	// None of the bad writes reached the store.
	es, err := e.store("alice/mail").List(context.Background(), "", "")
	if err != nil || len(es) != 1 || es[0].Key != "a/b" {
		t.Errorf("keys after bad requests = %+v, %v; want just a/b", es, err)
	}
}

func TestKeys(t *testing.T) {
	e := newEnv(t, Options{})
	base := "/api/repos/alice/mail/keys/"

	// A write to a missing repository of one's own creates it.
	a := e.do(t, call{method: "PUT", path: base + "INBOX/1", body: "hello", header: map[string]string{headerMessage: "first mail"}})
	if a.status != http.StatusCreated {
		t.Fatalf("PUT new key: %d %s, want 201", a.status, a.body)
	}
	var c1 store.Commit
	a.json(t, &c1)
	v1 := store.BlobHash([]byte("hello"))
	if got := a.header.Get("ETag"); got != `"`+string(v1)+`"` {
		t.Errorf("PUT ETag %q, want %q", got, v1)
	}
	if a.header.Get(headerCommit) != string(c1.ID) || !store.IsHash(string(c1.ID)) {
		t.Errorf("PUT commit header %q, body id %q", a.header.Get(headerCommit), c1.ID)
	}
	if c1.Message != "first mail" || c1.Author != (store.Signature{Name: "alice", Email: "alice@localhost"}) {
		t.Errorf("PUT commit = %+v, want message 'first mail' by alice", c1)
	}

	a = e.do(t, call{method: "GET", path: base + "INBOX/1"})
	if a.status != http.StatusOK || string(a.body) != "hello" {
		t.Fatalf("GET: %d %q", a.status, a.body)
	}
	if a.header.Get("ETag") != `"`+string(v1)+`"` || a.header.Get("Content-Type") != "application/octet-stream" || a.header.Get(headerCommit) != string(c1.ID) {
		t.Errorf("GET headers = %v", a.header)
	}

	a = e.do(t, call{method: "HEAD", path: base + "INBOX/1"})
	if a.status != http.StatusOK || len(a.body) != 0 || a.header.Get("ETag") != `"`+string(v1)+`"` || a.header.Get("Content-Length") != "5" {
		t.Errorf("HEAD: %d %q %v", a.status, a.body, a.header)
	}
	for _, inm := range []string{`"` + string(v1) + `"`, `W/"` + string(v1) + `"`, `"00", "` + string(v1) + `"`, `*`} {
		if a := e.do(t, call{method: "GET", path: base + "INBOX/1", header: map[string]string{"If-None-Match": inm}}); a.status != http.StatusNotModified {
			t.Errorf("GET If-None-Match %s: %d, want 304", inm, a.status)
		}
	}
	if a := e.do(t, call{method: "GET", path: base + "INBOX/1", header: map[string]string{"If-None-Match": `"` + string(store.Missing) + `"`}}); a.status != http.StatusOK {
		t.Errorf("GET If-None-Match other: %d, want 200", a.status)
	}

	// Overwrite: 200; conditions.
	a = e.do(t, call{method: "PUT", path: base + "INBOX/1", body: "hello again", header: map[string]string{"If-Match": `"` + string(v1) + `"`}})
	if a.status != http.StatusOK {
		t.Fatalf("PUT existing with If-Match: %d %s", a.status, a.body)
	}
	v2 := store.BlobHash([]byte("hello again"))
	tests := []struct {
		name   string
		method string
		key    string
		header map[string]string
		want   int
		have   store.Hash
	}{
		{"stale If-Match", "PUT", "INBOX/1", map[string]string{"If-Match": `"` + string(v1) + `"`}, http.StatusPreconditionFailed, v2},
		{"If-None-Match on existing", "PUT", "INBOX/1", map[string]string{"If-None-Match": "*"}, http.StatusPreconditionFailed, v2},
		{"If-Match on missing", "PUT", "INBOX/2", map[string]string{"If-Match": `"` + string(v1) + `"`}, http.StatusPreconditionFailed, store.Missing},
		{"If-Match * on missing", "PUT", "INBOX/2", map[string]string{"If-Match": "*"}, http.StatusPreconditionFailed, store.Missing},
		{"stale delete", "DELETE", "INBOX/1", map[string]string{"If-Match": `"` + string(v1) + `"`}, http.StatusPreconditionFailed, v2},
		{"weak If-Match", "PUT", "INBOX/1", map[string]string{"If-Match": `W/"` + string(v2) + `"`}, http.StatusBadRequest, ""},
		{"If-None-Match tag", "PUT", "INBOX/1", map[string]string{"If-None-Match": `"` + string(v2) + `"`}, http.StatusBadRequest, ""},
		{"both conditions", "PUT", "INBOX/1", map[string]string{"If-Match": `"` + string(v2) + `"`, "If-None-Match": "*"}, http.StatusBadRequest, ""},
		{"new key with If-None-Match", "PUT", "INBOX/3", map[string]string{"If-None-Match": "*"}, http.StatusCreated, ""},
		{"If-Match *", "PUT", "INBOX/3", map[string]string{"If-Match": "*"}, http.StatusOK, ""},
		{"current If-Match", "PUT", "INBOX/1", map[string]string{"If-Match": `"` + string(v2) + `"`}, http.StatusOK, ""},
		{"directory and value", "PUT", "INBOX", nil, http.StatusConflict, ""},
		{"value and directory", "PUT", "INBOX/1/x", nil, http.StatusConflict, ""},
		{"missing branch", "PUT", "INBOX/9", map[string]string{"X-Branch": "x"}, http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := base + tc.key
			if tc.header["X-Branch"] != "" {
				path += "?branch=" + tc.header["X-Branch"]
			}
			a := e.do(t, call{method: tc.method, path: path, body: "hello again", header: tc.header})
			if a.status != tc.want {
				t.Fatalf("status %d (%s), want %d", a.status, a.body, tc.want)
			}
			if tc.want < 400 {
				return
			}
			ea := a.errorMessage(t)
			if tc.want == http.StatusPreconditionFailed && (ea.Branch != "main" || ea.Key != tc.key || ea.Have != tc.have) {
				t.Errorf("412 body = %+v, want branch main, key %s, have %s", ea, tc.key, tc.have)
			}
		})
	}

	// DELETE: a commit by alice; the key is gone; deleting again is a no-op.
	a = e.do(t, call{method: "DELETE", path: base + "INBOX/1", header: map[string]string{"If-Match": `"` + string(v2) + `"`}})
	var del store.Commit
	a.json(t, &del)
	if a.status != http.StatusOK || del.Author.Name != "alice" || del.Message != "delete INBOX/1" {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	if a := e.do(t, call{method: "GET", path: base + "INBOX/1"}); a.status != http.StatusNotFound {
		t.Errorf("GET deleted key: %d", a.status)
	}
	a = e.do(t, call{method: "DELETE", path: base + "INBOX/1"})
	var again store.Commit
	a.json(t, &again)
	if a.status != http.StatusOK || again.ID != del.ID {
		t.Errorf("second DELETE: %d, commit %s, want the head %s", a.status, again.ID, del.ID)
	}
	// A directory is not a key.
	if a := e.do(t, call{method: "GET", path: base + "INBOX"}); a.status != http.StatusNotFound {
		t.Errorf("GET directory: %d, want 404", a.status)
	}
	// Reading at an old commit.
	if a := e.do(t, call{method: "GET", path: base + "INBOX/1?rev=" + string(c1.ID)}); a.status != http.StatusOK || string(a.body) != "hello" {
		t.Errorf("GET at first commit: %d %q", a.status, a.body)
	}
	// Reads of a missing repository do not create it.
	if a := e.do(t, call{method: "GET", path: "/api/repos/alice/none/keys/a"}); a.status != http.StatusNotFound {
		t.Errorf("GET in missing repository: %d", a.status)
	}
	if _, err := e.repos.Open(context.Background(), "alice/none", false); err == nil {
		t.Error("a read created alice/none")
	}
}

func TestPercentEncodedKeys(t *testing.T) {
	e := newEnv(t, Options{})
	for _, key := range []string{"a b/c", "ü/ß€", "100%/x?y#z", "plus+sign/semi;colon:@&=$,"} {
		t.Run(key, func(t *testing.T) {
			path := "/api/repos/alice/mail/keys/" + keyPath(key)
			if a := e.do(t, call{method: "PUT", path: path, body: key}); a.status != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", path, a.status, a.body)
			}
			v, _, err := e.store("alice/mail").Get(context.Background(), "", key)
			if err != nil || string(v) != key {
				t.Fatalf("store has %q, %v under %q", v, err, key)
			}
			if a := e.do(t, call{method: "GET", path: path}); string(a.body) != key {
				t.Errorf("GET %s = %q", path, a.body)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	e := newEnv(t, Options{MaxBody: 1024})
	e.commit("alice/mail", "", "a", "1")
	big := strings.Repeat("x", 2000)
	bigChange := fmt.Sprintf(`{"ops":[{"key":"a","value":%q}]}`, base64.StdEncoding.EncodeToString([]byte(big)))
	hugeChange := `{"message":"` + strings.Repeat("m", 2<<20) + `","ops":[{"key":"a"}]}`
	tests := []struct {
		name string
		c    call
		want int
	}{
		{"PUT over MaxBody", call{method: "PUT", path: "/api/repos/alice/mail/keys/a", body: big}, http.StatusRequestEntityTooLarge},
		{"PUT at MaxBody", call{method: "PUT", path: "/api/repos/alice/mail/keys/a", body: big[:1024]}, http.StatusOK},
		{"value over MaxBody in a change", call{method: "POST", path: "/api/repos/alice/mail/commits", body: bigChange}, http.StatusRequestEntityTooLarge},
		{"change body over its limit", call{method: "POST", path: "/api/repos/alice/mail/commits", body: hugeChange}, http.StatusRequestEntityTooLarge},
		{"merge body over its limit", call{method: "POST", path: "/api/repos/alice/mail/merge", body: hugeChange}, http.StatusRequestEntityTooLarge},
		{"message over its limit", call{method: "POST", path: "/api/repos/alice/mail/commits", body: `{"message":"` + strings.Repeat("m", store.MaxMessageLen+1) + `","ops":[{"key":"a"}]}`}, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, tc.c)
			if a.status != tc.want {
				t.Fatalf("status %d (%.200s), want %d", a.status, a.body, tc.want)
			}
			if tc.want >= 400 {
				a.errorMessage(t)
			}
		})
	}
}

func TestCommitsEndpoint(t *testing.T) {
	e := newEnv(t, Options{})
	path := "/api/repos/alice/notes/commits"
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	body := fmt.Sprintf(`{"branch":"main","author":{"name":"Mallory","email":"m@evil"},"message":"two notes","time":%q,"ops":[{"key":"n/1","value":"b25l"},{"key":"n/2","value":"dHdv"}]}`, when.Format(time.RFC3339))
	a := e.do(t, call{method: "POST", path: path, body: body})
	if a.status != http.StatusOK {
		t.Fatalf("POST commits: %d %s", a.status, a.body)
	}
	var c store.Commit
	a.json(t, &c)
	if c.Author != (store.Signature{Name: "alice", Email: "alice@localhost"}) {
		t.Errorf("author %+v, want alice (forced)", c.Author)
	}
	if !c.Time.Equal(when) || c.Message != "two notes" {
		t.Errorf("commit %+v, want time %v and message 'two notes'", c, when)
	}
	v, _, err := e.store("alice/notes").Get(context.Background(), "", "n/2")
	if err != nil || string(v) != "two" {
		t.Errorf("n/2 = %q, %v", v, err)
	}

	tests := []struct {
		name string
		body string
		want int
	}{
		{"unknown field", `{"ops":[{"key":"a","val":"eA=="}]}`, http.StatusBadRequest},
		{"unknown top field", `{"ops":[{"key":"a"}],"force":true}`, http.StatusBadRequest},
		{"trailing data", `{"ops":[{"key":"a"}]} x`, http.StatusBadRequest},
		{"bad base64", `{"ops":[{"key":"a","value":"!!"}]}`, http.StatusBadRequest},
		{"no ops", `{"message":"x"}`, http.StatusBadRequest},
		{"bad key", `{"ops":[{"key":"a/../b"}]}`, http.StatusBadRequest},
		{"bad parent", `{"parent":"xyz","ops":[{"key":"a"}]}`, http.StatusBadRequest},
		{"stale parent", `{"parent":"` + string(store.Missing) + `","ops":[{"key":"a"}]}`, http.StatusPreconditionFailed},
		{"copy of unknown version", `{"ops":[{"key":"a","copy":"0123456789abcdef0123456789abcdef01234567"}]}`, http.StatusNotFound},
		{"key and key below", `{"ops":[{"key":"a"},{"key":"a/b"}]}`, http.StatusConflict},
		{"null", `null`, http.StatusBadRequest},
		{"array", `[]`, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, call{method: "POST", path: path, body: tc.body})
			if a.status != tc.want {
				t.Fatalf("status %d (%s), want %d", a.status, a.body, tc.want)
			}
			a.errorMessage(t)
		})
	}
}

func TestHistoryEndpoints(t *testing.T) {
	e := newEnv(t, Options{})
	c1 := e.commit("alice/mail", "", "a/1", "x", "b", "y")
	c2 := e.commit("alice/mail", "", "a/1", "z")
	repo := "/api/repos/alice/mail/"

	var res resolveAnswer
	e.do(t, call{method: "GET", path: repo + "resolve?rev=main"}).json(t, &res)
	if res.Commit != c2.ID {
		t.Errorf("resolve main = %s, want %s", res.Commit, c2.ID)
	}
	if a := e.do(t, call{method: "GET", path: repo + "resolve?rev=nope"}); a.status != http.StatusNotFound {
		t.Errorf("resolve missing branch: %d", a.status)
	}

	var log commitsAnswer
	e.do(t, call{method: "GET", path: repo + "log?limit=2"}).json(t, &log)
	if len(log.Commits) != 2 || log.Commits[0].ID != c2.ID || log.Commits[1].ID != c1.ID {
		t.Errorf("log = %+v", log.Commits)
	}
	e.do(t, call{method: "GET", path: repo + "history/b?rev=" + string(c2.ID)}).json(t, &log)
	if len(log.Commits) != 1 || log.Commits[0].ID != c1.ID {
		t.Errorf("history b = %+v", log.Commits)
	}
	e.do(t, call{method: "GET", path: repo + "history/never"}).json(t, &log)
	if log.Commits == nil || len(log.Commits) != 0 {
		t.Errorf("history of a never-existing key = %#v, want []", log.Commits)
	}

	var list entriesAnswer
	e.do(t, call{method: "GET", path: repo + "list/a"}).json(t, &list)
	if len(list.Entries) != 1 || list.Entries[0] != (store.Entry{Key: "a/1", Version: store.BlobHash([]byte("z")), Size: 1}) {
		t.Errorf("list a = %+v", list.Entries)
	}
	e.do(t, call{method: "GET", path: repo + "list?rev=" + string(c1.ID)}).json(t, &list)
	if len(list.Entries) != 2 {
		t.Errorf("list at c1 = %+v", list.Entries)
	}
	e.do(t, call{method: "GET", path: repo + "list/zzz"}).json(t, &list)
	if list.Entries == nil || len(list.Entries) != 0 {
		t.Errorf("list of nothing = %#v, want []", list.Entries)
	}

	var diffs diffsAnswer
	e.do(t, call{method: "GET", path: repo + "diff?from=" + string(c1.ID) + "&to=main&prefix=a"}).json(t, &diffs)
	want := []store.Diff{{Key: "a/1", Kind: store.Modified, Old: store.BlobHash([]byte("x")), New: store.BlobHash([]byte("z"))}}
	if !slices.Equal(diffs.Diffs, want) {
		t.Errorf("diff = %+v, want %+v", diffs.Diffs, want)
	}
	e.do(t, call{method: "GET", path: repo + "diff?to=" + string(c1.ID)}).json(t, &diffs)
	if len(diffs.Diffs) != 2 || diffs.Diffs[0].Kind != store.Added {
		t.Errorf("diff from the empty tree = %+v", diffs.Diffs)
	}
}

func TestBranchesAndMerge(t *testing.T) {
	e := newEnv(t, Options{})
	base := e.commit("alice/mail", "", "x", "0", "lww/k", "0")
	repo := "/api/repos/alice/mail/"

	a := e.do(t, call{method: "POST", path: repo + "branches", body: `{"name":"feature/one","from":"main"}`})
	var b store.Branch
	a.json(t, &b)
	if a.status != http.StatusCreated || b != (store.Branch{Name: "feature/one", Head: base.ID}) {
		t.Fatalf("create branch: %d %s", a.status, a.body)
	}
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"exists", `{"name":"feature/one","from":"main"}`, http.StatusConflict},
		{"bad name", `{"name":"a..b","from":"main"}`, http.StatusBadRequest},
		{"missing rev", `{"name":"two","from":"nope"}`, http.StatusNotFound},
	} {
		if a := e.do(t, call{method: "POST", path: repo + "branches", body: tc.body}); a.status != tc.want {
			t.Errorf("create branch %s: %d %s, want %d", tc.name, a.status, a.body, tc.want)
		}
	}
	var bs branchesAnswer
	e.do(t, call{method: "GET", path: repo + "branches"}).json(t, &bs)
	if len(bs.Branches) != 2 || bs.Branches[0].Name != "feature/one" || bs.Branches[1].Name != "main" {
		t.Errorf("branches = %+v", bs.Branches)
	}

	// Fast-forward feature/one to a commit made on it; a non-descendant is 409.
	ahead := e.commit("alice/mail", "feature/one", "y", "1")
	if a := e.do(t, call{method: "POST", path: repo + "branches/main/fast-forward", body: `{"to":"` + string(ahead.ID) + `"}`}); a.status != http.StatusOK {
		t.Fatalf("fast-forward: %d %s", a.status, a.body)
	}
	if a := e.do(t, call{method: "POST", path: repo + "branches/main/fast-forward", body: `{"to":"` + string(base.ID) + `"}`}); a.status != http.StatusConflict {
		t.Errorf("fast-forward backwards: %d %s", a.status, a.body)
	}
	if a := e.do(t, call{method: "POST", path: repo + "branches/main/fast-forward", body: `{"to":"nothex"}`}); a.status != http.StatusBadRequest {
		t.Errorf("fast-forward to garbage: %d %s", a.status, a.body)
	}

	// Conflicting changes to x on both sides: 409 with the keys; lww/k resolves by rule.
	e.commit("alice/mail", "main", "x", "main", "lww/k", "main")
	e.commit("alice/mail", "feature/one", "x", "feature", "lww/k", "feature")
	headBefore := e.do(t, call{method: "GET", path: repo + "resolve"}).body
	a = e.do(t, call{method: "POST", path: repo + "merge", body: `{"into":"main","from":"feature/one","message":"merge"}`})
	if a.status != http.StatusConflict {
		t.Fatalf("conflicting merge: %d %s, want 409", a.status, a.body)
	}
	if ea := a.errorMessage(t); !slices.Equal(ea.Keys, []string{"x"}) {
		t.Errorf("conflict keys = %q, want [x]", ea.Keys)
	}
	if after := e.do(t, call{method: "GET", path: repo + "resolve"}).body; string(after) != string(headBefore) {
		t.Error("a conflicting merge moved main")
	}
	e.commit("alice/mail", "feature/one", "x", "main")
	a = e.do(t, call{method: "POST", path: repo + "merge", body: `{"into":"main","from":"feature/one","message":"merge","author":{"name":"Mallory","email":"m@evil"}}`})
	var m store.Commit
	a.json(t, &m)
	if a.status != http.StatusOK || len(m.Parents) != 2 || m.Author.Name != "alice" {
		t.Fatalf("merge: %d %s", a.status, a.body)
	}

	// Revert x to the base.
	a = e.do(t, call{method: "POST", path: repo + "revert", body: `{"branch":"main","prefix":"x","to":"` + string(base.ID) + `","message":"undo"}`})
	if a.status != http.StatusOK {
		t.Fatalf("revert: %d %s", a.status, a.body)
	}
	if v, _, _ := e.store("alice/mail").Get(context.Background(), "", "x"); string(v) != "0" {
		t.Errorf("x after revert = %q, want 0", v)
	}
	if a := e.do(t, call{method: "POST", path: repo + "revert", body: `{"branch":"main","prefix":"x","to":"0123456789abcdef0123456789abcdef01234567"}`}); a.status != http.StatusNotFound {
		t.Errorf("revert to unknown commit: %d", a.status)
	}

	// Delete branches.
	if a := e.do(t, call{method: "DELETE", path: repo + "branches/feature/one"}); a.status != http.StatusNoContent {
		t.Errorf("delete branch: %d %s", a.status, a.body)
	}
	if a := e.do(t, call{method: "DELETE", path: repo + "branches/feature/one"}); a.status != http.StatusNotFound {
		t.Errorf("delete missing branch: %d", a.status)
	}
	if a := e.do(t, call{method: "DELETE", path: repo + "branches/main"}); a.status != http.StatusBadRequest {
		t.Errorf("delete main: %d", a.status)
	}
}

func TestServerErrors(t *testing.T) {
	e := newEnv(t, Options{})
	closed := e.store("alice/closed")
	closed.Close()

	a := e.do(t, call{method: "GET", path: "/api/repos/alice/closed/keys/a"})
	if a.status != http.StatusServiceUnavailable {
		t.Errorf("closed store: %d %s, want 503", a.status, a.body)
	}
	a.errorMessage(t)

	a = e.do(t, call{method: "GET", path: "/api/repos/alice/broken/log"})
	if a.status != http.StatusInternalServerError {
		t.Fatalf("failing repos: %d %s, want 500", a.status, a.body)
	}
	if ea := a.errorMessage(t); strings.Contains(ea.Error, "fire") {
		t.Errorf("500 answer %q leaks the cause", ea.Error)
	}
	if !strings.Contains(e.logs.String(), "disk on fire") {
		t.Errorf("the cause was not logged: %q", e.logs.String())
	}
}

func TestGitRoutes(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "a", "1")
	tests := []struct {
		name   string
		method string
		path   string
		want   int
		create string // a repository the request must have created
	}{
		{"info/refs", "GET", "/alice/mail.git/info/refs?service=git-upload-pack", http.StatusNotImplemented, ""},
		{"upload-pack", "POST", "/alice/mail.git/git-upload-pack", http.StatusNotImplemented, ""},
		{"fetch from missing", "GET", "/alice/none.git/info/refs?service=git-upload-pack", http.StatusNotFound, ""},
		{"push to missing", "POST", "/alice/new.git/git-receive-pack", http.StatusNotImplemented, "alice/new"},
		{"push refs of missing", "GET", "/alice/new2.git/info/refs?service=git-receive-pack", http.StatusNotImplemented, "alice/new2"},
		{"another user's", "GET", "/bob/mail.git/info/refs", http.StatusNotFound, ""},
		{"bad name", "GET", "/alice/M.git/info/refs", http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, call{method: tc.method, path: tc.path})
			if a.status != tc.want {
				t.Fatalf("status %d (%s), want %d", a.status, a.body, tc.want)
			}
			ea := a.errorMessage(t)
			if tc.want == http.StatusNotImplemented && ea.Error != "git protocol not available for this store" {
				t.Errorf("501 message %q", ea.Error)
			}
			if tc.create != "" {
				if _, err := e.repos.Open(context.Background(), tc.create, false); err != nil {
					t.Errorf("push did not create %s: %v", tc.create, err)
				}
			}
		})
	}
	if _, err := e.repos.Open(context.Background(), "alice/none", false); err == nil {
		t.Error("a fetch created alice/none")
	}
}

func TestWatchStream(t *testing.T) {
	e := newEnv(t, Options{}, func(h *Handler) { h.keepAlive = 20 * time.Millisecond })
	e.commit("alice/mail", "", "INBOX/1", "a")

	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"missing branch", "?branch=nope", http.StatusNotFound},
		{"bad branch", "?branch=a..b", http.StatusBadRequest},
		{"bad prefix", "?prefix=/x", http.StatusBadRequest},
		{"missing repository", "", http.StatusNotFound},
	} {
		path := "/api/repos/alice/mail/watch" + tc.query
		if tc.name == "missing repository" {
			path = "/api/repos/alice/none/watch"
		}
		if a := e.do(t, call{method: "GET", path: path}); a.status != tc.want {
			t.Errorf("watch %s: %d %s, want %d", tc.name, a.status, a.body, tc.want)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/repos/alice/mail/watch?prefix=INBOX", nil)
	req.SetBasicAuth("alice", "alice-pw")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	e.commit("alice/mail", "", "other", "x") // outside the prefix: no event
	c := e.commit("alice/mail", "", "INBOX/2", "b")
	r := bufio.NewReader(resp.Body)
	sawComment := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before the event: %v", err)
		}
		if strings.HasPrefix(line, ":") {
			sawComment = true
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev store.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		want := []store.Diff{{Key: "INBOX/2", Kind: store.Added, New: store.BlobHash([]byte("b"))}}
		if ev.Branch != "main" || ev.Commit.ID != c.ID || !slices.Equal(ev.Diffs, want) {
			t.Errorf("event = %+v, want commit %s with %+v", ev, c.ID, want)
		}
		break
	}
	// Keep-alive comments keep coming while nothing happens.
	for !sawComment {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before a keep-alive: %v", err)
		}
		sawComment = strings.HasPrefix(line, ": keep-alive")
	}
}
