package dashboard

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"
	"github.com/hearth-home/hearth/calendar"
	"github.com/hearth-home/hearth/contacts"
	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/signpost"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// plistToJSON turns a property list into JSON with Debian's Python plistlib (a real plist
// parser): <data> becomes {"$data": BASE64}.
const plistToJSON = `
import plistlib, sys, json, base64
def conv(v):
    if isinstance(v, bytes):
        return {"$data": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {k: conv(x) for k, x in v.items()}
    if isinstance(v, list):
        return [conv(x) for x in v]
    return v
json.dump(conv(plistlib.loads(sys.stdin.buffer.read())), sys.stdout)
`

// parsePlist parses b with Python's plistlib, failing the test in CI (CI=true) when Debian's
// python3 is missing and skipping it elsewhere.
func parsePlist(t *testing.T, b []byte) map[string]any {
	t.Helper()
	py := testtool.File(t, "/usr/bin/python3", "python3") // Debian's, not the one on PATH
	cmd := exec.Command(py, "-c", plistToJSON)
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("plistlib refused the profile: %v\n%s\n%s", err, stderr.String(), b)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// download fetches path with method (a POST sends form with the last CSRF token) and
// returns the status, the headers and the body.
func (c *client) download(method, path string, form url.Values) (int, http.Header, []byte) {
	c.t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		if form == nil {
			form = url.Values{}
		}
		if _, ok := form["csrf"]; !ok {
			form.Set("csrf", c.csrf)
		}
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.e.srv.URL+path, body)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
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
	return resp.StatusCode, resp.Header, b
}

// getProfile downloads and parses the profile, checking the response's headers.
func (c *client) getProfile(user string) ([]byte, map[string]any) {
	c.t.Helper()
	code, hd, b := c.download(http.MethodGet, MobileconfigPath, nil)
	checkProfileResponse(c.t, user, code, hd, b)
	return b, parsePlist(c.t, b)
}

func checkProfileResponse(t *testing.T, user string, code int, hd http.Header, b []byte) {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("profile: %d %s", code, b)
	}
	if ct := hd.Get("Content-Type"); ct != "application/x-apple-aspen-config" {
		t.Errorf("Content-Type %q", ct)
	}
	if cd, want := hd.Get("Content-Disposition"), `attachment; filename="hearth-`+user+`.mobileconfig"`; cd != want {
		t.Errorf("Content-Disposition %q, want %q", cd, want)
	}
}

// payloads returns the profile's payloads by PayloadType.
func payloads(t *testing.T, prof map[string]any) map[string]map[string]any {
	t.Helper()
	list, ok := prof["PayloadContent"].([]any)
	if !ok {
		t.Fatalf("PayloadContent is %T", prof["PayloadContent"])
	}
	out := map[string]map[string]any{}
	for _, p := range list {
		d, ok := p.(map[string]any)
		if !ok {
			t.Fatalf("payload is %T", p)
		}
		typ, _ := d["PayloadType"].(string)
		if _, dup := out[typ]; dup {
			t.Errorf("two payloads of type %q", typ)
		}
		out[typ] = d
	}
	return out
}

// uuidRE is a version 5 RFC 9562 UUID.
var uuidRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

// uuids checks every UUID of prof is valid and distinct and returns them, the profile's
// first.
func uuids(t *testing.T, prof map[string]any) []string {
	t.Helper()
	out := []string{prof["PayloadUUID"].(string)}
	for _, p := range prof["PayloadContent"].([]any) {
		out = append(out, p.(map[string]any)["PayloadUUID"].(string))
	}
	seen := map[string]bool{}
	for _, u := range out {
		if !uuidRE.MatchString(u) {
			t.Errorf("UUID %q is not a version 5 UUID", u)
		}
		if seen[u] {
			t.Errorf("UUID %q used twice", u)
		}
		seen[u] = true
	}
	return out
}

// wantFields checks d has each key with the value given (numbers compare as JSON numbers).
func wantFields(t *testing.T, what string, d map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if i, ok := w.(int); ok {
			w = float64(i)
		}
		if got, ok := d[k]; !ok || got != w {
			t.Errorf("%s: %s = %#v, want %#v", what, k, got, w)
		}
	}
}

