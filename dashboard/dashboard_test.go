package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

func TestLoginAndCookies(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	// Without a session, pages send to the login form.
	code, body := c.get("/data")
	if code != http.StatusOK || !strings.Contains(body, `action="/login"`) {
		t.Fatalf("GET /data without a session: %d, want the login page", code)
	}
	if code, body := c.post("/login", url.Values{"user": {"alice"}, "password": {"wrong-password"}}); code != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
		t.Fatalf("wrong password: %d %s", code, body)
	}
	// The cookie attributes, read from the raw answer.
	c.get("/login")
	form := url.Values{"user": {"alice"}, "password": {alicePW}, "csrf": {c.csrf}}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	noFollow := *c.c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/appliances" {
		t.Fatalf("login answered %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.Domain != "" {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", sess)
	}
	if code, body := c.get("/data"); code != http.StatusOK || !strings.Contains(body, "<h1>Your data</h1>") {
		t.Fatalf("GET /data after login: %d", code)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Strict-Transport-Security"} {
		r, _ := c.c.Get(e.srv.URL + "/setup")
		r.Body.Close()
		if r.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	// Logout ends the session on the server: the old cookie no longer works.
	c.get("/data")
	if code, _ := c.post("/logout", nil); code != http.StatusOK {
		t.Fatalf("logout: %d", code)
	}
	old := &http.Cookie{Name: sessionCookie, Value: sess.Value}
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/data", nil)
	req.AddCookie(old)
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("the logged-out cookie still works: %s", resp.Status)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	c.login("admin", adminPW)
	c.get("/users")
	good := c.csrf
	cases := []struct {
		name   string
		csrf   string
		header map[string]string
		want   int
	}{
		{"no token", "", nil, http.StatusForbidden},
		{"wrong token", strings.Repeat("A", len(good)), nil, http.StatusForbidden},
		{"cross-site", good, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign origin", good, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"same origin", good, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusOK},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.header = http.Header{}
			for k, v := range tc.header {
				c.header.Set(k, v)
			}
			defer func() { c.header = http.Header{} }()
			label := "dev" + string(rune('a'+i))
			code, body := c.post("/users/alice/app-passwords", url.Values{"label": {label}, "csrf": {tc.csrf}})
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
			aps, err := e.accounts.AppPasswords(context.Background(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			made := false
			for _, ap := range aps {
				made = made || ap.Label == label
			}
			if made != (tc.want == http.StatusOK) {
				t.Fatalf("app password made: %v, status %d", made, code)
			}
		})
	}
	// The login form needs the token bound to its cookie.
	c2 := e.client(t)
	if code, _ := c2.post("/login", url.Values{"user": {"alice"}, "password": {alicePW}, "csrf": {"x"}}); code != http.StatusForbidden {
		t.Fatalf("login without the pre-login cookie: %d, want 403", code)
	}
}

func TestSessionExpiry(t *testing.T) {
	cases := []struct {
		name  string
		steps []time.Duration // time passing between requests that keep the session alive
		last  time.Duration
		alive bool
	}{
		{"active", []time.Duration{20 * time.Minute, 20 * time.Minute}, 20 * time.Minute, true},
		{"idle", nil, 31 * time.Minute, false},
		{"absolute", []time.Duration{25 * time.Minute, 25 * time.Minute, 25 * time.Minute}, 25 * time.Minute, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{SessionIdle: 30 * time.Minute, SessionMax: time.Hour})
			c := e.client(t)
			c.login("alice", alicePW)
			for _, d := range tc.steps {
				e.clock.Add(d)
				c.get("/data")
			}
			e.clock.Add(tc.last)
			_, body := c.get("/data")
			alive := strings.Contains(body, "<h1>Your data</h1>")
			if alive != tc.alive {
				t.Fatalf("session alive %v, want %v", alive, tc.alive)
			}
		})
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	var code int
	var body string
	for i := 0; i < 30; i++ {
		c.get("/login")
		code, body = c.post("/login", url.Values{"user": {"alice"}, "password": {"not-the-password"}})
		if code == http.StatusTooManyRequests {
			break
		}
	}
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins") {
		t.Fatalf("30 failed logins: last status %d, want 429", code)
	}
	// Even the right password is refused while throttled.
	c.get("/login")
	if code, _ := c.post("/login", url.Values{"user": {"alice"}, "password": {alicePW}}); code != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled: %d, want 429", code)
	}
}

