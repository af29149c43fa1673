package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/hearth-home/hearth/mail/migrate"
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