func TestMobileconfig(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	c.login("alice", alicePW)

	_, page := c.get("/setup")
	if !strings.Contains(page, `href="`+MobileconfigPath+`"`) || !strings.Contains(page, `action="`+MobileconfigPath+`"`) || !strings.Contains(page, "Add Account") {
		t.Error("setup page lacks the profile's link, its form or the manual steps")
	}

	raw, prof := c.getProfile("alice")
	wantFields(t, "profile", prof, map[string]any{
		"PayloadType":         "Configuration",
		"PayloadVersion":      1,
		"PayloadIdentifier":   "arpa.home.hearth.alice",
		"PayloadDisplayName":  "Hearth (alice)",
		"PayloadOrganization": "Hearth (home.arpa)",
	})
	ps := payloads(t, prof)
	if len(ps) != 4 {
		t.Errorf("%d payloads, want 4", len(ps))
	}
	common := func(typ, kind string) {
		t.Helper()
		d := ps[typ]
		if d == nil {
			t.Fatalf("no %s payload", typ)
		}
		wantFields(t, typ, d, map[string]any{"PayloadVersion": 1, "PayloadIdentifier": "arpa.home.hearth.alice." + kind})
		if s, _ := d["PayloadDisplayName"].(string); s == "" {
			t.Errorf("%s: no PayloadDisplayName", typ)
		}
	}

	common("com.apple.security.root", "ca")
	der, _ := ps["com.apple.security.root"]["PayloadContent"].(map[string]any)["$data"].(string)
	if got, _ := base64.StdEncoding.DecodeString(der); !bytes.Equal(got, e.ca.Certificate().Raw) {
		t.Error("the root payload is not the CA certificate's DER")
	}

	common("com.apple.mail.managed", "mail")
	mail := ps["com.apple.mail.managed"]
	wantFields(t, "mail", mail, map[string]any{
		"EmailAccountType":                       "EmailTypeIMAP",
		"EmailAddress":                           "alice@home.arpa",
		"IncomingMailServerHostName":             "mail.home.arpa",
		"IncomingMailServerPortNumber":           e.names.Port("mail", "imaps"),
		"IncomingMailServerUseSSL":               true,
		"IncomingMailServerAuthentication":       "EmailAuthPassword",
		"IncomingMailServerUsername":             "alice",
		"OutgoingMailServerHostName":             "mail.home.arpa",
		"OutgoingMailServerPortNumber":           e.names.Port("mail", "submission"),
		"OutgoingMailServerUseSSL":               true,
		"OutgoingMailServerAuthentication":       "EmailAuthPassword",
		"OutgoingMailServerUsername":             "alice",
		"OutgoingPasswordSameAsIncomingPassword": true,
	})
	if s, _ := mail["EmailAccountDescription"].(string); !strings.Contains(s, "alice") {
		t.Errorf("mail: EmailAccountDescription %q", s)
	}

	for _, dav := range []struct{ typ, kind, prefix, app string }{
		{"com.apple.carddav.account", "carddav", "CardDAV", "contacts"},
		{"com.apple.caldav.account", "caldav", "CalDAV", "calendar"},
	} {
		common(dav.typ, dav.kind)
		d := ps[dav.typ]
		port := e.names.Port(dav.app, "https")
		wantFields(t, dav.typ, d, map[string]any{
			dav.prefix + "HostName":     dav.app + ".home.arpa",
			dav.prefix + "Port":         port,
			dav.prefix + "UseSSL":       true,
			dav.prefix + "Username":     "alice",
			dav.prefix + "PrincipalURL": "https://" + dav.app + ".home.arpa:" + strconv.Itoa(port) + "/alice/",
		})
		if s, _ := d[dav.prefix+"AccountDescription"].(string); s == "" {
			t.Errorf("%s: no AccountDescription", dav.typ)
		}
	}
	for _, d := range ps {
		for _, k := range []string{"IncomingPassword", "OutgoingPassword", "CardDAVPassword", "CalDAVPassword"} {
			if _, ok := d[k]; ok {
				t.Errorf("the GET profile holds %s", k)
			}
		}
	}

	ids := uuids(t, prof)
	raw2, prof2 := c.getProfile("alice")
	if !bytes.Equal(raw, raw2) || !slices.Equal(ids, uuids(t, prof2)) {
		t.Error("two downloads differ")
	}
	a := e.client(t)
	a.login("admin", adminPW)
	_, other := a.getProfile("admin")
	for _, u := range uuids(t, other) {
		if slices.Contains(ids, u) {
			t.Errorf("admin's profile shares UUID %s with alice's", u)
		}
	}
	if got := other["PayloadIdentifier"]; got != "arpa.home.hearth.admin" {
		t.Errorf("admin's PayloadIdentifier %v", got)
	}
}

