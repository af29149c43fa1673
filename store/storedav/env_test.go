package storedav

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/memstore"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testKind holds toy objects: "BEGIN:T" then lines, one of them "UID:x".
func testKind() *Kind {
	k := &Kind{Repo: "things", NS: NSCardDAV, CollectionType: "addressbook", HomeSet: "addressbook-home-set",
		Description: "addressbook-description", DataProp: "address-data", ValidData: "valid-address-data",
		SupportedData: "supported-address-data", ContentType: "text/x-thing", MediaType: "text/vcard", Version: "3.0",
		Ext: ".t", Compliance: "addressbook", Reports: []string{"addressbook-multiget"}}
	k.Validate = func(data []byte) (Object, error) {
		s := string(data)
		if !strings.HasPrefix(s, "BEGIN:T\n") {
			return Object{}, k.InvalidData("missing BEGIN:T")
		}
		for _, l := range strings.Split(s, "\n") {
			if uid, ok := strings.CutPrefix(l, "UID:"); ok {
				return Object{UID: uid}, nil
			}
		}
		return Object{}, k.InvalidData("no UID")
	}
	return k
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	acct  *signpost.Accounts
	h     *Handler
	repos *memstore.Repos
	clock *fakeClock
}

// fakeClock is the stores' time, moved by tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const pw = "correct horse battery"

func newEnv(t *testing.T, limits Limits, lim signpost.LimitOptions) *env {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	repos := memstore.NewRepos(&memstore.Options{Now: clock.now})
	acctStore, err := repos.Open(context.Background(), signpost.AccountsRepo, true)
	if err != nil {
		t.Fatal(err)
	}
	if lim.FreeFailures == 0 {
		lim = signpost.LimitOptions{FreeFailures: 1000, LockoutAfter: 2000}
	}
	acct := signpost.NewAccounts(acctStore, signpost.AccountsOptions{Logger: quiet, Limits: lim})
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := acct.Add(context.Background(), u, pw); err != nil {
			t.Fatal(err)
		}
	}
	h, err := NewHandler(Options{Kind: testKind(), Repos: repos, Accounts: acct, Limits: limits, Logger: quiet, Realm: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, acct: acct, h: h, repos: repos, clock: clock}
}

type resp struct {
	code int
	hdr  http.Header
	body string
}

// do sends a request as user (password pw; "" sends no credentials).
func (e *env) do(user, method, path, body string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

func (e *env) want(r resp, code int, contains ...string) {
	e.t.Helper()
	if r.code != code {
		e.t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
	}
	for _, c := range contains {
		if !strings.Contains(r.body, c) {
			e.t.Fatalf("body lacks %q:\n%s", c, r.body)
		}
	}
}

func (e *env) mkcol(user, path string) {
	e.t.Helper()
	e.want(e.do(user, "MKCOL", path, ""), http.StatusCreated)
}

func thing(uid, extra string) string { return "BEGIN:T\nUID:" + uid + "\n" + extra + "\n" }

var tokenRE = regexp.MustCompile(`<d:sync-token>([^<]*)</d:sync-token>`)

func syncBody(token string) string {
	return `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token +
		`</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
}
