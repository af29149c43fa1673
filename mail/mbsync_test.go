package mail

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/hearth-home/hearth/internal/testtool"
)

// TestMbsync syncs a mailbox both ways with isync's mbsync, a real IMAP client that
// relies on UIDPLUS, UIDVALIDITY and flag updates.
func TestMbsync(t *testing.T) {
	testtool.File(t, "/usr/bin/mbsync", "isync")
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage(fmt.Sprint("sync ", i), "a@example.org", "alice@example.org", "x")), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(f.addr)
	conf := fmt.Sprintf(`IMAPAccount hearth
Host %s
Port %s
User alice
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account hearth

MaildirStore local
Path %s/Mail/
Inbox %s/Mail/INBOX
SubFolders Verbatim

Channel hearth
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, alicePass, dir, dir)
	if err := os.MkdirAll(filepath.Join(dir, "Mail"), 0o700); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "/usr/bin/mbsync", "-c", confPath, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	run()
	cur, _ := filepath.Glob(filepath.Join(dir, "Mail", "INBOX", "*", "*"))
	if len(cur) != 3 {
		t.Fatalf("pulled %d messages: %v", len(cur), cur)
	}
	for _, d := range []string{"Sent", "Trash", "Archive"} {
		if _, err := os.Stat(filepath.Join(dir, "Mail", d)); err != nil {
			t.Errorf("folder %s not created locally: %v", d, err)
		}
	}
	// A new local message is pushed; a local flag change (seen) is pushed too.
	newMsg := testMessage("from mbsync", "me@example.org", "you@example.org", "pushed")
	if err := os.WriteFile(filepath.Join(dir, "Mail", "INBOX", "new", "1700000000.local.host"), []byte(newMsg), 0o600); err != nil {
		t.Fatal(err)
	}
	first := cur[0]
	if strings.Contains(first, ":2,") {
		os.Rename(first, first+"S")
	} else {
		os.Rename(first, first+":2,S")
	}
	run()
	var subjects []string
	seen := 0
	err := f.b.Messages(ctx, "alice", "INBOX", func(m Message) error {
		body, err := m.Body(ctx)
		if err != nil {
			return err
		}
		subjects = append(subjects, parseMessage(body).envelope.Subject)
		if hasFlag(m.Flags, imap.FlagSeen) {
			seen++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(subjects) != 4 || subjects[3] != "from mbsync" || seen != 1 {
		t.Errorf("server after push: %v, %d seen", subjects, seen)
	}
}