func TestMobileconfigRefused(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client(t)
	c.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	code, hd, b := c.download(http.MethodGet, MobileconfigPath, nil)
	if code != http.StatusSeeOther || hd.Get("Location") != "/login" || bytes.Contains(b, []byte("plist")) {
		t.Errorf("GET without a session: %d %q", code, hd.Get("Location"))
	}
	code, _, b = c.download(http.MethodPost, MobileconfigPath, url.Values{"csrf": {"x"}})
	if code != http.StatusUnauthorized || bytes.Contains(b, []byte("plist")) {
		t.Errorf("POST without a session: %d", code)
	}
}

// TestMobileconfigEscaping serves a domain with XML's special characters (the dashboard
// does not check Names) and one without a CA or calendar.
func TestMobileconfigEscaping(t *testing.T) {
	e := newEnv(t, Options{})
	names := signpost.DefaultNames(`a&b<c>"d'.example`)
	var apps []signpost.Appliance
	for _, a := range names.Appliances {
		if a.Name != "calendar" {
			apps = append(apps, a)
		}
	}
	names.Appliances = apps
	h, err := New(Options{Repos: e.repos, Accounts: e.accounts, Names: names, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.cur.Store(h)
	c := e.client(t)
	c.login("alice", alicePW)
	_, prof := c.getProfile("alice")
	wantFields(t, "profile", prof, map[string]any{
		"PayloadIdentifier":   `example.a&b<c>"d'.hearth.alice`,
		"PayloadOrganization": `Hearth (a&b<c>"d'.example)`,
	})
	ps := payloads(t, prof)
	wantFields(t, "mail", ps["com.apple.mail.managed"], map[string]any{
		"EmailAddress":               `alice@a&b<c>"d'.example`,
		"IncomingMailServerHostName": `mail.a&b<c>"d'.example`,
	})
	if len(ps) != 2 || ps["com.apple.security.root"] != nil || ps["com.apple.caldav.account"] != nil || ps["com.apple.carddav.account"] == nil {
		t.Errorf("payloads without CA and calendar: %v", keys(ps))
	}
	uuids(t, prof)
	if _, body := c.get("/setup"); !strings.Contains(body, MobileconfigPath) {
		t.Error("setup page without CA lacks the profile's link")
	}
}

func TestMobileconfigAppPassword(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	c := e.client(t)
	c.login("alice", alicePW)
	c.get("/setup")

	code, _, b := c.download(http.MethodPost, MobileconfigPath, url.Values{"csrf": {"wrong"}})
	if code != http.StatusForbidden || bytes.Contains(b, []byte("plist")) {
		t.Errorf("POST with a wrong CSRF token: %d", code)
	}
	if aps, _ := e.accounts.AppPasswords(ctx, "alice"); len(aps) != 0 {
		t.Errorf("a refused POST made app passwords %v", aps)
	}

	day := "Apple profile " + e.clock.Now().Format("2006-01-02")
	var secrets []string
	for i, label := range []string{day, day + " (2)"} {
		code, hd, b := c.download(http.MethodPost, MobileconfigPath, nil)
		checkProfileResponse(t, "alice", code, hd, b)
		ps := payloads(t, parsePlist(t, b))
		pw, _ := ps["com.apple.mail.managed"]["IncomingPassword"].(string)
		if pw == "" {
			t.Fatalf("download %d: no IncomingPassword", i)
		}
		wantFields(t, "mail", ps["com.apple.mail.managed"], map[string]any{"OutgoingPassword": pw})
		wantFields(t, "carddav", ps["com.apple.carddav.account"], map[string]any{"CardDAVPassword": pw})
		wantFields(t, "caldav", ps["com.apple.caldav.account"], map[string]any{"CalDAVPassword": pw})
		if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "alice", pw); err != nil {
			t.Errorf("the profile's password does not log in: %v", err)
		}
		davLogin(t, e, ps, pw, i == 0)
		aps, err := e.accounts.AppPasswords(ctx, "alice")
		if err != nil || len(aps) != i+1 || aps[i].Label != label {
			t.Fatalf("app passwords after download %d: %v %v, want label %q", i, aps, err, label)
		}
		secrets = append(secrets, pw)
	}
	if secrets[0] == secrets[1] {
		t.Error("two downloads got the same app password")
	}
	if err := e.accounts.RevokeAppPassword(ctx, "alice", day); err != nil {
		t.Fatal(err)
	}
	if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "alice", secrets[0]); err == nil {
		t.Error("a revoked profile password still logs in")
	}
	if err := e.accounts.CheckPassword(ctx, "127.0.0.1", "alice", secrets[1]); err != nil {
		t.Errorf("the other profile password stopped working: %v", err)
	}
}

