package contacts

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/memstore"
	"github.com/hearth-home/hearth/store/storedav"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const pw = "correct horse battery"

func newServer(t *testing.T) (*httptest.Server, *signpost.Accounts) {
	t.Helper()
	ctx := context.Background()
	repos := memstore.NewRepos(nil)
	as, err := repos.Open(ctx, signpost.AccountsRepo, true)
	if err != nil {
		t.Fatal(err)
	}
	acct := signpost.NewAccounts(as, signpost.AccountsOptions{Logger: quiet, Limits: signpost.LimitOptions{FreeFailures: 1000, LockoutAfter: 2000}})
	for _, u := range []string{"alice", "bob"} {
		if err := acct.Add(ctx, u, pw); err != nil {
			t.Fatal(err)
		}
	}
	h, err := NewHandler(Options{Repos: repos, Accounts: acct, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, acct
}

func card(uid, fn, email string) vcard.Card {
	c := vcard.Card{}
	c.SetValue(vcard.FieldVersion, "3.0")
	c.SetValue(vcard.FieldUID, uid)
	c.SetValue(vcard.FieldFormattedName, fn)
	c.SetName(&vcard.Name{FamilyName: fn})
	if email != "" {
		c.SetValue(vcard.FieldEmail, email)
	}
	return c
}

// TestGoClient drives the server with go-webdav's CardDAV client, end to end.
func TestGoClient(t *testing.T) {
	srv, _ := newServer(t)
	ctx := context.Background()
	hc := webdav.HTTPClientWithBasicAuth(srv.Client(), "alice", pw)
	wk, err := webdav.NewClient(hc, srv.URL+"/.well-known/carddav")
	if err != nil {
		t.Fatal(err)
	}
	principal, err := wk.FindCurrentUserPrincipal(ctx)
	if err != nil || principal != "/alice/" {
		t.Fatalf("principal %q, %v", principal, err)
	}
	c, err := carddav.NewClient(hc, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	home, err := c.FindAddressBookHomeSet(ctx, principal)
	if err != nil || home != "/alice/contacts/" {
		t.Fatalf("home set %q, %v", home, err)
	}
	dc, _ := webdav.NewClient(hc, srv.URL)
	if err := dc.Mkdir(ctx, home+"family/"); err != nil {
		t.Fatal(err)
	}
	books, err := c.FindAddressBooks(ctx, home)
	if err != nil || len(books) != 1 || books[0].Path != "/alice/contacts/family/" {
		t.Fatalf("books %+v, %v", books, err)
	}
	book := books[0].Path
	people := []vcard.Card{card("u1", "Alice Liddell", "alice@example.org"), card("u2", "Bob Builder", "bob@example.org"), card("u3", "Carol Singer", "")}
	for i, p := range people {
		ao, err := c.PutAddressObject(ctx, book+p.Value(vcard.FieldUID)+".vcf", p)
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if ao.ETag == "" {
			t.Fatalf("put %d: no ETag", i)
		}
	}
	got, err := c.GetAddressObject(ctx, book+"u2.vcf")
	if err != nil || got.Card.Value(vcard.FieldFormattedName) != "Bob Builder" {
		t.Fatalf("get: %+v %v", got, err)
	}
	mg, err := c.MultiGetAddressBook(ctx, book, &carddav.AddressBookMultiGet{Paths: []string{book + "u1.vcf", book + "u3.vcf"},
		DataRequest: carddav.AddressDataRequest{AllProp: true}})
	if err != nil || len(mg) != 2 || mg[0].Card.Value(vcard.FieldFormattedName) != "Alice Liddell" {
		t.Fatalf("multiget: %+v %v", mg, err)
	}
	q, err := c.QueryAddressBook(ctx, book, &carddav.AddressBookQuery{
		DataRequest: carddav.AddressDataRequest{AllProp: true},
		PropFilters: []carddav.PropFilter{{Name: vcard.FieldEmail, TextMatches: []carddav.TextMatch{{Text: "bob@"}}}},
	})
	if err != nil || len(q) != 1 || q[0].Path != book+"u2.vcf" {
		t.Fatalf("query: %+v %v", q, err)
	}
	s0, err := c.SyncCollection(ctx, book, &carddav.SyncQuery{})
	if err != nil || len(s0.Updated) != 3 || s0.SyncToken == "" {
		t.Fatalf("sync: %+v %v", s0, err)
	}
	if _, err := c.PutAddressObject(ctx, book+"u3.vcf", card("u3", "Carol Singer-Songwriter", "")); err != nil {
		t.Fatal(err)
	}
	if err := dc.RemoveAll(ctx, book+"u1.vcf"); err != nil {
		t.Fatal(err)
	}
	s1, err := c.SyncCollection(ctx, book, &carddav.SyncQuery{SyncToken: s0.SyncToken})
	if err != nil || len(s1.Updated) != 1 || s1.Updated[0].Path != book+"u3.vcf" || len(s1.Deleted) != 1 || s1.Deleted[0] != book+"u1.vcf" {
		t.Fatalf("sync since: %+v %v", s1, err)
	}
	if _, err := c.GetAddressObject(ctx, book+"u1.vcf"); err == nil {
		t.Fatal("deleted object still there")
	}
	// Another user cannot read it.
	bc, _ := carddav.NewClient(webdav.HTTPClientWithBasicAuth(srv.Client(), "bob", pw), srv.URL)
	if _, err := bc.GetAddressObject(ctx, book+"u2.vcf"); err == nil {
		t.Fatal("bob read alice's card")
	}
}

func TestParse(t *testing.T) {
	good := "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:a\r\nFN:A\r\nEND:VCARD\r\n"
	cases := []struct {
		name string
		in   string
		bad  string
	}{
		{"ok", good, ""},
		{"ok 4.0", strings.Replace(good, "3.0", "4.0", 1), ""},
		{"empty", "", "empty"},
		{"garbage", "hello", "BEGIN"},
		{"no end", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:a\r\nFN:A\r\n", "END"},
		{"two cards", good + good, "more than one"},
		{"no uid", strings.Replace(good, "UID:a\r\n", "", 1), "UID"},
		{"no fn", strings.Replace(good, "FN:A\r\n", "", 1), "FN"},
		{"no version", strings.Replace(good, "VERSION:3.0\r\n", "", 1), "VERSION"},
		{"bad version", strings.Replace(good, "3.0", "9.9", 1), "VERSION"},
		{"not utf-8", strings.Replace(good, "FN:A", "FN:\xff", 1), "UTF-8"},
		{"calendar", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "BEGIN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in))
			if c.bad == "" && err != nil || c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)) {
				t.Fatalf("Parse: %v, want %q", err, c.bad)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add([]byte("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:a\r\nFN:A\r\nEND:VCARD\r\n"))
	f.Add([]byte("BEGIN:VCARD\nVERSION:4.0\nUID;X=\"q\":a\n FN:x\nEND:VCARD"))
	f.Add([]byte("BEGIN:VCARD\r\n"))
	k := NewKind()
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := k.Validate(data)
		if err != nil {
			var pe *storedav.PreconditionError
			if !errors.As(err, &pe) || pe.Name.Local != "valid-address-data" {
				t.Fatalf("error is not valid-address-data: %v", err)
			}
			return
		}
		if obj.UID == "" {
			t.Fatal("accepted without UID")
		}
	})
}

// TestMalformedPut checks the error body a client sees for a bad vCard.
func TestMalformedPut(t *testing.T) {
	srv, _ := newServer(t)
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth("alice", pw)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := do("MKCOL", "/alice/contacts/b/", ""); code != 201 {
		t.Fatal(code)
	}
	code, body := do("PUT", "/alice/contacts/b/x.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nEND:VCARD\r\n")
	if code != 403 || !strings.Contains(body, "valid-address-data") || !strings.Contains(body, "without UID") {
		t.Fatalf("%d %s", code, body)
	}
	if code, _ := do("GET", "/alice/contacts/b/x.vcf", ""); code != 404 {
		t.Fatalf("stored anyway: %d", code)
	}
}

// TestMultigetOtherUser checks that a multiget naming another user's card answers 403
// for that href and still serves the user's own.
func TestMultigetOtherUser(t *testing.T) {
	srv, _ := newServer(t)
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		hc := webdav.HTTPClientWithBasicAuth(srv.Client(), u, pw)
		dc, _ := webdav.NewClient(hc, srv.URL)
		if err := dc.Mkdir(ctx, "/"+u+"/contacts/b/"); err != nil {
			t.Fatal(err)
		}
		c, _ := carddav.NewClient(hc, srv.URL)
		if _, err := c.PutAddressObject(ctx, "/"+u+"/contacts/b/x.vcf", card("x-"+u, "X "+u, "")); err != nil {
			t.Fatal(err)
		}
	}
	body := `<c:addressbook-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><c:address-data/></d:prop>` +
		`<d:href>/bob/contacts/b/x.vcf</d:href><d:href>/alice/contacts/b/x.vcf</d:href></c:addressbook-multiget>`
	req, _ := http.NewRequest("REPORT", srv.URL+"/bob/contacts/b/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/xml")
	req.SetBasicAuth("bob", pw)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	s := string(b)
	if res.StatusCode != 207 || !strings.Contains(s, "FN:X bob") || strings.Contains(s, "FN:X alice") || !strings.Contains(s, "403") {
		t.Fatalf("%d %s", res.StatusCode, s)
	}
}
