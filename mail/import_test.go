package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/hearth-home/hearth/store"
)

// batchMessages makes n distinct messages with varied flags and dates.
func batchMessages(n int) []Incoming {
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("", -5*3600))
	msgs := make([]Incoming, n)
	for i := range msgs {
		var flags []imap.Flag
		if i%3 == 0 {
			flags = append(flags, imap.FlagSeen)
		}
		if i%7 == 0 {
			flags = append(flags, imap.FlagFlagged, "$Imported")
		}
		msgs[i] = Incoming{
			Body:  []byte(testMessage(fmt.Sprint("batch ", i), "a@example.org", "alice@example.org", fmt.Sprint("body of message ", i))),
			Flags: flags,
			Date:  base.Add(time.Duration(i) * time.Hour),
		}
	}
	return msgs
}

func repoHead(t *testing.T, f *fixture, user string) (store.Store, store.Hash) {
	t.Helper()
	st, err := f.repos.Open(context.Background(), RepoName(user), false)
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.Resolve(context.Background(), store.DefaultBranch)
	if err != nil {
		t.Fatal(err)
	}
	return st, h
}

// TestDeliverBatchIMAP delivers 300 messages in one batch while a client IDLEs on
// INBOX: the client hears EXISTS 300 and FETCHes every message with its flags, date and
// body; the store got exactly one commit.
func TestDeliverBatchIMAP(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOpts{repos: gitRepos(t, t.TempDir())})
	if err := f.b.EnsureUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var exists uint32
	c := f.login("alice", alicePass, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = *d.NumMessages
				mu.Unlock()
			}
		},
	}})
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("select: %v %+v", err, sel)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	st, before := repoHead(t, f, "alice")

	const n = 300
	msgs := batchMessages(n)
	uids, err := f.b.DeliverBatch(ctx, "alice", "INBOX", msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) != n {
		t.Fatalf("%d UIDs for %d messages", len(uids), n)
	}
	for i, u := range uids {
		if u != uids[0]+imap.UID(i) {
			t.Fatalf("UIDs not consecutive at %d: %v", i, uids[:i+1])
		}
	}

	// Exactly one new commit, on top of the old head.
	log, err := st.Log(ctx, store.DefaultBranch, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) < 2 || log[1].ID != before || !slices.Equal(log[0].Parents, []store.Hash{before}) {
		t.Errorf("log after batch: %+v (old head %s)", log, before)
	}

	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		e := exists
		mu.Unlock()
		if e >= n {
			break
		}
	}
	mu.Lock()
	if exists != n {
		t.Errorf("IDLE saw EXISTS %d, want %d", exists, n)
	}
	mu.Unlock()
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	got, err := c.Fetch(imap.UIDSet{{Start: uids[0], Stop: uids[n-1]}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("fetched %d messages, want %d", len(got), n)
	}
	slices.SortFunc(got, func(a, b *imapclient.FetchMessageBuffer) int { return cmpUID(a.UID, b.UID) })
	for i, m := range got {
		want := msgs[i]
		if m.UID != uids[i] {
			t.Errorf("message %d: UID %d, want %d", i, m.UID, uids[i])
		}
		if !m.InternalDate.Equal(want.Date) {
			t.Errorf("message %d: date %v, want %v", i, m.InternalDate, want.Date)
		}
		// The IDLE-ing session was the first to see them: they are \Recent to it.
		if wantFlags := append(slices.Clone(want.Flags), `\Recent`); flagList(m.Flags) != flagList(wantFlags) {
			t.Errorf("message %d: flags %v, want %v", i, m.Flags, wantFlags)
		}
		var body []byte
		for _, b := range m.BodySection {
			body = b.Bytes
		}
		if !bytes.Equal(body, want.Body) {
			t.Errorf("message %d: body %q, want %q", i, body, want.Body)
		}
	}
}

