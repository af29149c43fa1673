package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/mail/migrate"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
)

// mailData makes a data directory with user alice.
func mailData(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, benchIMAPPassword+"-alice\n", "user", "add", "-data", data, "alice"); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	return data
}

// exported reads a Maildir by mailbox and body.
type exportedMsg struct {
	flags string
	date  time.Time
}

func readExport(t *testing.T, dir string) map[string]map[string]exportedMsg {
	t.Helper()
	out := map[string]map[string]exportedMsg{}
	err := migrate.ReadMaildir(dir, 0, func(m *migrate.Message) error {
		if out[m.Mailbox] == nil {
			out[m.Mailbox] = map[string]exportedMsg{}
		}
		out[m.Mailbox][string(m.Body)] = exportedMsg{flagString(m.Flags), m.Date}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func flagString(flags []imap.Flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = string(f)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

func TestMailImportExportMbox(t *testing.T) {
	data := mailData(t)
	dir := t.TempDir()
	mbox := "From alice@example.org Mon Jan  2 15:04:05 2006\n" +
		"From: a@example.org\nSubject: one\n\nfirst\n\n" +
		"From bob@example.org Tue Feb  3 10:00:00 2009\n" +
		"From: b@example.org\nSubject: two\nStatus: RO\nX-Status: AF\n\n>From the body, quoted\nend\n\n" +
		"From carol@example.org Wed Mar  4 11:12:13 2015\n" +
		"From: c@example.org\nSubject: three\n\nthird\n"
	path := filepath.Join(dir, "in.mbox")
	os.WriteFile(path, []byte(mbox), 0o600)
	code, stdout, stderr := runCmd(t, "", "mail", "import", "-data", data, "alice", path)
	if code != 0 || !strings.Contains(stdout, "imported 3 messages") {
		t.Fatalf("import: %d %q %q", code, stdout, stderr)
	}
	// An mbox can go into a mailbox of its own, which is created.
	if code, stdout, stderr := runCmd(t, "", "mail", "import", "-data", data, "-mailbox", "Lists/old", "alice", path); code != 0 {
		t.Fatalf("import -mailbox: %d %q %q", code, stdout, stderr)
	}
	out := filepath.Join(dir, "out")
	if code, stdout, stderr := runCmd(t, "", "mail", "export", "-data", data, "alice", out); code != 0 || !strings.Contains(stdout, "exported 6 messages") {
		t.Fatalf("export: %d %q %q", code, stdout, stderr)
	}
	got := readExport(t, out)
	want := map[string]exportedMsg{
		"From: a@example.org\nSubject: one\n\nfirst\n":                                                {"", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		"From: b@example.org\nSubject: two\nStatus: RO\nX-Status: AF\n\nFrom the body, quoted\nend\n": {`\Answered \Flagged \Seen`, time.Date(2009, 2, 3, 10, 0, 0, 0, time.UTC)},
		"From: c@example.org\nSubject: three\n\nthird\n":                                              {"", time.Date(2015, 3, 4, 11, 12, 13, 0, time.UTC)},
	}
	for _, box := range []string{"INBOX", "Lists/old"} {
		if len(got[box]) != len(want) {
			t.Fatalf("%s: %d messages exported, want %d: %v", box, len(got[box]), len(want), got[box])
		}
		for body, w := range want {
			g, ok := got[box][body]
			if !ok {
				t.Errorf("%s: message %q not exported byte for byte", box, body)
				continue
			}
			if g.flags != w.flags || !g.date.Equal(w.date) {
				t.Errorf("%s: %q: flags %q date %v, want %q %v", box, body[:20], g.flags, g.date, w.flags, w.date)
			}
		}
	}
	for _, box := range []string{"Sent", "Drafts", "Trash"} {
		if _, err := os.Stat(filepath.Join(out, "."+box, "cur")); err != nil {
			t.Errorf("empty mailbox %s not exported: %v", box, err)
		}
	}
}

// writeMaildirFile puts a message into a Maildir by hand, with its mtime.
func writeMaildirFile(t *testing.T, dir, sub, name, body string, mtime time.Time) {
	t.Helper()
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, s), 0o700)
	}
	p := filepath.Join(dir, sub, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestMailImportExportMaildir(t *testing.T) {
	data := mailData(t)
	src := filepath.Join(t.TempDir(), "Maildir")
	base := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	type file struct {
		box, dir, sub, name, flags string
	}
	files := []file{
		{"INBOX", "", "cur", "1000.A.host:2,S", `\Seen`},
		{"INBOX", "", "cur", "1001.B.host,S=99:2,FRS", `\Answered \Flagged \Seen`},
		{"INBOX", "", "new", "1002.C.host", ``},
		{"INBOX", "", "cur", "1003.D.host:2,DT", `\Deleted \Draft`},
		{"Sent", ".Sent", "cur", "1004.E.host:2,RS", `\Answered \Seen`},
		{"Archive/2024", ".Archive.2024", "cur", "1005.F.host:2,FS", `\Flagged \Seen`},
		{"Archive/2024", ".Archive.2024", "cur", "1006.G.host:2,", ``},
	}
	want := map[string]map[string]exportedMsg{}
	for i, f := range files {
		body := "From: x@example.org\nSubject: file " + f.name + "\n\nline one\n\nline three of " + f.box + "\n"
		date := base.Add(time.Duration(i) * 24 * time.Hour)
		writeMaildirFile(t, filepath.Join(src, f.dir), f.sub, f.name, body, date)
		if want[f.box] == nil {
			want[f.box] = map[string]exportedMsg{}
		}
		want[f.box][body] = exportedMsg{f.flags, date}
	}
	code, stdout, stderr := runCmd(t, "", "mail", "import", "-data", data, "alice", src)
	if code != 0 || !strings.Contains(stdout, "imported 7 messages into 3 mailboxes") {
		t.Fatalf("import: %d %q %q", code, stdout, stderr)
	}
	out := filepath.Join(t.TempDir(), "out")
	if code, stdout, stderr := runCmd(t, "", "mail", "export", "-data", data, "alice", out); code != 0 {
		t.Fatalf("export: %d %q %q", code, stdout, stderr)
	}
	got := readExport(t, out)
	for box, msgs := range want {
		if len(got[box]) != len(msgs) {
			t.Errorf("%s: %d messages, want %d", box, len(got[box]), len(msgs))
		}
		for body, w := range msgs {
			g, ok := got[box][body]
			if !ok {
				t.Errorf("%s: message not exported byte for byte:\n%s", box, body)
			} else if g.flags != w.flags || !g.date.Equal(w.date) {
				t.Errorf("%s: flags %q date %v, want %q %v", box, g.flags, g.date, w.flags, w.date)
			}
		}
	}
	for _, sub := range []string{".Sent", ".Archive.2024"} {
		if _, err := os.Stat(filepath.Join(out, sub, "maildirfolder")); err != nil {
			t.Errorf("Maildir++ folder %s: %v", sub, err)
		}
	}
}

func TestMailRestore(t *testing.T) {
	data := mailData(t)
	dir := t.TempDir()
	var mbox bytes.Buffer
	for i := range 3 {
		migrate.WriteMbox(&mbox, &migrate.Message{Body: []byte("Subject: m" + string(rune('0'+i)) + "\n\nbody\n"), Date: time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC)})
	}
	path := filepath.Join(dir, "in.mbox")
	os.WriteFile(path, mbox.Bytes(), 0o600)
	if code, _, stderr := runCmd(t, "", "mail", "import", "-data", data, "alice", path); code != 0 {
		t.Fatalf("import: %s", stderr)
	}
	time.Sleep(1100 * time.Millisecond) // commit times have one-second precision
	since := time.Now()
	time.Sleep(1100 * time.Millisecond)

	addr, stop := serveIMAP(t, data)
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("alice", benchIMAPPassword+"-alice").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var two imap.SeqSet
	two.AddRange(1, 2)
	if err := c.Store(two, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c.Close()
	stop()

	code, stdout, stderr := runCmd(t, "", "mail", "restore", "-data", data, "alice", "INBOX", "--since", since.Format(time.RFC3339))
	if code != 0 || !strings.Contains(stdout, "restored 2 messages") {
		t.Fatalf("restore: %d %q %q", code, stdout, stderr)
	}
	out := filepath.Join(dir, "out")
	if code, _, stderr := runCmd(t, "", "mail", "export", "-data", data, "alice", out); code != 0 {
		t.Fatalf("export: %s", stderr)
	}
	if n := len(readExport(t, out)["INBOX"]); n != 3 {
		t.Fatalf("INBOX has %d messages after restore, want 3", n)
	}
}

func TestMailCommandErrors(t *testing.T) {
	data := mailData(t)
	dir := t.TempDir()
	notMbox := filepath.Join(dir, "notmbox")
	os.WriteFile(notMbox, []byte("Subject: no From line\n\nbody\n"), 0o600)
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "something"), 0o700)
	tests := []struct {
		name string
		args []string
		code int
		text string
	}{
		{"import unknown user", []string{"mail", "import", "-data", data, "bob", notMbox}, 1, "no user"},
		{"import bad user name", []string{"mail", "import", "-data", data, "Bob!", notMbox}, 1, "name"},
		{"import missing path", []string{"mail", "import", "-data", data, "alice", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"import not an mbox", []string{"mail", "import", "-data", data, "alice", notMbox}, 1, "bad format"},
		{"import one argument", []string{"mail", "import", "-data", data, "alice"}, 2, "want 2 arguments"},
		{"export into non-empty dir", []string{"mail", "export", "-data", data, "alice", full}, 1, "not empty"},
		{"export missing data", []string{"mail", "export", "-data", filepath.Join(dir, "nodata"), "alice", filepath.Join(dir, "o")}, 1, "data directory"},
		{"restore without since", []string{"mail", "restore", "-data", data, "alice", "INBOX"}, 2, "required"},
		{"restore bad since", []string{"mail", "restore", "-data", data, "alice", "INBOX", "-since", "yesterday-ish"}, 2, "not a time"},
		{"restore unknown mailbox", []string{"mail", "restore", "-data", data, "alice", "Nope", "-since", "1h"}, 1, "no such mailbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.text) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.text)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Time
		err      bool
	}{
		{"rfc3339", "2026-11-01T10:00:00Z", time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), false},
		{"duration", "90m", now.Add(-90 * time.Minute), false},
		{"date", "2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.Local), false},
		{"empty", "", time.Time{}, true},
		{"negative duration", "-1h", time.Time{}, true},
		{"garbage", "last tuesday", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSince(tt.in, now)
			if (err != nil) != tt.err || (!tt.err && !got.Equal(tt.want)) {
				t.Fatalf("= %v %v, want %v (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
}

// countDeliveries counts the commits of user's mail repository that delivered messages.
func countDeliveries(t *testing.T, st store.Store) int {
	t.Helper()
	log, err := st.Log(context.Background(), store.DefaultBranch, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range log {
		if strings.HasPrefix(c.Message, "deliver") {
			n++
		}
	}
	return n
}

// TestMailImportBatched imports an mbox of more messages than one batch holds into
// INBOX and a Maildir with two mailboxes, one of them over a batch too, checks that it
// took one commit per batch, and reads every message back with the Go IMAP client.
func TestMailImportBatched(t *testing.T) {
	data := mailData(t)
	dir := t.TempDir()
	base := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	type wantMsg struct {
		flags string
		date  time.Time
	}
	want := map[string]map[string]wantMsg{"INBOX": {}, "Lists/go": {}}

	const nMbox = mail.MaxBatchMessages + 250
	var mbox bytes.Buffer
	for i := range nMbox {
		status, flags := "", ""
		if i%4 == 0 {
			status, flags = "Status: RO\n", `\Seen` // the flags of an mbox are in its headers
		}
		m := &migrate.Message{Date: base.Add(time.Duration(i) * time.Minute),
			Body: []byte(fmt.Sprintf("From: m%d@example.org\nSubject: mbox %d\n%s\n%s\n", i, i, status, strings.Repeat("text ", i%50)))}
		if err := migrate.WriteMbox(&mbox, m); err != nil {
			t.Fatal(err)
		}
		want["INBOX"][string(migrate.ToCRLF(m.Body))] = wantMsg{flags, m.Date}
	}
	path := filepath.Join(dir, "big.mbox")
	if err := os.WriteFile(path, mbox.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "", "mail", "import", "-data", data, "alice", path)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("imported %d messages into 1 mailboxes", nMbox)) {
		t.Fatalf("import mbox: %d %q %q", code, stdout, stderr)
	}

	src := filepath.Join(dir, "Maildir")
	boxes := []struct {
		box, sub string
		n        int
	}{{"INBOX", "", 5}, {"Lists/go", ".Lists.go", mail.MaxBatchMessages + 10}}
	for _, b := range boxes {
		for i := range b.n {
			body := fmt.Sprintf("From: x@example.org\nSubject: %s %d\n\nmaildir body\n", b.box, i)
			name, flags := fmt.Sprintf("%d.M%d.host:2,", i, i), ""
			if i%3 == 0 {
				name, flags = name+"FS", `\Flagged \Seen`
			}
			date := base.Add(time.Duration(i) * time.Hour)
			writeMaildirFile(t, filepath.Join(src, b.sub), "cur", name, body, date)
			want[b.box][string(migrate.ToCRLF([]byte(body)))] = wantMsg{flags, date}
		}
	}
	code, stdout, stderr = runCmd(t, "", "mail", "import", "-data", data, "alice", src)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("imported %d messages into 2 mailboxes", 5+mail.MaxBatchMessages+10)) {
		t.Fatalf("import Maildir: %d %q %q", code, stdout, stderr)
	}

	// One commit per batch: 2 for the mbox, 1 for the Maildir's INBOX, 2 for Lists/go.
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := repos.Open(context.Background(), mail.RepoName("alice"), false)
	if err != nil {
		t.Fatal(err)
	}
	if n := countDeliveries(t, st); n != 5 {
		t.Errorf("%d delivery commits, want 5", n)
	}
	repos.Close()

	addr, _ := serveIMAP(t, data)
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", benchIMAPPassword+"-alice").Wait(); err != nil {
		t.Fatal(err)
	}
	for box, msgs := range want {
		sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if int(sel.NumMessages) != len(msgs) {
			t.Errorf("%s: %d messages, want %d", box, sel.NumMessages, len(msgs))
		}
		got, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range got {
			var body string
			for _, b := range m.BodySection {
				body = string(b.Bytes)
			}
			w, ok := msgs[body]
			if !ok || seen[body] {
				t.Errorf("%s UID %d: unexpected or repeated message %q", box, m.UID, body)
				continue
			}
			seen[body] = true
			if g := flagString(m.Flags); g != w.flags || !m.InternalDate.Equal(w.date) {
				t.Errorf("%s UID %d: flags %q date %v, want %q %v", box, m.UID, g, m.InternalDate, w.flags, w.date)
			}
		}
		if len(seen) != len(msgs) {
			t.Errorf("%s: fetched %d of %d messages", box, len(seen), len(msgs))
		}
	}
	c.Logout().Wait()
}

// TestMailImportBatchLimits: batches end at the message and byte limits and at a
// mailbox change; a refused message fails its whole batch, and the error says which
// message it was and how many were imported before.
func TestMailImportBatchLimits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	msg := func(i int) *migrate.Message {
		return &migrate.Message{Date: time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC),
			Body: []byte(fmt.Sprintf("Subject: m%03d\n\n%s\n", i, strings.Repeat("x", 80)))} // 100 bytes with CRLF
	}
	var mbox bytes.Buffer
	for i := range 10 {
		migrate.WriteMbox(&mbox, msg(i))
	}
	path := filepath.Join(dir, "ten.mbox")
	if err := os.WriteFile(path, mbox.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		maxMsgs  int
		maxBytes int
		commits  int
	}{
		{"one batch", 1000, 1 << 20, 1},
		{"by count", 3, 1 << 20, 4},
		{"by bytes", 1000, 250, 5},
		{"one per message", 1, 1 << 20, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repos := memstore.NewRepos(nil)
			b, err := mail.NewBackend(repos, mail.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			n, boxes, err := importMailBatched(ctx, b, "alice", path, "INBOX", tc.maxMsgs, tc.maxBytes)
			if err != nil || n != 10 || boxes != 1 {
				t.Fatalf("import: %d %d %v", n, boxes, err)
			}
			st, _ := repos.Open(ctx, mail.RepoName("alice"), false)
			if got := countDeliveries(t, st); got != tc.commits {
				t.Errorf("%d delivery commits, want %d", got, tc.commits)
			}
			var subjects []string
			b.Messages(ctx, "alice", "INBOX", func(m mail.Message) error {
				body, _ := m.Body(ctx)
				subjects = append(subjects, string(body[:13]))
				return nil
			})
			if len(subjects) != 10 || subjects[0] != "Subject: m000" || subjects[9] != "Subject: m009" {
				t.Errorf("stored in wrong order or incomplete: %q", subjects)
			}
		})
	}
	if _, _, err := importMailBatched(ctx, nil, "alice", path, "INBOX", 0, 100); !errors.Is(err, mail.ErrInvalid) {
		t.Errorf("zero batch size: %v", err)
	}

	// Message 6 fits the reader's limit with LF endings but not the append limit once
	// its lines end in CRLF: its batch (4-6) is refused as a whole.
	mbox.Reset()
	for i := range 8 {
		m := msg(i)
		if i == 5 {
			m.Body = []byte("Subject: long\n\n" + strings.Repeat("line\n", 380))
		}
		migrate.WriteMbox(&mbox, m)
	}
	os.WriteFile(path, mbox.Bytes(), 0o600)
	repos := memstore.NewRepos(nil)
	b, err := mail.NewBackend(repos, mail.Options{AppendLimit: 2000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n, _, err := importMailBatched(ctx, b, "alice", path, "INBOX", 3, 1<<20)
	if !errors.Is(err, mail.ErrTooBig) || n != 3 || !strings.Contains(err.Error(), "message 6:") ||
		!strings.Contains(err.Error(), "3 messages imported before it") {
		t.Fatalf("import with a message too big: n=%d err=%v", n, err)
	}
	count := 0
	b.Messages(ctx, "alice", "INBOX", func(mail.Message) error { count++; return nil })
	if count != 3 {
		t.Errorf("INBOX has %d messages after the failed batch, want 3", count)
	}
}

// writeBenchMbox writes an mbox of n messages of 2–20 KB of text (deterministic), a
// tenth of them with an attachment-like base64 part, a third \Seen.
func writeBenchMbox(tb testing.TB, path string, n int) int64 {
	tb.Helper()
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua")
	rnd := uint64(42)
	next := func(k int) int { // xorshift: deterministic without math/rand's global state
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return int(rnd % uint64(k))
	}
	var buf bytes.Buffer
	base := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		var m strings.Builder
		fmt.Fprintf(&m, "From: Sender %d <s%d@example.org>\nTo: alice@example.org\nSubject: message %d %s %s\n", i%37, i%37, i, words[next(len(words))], words[next(len(words))])
		fmt.Fprintf(&m, "Date: %s\nMessage-ID: <bench%d@example.org>\n", base.Add(time.Duration(i)*time.Hour).Format(time.RFC1123Z), i)
		if i%3 == 0 {
			m.WriteString("Status: RO\n")
		}
		m.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n")
		size := 2000 + next(18000)
		for m.Len() < size {
			for range 12 {
				m.WriteString(words[next(len(words))])
				m.WriteByte(' ')
			}
			m.WriteByte('\n')
		}
		if err := migrate.WriteMbox(&buf, &migrate.Message{Body: []byte(m.String()), Date: base.Add(time.Duration(i) * time.Hour)}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return int64(buf.Len())
}

// BenchmarkMailImport imports a 5 000-message mbox (2–20 KB each) into a fresh git store
// one commit per message (what import did before: batches of one, the same path as
// Deliver) and in batches of mail.MaxBatchMessages. Metrics: messages/s and commits.
func BenchmarkMailImport(b *testing.B) {
	const n = 5000
	path := filepath.Join(b.TempDir(), "bench.mbox")
	size := writeBenchMbox(b, path, n)
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		batch int
	}{{"per-message", 1}, {"batched", mail.MaxBatchMessages}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				repos, err := store.OpenRepos(filepath.Join(b.TempDir(), "repos"), &store.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				mb, err := mail.NewBackend(repos, mail.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				got, _, err := importMailBatched(ctx, mb, "alice", path, "INBOX", bc.batch, mail.MaxBatchBytes)
				total += time.Since(start)
				b.StopTimer()
				if err != nil || got != n {
					b.Fatalf("imported %d: %v", got, err)
				}
				mb.Close()
				repos.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "msgs/s")
			b.ReportMetric(float64((n+bc.batch-1)/bc.batch), "commits/op")
		})
	}
}
