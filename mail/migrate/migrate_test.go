package migrate

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func readAllMbox(t testing.TB, data string, max int) ([]*Message, error) {
	t.Helper()
	r := NewMboxReader(strings.NewReader(data), max)
	var msgs []*Message
	for {
		m, err := r.Next()
		if err == io.EOF {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

func TestMboxReader(t *testing.T) {
	d1 := time.Date(1996, 1, 3, 1, 5, 34, 0, time.UTC)
	d2 := time.Date(2024, 11, 2, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		in     string
		bodies []string
		dates  []time.Time
		flags  [][]imap.Flag
		err    error
	}{
		{
			name:   "two messages",
			in:     "From a@b Wed Jan  3 01:05:34 1996\nSubject: one\n\nhello\n\nFrom c@d Sat Nov  2 09:00:00 2024\nSubject: two\n\nbye\n\n",
			bodies: []string{"Subject: one\n\nhello\n", "Subject: two\n\nbye\n"},
			dates:  []time.Time{d1, d2},
			flags:  [][]imap.Flag{nil, nil},
		},
		{
			name:   "mboxrd unquoting",
			in:     "From a@b Wed Jan  3 01:05:34 1996\nSubject: q\n\n>From here\n>>From there\nFrom inside not after blank\n",
			bodies: []string{"Subject: q\n\nFrom here\n>From there\nFrom inside not after blank\n"},
			dates:  []time.Time{d1},
			flags:  [][]imap.Flag{nil},
		},
		{
			name:   "unparsable From after blank stays in body",
			in:     "From a@b Wed Jan  3 01:05:34 1996\nSubject: q\n\nFrom me to you\n",
			bodies: []string{"Subject: q\n\nFrom me to you\n"},
			dates:  []time.Time{d1},
			flags:  [][]imap.Flag{nil},
		},
		{
			name:   "status flags and zone",
			in:     "From a@b Wed Jan  3 01:05:34 +0100 1996\nStatus: RO\nX-Status: AF\n\nx\n",
			bodies: []string{"Status: RO\nX-Status: AF\n\nx\n"},
			dates:  []time.Time{time.Date(1996, 1, 3, 0, 5, 34, 0, time.UTC)},
			flags:  [][]imap.Flag{{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged}},
		},
		{
			name:   "crlf",
			in:     "From a@b Wed Jan  3 01:05:34 1996\r\nSubject: c\r\n\r\nbody\r\n\r\nFrom c@d Sat Nov  2 09:00:00 2024\r\nSubject: d\r\n\r\nx\r\n",
			bodies: []string{"Subject: c\r\n\r\nbody\r\n", "Subject: d\r\n\r\nx\r\n"},
			dates:  []time.Time{d1, d2},
			flags:  [][]imap.Flag{nil, nil},
		},
		{name: "empty file", in: ""},
		{name: "not an mbox", in: "Subject: hi\n\nbody\n", err: ErrFormat},
		{name: "too large", in: "From a@b Wed Jan  3 01:05:34 1996\n" + strings.Repeat("x", 100) + "\n", err: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := readAllMbox(t, tt.in, 64)
			if tt.name != "too large" {
				msgs, err = readAllMbox(t, tt.in, 0)
			}
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tt.bodies) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tt.bodies))
			}
			for i, m := range msgs {
				if string(m.Body) != tt.bodies[i] {
					t.Errorf("body %d = %q, want %q", i, m.Body, tt.bodies[i])
				}
				if !m.Date.Equal(tt.dates[i]) {
					t.Errorf("date %d = %v, want %v", i, m.Date, tt.dates[i])
				}
				if !slices.Equal(m.Flags, tt.flags[i]) {
					t.Errorf("flags %d = %v, want %v", i, m.Flags, tt.flags[i])
				}
			}
		})
	}
}

