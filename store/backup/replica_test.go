package backup

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/store"
)

func commitAt(t *testing.T, repos *store.Repos, name, key, value string, when time.Time) {
	t.Helper()
	s, err := repos.Open(context.Background(), name, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), store.Change{Message: "put " + key, Time: when, Ops: []store.Op{{Key: key, Value: []byte(value)}}}); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaConcurrentEdits: two Hearths edit one repository at the same time while both
// sync with each other; every key written on either side ends up on both, and a key
// written on both sides resolves to the newer side's value on both.
func TestReplicaConcurrentEdits(t *testing.T) {
	ctx := context.Background()
	dataA, dataB := t.TempDir(), t.TempDir()
	a, b := openRunner(t, dataA), openRunner(t, dataB)
	const repo = "alice/contacts"
	put(t, a.Repos(), repo, "objects/family/start.vcf", "v0")
	// Both boards have the repository before they race (two processes creating one
	// repository at once is the store's business, not the replica's).
	if _, err := b.Repos().Open(ctx, repo, true); err != nil {
		t.Fatal(err)
	}

	const n = 15
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for side, r := range map[string]*Runner{"a": a, "b": b} {
		wg.Add(1)
		go func() { // writer
			defer wg.Done()
			s, err := r.Repos().Open(ctx, repo, true)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range n {
				key := fmt.Sprintf("objects/family/%s%d.vcf", side, i)
				if _, err := s.Commit(ctx, store.Change{Message: key, Ops: []store.Op{{Key: key, Value: []byte(side)}}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var syncs sync.WaitGroup
	for _, pair := range [][2]*Runner{{a, b}, {b, a}} {
		syncs.Add(1)
		go func() { // a replica loop on each board, racing the other
			defer syncs.Done()
			other := filepath.Join(pair[1].data, "repos")
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := pair[0].SyncRepo(ctx, other, "", repo); err != nil && !errors.Is(err, store.ErrConflict) {
					t.Errorf("sync: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	syncs.Wait()

	// The same contact edited on both sides: the side whose head is newer wins.
	now := time.Now()
	commitAt(t, a.Repos(), repo, "objects/family/same.vcf", "from a", now.Add(time.Hour))
	commitAt(t, b.Repos(), repo, "objects/family/same.vcf", "from b", now.Add(2*time.Hour))

	rootA, rootB := filepath.Join(dataA, "repos"), filepath.Join(dataB, "repos")
	for _, step := range []struct {
		r     *Runner
		other string
	}{{a, rootB}, {b, rootA}, {a, rootB}} {
		if _, err := step.r.SyncRepo(ctx, step.other, "", repo); err != nil {
			t.Fatalf("final sync: %v", err)
		}
	}
	headA, _ := mustOpen(t, a, repo).Resolve(ctx, "main")
	headB, _ := mustOpen(t, b, repo).Resolve(ctx, "main")
	if headA != headB {
		t.Fatalf("heads differ: %s %s", headA, headB)
	}
	for _, root := range []string{rootA, rootB} {
		for _, side := range []string{"a", "b"} {
			for i := range n {
				if got := get(t, root, repo, fmt.Sprintf("objects/family/%s%d.vcf", side, i)); got != side {
					t.Fatalf("%s: %s%d = %q: lost", root, side, i, got)
				}
			}
		}
		if got := get(t, root, repo, "objects/family/same.vcf"); got != "from b" {
			t.Fatalf("%s: same key = %q, want the newer side's", root, got)
		}
		if got := get(t, root, repo, "objects/family/start.vcf"); got != "v0" {
			t.Fatalf("%s: start = %q", root, got)
		}
	}
	// The losing value is still in history.
	hist, err := mustOpen(t, a, repo).History(ctx, "main", "objects/family/same.vcf", 0)
	if err != nil || len(hist) < 2 {
		t.Fatalf("history of the contested key: %d commits, %v", len(hist), err)
	}
}

func mustOpen(t *testing.T, r *Runner, name string) store.Store {
	t.Helper()
	s, err := r.Repos().Open(context.Background(), name, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplicaPassState runs a replica pass through the configuration and checks the state.
func TestReplicaPassState(t *testing.T) {
	ctx := context.Background()
	dataA, dataB := t.TempDir(), t.TempDir()
	a := openRunner(t, dataA)
	put(t, a.Repos(), "alice/calendar", "objects/home/e1.ics", "x")
	put(t, a.Repos(), "bob/calendar", "objects/home/e1.ics", "y")
	remote := filepath.Join(dataB, "repos")
	if err := AddReplica(dataA, Replica{URL: remote, Repos: []string{"alice/*"}}); err != nil {
		t.Fatal(err)
	}
	st, err := a.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs := st.Replicas[remote]
	if rs == nil || len(rs.Repos) != 1 || rs.Repos["alice/calendar"].LastSuccess.IsZero() {
		t.Fatalf("replica state %+v", rs)
	}
	if got := get(t, remote, "alice/calendar", "objects/home/e1.ics"); got != "x" {
		t.Fatalf("replica holds %q", got)
	}
	if exists(filepath.Join(remote, "bob", "calendar.git")) {
		t.Fatal("bob's repository was replicated")
	}
}

// TestReplicaMail syncs one user's mail: deliveries into different mailboxes on the two
// sides merge; deliveries into the same mailbox on both sides collide on the UID, which is
// resolved by moving one side's new messages to fresh UIDs; nothing is lost.
func TestReplicaMail(t *testing.T) {
	ctx := context.Background()
	dataA, dataB := t.TempDir(), t.TempDir()
	a, b := openRunner(t, dataA), openRunner(t, dataB)
	ma, err := mail.NewBackend(a.Repos(), mail.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := mail.NewBackend(b.Repos(), mail.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	msg := func(subject string) []byte {
		return []byte("From: x@example.org\r\nTo: alice@home.arpa\r\nSubject: " + subject + "\r\n\r\nbody\r\n")
	}
	rootA, rootB := filepath.Join(dataA, "repos"), filepath.Join(dataB, "repos")
	repo := mail.RepoName("alice")
	if _, err := ma.Deliver(ctx, "alice", "INBOX", msg("first"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SyncRepo(ctx, rootB, "", repo); err != nil {
		t.Fatal(err)
	}
	// Different mailboxes on the two sides.
	if _, err := ma.Deliver(ctx, "alice", "INBOX", msg("second"), []imap.Flag{imap.FlagSeen}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Deliver(ctx, "alice", "Sent", msg("sent on b"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SyncRepo(ctx, rootB, "", repo); err != nil {
		t.Fatalf("sync of disjoint deliveries: %v", err)
	}
	subjects := func(root string) string {
		t.Helper()
		rs, _ := store.OpenRepos(root, &store.Options{Logger: quiet})
		defer rs.Close()
		s, err := rs.Open(ctx, repo, false)
		if err != nil {
			t.Fatal(err)
		}
		es, err := s.List(ctx, "", "msg")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			v, _, _ := s.Get(ctx, "", e.Key)
			_, sub, _ := strings.Cut(string(v), "Subject: ")
			sub, _, _ = strings.Cut(sub, "\r\n")
			out = append(out, sub)
		}
		return strings.Join(sortStrings(out), ",")
	}
	if got, want := subjects(rootA), "first,second,sent on b"; got != want {
		t.Fatalf("a holds %q, want %q", got, want)
	}
	if got, want := subjects(rootB), "first,second,sent on b"; got != want {
		t.Fatalf("b holds %q, want %q", got, want)
	}

	// The same mailbox on both sides: both allocate the same UIDs. The sync moves this
	// side's new messages to fresh UIDs and then merges; nothing is lost.
	for _, sub := range []string{"third on a", "fourth on a"} {
		if _, err := ma.Deliver(ctx, "alice", "INBOX", msg(sub), nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mb.Deliver(ctx, "alice", "INBOX", msg("third on b"), []imap.Flag{imap.FlagFlagged}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SyncRepo(ctx, rootB, "", repo); err != nil {
		t.Fatalf("sync of colliding deliveries: %v", err)
	}
	want := "first,fourth on a,second,sent on b,third on a,third on b"
	for _, root := range []string{rootA, rootB} {
		if got := subjects(root); got != want {
			t.Fatalf("%s holds %q, want %q", root, got, want)
		}
		checkMailLayout(t, root, repo)
	}
	// Mail delivered on this side after the sync gets a UID of its own.
	if _, err := ma.Deliver(ctx, "alice", "INBOX", msg("fifth on a"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	checkMailLayout(t, rootA, repo)
	if _, err := a.SyncRepo(ctx, rootB, "", repo); err != nil {
		t.Fatal(err)
	}
	// A further sync from the other side changes nothing.
	h1, _ := mustOpen(t, a, repo).Resolve(ctx, "main")
	if h2, err := b.SyncRepo(ctx, rootA, "", repo); err != nil || h2 != h1 {
		t.Fatalf("sync back: %s %v, want %s", h2, err, h1)
	}
}

// checkMailLayout checks that every mailbox's index and messages agree: one index line per
// message key, unique UIDs below uidNext.
func checkMailLayout(t *testing.T, root, repo string) {
	t.Helper()
	ctx := context.Background()
	rs, _ := store.OpenRepos(root, &store.Options{Logger: quiet})
	defer rs.Close()
	s, err := rs.Open(ctx, repo, false)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := s.List(ctx, "", "meta")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metas {
		id := filepath.Base(m.Key)
		idx, err := readIndex(ctx, s, "", id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		mv, _, _ := s.Get(ctx, "", m.Key)
		next, _, err := uidNext(mv)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := s.List(ctx, "", "msg/"+id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if len(msgs) != len(idx) {
			t.Fatalf("%s: %d messages, %d index lines", id, len(msgs), len(idx))
		}
		for _, e := range msgs {
			u, _ := strconv.ParseUint(filepath.Base(e.Key), 10, 64)
			l, ok := idx[u]
			if !ok || !strings.HasPrefix(l.head, string(e.Version)+" ") {
				t.Fatalf("%s: %s has no matching index line (%+v)", id, e.Key, l)
			}
			if u >= next {
				t.Fatalf("%s: uid %d not below uidNext %d", id, u, next)
			}
		}
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}
