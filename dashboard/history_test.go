package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"

	"github.com/hearth-home/hearth/contacts"
	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/store"
)

func card(uid, fn string) vcard.Card {
	c := vcard.Card{}
	c.SetValue(vcard.FieldVersion, "3.0")
	c.SetValue(vcard.FieldUID, uid)
	c.SetValue(vcard.FieldFormattedName, fn)
	c.SetName(&vcard.Name{FamilyName: fn})
	return c
}

// davEnv serves the contacts service (the real CardDAV handler) beside the dashboard, on
// the same repositories, and returns a CardDAV client of alice's and her book's path.
func davEnv(t *testing.T, e *env) (*carddav.Client, *webdav.Client, string) {
	t.Helper()
	h, err := contacts.NewHandler(contacts.Options{Repos: e.repos, Accounts: e.accounts, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	hc := webdav.HTTPClientWithBasicAuth(srv.Client(), "alice", alicePW)
	c, err := carddav.NewClient(hc, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := webdav.NewClient(hc, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.Mkdir(context.Background(), "/alice/contacts/family/"); err != nil {
		t.Fatal(err)
	}
	return c, dc, "/alice/contacts/family/"
}

var restoreFormRE = regexp.MustCompile(`name="commit" value="([0-9a-f]{40})"><input type="hidden" name="key" value="([^"]+)"`)

func TestContactHistoryAndRestore(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	cd, dc, book := davEnv(t, e)
	for _, p := range []vcard.Card{card("u1", "Alice Liddell"), card("u2", "Bob Builder")} {
		if _, err := cd.PutAddressObject(ctx, book+p.Value(vcard.FieldUID)+".vcf", p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cd.PutAddressObject(ctx, book+"u2.vcf", card("u2", "Bob The Builder")); err != nil {
		t.Fatal(err)
	}
	if err := dc.RemoveAll(ctx, book+"u1.vcf"); err != nil {
		t.Fatal(err)
	}

	c := e.client(t)
	c.login("alice", alicePW)
	_, body := c.get("/data")
	if !strings.Contains(body, `href="/history/contacts/family"`) {
		t.Fatalf("the data page does not list the address book:\n%s", body)
	}
	code, body := c.get("/history/contacts/family")
	if code != http.StatusOK {
		t.Fatalf("history: %d %s", code, body)
	}
	if n := strings.Count(body, "<tr><td>"); n != 4 {
		t.Errorf("history lists %d commits, want 4 (two puts, an edit, a delete)", n)
	}
	for _, want := range []string{"deleted Alice Liddell", "modified Bob The Builder", "added Bob Builder"} {
		if !strings.Contains(body, want) {
			t.Errorf("history lacks %q", want)
		}
	}
	m := restoreFormRE.FindStringSubmatch(body)
	if m == nil || m[2] != "objects/family/u1.vcf" {
		t.Fatalf("no restore button for the deleted contact: %v", m)
	}
	// The diff view of the edit shows the changed line.
	edit := regexp.MustCompile(`href="/history/contacts/family/([0-9a-f]{40})"`).FindAllStringSubmatch(body, -1)
	if len(edit) != 4 {
		t.Fatalf("%d diff links", len(edit))
	}
	_, diff := c.get("/history/contacts/family/" + edit[1][1])
	if !strings.Contains(diff, `<span class="del">-FN:Bob Builder</span>`) || !strings.Contains(diff, `<span class="add">+FN:Bob The Builder</span>`) {
		t.Fatalf("the diff view lacks the FN change:\n%s", diff)
	}

	// Restore from the dashboard, then CardDAV sees it again (also in the book's listing,
	// which the service caches: it is read here first).
	if before, err := cd.QueryAddressBook(ctx, book, &carddav.AddressBookQuery{DataRequest: carddav.AddressDataRequest{AllProp: true}}); err != nil || len(before) != 1 {
		t.Fatalf("query before restore: %d cards, %v", len(before), err)
	}
	code, body = c.post("/restore", url.Values{"service": {"contacts"}, "set": {"family"}, "commit": {m[1]}, "key": {m[2]}})
	if code != http.StatusOK || !strings.Contains(body, "Restored contact Alice Liddell") {
		t.Fatalf("restore: %d %s", code, body)
	}
	got, err := cd.GetAddressObject(ctx, book+"u1.vcf")
	if err != nil || got.Card.Value(vcard.FieldFormattedName) != "Alice Liddell" {
		t.Fatalf("after restore: %+v %v", got, err)
	}
	all, err := cd.QueryAddressBook(ctx, book, &carddav.AddressBookQuery{DataRequest: carddav.AddressDataRequest{AllProp: true}})
	if err != nil || len(all) != 2 {
		t.Fatalf("query after restore: %d cards, %v", len(all), err)
	}
	// Its UID index came back too: a new resource with the same UID is refused.
	if _, err := cd.PutAddressObject(ctx, book+"other.vcf", card("u1", "Impostor")); err == nil {
		t.Error("a second contact with UID u1 was accepted: the UID index was not restored")
	}
	// A second restore of the same deletion is refused.
	c.get("/data")
	if code, _ := c.post("/restore", url.Values{"service": {"contacts"}, "set": {"family"}, "commit": {m[1]}, "key": {m[2]}}); code != http.StatusConflict {
		t.Fatalf("restore twice: %d, want 409", code)
	}
	// Restoring what a commit did not delete is refused.
	if code, _ := c.post("/restore", url.Values{"service": {"contacts"}, "set": {"family"}, "commit": {edit[1][1]}, "key": {"objects/family/u2.vcf"}}); code != http.StatusConflict {
		t.Fatalf("restore of a modified contact: %d, want 409", code)
	}
	// Malformed requests.
	for name, form := range map[string]url.Values{
		"bad service":     {"service": {"store"}, "set": {"family"}, "commit": {m[1]}, "key": {m[2]}},
		"key outside set": {"service": {"contacts"}, "set": {"family"}, "commit": {m[1]}, "key": {"objects/work/u1.vcf"}},
		"bad commit":      {"service": {"contacts"}, "set": {"family"}, "commit": {"HEAD"}, "key": {m[2]}},
		"dot set":         {"service": {"contacts"}, "set": {".."}, "commit": {m[1]}, "key": {m[2]}},
	} {
		if code, _ := c.post("/restore", form); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}
	// Another user sees none of it.
	a := e.client(t)
	a.login("admin", adminPW)
	if code, _ := a.get("/history/contacts/family"); code != http.StatusNotFound {
		t.Fatalf("admin sees alice's history: %d", code)
	}
}

// TestRestoreDeletedBook: a contact whose address book was deleted comes back with it.
func TestRestoreDeletedBook(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	cd, dc, book := davEnv(t, e)
	if _, err := cd.PutAddressObject(ctx, book+"u1.vcf", card("u1", "Alice Liddell")); err != nil {
		t.Fatal(err)
	}
	if err := dc.RemoveAll(ctx, book); err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	c.login("alice", alicePW)
	if _, body := c.get("/data"); !strings.Contains(body, `<a href="/history/contacts/family">family</a> (deleted)`) {
		t.Fatalf("the data page does not list the deleted book:\n%s", body)
	}
	if _, body := c.get("/history/contacts/family"); !strings.Contains(body, "deleted Alice Liddell") {
		t.Fatalf("the deleted book's history:\n%s", body)
	}
	st, err := e.repos.Open(ctx, "alice/contacts", false)
	if err != nil {
		t.Fatal(err)
	}
	log, err := st.Log(ctx, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreObject(ctx, st, "family", "objects/family/u1.vcf", log[0].ID, signature("alice")); err != nil {
		t.Fatal(err)
	}
	got, err := cd.GetAddressObject(ctx, book+"u1.vcf")
	if err != nil || got.Card.Value(vcard.FieldFormattedName) != "Alice Liddell" {
		t.Fatalf("after restore: %+v %v", got, err)
	}
	if _, body := c.get("/data"); strings.Contains(body, "(deleted)") {
		t.Fatal("the restored book is still listed as deleted")
	}
}

func TestRestoreMessage(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	b, err := mail.NewBackend(e.repos, mail.Options{Accounts: e.accounts, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	msgs := []string{
		"From: a@example.org\r\nSubject: keep me\r\n\r\nbody 1\r\n",
		"From: b@example.org\r\nSubject: lost and found\r\n\r\nbody 2\r\n",
	}
	var uids []imap.UID
	for _, m := range msgs {
		uid, err := b.Deliver(ctx, "alice", "INBOX", []byte(m), []imap.Flag{imap.FlagSeen, "$Important"}, date)
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	st, err := e.repos.Open(ctx, "alice/mail", false)
	if err != nil {
		t.Fatal(err)
	}
	id := inboxID(t, st)
	// Expunge the second message as the mail service does: its index line and its blob go
	// in one commit.
	del := expunge(t, st, id, uids[1])

	c := e.client(t)
	c.login("alice", alicePW)
	_, body := c.get("/data")
	if !strings.Contains(body, `href="/history/mail/`+id+`">INBOX</a>`) {
		t.Fatalf("the data page does not list INBOX:\n%s", body)
	}
	_, body = c.get("/history/mail/" + id)
	if !strings.Contains(body, "deleted lost and found, from b@example.org") {
		t.Fatalf("history lacks the deleted message:\n%s", body)
	}
	m := restoreFormRE.FindStringSubmatch(body)
	if m == nil || m[1] != string(del) {
		t.Fatalf("restore form %v, want commit %s", m, del)
	}
	// The commit view shows the deleted message's text.
	if _, view := c.get("/history/mail/" + id + "/" + string(del)); !strings.Contains(view, `<span class="del">-body 2</span>`) || !strings.Contains(view, "Restore this message") {
		t.Fatalf("commit view:\n%s", view)
	}
	code, body := c.post("/restore", url.Values{"service": {"mail"}, "set": {id}, "commit": {m[1]}, "key": {m[2]}})
	if code != http.StatusOK || !strings.Contains(body, "Restored message lost and found") {
		t.Fatalf("restore: %d %s", code, body)
	}
	// The running backend picks it up through the store's watch, and a new one reads it
	// from the index: a new UID, the old flags and internal date, the same bytes.
	fresh, err := mail.NewBackend(e.repos, mail.Options{Accounts: e.accounts, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for name, be := range map[string]*mail.Backend{"fresh": fresh, "running": b} {
		var got []mail.Message
		deadline := time.Now().Add(10 * time.Second)
		for {
			got = nil
			err := be.Messages(ctx, "alice", "INBOX", func(m mail.Message) error { got = append(got, m); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(got) != 2 {
			t.Fatalf("%s backend: %d messages after restore, want 2", name, len(got))
		}
		r := got[1]
		if r.UID <= uids[1] {
			t.Errorf("%s backend: restored UID %d, want above the expunged %d", name, r.UID, uids[1])
		}
		if !r.Date.Equal(date) || !slices.Contains(r.Flags, imap.FlagSeen) || !slices.Contains(r.Flags, "$Important") {
			t.Errorf("%s backend: restored date %v flags %v", name, r.Date, r.Flags)
		}
		raw, err := r.Body(ctx)
		if err != nil || string(raw) != msgs[1] {
			t.Errorf("%s backend: restored body %q %v", name, raw, err)
		}
	}
	// Delivery after the restore gets a UID above it (UIDNEXT advanced).
	uid, err := b.Deliver(ctx, "alice", "INBOX", []byte("Subject: later\r\n\r\nx\r\n"), nil, time.Time{})
	if err != nil || uid <= uids[1]+1 {
		t.Fatalf("next delivery: uid %d %v", uid, err)
	}
	// A second restore finds it there.
	if _, err := RestoreMessage(ctx, st, id, m[2], del, signature("alice")); !errors.Is(err, ErrExists) {
		t.Fatalf("restore twice: %v, want ErrExists", err)
	}
	// A flag change (the index alone) is listed as such.
	chunk, ce, err := st.Get(ctx, "", "index/"+id+"/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, store.Change{Message: "store flags", Ops: []store.Op{{Key: "index/" + id + "/0", Value: append(chunk[:len(chunk)-1:len(chunk)-1], " \\Flagged\n"...), IfMatch: ce.Version}}}); err != nil {
		t.Fatal(err)
	}
	if _, body := c.get("/history/mail/" + id); !strings.Contains(body, "modified flags changed") {
		t.Fatalf("history lacks the flag change:\n%s", body)
	}
	// With the mailbox's metadata gone too, restore brings the mailbox back, and finds
	// the message there already.
	if _, err := st.Commit(ctx, store.Change{Message: "delete mailbox", Ops: []store.Op{{Key: "meta/" + id, Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	c.get("/data")
	if code, body := c.post("/restore", url.Values{"service": {"mail"}, "set": {id}, "commit": {m[1]}, "key": {m[2]}}); code != http.StatusConflict || !strings.Contains(body, "already there") {
		t.Fatalf("restore into a deleted mailbox holding the message: %d %s", code, body)
	}
}

// TestRestoreMessageOfDeletedMailbox: restoring a message of a mailbox deleted since
// brings the mailbox back (same id and name), which the mail backend then serves; when a
// new mailbox has taken the name, the restore is refused.
func TestRestoreMessageOfDeletedMailbox(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Options{})
	b, err := mail.NewBackend(e.repos, mail.Options{Accounts: e.accounts, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateMailbox(ctx, "alice", "Work", ""); err != nil {
		t.Fatal(err)
	}
	body := "From: a@example.org\r\nSubject: the plan\r\n\r\nbody\r\n"
	if _, err := b.Deliver(ctx, "alice", "Work", []byte(body), []imap.Flag{imap.FlagFlagged}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	st, err := e.repos.Open(ctx, "alice/mail", false)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.List(ctx, "", "msg")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("messages: %v %v", msgs, err)
	}
	key := msgs[0].Key
	id := strings.Split(key, "/")[1]
	if err := b.DeleteMailbox(ctx, "alice", "Work"); err != nil {
		t.Fatal(err)
	}
	log, err := st.Log(ctx, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	del := log[0].ID

	for _, tc := range []struct {
		name    string
		prepare func()
		wantErr error
	}{
		{"name taken", func() {
			if err := b.CreateMailbox(ctx, "alice", "Work", ""); err != nil {
				t.Fatal(err)
			}
		}, ErrExists},
		{"name free", func() {
			if err := b.DeleteMailbox(ctx, "alice", "Work"); err != nil {
				t.Fatal(err)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prepare()
			_, err := RestoreMessage(ctx, st, id, key, del, signature("alice"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("restore: %v, want %v", err, tc.wantErr)
			}
		})
	}
	// The mailbox is back with the message, as the running backend sees it.
	var got []mail.Message
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got = nil
		err := b.Messages(ctx, "alice", "Work", func(m mail.Message) error { got = append(got, m); return nil })
		if (err == nil && len(got) == 1) || time.Now().After(deadline) {
			break
		}
	}
	if len(got) != 1 || !slices.Contains(got[0].Flags, imap.FlagFlagged) {
		t.Fatalf("Work after the restore: %+v", got)
	}
	if raw, err := got[0].Body(ctx); err != nil || string(raw) != body {
		t.Fatalf("restored body %q %v", raw, err)
	}
}

// inboxID returns the mailbox id of INBOX.
func inboxID(t *testing.T, st store.Store) string {
	t.Helper()
	ctx := context.Background()
	metas, err := st.List(ctx, "", "meta")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metas {
		v, _, err := st.Get(ctx, "", m.Key)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(v), `"name":"INBOX"`) {
			return strings.TrimPrefix(m.Key, "meta/")
		}
	}
	t.Fatal("no INBOX")
	return ""
}

// expunge removes a message's index line and blob in one commit and returns it.
func expunge(t *testing.T, st store.Store, id string, uid imap.UID) store.Hash {
	t.Helper()
	ctx := context.Background()
	chunkKey := "index/" + id + "/0"
	chunk, e, err := st.Get(ctx, "", chunkKey)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.SplitAfter(string(chunk), "\n") {
		if !strings.HasPrefix(l, uidString(uid)+" ") {
			kept = append(kept, l)
		}
	}
	c, err := st.Commit(ctx, store.Change{Message: "expunge", Ops: []store.Op{
		{Key: chunkKey, Value: []byte(strings.Join(kept, "")), IfMatch: e.Version},
		{Key: "msg/" + id + "/0/" + uidString(uid), Delete: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func uidString(u imap.UID) string { return itoa(int(u)) }

// TestHistoryPages: a calendar with more changes than a page lists is paginated, each
// commit on exactly one page, newest first.
func TestHistoryPages(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	st, err := e.repos.Open(ctx, "alice/calendar", true)
	if err != nil {
		t.Fatal(err)
	}
	const n = HistoryPageSize + 7
	for i := 0; i < n; i++ {
		ops := []store.Op{{Key: "objects/home/e" + itoa(i%5) + ".ics", Value: []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e" + itoa(i%5) + "\r\nSUMMARY:Event " + itoa(i) + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")}}
		if i == 0 {
			ops = append(ops, store.Op{Key: "collections/home.json", Value: []byte(`{"displayname":"Home","created":"2026-01-01T00:00:00Z"}`)})
		}
		// Commits to another calendar in between are not listed.
		ops2 := []store.Op{{Key: "objects/work/w.ics", Value: []byte("SUMMARY:w" + itoa(i) + "\r\n")}}
		for _, o := range [][]store.Op{ops, ops2} {
			if _, err := st.Commit(ctx, store.Change{Message: "put", Ops: o}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := e.client(t)
	c.login("alice", alicePW)
	_, body := c.get("/data")
	if !strings.Contains(body, `href="/history/calendar/home">Home (home)</a>`) {
		t.Fatalf("data page:\n%s", body)
	}
	eventRE := regexp.MustCompile(`(?:added|modified) Event (\d+)`)
	var seen []string
	path := "/history/calendar/home"
	for page := 0; page < 5 && path != ""; page++ {
		code, body := c.get(path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		for _, m := range eventRE.FindAllStringSubmatch(body, -1) {
			seen = append(seen, m[1])
		}
		path = ""
		if m := regexp.MustCompile(`id="older" href="([^"]+)"`).FindStringSubmatch(body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(seen) != n {
		t.Fatalf("%d events over the pages, want %d: %v", len(seen), n, seen)
	}
	for i, s := range seen {
		if s != itoa(n-1-i) {
			t.Fatalf("event %d is %s, want %d: %v", i, s, n-1-i, seen)
		}
	}
	for _, p := range []string{"/history/calendar/home?from=zz", "/history/nope/home", "/history/calendar/..", "/history/mail/XYZ"} {
		if code, _ := c.get(p); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, code)
		}
	}
}
