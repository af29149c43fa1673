package memstore_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
	"github.com/hearth-home/hearth/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Test(t, func(t *testing.T, rules store.MergeRules) store.Store {
		s := memstore.New(&memstore.Options{MergeRules: rules})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestNilOptions(t *testing.T) {
	s := memstore.New(nil)
	defer s.Close()
	c, err := s.Commit(t.Context(), store.Change{Message: "m", Ops: []store.Op{{Key: "k", Value: []byte("v")}}})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if c.Time.IsZero() {
		t.Errorf("commit time is zero")
	}
	// No merge rules: keys both sides changed conflict.
	if _, err := s.CreateBranch(t.Context(), "b", "main"); err != nil {
		t.Fatal(err)
	}
	for _, br := range []string{"main", "b"} {
		if _, err := s.Commit(t.Context(), store.Change{Branch: br, Message: br, Ops: []store.Op{{Key: "lww/x", Value: []byte(br)}}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Merge(t.Context(), store.MergeRequest{Into: "main", From: "b"})
	var mce *store.MergeConflictError
	if !errors.As(err, &mce) || !slices.Equal(mce.Keys, []string{"lww/x"}) {
		t.Errorf("Merge without rules: %v, want a conflict on lww/x", err)
	}
}

func TestOptions(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	opts := &memstore.Options{MaxValueSize: 10, Now: func() time.Time { return now }}
	s := memstore.New(opts)
	defer s.Close()
	ctx := t.Context()
	log, err := s.Log(ctx, "main", 0)
	if err != nil || len(log) != 1 || !log[0].Time.Equal(now.Truncate(time.Second)) || log[0].Time.Location() != time.UTC {
		t.Errorf("initial commit = %+v, %v; want time %v in UTC", log, err, now.Truncate(time.Second))
	}
	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"at the limit", "0123456789", nil},
		{"over the limit", "0123456789a", store.ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.Commit(ctx, store.Change{Message: tc.name, Ops: []store.Op{{Key: "k", Value: []byte(tc.value)}}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Commit of %d bytes: %v, want %v", len(tc.value), err, tc.want)
			}
			if err == nil && !c.Time.Equal(now.Truncate(time.Second)) {
				t.Errorf("commit time %v, want Options.Now truncated to seconds", c.Time)
			}
		})
	}
}

func TestDeterministicIDs(t *testing.T) {
	now := func() time.Time { return time.Unix(1700000000, 0) }
	change := store.Change{
		Author:  store.Signature{Name: "A", Email: "a@example.org"},
		Message: "same",
		Ops:     []store.Op{{Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("1")}},
	}
	var ids []store.Hash
	for range 2 {
		s := memstore.New(&memstore.Options{Now: now})
		c, err := s.Commit(t.Context(), change)
		if err != nil {
			t.Fatal(err)
		}
		if !store.IsHash(string(c.ID)) {
			t.Errorf("commit id %q is not 40 lowercase hex", c.ID)
		}
		ids = append(ids, c.ID, c.Parents[0])
		s.Close()
	}
	if ids[0] != ids[2] || ids[1] != ids[3] {
		t.Errorf("the same commits on two stores got ids %v", ids)
	}
	if ids[0] == ids[1] {
		t.Errorf("a commit and its parent share the id %s", ids[0])
	}
	// Any field changes the id.
	variants := []struct {
		name string
		edit func(c *store.Change)
	}{
		{"message", func(c *store.Change) { c.Message = "other" }},
		{"author", func(c *store.Change) { c.Author.Email = "b@example.org" }},
		{"time", func(c *store.Change) { c.Time = time.Unix(1700000001, 0) }},
		{"value", func(c *store.Change) {
			c.Ops = []store.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("3")}}
		}},
		{"key", func(c *store.Change) {
			c.Ops = []store.Op{{Key: "a", Value: []byte("1")}, {Key: "c", Value: []byte("2")}}
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			s := memstore.New(&memstore.Options{Now: now})
			defer s.Close()
			c := change
			v.edit(&c)
			got, err := s.Commit(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID == ids[0] {
				t.Errorf("changing the %s kept the commit id %s", v.name, got.ID)
			}
		})
	}
}

func TestRepos(t *testing.T) {
	ctx := t.Context()
	rs := memstore.NewRepos(&memstore.Options{MaxValueSize: 4})
	if names, err := rs.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("List of new Repos = %q, %v; want none", names, err)
	}
	if _, err := rs.Open(ctx, "alice/mail", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open of a missing repository without create: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "alice", "Alice/mail", "alice/mail.git", "a/b/c", "alice/-x", "../x"} {
		if _, err := rs.Open(ctx, bad, true); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Open(%q): %v, want ErrInvalid", bad, err)
		}
	}
	mail, err := rs.Open(ctx, "alice/mail", true)
	if err != nil {
		t.Fatalf("Open(alice/mail, create): %v", err)
	}
	if _, err := mail.Commit(ctx, store.Change{Message: "m", Ops: []store.Op{{Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if _, err := mail.Commit(ctx, store.Change{Message: "m", Ops: []store.Op{{Key: "k", Value: []byte("12345")}}}); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("Commit over the Repos' MaxValueSize: %v, want ErrTooLarge", err)
	}
	again, err := rs.Open(ctx, "alice/mail", false)
	if err != nil {
		t.Fatalf("Open(alice/mail) again: %v", err)
	}
	if v, _, err := again.Get(ctx, "main", "k"); err != nil || string(v) != "v" {
		t.Errorf("reopened repository: Get = %q, %v; want the value committed before", v, err)
	}
	if _, err := rs.Open(ctx, "bob/contacts", true); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Open(ctx, "alice/contacts", true); err != nil {
		t.Fatal(err)
	}
	if names, err := rs.List(ctx); err != nil || !slices.Equal(names, []string{"alice/contacts", "alice/mail", "bob/contacts"}) {
		t.Errorf("List = %q, %v", names, err)
	}
	if err := rs.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, err := mail.Get(ctx, "main", "k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get on a repository after Repos.Close: %v, want ErrClosed", err)
	}
	if _, err := rs.Open(ctx, "alice/mail", false); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
	if _, err := rs.List(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}

// TestWatchDoesNotBlockOnAbandonedReceiver checks that a watcher nobody reads and whose
// context never ends does not hold up writers, and that Close still ends it.
func TestWatchDoesNotBlockOnAbandonedReceiver(t *testing.T) {
	s := memstore.New(nil)
	ch, err := s.Watch(t.Context(), "main", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := s.Commit(t.Context(), store.Change{Message: "m", Ops: []store.Op{{Key: "k", Value: []byte{byte(i)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Events may be coalesced; they must reach the last commit and never go back.
	var last store.Hash
	for n := 0; last != store.BlobHash([]byte{199}); n++ {
		ev, ok := <-ch
		if !ok || n >= 200 || len(ev.Diffs) != 1 || ev.Diffs[0].Old != last && last != "" {
			t.Fatalf("event %d = %+v, %v; want a change of k following the previous one", n, ev, ok)
		}
		last = ev.Diffs[0].New
	}
	s.Close()
	for range ch {
	}
}