var secretRE = regexp.MustCompile(`<p class="secret" id="secret">([^<]+)</p>`)

func TestUsersAdmin(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	alice := e.client(t)
	alice.login("alice", alicePW)
	if code, _ := alice.get("/users"); code != http.StatusForbidden {
		t.Fatalf("alice GET /users: %d, want 403", code)
	}
	alice.get("/data")
	if code, _ := alice.post("/users", url.Values{"name": {"mallory"}, "password": {"mallory-pass"}}); code != http.StatusForbidden {
		t.Fatalf("alice adds a user: %d, want 403", code)
	}

	a := e.client(t)
	a.login("admin", adminPW)
	a.get("/users")
	steps := []struct {
		name, path string
		form       url.Values
		want       int
		check      func(t *testing.T, body string)
	}{
		{"add", "/users", url.Values{"name": {"bob"}, "password": {"bob-password"}}, http.StatusOK, func(t *testing.T, body string) {
			if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "bob", "bob-password"); err != nil {
				t.Fatal(err)
			}
		}},
		{"add exists", "/users", url.Values{"name": {"bob"}, "password": {"bob-password"}}, http.StatusConflict, nil},
		{"add bad name", "/users", url.Values{"name": {"Bad Name"}, "password": {"bob-password"}}, http.StatusBadRequest, nil},
		{"add short password", "/users", url.Values{"name": {"carol"}, "password": {"short"}}, http.StatusBadRequest, nil},
		{"reset password", "/users/bob/password", url.Values{"password": {"bob-new-password"}}, http.StatusOK, func(t *testing.T, body string) {
			if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "bob", "bob-new-password"); err != nil {
				t.Fatal(err)
			}
		}},
		{"disable", "/users/bob/disable", nil, http.StatusOK, func(t *testing.T, body string) {
			if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "bob", "bob-new-password"); !errors.Is(err, signpost.ErrBadCredentials) {
				t.Fatalf("disabled bob logs in: %v", err)
			}
		}},
		{"disable self", "/users/admin/disable", nil, http.StatusBadRequest, nil},
		{"enable", "/users/bob/enable", nil, http.StatusOK, func(t *testing.T, body string) {
			if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "bob", "bob-new-password"); err != nil {
				t.Fatal(err)
			}
		}},
		{"app password", "/users/bob/app-passwords", url.Values{"label": {"phone"}}, http.StatusOK, func(t *testing.T, body string) {
			m := secretRE.FindStringSubmatch(body)
			if m == nil {
				t.Fatal("the new app password is not shown")
			}
			if u, err := e.accounts.CheckToken(ctx, "127.0.0.1", m[1]); err != nil || u != "bob" {
				t.Fatalf("the shown app password: %q %v", u, err)
			}
			// Shown once: the users page does not show it again.
			_, again := a.get("/users")
			if strings.Contains(again, m[1]) {
				t.Fatal("the app password is shown again")
			}
		}},
		{"revoke", "/users/bob/app-passwords/revoke", url.Values{"label": {"phone"}}, http.StatusOK, func(t *testing.T, body string) {
			if aps, _ := e.accounts.AppPasswords(ctx, "bob"); len(aps) != 0 {
				t.Fatalf("app passwords after revoke: %v", aps)
			}
		}},
		{"revoke unknown", "/users/bob/app-passwords/revoke", url.Values{"label": {"phone"}}, http.StatusNotFound, nil},
		{"unknown user", "/users/nobody/disable", nil, http.StatusNotFound, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, body := a.post(s.path, s.form)
			if code != s.want {
				t.Fatalf("status %d, want %d: %s", code, s.want, body)
			}
			if s.check != nil {
				s.check(t, body)
			}
		})
	}
}

// TestDisableEndsSessions: a user disabled by the admin is logged out at once.
func TestDisableEndsSessions(t *testing.T) {
	e := newEnv(t, Options{})
	alice := e.client(t)
	alice.login("alice", alicePW)
	a := e.client(t)
	a.login("admin", adminPW)
	a.get("/users")
	if code, _ := a.post("/users/alice/disable", nil); code != http.StatusOK {
		t.Fatal(code)
	}
	if _, body := alice.get("/data"); !strings.Contains(body, `action="/login"`) {
		t.Fatal("alice's session survived her being disabled")
	}
}

var inviteRE = regexp.MustCompile(`https://[^/<]+(/invite/[A-Za-z0-9_-]{43})`)

