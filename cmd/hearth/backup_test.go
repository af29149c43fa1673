package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/hearth-home/hearth/calendar"
	"github.com/hearth-home/hearth/contacts"
	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

const backupPW = "backup test password"

// hearthData is a data directory opened the way the appliances open it.
type hearthData struct {
	repos    *store.Repos
	accounts *signpost.Accounts
}

func openHearthData(t *testing.T, data string) *hearthData {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), &store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return &hearthData{repos: repos, accounts: a}
}

func (d *hearthData) davServer(t *testing.T, kind string) *httptest.Server {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	var h http.Handler
	var err error
	if kind == "contacts" {
		h, err = contacts.NewHandler(contacts.Options{Repos: d.repos, Accounts: d.accounts, Logger: quiet})
	} else {
		h, err = calendar.NewHandler(calendar.Options{Repos: d.repos, Accounts: d.accounts, Logger: quiet})
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func runOK(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb); code != 0 {
		t.Fatalf("hearth %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

const testEvent = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:ev1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260301T100000Z\r\nDTEND:20260301T110000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// TestBackupRestoreEndToEnd: mail, a contact and an event written → "hearth backup add" and
// "backup run" → "hearth restore" into a fresh directory → the same mail, contact and event
// through go-imap's client and go-webdav's CardDAV and CalDAV clients on the restored data.
func TestBackupRestoreEndToEnd(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	remote := filepath.Join(t.TempDir(), "backups")
	runOK(t, backupPW+"\n", "user", "add", "-data", data, "alice")

	d := openHearthData(t, data)
	b, err := mail.NewBackend(d.repos, mail.Options{Accounts: d.accounts, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: bob@example.org\r\nTo: alice@home.arpa\r\nSubject: kept safe\r\nMessage-ID: <1@example.org>\r\n\r\nsee you\r\n"
	if _, err := b.Deliver(ctx, "alice", "INBOX", []byte(msg), []imap.Flag{imap.FlagFlagged}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	// A contact over CardDAV.
	srv := d.davServer(t, "contacts")
	hc := webdav.HTTPClientWithBasicAuth(srv.Client(), "alice", backupPW)
	dc, _ := webdav.NewClient(hc, srv.URL)
	if err := dc.Mkdir(ctx, "/alice/contacts/family/"); err != nil {
		t.Fatal(err)
	}
	cc, _ := carddav.NewClient(hc, srv.URL)
	card := vcard.Card{}
	card.SetValue(vcard.FieldVersion, "3.0")
	card.SetValue(vcard.FieldUID, "c1")
	card.SetValue(vcard.FieldFormattedName, "Carol Singer")
	card.SetName(&vcard.Name{FamilyName: "Singer", GivenName: "Carol"})
	if _, err := cc.PutAddressObject(ctx, "/alice/contacts/family/c1.vcf", card); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	// An event over CalDAV (MKCALENDAR by hand: go-webdav's client has none).
	csrv := d.davServer(t, "calendar")
	req, _ := http.NewRequest("MKCALENDAR", csrv.URL+"/alice/calendar/home/", nil)
	req.SetBasicAuth("alice", backupPW)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("MKCALENDAR: %v %v", resp, err)
	}
	resp.Body.Close()
	calc, _ := caldav.NewClient(webdav.HTTPClientWithBasicAuth(nil, "alice", backupPW), csrv.URL)
	ev, err := ical.NewDecoder(strings.NewReader(testEvent)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := calc.PutCalendarObject(ctx, "/alice/calendar/home/ev1.ics", ev); err != nil {
		t.Fatal(err)
	}
	csrv.Close()
	if err := d.repos.Close(); err != nil {
		t.Fatal(err)
	}

	runOK(t, "", "backup", "add", "-data", data, "-every", "1h", remote)
	out := runOK(t, "", "backup", "run", "-data", data)
	for _, repo := range []string{"alice/mail", "alice/contacts", "alice/calendar", "system/accounts"} {
		if !strings.Contains(out, repo) {
			t.Fatalf("backup run does not list %s:\n%s", repo, out)
		}
	}
	status := runOK(t, "", "backup", "status", "-data", data)
	if strings.Contains(status, "never") || !strings.Contains(status, "alice/mail") {
		t.Fatalf("backup status:\n%s", status)
	}

	fresh := filepath.Join(t.TempDir(), "restored")
	out = runOK(t, "", "restore", "-data", fresh, remote)
	if !strings.Contains(out, "restored system/accounts") {
		t.Fatalf("restore:\n%s", out)
	}
	var stderr bytes.Buffer
	if code := run(ctx, []string{"restore", "-data", fresh, remote}, strings.NewReader(""), &bytes.Buffer{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "already holds") {
		t.Fatalf("second restore into the same directory: exit %d, %s", code, stderr.String())
	}

	// The restored Hearth, through the real clients.
	r := openHearthData(t, fresh)
	t.Cleanup(func() { r.repos.Close() })
	rb, err := mail.NewBackend(r.repos, mail.Options{Accounts: r.accounts, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	isrv := mail.NewServer(rb, mail.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go isrv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		isrv.Shutdown(sctx)
	}()
	ic, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice", backupPW).Wait(); err != nil {
		t.Fatalf("IMAP login with the restored account: %v", err)
	}
	sel, err := ic.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("select: %+v, %v", sel, err)
	}
	msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, Flags: true,
		BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v, %v", msgs, err)
	}
	if msgs[0].Envelope.Subject != "kept safe" || !hasFlag(msgs[0].Flags, imap.FlagFlagged) {
		t.Fatalf("restored message: %+v flags %v", msgs[0].Envelope, msgs[0].Flags)
	}
	if body := msgs[0].FindBodySection(&imap.FetchItemBodySection{}); string(body) != msg {
		t.Fatalf("restored bytes %q", body)
	}

	rsrv := r.davServer(t, "contacts")
	rcc, _ := carddav.NewClient(webdav.HTTPClientWithBasicAuth(rsrv.Client(), "alice", backupPW), rsrv.URL)
	books, err := rcc.FindAddressBooks(ctx, "/alice/contacts/")
	if err != nil || len(books) != 1 || books[0].Path != "/alice/contacts/family/" {
		t.Fatalf("restored address books %+v, %v", books, err)
	}
	ao, err := rcc.GetAddressObject(ctx, "/alice/contacts/family/c1.vcf")
	if err != nil || ao.Card.Value(vcard.FieldFormattedName) != "Carol Singer" {
		t.Fatalf("restored contact %+v, %v", ao, err)
	}

	rcsrv := r.davServer(t, "calendar")
	rcal, _ := caldav.NewClient(webdav.HTTPClientWithBasicAuth(nil, "alice", backupPW), rcsrv.URL)
	cals, err := rcal.FindCalendars(ctx, "/alice/calendar/")
	if err != nil || len(cals) != 1 {
		t.Fatalf("restored calendars %+v, %v", cals, err)
	}
	objs, err := rcal.QueryCalendar(ctx, "/alice/calendar/home/", &caldav.CalendarQuery{
		CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
		CompFilter: caldav.CompFilter{Name: "VCALENDAR", Comps: []caldav.CompFilter{{Name: "VEVENT",
			Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}}},
	})
	if err != nil || len(objs) != 1 {
		t.Fatalf("restored events %+v, %v", objs, err)
	}
	if sum, _ := objs[0].Data.Events()[0].Props.Text(ical.PropSummary); sum != "Dentist" {
		t.Fatalf("restored event summary %q", sum)
	}
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

func TestBackupCommandErrors(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		text string
	}{
		{"no remote", []string{"backup", "add", "-data", data}, 2, "want 1 arguments"},
		{"bad scheme", []string{"backup", "add", "-data", data, "ftp://x/y"}, 1, "want an absolute directory"},
		{"bad pattern", []string{"backup", "add", "-data", data, "-repos", "alice", "/tmp/x"}, 1, "OWNER/NAME"},
		{"nothing to run", []string{"backup", "run", "-data", data}, 1, "no backup remotes"},
		{"replica without repos", []string{"replica", "add", "-data", data, "/tmp/x"}, 1, "no repositories"},
		{"restore from nowhere", []string{"restore", "-data", filepath.Join(data, "new"), filepath.Join(data, "missing")}, 1, "restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.text) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errb.String(), tc.code, tc.text)
			}
		})
	}
	if st := runOK(t, "", "backup", "status", "-data", data); !strings.Contains(st, "no backup remotes") {
		t.Fatalf("status of nothing: %q", st)
	}
	if _, err := os.Stat(filepath.Join(data, "backup.json")); err == nil {
		t.Fatal("a failed add wrote the configuration")
	}
}

// TestStartBackups: the loop "hearth up" starts pushes to a backup remote and syncs a
// replica configured with "hearth backup add" and "hearth replica add".
func TestStartBackups(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	other := filepath.Join(t.TempDir(), "other")
	remote := filepath.Join(t.TempDir(), "backups")
	d := openHearthData(t, data)
	s, err := d.repos.Open(ctx, "alice/contacts", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, store.Change{Ops: []store.Op{{Key: "objects/family/a.vcf", Value: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	d.repos.Close()
	runOK(t, "", "backup", "add", "-data", data, "-repos", "alice/*", remote)
	runOK(t, "", "replica", "add", "-data", data, "-repos", "alice/contacts", filepath.Join(other, "repos"))
	lctx, cancel := context.WithCancel(ctx)
	stop := startBackups(lctx, data, slog.New(slog.DiscardHandler))
	defer cancel()
	has := func(root string) bool {
		repos, err := store.OpenRepos(root, &store.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return false
		}
		defer repos.Close()
		s, err := repos.Open(ctx, "alice/contacts", false)
		if err != nil {
			return false
		}
		_, _, err = s.Get(ctx, "", "objects/family/a.vcf")
		return err == nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for !has(remote) || !has(filepath.Join(other, "repos")) {
		if time.Now().After(deadline) {
			t.Fatal("the loop did not push to the backup and the replica")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	status := runOK(t, "", "backup", "status", "-data", data)
	if !strings.Contains(status, "replica") || !strings.Contains(status, "alice/contacts") {
		t.Fatalf("status:\n%s", status)
	}
}