func TestMboxRoundTrip(t *testing.T) {
	msgs := []*Message{
		{Body: []byte("Subject: a\n\nFrom the start\n>From quoted\n\n"), Date: time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{Body: []byte("Subject: b\n\nlast line\n"), Date: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := WriteMbox(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readAllMbox(t, buf.String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d messages back, want %d:\n%s", len(got), len(msgs), buf.String())
	}
	for i := range msgs {
		if !bytes.Equal(got[i].Body, msgs[i].Body) || !got[i].Date.Equal(msgs[i].Date) {
			t.Errorf("message %d: got %q %v, want %q %v", i, got[i].Body, got[i].Date, msgs[i].Body, msgs[i].Date)
		}
	}
}

func TestParseMaildirName(t *testing.T) {
	tests := []struct {
		name, in, unique string
		flags            []imap.Flag
		err              bool
	}{
		{"all flags", "123.M1P2.host:2,DFPRST", "123.M1P2.host", []imap.Flag{imap.FlagDraft, imap.FlagFlagged, imap.FlagForwarded, imap.FlagAnswered, imap.FlagSeen, imap.FlagDeleted}, false},
		{"seen only", "1.2.h,S=42:2,S", "1.2.h,S=42", []imap.Flag{imap.FlagSeen}, false},
		{"keywords ignored", "1.2.h:2,Sab", "1.2.h", []imap.Flag{imap.FlagSeen}, false},
		{"new message", "1.2.h", "1.2.h", nil, false},
		{"experimental info", "1.2.h:1,xyz", "1.2.h", nil, false},
		{"empty", "", "", nil, true},
		{"dot file", ".hidden", "", nil, true},
		{"slash", "a/b:2,S", "", nil, true},
		{"no unique", ":2,S", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, f, err := ParseMaildirName(tt.in)
			if tt.err {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want ErrFormat", err)
				}
				return
			}
			if err != nil || u != tt.unique || !slices.Equal(f, tt.flags) {
				t.Fatalf("= %q %v %v, want %q %v", u, f, err, tt.unique, tt.flags)
			}
			if len(tt.flags) > 0 {
				_, back, _ := ParseMaildirName(MaildirName(u, f))
				if !slices.Equal(back, f) {
					t.Errorf("MaildirName round trip: %v, want %v", back, f)
				}
			}
		})
	}
}

func TestMaildirRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := NewMaildirWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
	want := []*Message{
		{Mailbox: "INBOX", Body: []byte("Subject: 1\n\none\n"), Flags: []imap.Flag{imap.FlagSeen}, Date: base},
		{Mailbox: "Sent", Body: []byte("Subject: 2\n\ntwo\n"), Flags: []imap.Flag{imap.FlagSeen, imap.FlagAnswered}, Date: base.Add(time.Hour)},
		{Mailbox: "Archive/2024", Body: []byte("Subject: 3\n\nthree\n"), Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}, Date: base.Add(2 * time.Hour)},
		{Mailbox: "a.b%c", Body: []byte("Subject: 4\n\nfour\n"), Date: base.Add(3 * time.Hour)},
	}
	for _, m := range want {
		if _, err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".Sent/cur", ".Archive.2024/cur", ".a%2Eb%25c/cur", "cur", "new", "tmp"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("layout: %v", err)
		}
	}
	got := map[string]*Message{}
	err = ReadMaildir(dir, 0, func(m *Message) error {
		got[m.Mailbox] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d mailboxes, want %d: %v", len(got), len(want), got)
	}
	for _, m := range want {
		g := got[m.Mailbox]
		if g == nil {
			t.Fatalf("mailbox %q missing", m.Mailbox)
		}
		gf, wf := slices.Clone(g.Flags), slices.Clone(m.Flags)
		slices.Sort(gf)
		slices.Sort(wf)
		if !bytes.Equal(g.Body, m.Body) || !g.Date.Equal(m.Date) || !slices.Equal(gf, wf) {
			t.Errorf("%s: got %q %v %v, want %q %v %v", m.Mailbox, g.Body, g.Date, g.Flags, m.Body, m.Date, m.Flags)
		}
	}
}

func TestMaildirVerbatimLayout(t *testing.T) {
	dir := t.TempDir()
	for _, box := range []string{"INBOX", "Sent", "Archive/2024"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, box, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, box, "new", "1.x.h"), []byte("Subject: "+box+"\n\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	boxes, err := Mailboxes(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"INBOX", "Sent", "Archive/2024"} {
		if boxes[b] == "" {
			t.Errorf("mailbox %q not found in %v", b, boxes)
		}
	}
	if _, ok := boxes["Archive"]; ok {
		t.Errorf("Archive is not a Maildir but was listed")
	}
	if _, err := Mailboxes(t.TempDir()); !errors.Is(err, ErrFormat) {
		t.Errorf("empty dir: err = %v, want ErrFormat", err)
	}
}

func TestReadMaildirDateHeaderWhenNoMtime(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	p := filepath.Join(dir, "cur", "1.x.h:2,S")
	os.WriteFile(p, []byte("Date: Tue, 03 Feb 2009 10:00:00 +0100\nSubject: x\n\nbody\n"), 0o600)
	os.Chtimes(p, time.Unix(0, 0), time.Unix(0, 0))
	var got time.Time
	if err := ReadMaildir(dir, 0, func(m *Message) error { got = m.Date; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2009, 2, 3, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("date %v, want %v from the Date header", got, want)
	}
}

func TestReadMaildirTooLarge(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	os.WriteFile(filepath.Join(dir, "cur", "1.x.h:2,S"), bytes.Repeat([]byte("x"), 100), 0o600)
	err := ReadMaildir(dir, 50, func(*Message) error { return nil })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestLineEndings(t *testing.T) {
	tests := []struct{ name, lf, crlf string }{
		{"plain", "a\nb\n", "a\r\nb\r\n"},
		{"no newline", "abc", "abc"},
		{"leading", "\nx", "\r\nx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ToCRLF([]byte(tt.lf))); got != tt.crlf {
				t.Errorf("ToCRLF = %q", got)
			}
			if got := string(ToCRLF([]byte(tt.crlf))); got != tt.crlf {
				t.Errorf("ToCRLF twice = %q", got)
			}
			if got := string(ToLF([]byte(tt.crlf))); got != tt.lf {
				t.Errorf("ToLF = %q", got)
			}
		})
	}
}