func TestInvitations(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.client(t)
	a.login("admin", adminPW)
	a.get("/users")
	invite := func() string {
		t.Helper()
		a.get("/users")
		code, body := a.post("/invitations", url.Values{"note": {"for dave"}})
		m := inviteRE.FindStringSubmatch(body)
		if code != http.StatusOK || m == nil {
			t.Fatalf("new invitation: %d, no link", code)
		}
		return m[1]
	}
	link := invite()
	if _, body := a.get("/users"); !strings.Contains(body, "for dave") || strings.Contains(body, link) {
		t.Fatal("the users page should list the invitation but not its link")
	}

	d := e.client(t)
	if code, _ := d.get(link); code != http.StatusOK {
		t.Fatalf("GET invitation: %d", code)
	}
	if code, body := d.post(link, url.Values{"name": {"dave"}, "password": {"dave-password"}, "password2": {"other-password"}}); code != http.StatusBadRequest {
		t.Fatalf("differing passwords: %d %s", code, body)
	}
	if code, body := d.post(link, url.Values{"name": {"alice"}, "password": {"dave-password"}, "password2": {"dave-password"}}); code != http.StatusConflict {
		t.Fatalf("taken name: %d %s", code, body)
	}
	code, body := d.post(link, url.Values{"name": {"dave"}, "password": {"dave-password"}, "password2": {"dave-password"}})
	if code != http.StatusOK || !strings.Contains(body, "Welcome, dave") {
		t.Fatalf("accept: %d %s", code, body)
	}
	if err := e.accounts.CheckPassword(context.Background(), "127.0.0.1", "dave", "dave-password"); err != nil {
		t.Fatal(err)
	}
	// Used up.
	other := e.client(t)
	if code, _ := other.get(link); code != http.StatusNotFound {
		t.Fatalf("used invitation: %d, want 404", code)
	}
	other.csrf = "x"
	if code, _ := other.post(link, url.Values{"name": {"eve"}, "password": {"eve-password"}, "password2": {"eve-password"}}); code == http.StatusOK {
		t.Fatal("a used invitation made a second account")
	}
	// Expired after 7 days.
	link2 := invite()
	e.clock.Add(InvitationLifetime + time.Minute)
	if code, _ := other.get(link2); code != http.StatusNotFound {
		t.Fatalf("expired invitation: %d, want 404", code)
	}
	// Unknown and malformed tokens.
	for _, p := range []string{"/invite/" + strings.Repeat("a", 43), "/invite/short", "/invite/%2e%2e"} {
		if code, _ := other.get(p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

func TestSetupAndCA(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	code, pem := c.get("/ca.pem")
	if code != http.StatusOK || pem != string(e.ca.CertificatePEM()) {
		t.Fatalf("GET /ca.pem: %d", code)
	}
	c.login("alice", alicePW)
	_, body := c.get("/setup")
	for _, want := range []string{"_imaps._tcp.home.arpa", "_carddavs._tcp.home.arpa", "_caldavs._tcp.home.arpa", "https://contacts.home.arpa:8444/", "Thunderbird", "DAVx5", "vdirsyncer", "IMAPAccount hearth", "mail.home.arpa"} {
		if !strings.Contains(body, want) {
			t.Errorf("setup page lacks %q", want)
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	c.get("/login")
	code, body := c.get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, `dashboard_requests_total{code="200",route="GET /login"}`) {
		t.Fatalf("metrics from loopback: %d\n%s", code, body)
	}
	// Not from elsewhere without the admin's session.
	r := httptestRequest("GET", "/metrics", "192.0.2.1:1234")
	w := newRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("metrics from 192.0.2.1: %d", w.Code)
	}
}

func TestAccount(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	c := e.client(t)
	c.login("alice", alicePW)
	c.get("/account")
	code, body := c.post("/account/app-passwords", url.Values{"label": {"laptop"}})
	m := secretRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("new app password: %d", code)
	}
	if u, err := e.accounts.CheckToken(ctx, "127.0.0.1", m[1]); err != nil || u != "alice" {
		t.Fatalf("the shown app password: %q %v", u, err)
	}
	if code, _ := c.post("/account/app-passwords/revoke", url.Values{"label": {"laptop"}}); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	if _, err := e.accounts.CheckToken(ctx, "127.0.0.1", m[1]); err == nil {
		t.Fatal("the revoked app password still works")
	}
	steps := []struct {
		name string
		form url.Values
		want int
	}{
		{"wrong current", url.Values{"current": {"nope-nope"}, "password": {"alice-new-pw"}, "password2": {"alice-new-pw"}}, http.StatusForbidden},
		{"differ", url.Values{"current": {alicePW}, "password": {"alice-new-pw"}, "password2": {"alice-other"}}, http.StatusBadRequest},
		{"too short", url.Values{"current": {alicePW}, "password": {"short"}, "password2": {"short"}}, http.StatusBadRequest},
		{"ok", url.Values{"current": {alicePW}, "password": {"alice-new-pw"}, "password2": {"alice-new-pw"}}, http.StatusOK},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			c.get("/account")
			if code, body := c.post("/account/password", s.form); code != s.want {
				t.Fatalf("status %d, want %d: %s", code, s.want, body)
			}
		})
	}
	if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "alice", "alice-new-pw"); err != nil {
		t.Fatal(err)
	}
}