// TestMobileconfigGolden compares the profile of a fixed user, domain and CA with
// testdata/alice.mobileconfig (go test -run Golden -update rewrites it).
func TestMobileconfigGolden(t *testing.T) {
	b, err := appleProfile(profileParams{User: "alice", Names: signpost.DefaultNames("home.arpa"), CA: []byte("fixed CA certificate bytes")})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "alice.mobileconfig")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("profile differs from %s:\n%s", path, b)
	}
	parsePlist(t, b)
}

func TestNameUUID(t *testing.T) {
	// RFC 9562 appendix A.4: the version 5 UUID of "www.example.com" in the DNS namespace.
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	if got, want := uuidString(nameUUID(dns, "www.example.com")), "2ED6657D-E927-568B-95E1-2665A8AEA6A2"; got != want {
		t.Errorf("nameUUID = %s, want %s", got, want)
	}
}

func TestReverseDNS(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"two labels", "home.arpa", "arpa.home"},
		{"one label", "lan", "lan"},
		{"trailing dot", "mail.example.org.", "org.example.mail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reverseDNS(tc.in); got != tc.want {
				t.Errorf("reverseDNS(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func keys(m map[string]map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// davLogin logs in to the real CardDAV and CalDAV handlers (over HTTP on loopback) with
// password, at the principal URLs of the profile's payloads, and finds the home sets; with
// tryWrong, a wrong password must fail (a failure the accounts' limiter counts).
func davLogin(t *testing.T, e *env, ps map[string]map[string]any, password string, tryWrong bool) {
	t.Helper()
	ctx := context.Background()
	ch, err := contacts.NewHandler(contacts.Options{Repos: e.repos, Accounts: e.accounts, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	kh, err := calendar.NewHandler(calendar.Options{Repos: e.repos, Accounts: e.accounts, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, typ, key string
		h              http.Handler
		home           func(hc webdav.HTTPClient, endpoint, principal string) (string, error)
		want           string
	}{
		{"carddav", "com.apple.carddav.account", "CardDAVPrincipalURL", ch, func(hc webdav.HTTPClient, endpoint, principal string) (string, error) {
			c, err := carddav.NewClient(hc, endpoint)
			if err != nil {
				return "", err
			}
			return c.FindAddressBookHomeSet(ctx, principal)
		}, "/alice/contacts/"},
		{"caldav", "com.apple.caldav.account", "CalDAVPrincipalURL", kh, func(hc webdav.HTTPClient, endpoint, principal string) (string, error) {
			c, err := caldav.NewClient(hc, endpoint)
			if err != nil {
				return "", err
			}
			return c.FindCalendarHomeSet(ctx, principal)
		}, "/alice/calendar/"},
	} {
		srv := httptest.NewServer(tc.h)
		u, err := url.Parse(ps[tc.typ][tc.key].(string))
		if err != nil {
			t.Fatal(err)
		}
		home, err := tc.home(webdav.HTTPClientWithBasicAuth(srv.Client(), "alice", password), srv.URL, u.Path)
		if err != nil || home != tc.want {
			t.Errorf("%s: home set at principal %s with the profile's password: %q %v, want %q", tc.name, u.Path, home, err, tc.want)
		}
		if tryWrong {
			if _, err := tc.home(webdav.HTTPClientWithBasicAuth(srv.Client(), "alice", password+"x"), srv.URL, u.Path); err == nil {
				t.Errorf("%s: a wrong password logs in", tc.name)
			}
		}
		srv.Close()
	}
}
