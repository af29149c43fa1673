package dashboard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	adminPW = "admin-password-1"
	alicePW = "alice-password-1"
)

// clock is a settable clock for session and invitation expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a dashboard over a real store in a temporary data directory, served over TLS.
type env struct {
	data     string
	repos    *store.Repos
	accounts *signpost.Accounts
	ca       *signpost.CA
	names    signpost.Names
	h        *Handler
	srv      *httptest.Server
	cur      atomic.Pointer[Handler] // what srv serves: h, or its successor after a restart
	clock    *clock
}

// newEnv makes users admin and alice; opts may set jitsu fields (Repos, Accounts, CA,
// Names, Now and Logger are filled in).
func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{data: t.TempDir(), clock: &clock{t: time.Now()}}
	var err error
	if e.repos, err = store.OpenRepos(filepath.Join(e.data, "repos"), &store.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.repos.Close() })
	if e.accounts, err = signpost.OpenAccounts(ctx, e.repos, signpost.AccountsOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	for u, pw := range map[string]string{"admin": adminPW, "alice": alicePW} {
		if err := e.accounts.Add(ctx, u, pw); err != nil {
			t.Fatal(err)
		}
	}
	if e.ca, e.names, err = signpost.OpenHomeCA(e.data, signpost.CAOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	opts.Repos, opts.Accounts, opts.CA, opts.Names, opts.Logger = e.repos, e.accounts, e.ca, e.names, quiet
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	if e.h, err = New(opts); err != nil {
		t.Fatal(err)
	}
	e.cur.Store(e.h)
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.cur.Load().ServeHTTP(w, r)
	}))
	e.srv.TLS = e.ca.ServerConfig(nil, nil)
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// client is a cookie-keeping HTTPS client that trusts the home CA, as a browser would be.
type client struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string // the token of the last page
	// header is added to every request (e.g. Sec-Fetch-Site).
	header http.Header
}

func (e *env) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = e.ca.CertPool()
	tr.TLSClientConfig.ServerName = "localhost"
	return &client{t: t, e: e, c: &http.Client{Jar: jar, Transport: tr}, header: http.Header{}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) do(req *http.Request) (int, string) {
	c.t.Helper()
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if m := csrfRE.FindSubmatch(b); m != nil {
		c.csrf = string(m[1])
	}
	return resp.StatusCode, string(b)
}

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.e.srv.URL+path, nil)
	return c.do(req)
}

// post sends a form with the last page's CSRF token (unless form sets csrf).
func (c *client) post(path string, form url.Values) (int, string) {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", c.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, c.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// login logs in and fails the test unless it lands on the appliances page.
func (c *client) login(user, pw string) {
	c.t.Helper()
	if code, body := c.get("/login"); code != http.StatusOK {
		c.t.Fatalf("GET /login: %d %s", code, body)
	}
	code, body := c.post("/login", url.Values{"user": {user}, "password": {pw}})
	if code != http.StatusOK || !strings.Contains(body, "<h1>Appliances</h1>") {
		c.t.Fatalf("login %s: %d %s", user, code, body)
	}
}

func httptestRequest(method, target, remote string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remote
	return r
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