// TestPlaintextLoginRefused: a password over plain HTTP from another machine is refused
// before it is checked.
func TestPlaintextLoginRefused(t *testing.T) {
	e := newEnv(t, Options{})
	for _, path := range []string{"/login", "/invite/" + strings.Repeat("a", 43)} {
		r := httptestRequest("POST", path, "192.0.2.7:5555")
		r.Body = http.NoBody
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := newRecorder()
		e.h.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "only over HTTPS") {
			t.Errorf("POST %s over plain HTTP from 192.0.2.7: %d %s", path, w.Code, w.Body.String())
		}
	}
}

// TestSessionsSurviveRestart: with a session file, a dashboard made anew (after an idle
// exit) knows the sessions of the old one; logged-out and expired ones stay gone, and a
// damaged file only loses the sessions.
func TestSessionsSurviveRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dashboard", "sessions.json")
	e := newEnv(t, Options{SessionFile: file})
	alice, bob := e.client(t), e.client(t)
	alice.login("alice", alicePW)
	bob.login("admin", adminPW)
	bob.get("/data")
	bob.post("/logout", nil)
	if err := e.h.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(file)
	for _, ck := range alice.c.Jar.Cookies(mustURL(e.srv.URL)) {
		if strings.Contains(string(b), ck.Value) {
			t.Fatal("the session file holds a cookie value")
		}
	}
	restart := func() {
		h, err := New(Options{Repos: e.repos, Accounts: e.accounts, Logger: quiet, Now: e.clock.Now, SessionFile: file})
		if err != nil {
			t.Fatal(err)
		}
		e.cur.Store(h)
		e.h = h
	}
	restart()
	if _, body := alice.get("/data"); !strings.Contains(body, "<h1>Your data</h1>") {
		t.Fatal("alice's session did not survive the restart")
	}
	// Her CSRF token came back too.
	if code, _ := alice.post("/account/app-passwords", url.Values{"label": {"after-restart"}}); code != http.StatusOK {
		t.Fatalf("POST after restart: %d", code)
	}
	if _, body := bob.get("/data"); strings.Contains(body, "<h1>Your data</h1>") {
		t.Fatal("a logged-out session came back")
	}
	e.h.Close()
	e.clock.Add(DefaultSessionIdle + time.Minute)
	restart()
	if _, body := alice.get("/data"); strings.Contains(body, "<h1>Your data</h1>") {
		t.Fatal("an expired session came back")
	}
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	restart() // logs and starts empty
	alice.login("alice", alicePW)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestSessionLimit(t *testing.T) {
	c := &clock{t: time.Now()}
	s := newSessions(c.Now, time.Hour, 24*time.Hour, 3)
	var made []*session
	for i := 0; i < 4; i++ {
		made = append(made, s.create("u"+itoa(i)))
		c.Add(time.Minute)
	}
	if s.get(made[0].id) != nil {
		t.Error("the oldest session survived a full table")
	}
	for _, m := range made[1:] {
		if got := s.get(m.id); got == nil || got.user != m.user {
			t.Errorf("session of %s lost", m.user)
		}
	}
	// Expired sessions make room first.
	c.Add(2 * time.Hour)
	n := s.create("late")
	if s.get(n.id) == nil {
		t.Fatal("new session missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) != 1 {
		t.Fatalf("%d sessions kept, want 1 (the expired ones dropped)", len(s.byID))
	}
}
