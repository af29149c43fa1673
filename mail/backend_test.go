package mail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestRestartPersistence(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	repos := gitRepos(t, dir)
	f := newFixture(t, fixtureOpts{repos: repos})
	c := f.login("alice", alicePass, nil)
	for i := 0; i < 4; i++ {
		appendMsg(t, c, "INBOX", testMessage(fmt.Sprint("msg ", i), "a@example.org", "alice@example.org", "x"), nil)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Label1", imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{"$Label1", imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	type snap struct {
		validity uint32
		next     imap.UID
		uids     []imap.UID
		flags    []string
	}
	take := func(b *Backend) snap {
		t.Helper()
		var s snap
		boxes, err := b.Mailboxes(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range boxes {
			if mb.Name == "INBOX" {
				s.validity, s.next = mb.UIDValidity, mb.UIDNext
			}
		}
		err = b.Messages(ctx, "alice", "INBOX", func(m Message) error {
			s.uids = append(s.uids, m.UID)
			s.flags = append(s.flags, flagList(m.Flags))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := take(f.b)
	if before.next != 5 || !slices.Equal(before.uids, []imap.UID{1, 3, 4}) || before.flags[1] != `$Label1 \Answered` {
		t.Fatalf("before restart: %+v", before)
	}
	c.Logout().Wait()

	// Reopen everything on the same data directory.
	repos2 := gitRepos(t, dir)
	b2, err := NewBackend(repos2, Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	after := take(b2)
	if after.validity != before.validity || after.next != before.next || !slices.Equal(after.uids, before.uids) || !slices.Equal(after.flags, before.flags) {
		t.Errorf("after restart %+v, before %+v", after, before)
	}
	uid, err := b2.Deliver(ctx, "alice", "INBOX", []byte(testMessage("new", "a@example.org", "alice@example.org", "y")), nil, time.Time{})
	if err != nil || uid != 5 {
		t.Errorf("deliver after restart: uid %d, %v", uid, err)
	}
	// Deleting and re-creating a mailbox gives a new UIDVALIDITY.
	if err := b2.CreateMailbox(ctx, "alice", "Tmp", ""); err != nil {
		t.Fatal(err)
	}
	v1 := mailboxValidity(t, b2, "Tmp")
	if err := b2.DeleteMailbox(ctx, "alice", "Tmp"); err != nil {
		t.Fatal(err)
	}
	if err := b2.CreateMailbox(ctx, "alice", "Tmp", ""); err != nil {
		t.Fatal(err)
	}
	if v2 := mailboxValidity(t, b2, "Tmp"); v2 == v1 {
		t.Errorf("UIDVALIDITY reused: %d", v2)
	}
}

func mailboxValidity(t *testing.T, b *Backend, name string) uint32 {
	t.Helper()
	boxes, err := b.Mailboxes(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range boxes {
		if mb.Name == name {
			return mb.UIDValidity
		}
	}
	t.Fatalf("no mailbox %s", name)
	return 0
}

// Two backends on the same repositories stand for two processes (IMAP and LMTP): their
// deliveries race on the branch head and must never share a UID.
func TestConcurrentDeliveryUniqueUIDs(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var backends []*Backend
	for i := 0; i < 2; i++ {
		b, err := NewBackend(gitRepos(t, dir), Options{Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		backends = append(backends, b)
	}
	if err := backends[0].EnsureUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[imap.UID]bool{}
	var wg sync.WaitGroup
	const per = 10
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(b *Backend) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				uid, err := b.Deliver(ctx, "alice", "INBOX", []byte(testMessage(fmt.Sprint("c", i), "a@example.org", "alice@example.org", "z")), nil, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[uid] {
					t.Errorf("UID %d handed out twice", uid)
				}
				seen[uid] = true
				mu.Unlock()
			}
		}(backends[w%2])
	}
	wg.Wait()
	b3, err := NewBackend(gitRepos(t, dir), Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close()
	n := 0
	b3.Messages(ctx, "alice", "INBOX", func(m Message) error {
		if !seen[m.UID] {
			t.Errorf("stored UID %d was not reported", m.UID)
		}
		n++
		return nil
	})
	if n != 4*per {
		t.Errorf("%d messages stored, want %d", n, 4*per)
	}
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := NewBackend(gitRepos(t, dir), Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 3; i++ {
		if _, err := b.Deliver(ctx, "alice", "INBOX", []byte(testMessage(fmt.Sprint("r", i), "a@example.org", "alice@example.org", "z")), []imap.Flag{"$keep"}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // commit times have one-second precision
	since := time.Now()
	time.Sleep(1100 * time.Millisecond)
	us, err := b.user(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	us.mu.Lock()
	err = us.update(ctx, "expunge", func(t *tx) error {
		t.remove(us.byName["INBOX"], []imap.UID{1, 3})
		return nil
	})
	us.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.Restore(ctx, "alice", "INBOX", since)
	if err != nil || n != 2 {
		t.Fatalf("restore = %d, %v", n, err)
	}
	var subjects []string
	b.Messages(ctx, "alice", "INBOX", func(m Message) error {
		body, err := m.Body(ctx)
		if err != nil {
			return err
		}
		subjects = append(subjects, parseMessage(body).envelope.Subject+" "+flagList(m.Flags))
		return nil
	})
	if !slices.Equal(subjects, []string{"r1 $keep", "r0 $keep", "r2 $keep"}) {
		t.Errorf("after restore: %v", subjects)
	}
	if n, err := b.Restore(ctx, "alice", "INBOX", since); err != nil || n != 0 {
		t.Errorf("second restore = %d, %v", n, err)
	}
	if _, err := b.Restore(ctx, "alice", "Nope", since); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("restore of missing mailbox: %v", err)
	}
}

func TestDeliverErrors(t *testing.T) {
	ctx := context.Background()
	b, err := NewBackend(gitRepos(t, t.TempDir()), Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	msg := []byte(testMessage("x", "a@example.org", "b@example.org", "y"))
	tests := []struct {
		name    string
		user    string
		mailbox string
		msg     []byte
		flags   []imap.Flag
		want    error
	}{
		{"missing mailbox", "alice", "Nope", msg, nil, ErrNoMailbox},
		{"bad user", "../x", "INBOX", msg, nil, ErrInvalid},
		{"empty message", "alice", "INBOX", nil, nil, ErrInvalid},
		{"bad flag", "alice", "INBOX", msg, []imap.Flag{"a b"}, ErrInvalid},
		{"unknown system flag", "alice", "INBOX", msg, []imap.Flag{`\Bogus`}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Deliver(ctx, tc.user, tc.mailbox, tc.msg, tc.flags, time.Time{}); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Delivery to INBOX of a new user creates the default mailboxes.
	if _, err := b.Deliver(ctx, "carol", "inbox", msg, []imap.Flag{imap.FlagSeen, `\recent`}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	boxes, err := b.Mailboxes(ctx, "carol")
	if err != nil || len(boxes) != len(DefaultMailboxes) {
		t.Errorf("carol's mailboxes: %+v, %v", boxes, err)
	}
	// So does the Sent copy of a first submission by a user who never logged in.
	if _, err := b.Deliver(ctx, "dave", "Sent", msg, []imap.Flag{imap.FlagSeen}, time.Time{}); err != nil {
		t.Fatalf("deliver to a new user's Sent: %v", err)
	}
	var flags []imap.Flag
	b.Messages(ctx, "carol", "INBOX", func(m Message) error { flags = m.Flags; return nil })
	if !slices.Equal(flags, []imap.Flag{imap.FlagSeen}) {
		t.Errorf("stored flags %v", flags)
	}
}

func TestRenameInbox(t *testing.T) {
	ctx := context.Background()
	b, err := NewBackend(gitRepos(t, t.TempDir()), Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 2; i++ {
		if _, err := b.Deliver(ctx, "alice", "INBOX", []byte(testMessage(fmt.Sprint("old ", i), "a@example.org", "alice@example.org", "z")), []imap.Flag{imap.FlagSeen}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.RenameMailbox(ctx, "alice", "inbox", "Old/2024"); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	boxes, _ := b.Mailboxes(ctx, "alice")
	for _, mb := range boxes {
		counts[mb.Name] = mb.Messages
	}
	if counts["INBOX"] != 0 || counts["Old/2024"] != 2 {
		t.Errorf("after RENAME INBOX: %v", counts)
	}
	if _, ok := counts["Old"]; !ok {
		t.Errorf("parent Old not created: %v", counts)
	}
	tests := []struct {
		name, from, to string
		want           error
	}{
		{"missing", "Nope", "X", ErrNoMailbox},
		{"target exists", "Sent", "Trash", ErrExists},
		{"into itself", "Old", "Old/sub", ErrInvalid},
		{"bad name", "Sent", "a//b", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.RenameMailbox(ctx, "alice", tc.from, tc.to); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Renaming a parent renames its children.
	if err := b.RenameMailbox(ctx, "alice", "Old", "Older"); err != nil {
		t.Fatal(err)
	}
	boxes, _ = b.Mailboxes(ctx, "alice")
	found := false
	for _, mb := range boxes {
		found = found || (mb.Name == "Older/2024" && mb.Messages == 2)
	}
	if !found {
		t.Errorf("child not renamed: %+v", boxes)
	}
}