// TestDeliverBatchAtomic: a batch with one bad message, or over the limits, writes
// nothing.
func TestDeliverBatchAtomic(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOpts{repos: gitRepos(t, t.TempDir()), appendLimit: 4096})
	if _, err := f.b.DeliverBatch(ctx, "alice", "INBOX", batchMessages(5)); err != nil {
		t.Fatal(err)
	}
	st, head := repoHead(t, f, "alice")
	with := func(i int, change func(*Incoming)) []Incoming {
		msgs := batchMessages(20)
		change(&msgs[i])
		return msgs
	}
	tests := []struct {
		name    string
		mailbox string
		msgs    []Incoming
		want    error
		index   int // of the refused message; -1: not a BatchError
	}{
		{"oversized message", "INBOX", with(7, func(m *Incoming) { m.Body = bytes.Repeat([]byte("x"), 4097) }), ErrTooBig, 7},
		{"empty message", "INBOX", with(19, func(m *Incoming) { m.Body = nil }), ErrInvalid, 19},
		{"bad flag", "INBOX", with(0, func(m *Incoming) { m.Flags = []imap.Flag{"a b"} }), ErrInvalid, 0},
		{"unknown system flag", "INBOX", with(3, func(m *Incoming) { m.Flags = []imap.Flag{`\Bogus`} }), ErrInvalid, 3},
		{"too many messages", "INBOX", batchMessages(MaxBatchMessages + 1), ErrTooBig, -1},
		{"missing mailbox", "Nope", batchMessages(3), ErrNoMailbox, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uids, err := f.b.DeliverBatch(ctx, "alice", tc.mailbox, tc.msgs)
			if !errors.Is(err, tc.want) || uids != nil {
				t.Fatalf("err = %v, uids %v; want %v", err, uids, tc.want)
			}
			var be *BatchError
			if got := errors.As(err, &be); got != (tc.index >= 0) || (got && be.Index != tc.index) {
				t.Errorf("BatchError %+v, want index %d", be, tc.index)
			}
			if h, err := st.Resolve(ctx, store.DefaultBranch); err != nil || h != head {
				t.Errorf("head moved: %s -> %s (%v)", head, h, err)
			}
		})
	}
	n := 0
	if err := f.b.Messages(ctx, "alice", "INBOX", func(Message) error { n++; return nil }); err != nil || n != 5 {
		t.Errorf("INBOX has %d messages (%v), want 5", n, err)
	}
	// An empty batch stores nothing.
	if uids, err := f.b.DeliverBatch(ctx, "alice", "INBOX", nil); err != nil || len(uids) != 0 {
		t.Errorf("empty batch: %v %v", uids, err)
	}
	if h, _ := st.Resolve(ctx, store.DefaultBranch); h != head {
		t.Error("empty batch committed")
	}
}

// TestDeliverBatchTooManyBytes: a batch over MaxBatchBytes is refused before anything
// is read into the store.
func TestDeliverBatchTooManyBytes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOpts{})
	big := bytes.Repeat([]byte("y"), MaxBatchBytes/2+1)
	msgs := []Incoming{{Body: big}, {Body: big}}
	if _, err := f.b.DeliverBatch(ctx, "alice", "INBOX", msgs); !errors.Is(err, ErrTooBig) {
		t.Fatalf("err = %v, want ErrTooBig", err)
	}
	// Exactly at the limit is fine.
	msgs[1].Body = big[:MaxBatchBytes-len(big)]
	if uids, err := f.b.DeliverBatch(ctx, "alice", "INBOX", msgs); err != nil || len(uids) != 2 {
		t.Fatalf("batch of exactly %d bytes: %v %v", MaxBatchBytes, uids, err)
	}
}

// TestDeliverBatchConcurrent: batches from one Backend and single deliveries from
// another (another process) over the same repository never share a UID.
func TestDeliverBatchConcurrent(t *testing.T) {
	ctx := context.Background()
	repos := gitRepos(t, t.TempDir())
	b1, err := NewBackend(repos, Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	b2, err := NewBackend(repos, Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b1.EnsureUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[imap.UID]bool{}
	var errs []error
	note := func(uids []imap.UID, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
		for _, u := range uids {
			if seen[u] {
				errs = append(errs, fmt.Errorf("UID %d handed out twice", u))
			}
			seen[u] = true
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 4 {
			note(b1.DeliverBatch(ctx, "alice", "INBOX", batchMessages(25)))
		}
	})
	wg.Go(func() {
		for i := range 10 {
			u, err := b2.Deliver(ctx, "alice", "INBOX", []byte(testMessage(fmt.Sprint("single ", i), "a@example.org", "alice@example.org", "z")), nil, time.Time{})
			note([]imap.UID{u}, err)
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 110 {
		t.Errorf("%d distinct UIDs, want 110", len(seen))
	}
}
