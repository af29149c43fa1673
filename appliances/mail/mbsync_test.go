package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/mail/migrate"
)

// mbsyncConfig syncs two Maildir++ directories, src and dst, with alice's mail on addr:
// channel "up" pairs src with the appliance, channel "down" pairs dst with it.
func mbsyncConfig(addr, dir string) string {
	host, port, _ := strings.Cut(addr, ":")
	var b strings.Builder
	fmt.Fprintf(&b, "IMAPAccount hearth\nHost %s\nPort %s\nUser alice\nPass %s\nSSLType None\nAuthMechs LOGIN\n\n", host, port, alicePassword)
	b.WriteString("IMAPStore hearth-remote\nAccount hearth\n\n")
	for _, side := range []string{"src", "dst"} {
		root := filepath.Join(dir, side)
		fmt.Fprintf(&b, "MaildirStore %s\nInbox %s\nSubFolders Maildir++\n\n", side, root)
	}
	for ch, side := range map[string]string{"up": "src", "down": "dst"} {
		fmt.Fprintf(&b, "Channel %s\nFar :hearth-remote:\nNear :%s:\nPatterns *\nCreate Both\nSyncState *\n\n", ch, side)
	}
	return b.String()
}

var tuidLine = regexp.MustCompile(`(?m)^X-TUID: [^\n]*\n`)

// maildirMessage is a message as the comparison sees it.
type maildirMessage struct {
	body  string
	flags string
}

// readMaildir returns a Maildir's messages by mailbox, sorted, leaving out empty mailboxes.
func readMaildir(t *testing.T, root string) map[string][]maildirMessage {
	t.Helper()
	out := map[string][]maildirMessage{}
	err := migrate.ReadMaildir(root, 0, func(m *migrate.Message) error {
		fl := make([]string, len(m.Flags))
		for i, f := range m.Flags {
			fl[i] = string(f)
		}
		sort.Strings(fl)
		// mbsync adds an X-TUID header to every message it uploads (to Dovecot too).
		body := tuidLine.ReplaceAllString(string(m.Body), "")
		out[m.Mailbox] = append(out[m.Mailbox], maildirMessage{body, strings.Join(fl, " ")})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, msgs := range out {
		slices.SortFunc(msgs, func(a, b maildirMessage) int { return strings.Compare(a.body, b.body) })
	}
	return out
}

func compareMaildirs(t *testing.T, want, got map[string][]maildirMessage) {
	t.Helper()
	for box, w := range want {
		g := got[box]
		if len(g) != len(w) {
			t.Errorf("%s: %d messages, want %d", box, len(g), len(w))
			continue
		}
		for i := range w {
			if g[i].body != w[i].body {
				t.Errorf("%s: message %d differs:\n%q\nwant\n%q", box, i, g[i].body, w[i].body)
			} else if g[i].flags != w[i].flags {
				t.Errorf("%s: message %d has flags %q, want %q", box, i, g[i].flags, w[i].flags)
			}
		}
	}
	for box, g := range got {
		if _, ok := want[box]; !ok {
			t.Errorf("unexpected mailbox %s with %d messages", box, len(g))
		}
	}
}

func runMbsync(t *testing.T, mbsync, cfg, channel string) {
	t.Helper()
	out, err := exec.Command(mbsync, "-c", cfg, channel).CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync %s: %v\n%s", channel, err, out)
	}
}

// TestMbsyncBothWays uploads a Maildir of 50 messages in four folders with mbsync, pulls
// it into a fresh Maildir, and checks the messages and flags came through; then it changes
// flags on the pulled side and checks they reach the first side.
func TestMbsyncBothWays(t *testing.T) {
	mbsync := testtool.Path(t, "mbsync", "isync")
	data := dataWithUser(t)
	addr := freeAddr(t)
	startProc(t, []string{"-data", data, "-imap", addr}, nil)
	waitConn(t, addr)

	dir := t.TempDir()
	w, err := migrate.NewMaildirWriter(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	flagSets := [][]imap.Flag{
		nil,
		{imap.FlagSeen},
		{imap.FlagSeen, imap.FlagFlagged},
		{imap.FlagSeen, imap.FlagAnswered},
		{imap.FlagDraft},
		{imap.FlagSeen, imap.FlagDeleted},
	}
	boxes := []struct {
		name string
		n    int
	}{{"INBOX", 20}, {"Sent", 10}, {"Archive/2024", 10}, {"Lists/Go", 10}}
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	k := 0
	for _, b := range boxes {
		for i := range b.n {
			body := fmt.Sprintf("From: Sender %d <s%d@example.org>\nTo: alice@home.arpa\nSubject: %s message %d\nDate: Fri, 01 Mar 2024 12:00:00 +0000\nMessage-ID: <m%d@example.org>\n\nBody of message %d in %s.\nSecond line.\n", k, k, b.name, i, k, k, b.name)
			if _, err := w.Write(&migrate.Message{Mailbox: b.name, Body: []byte(body), Flags: flagSets[k%len(flagSets)], Date: base.Add(time.Duration(k) * time.Hour)}); err != nil {
				t.Fatal(err)
			}
			k++
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "dst", "cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, "dst", sub), 0o700)
	}
	cfg := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfg, []byte(mbsyncConfig(addr, dir)), 0o600); err != nil {
		t.Fatal(err)
	}

	want := readMaildir(t, filepath.Join(dir, "src"))
	runMbsync(t, mbsync, cfg, "up")
	runMbsync(t, mbsync, cfg, "down")
	got := readMaildir(t, filepath.Join(dir, "dst"))
	compareMaildirs(t, want, got)
	if t.Failed() {
		return
	}

	// Change flags on the pulled side: flag one INBOX message, mark another unread.
	cur := filepath.Join(dir, "dst", "cur")
	ents, err := os.ReadDir(cur)
	if err != nil {
		t.Fatal(err)
	}
	flagged, unread := false, false
	for _, e := range ents {
		u, info, _ := strings.Cut(e.Name(), ":2,")
		switch {
		case !flagged && !strings.Contains(info, "F") && !strings.Contains(info, "T"):
			os.Rename(filepath.Join(cur, e.Name()), filepath.Join(cur, migrateName(u, info+"F")))
			flagged = true
		case !unread && strings.Contains(info, "S") && !strings.Contains(info, "T"):
			os.Rename(filepath.Join(cur, e.Name()), filepath.Join(cur, migrateName(u, strings.ReplaceAll(info, "S", ""))))
			unread = true
		}
	}
	if !flagged || !unread {
		t.Fatal("no messages to change flags on")
	}
	want = readMaildir(t, filepath.Join(dir, "dst"))
	runMbsync(t, mbsync, cfg, "down")
	runMbsync(t, mbsync, cfg, "up")
	compareMaildirs(t, want, readMaildir(t, filepath.Join(dir, "src")))
}

// migrateName is a Maildir name with the info letters sorted, as the format wants.
func migrateName(unique, letters string) string {
	l := []byte(letters)
	slices.Sort(l)
	return unique + ":2," + string(l)
}
