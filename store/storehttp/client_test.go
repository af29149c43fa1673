package storehttp

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

var alice = store.Signature{Name: "alice", Email: "alice@localhost"}

func TestClientRoundTrip(t *testing.T) {
	e := newEnv(t, Options{})
	e.store("alice/mail")
	c := e.client("alice", "alice/mail")
	ctx := t.Context()

	keys := []string{"a b/c", "ü/ß€", "100%/x?y#z", "plus+/semi;colon:@&=$,", "INBOX/1"}
	var ops []store.Op
	for _, k := range keys {
		ops = append(ops, store.Op{Key: k, Value: []byte("v:" + k)})
	}
	ops = append(ops, store.Op{Key: "empty"})
	commit, err := c.Commit(ctx, store.Change{Author: alice, Message: "many", Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, en, err := c.Get(ctx, "", k)
		if err != nil || string(v) != "v:"+k || en != (store.Entry{Key: k, Version: store.BlobHash(v), Size: int64(len(v))}) {
			t.Errorf("Get(%q) = %q, %+v, %v", k, v, en, err)
		}
		st, err := c.Stat(ctx, string(commit.ID), k)
		if err != nil || st != en {
			t.Errorf("Stat(%q) = %+v, %v; want %+v", k, st, err, en)
		}
		hs, err := c.History(ctx, "", k, 0)
		if err != nil || len(hs) != 1 || hs[0].ID != commit.ID {
			t.Errorf("History(%q) = %+v, %v", k, hs, err)
		}
	}
	v, en, err := c.Get(ctx, "", "empty")
	if err != nil || v == nil || len(v) != 0 || en.Size != 0 {
		t.Errorf("Get(empty) = %#v, %+v, %v; want a non-nil empty value", v, en, err)
	}
	if st, err := c.Stat(ctx, "", "empty"); err != nil || st.Size != 0 || st.Version != store.BlobHash(nil) {
		t.Errorf("Stat(empty) = %+v, %v", st, err)
	}
	es, err := c.List(ctx, "", "a b")
	if err != nil || len(es) != 1 || es[0].Key != "a b/c" {
		t.Errorf("List(a b) = %+v, %v", es, err)
	}
	ds, err := c.Diff(ctx, "", "main", "ü")
	if err != nil || len(ds) != 1 || ds[0].Key != "ü/ß€" || ds[0].Kind != store.Added {
		t.Errorf("Diff = %+v, %v", ds, err)
	}
	lg, err := c.Log(ctx, "main", 1)
	if err != nil || len(lg) != 1 || lg[0].ID != commit.ID || lg[0].Author != alice || lg[0].Message != "many" {
		t.Errorf("Log = %+v, %v", lg, err)
	}
	head, err := c.Resolve(ctx, "")
	if err != nil || head != commit.ID {
		t.Errorf("Resolve = %s, %v", head, err)
	}
	b, err := c.CreateBranch(ctx, "side", "main")
	if err != nil || b != (store.Branch{Name: "side", Head: commit.ID}) {
		t.Errorf("CreateBranch = %+v, %v", b, err)
	}
	side, err := c.Commit(ctx, store.Change{Branch: "side", Parent: commit.ID, Author: alice, Message: "side", Ops: []store.Op{{Key: "INBOX/1", Delete: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FastForward(ctx, "main", side.ID); err != nil {
		t.Fatal(err)
	}
	m, err := c.Merge(ctx, store.MergeRequest{Into: "main", From: "side", Author: alice, Message: "noop"})
	if err != nil || m.ID != side.ID {
		t.Errorf("Merge of an ancestor = %+v, %v; want the head", m, err)
	}
	rv, err := c.Revert(ctx, store.RevertRequest{Branch: "main", Prefix: "INBOX", To: commit.ID, Author: alice, Message: "undo"})
	if err != nil || len(rv.Parents) != 1 || rv.Parents[0] != side.ID {
		t.Errorf("Revert = %+v, %v", rv, err)
	}
	if err := c.DeleteBranch(ctx, "side"); err != nil {
		t.Error(err)
	}
	bs, err := c.Branches(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "main" {
		t.Errorf("Branches = %+v, %v", bs, err)
	}

	// The server, not the client, decides the author by default.
	own, err := c.Commit(ctx, store.Change{Author: store.Signature{Name: "Someone", Email: "else@example.org"}, Message: "x", Ops: []store.Op{{Key: "x"}}})
	if err != nil || own.Author != alice {
		t.Errorf("Commit author = %+v, %v; want alice", own.Author, err)
	}
}

func TestClientBearerToken(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "a", "1")
	c := NewClient(e.srv.URL+"/", "alice/mail", ClientOptions{Token: "token-alice", HTTPClient: e.srv.Client()})
	defer c.Close()
	if v, _, err := c.Get(t.Context(), "", "a"); err != nil || string(v) != "1" {
		t.Errorf("Get with a token = %q, %v", v, err)
	}
}

func TestClientErrors(t *testing.T) {
	e := newEnv(t, Options{MaxBody: 1 << 10})
	base := e.commit("alice/mail", "", "dir/k", "1", "x", "0")
	e.store("alice/mail").CreateBranch(context.Background(), "other", "main")
	e.commit("alice/mail", "main", "x", "main")
	e.commit("alice/mail", "other", "x", "other")
	closed := e.store("alice/closed")
	closed.Close()
	c := e.client("alice", "alice/mail")
	ctx := t.Context()
	wrongV := store.BlobHash([]byte("nope"))

	tests := []struct {
		name string
		fn   func() error
		want error
		// check looks at the typed error when set.
		check func(t *testing.T, err error)
	}{
		{"get missing", func() error { _, _, err := c.Get(ctx, "", "nope"); return err }, store.ErrNotFound, nil},
		{"get directory", func() error { _, _, err := c.Get(ctx, "", "dir"); return err }, store.ErrNotFound, nil},
		{"stat missing", func() error { _, err := c.Stat(ctx, "", "nope"); return err }, store.ErrNotFound, nil},
		{"stat at missing branch", func() error { _, err := c.Stat(ctx, "nope", "x"); return err }, store.ErrNotFound, nil},
		{"get bad key", func() error { _, _, err := c.Get(ctx, "", "a/../b"); return err }, store.ErrInvalid, nil},
		{"list bad prefix", func() error { _, err := c.List(ctx, "", "a/"); return err }, store.ErrInvalid, nil},
		{"log bad rev", func() error { _, err := c.Log(ctx, "a..b", 0); return err }, store.ErrInvalid, nil},
		{"resolve missing", func() error { _, err := c.Resolve(ctx, "nope"); return err }, store.ErrNotFound, nil},
		{"create existing branch", func() error { _, err := c.CreateBranch(ctx, "other", "main"); return err }, store.ErrConflict, nil},
		{"delete main", func() error { return c.DeleteBranch(ctx, "main") }, store.ErrInvalid, nil},
		{"fast-forward to non-descendant", func() error { return c.FastForward(ctx, "main", base.ID) }, store.ErrConflict, nil},
		{"value over the server limit", func() error {
			_, err := c.Commit(ctx, store.Change{Ops: []store.Op{{Key: "big", Value: make([]byte, 2<<10)}}})
			return err
		}, store.ErrTooLarge, nil},
		{"too many ops (checked locally)", func() error {
			_, err := c.Commit(ctx, store.Change{Ops: make([]store.Op, store.MaxOps+1)})
			return err
		}, store.ErrTooLarge, nil},
		{"shape conflict", func() error {
			_, err := c.Commit(ctx, store.Change{Ops: []store.Op{{Key: "dir/k/deeper"}}})
			return err
		}, store.ErrConflict, func(t *testing.T, err error) {
			var pe *store.PreconditionError
			if errors.As(err, &pe) {
				t.Errorf("shape conflict is a PreconditionError: %v", err)
			}
		}},
		{"if-match", func() error {
			_, err := c.Commit(ctx, store.Change{Ops: []store.Op{{Key: "dir/k", IfMatch: wrongV}}})
			return err
		}, store.ErrConflict, func(t *testing.T, err error) {
			var pe *store.PreconditionError
			if !errors.As(err, &pe) || *pe != (store.PreconditionError{Branch: "main", Key: "dir/k", Want: wrongV, Have: store.BlobHash([]byte("1"))}) {
				t.Errorf("error %v, want a PreconditionError on dir/k", err)
			}
		}},
		{"stale parent", func() error {
			_, err := c.Commit(ctx, store.Change{Parent: base.ID, Ops: []store.Op{{Key: "y"}}})
			return err
		}, store.ErrConflict, func(t *testing.T, err error) {
			var pe *store.PreconditionError
			if !errors.As(err, &pe) || pe.Key != "" || pe.Want != base.ID || pe.Branch != "main" || !store.IsHash(string(pe.Have)) {
				t.Errorf("error %v, want a PreconditionError on the head", err)
			}
		}},
		{"merge conflict", func() error {
			_, err := c.Merge(ctx, store.MergeRequest{Into: "main", From: "other"})
			return err
		}, store.ErrConflict, func(t *testing.T, err error) {
			var mc *store.MergeConflictError
			if !errors.As(err, &mc) || !slices.Equal(mc.Keys, []string{"x"}) {
				t.Errorf("error %v, want a MergeConflictError on x", err)
			}
		}},
		{"closed server store", func() error {
			_, err := e.client("alice", "alice/closed").Resolve(ctx, "")
			return err
		}, store.ErrClosed, nil},
		{"missing repository", func() error {
			_, err := e.client("alice", "alice/none").Resolve(ctx, "")
			return err
		}, store.ErrNotFound, nil},
		{"another user's repository", func() error {
			_, err := e.client("bob", "alice/mail").Resolve(ctx, "")
			return err
		}, store.ErrNotFound, nil},
		{"bad password", func() error {
			bad := NewClient(e.srv.URL, "alice/mail", ClientOptions{User: "alice", Password: "wrong"})
			defer bad.Close()
			_, err := bad.Resolve(ctx, "")
			return err
		}, ErrUnauthorized, nil},
		{"bad base URL", func() error {
			_, err := NewClient("ftp://x", "alice/mail", ClientOptions{}).Resolve(ctx, "")
			return err
		}, store.ErrInvalid, nil},
		{"bad repository name", func() error {
			_, err := NewClient(e.srv.URL, "alice", ClientOptions{}).Resolve(ctx, "")
			return err
		}, store.ErrInvalid, nil},
		{"internal server error", func() error {
			_, err := e.client("alice", "alice/broken").Resolve(ctx, "")
			return err
		}, nil, func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "500") {
				t.Errorf("error %v, want one naming status 500", err)
			}
			for _, s := range []error{store.ErrNotFound, store.ErrInvalid, store.ErrConflict, store.ErrClosed, store.ErrTooLarge} {
				if errors.Is(err, s) {
					t.Errorf("500 maps to %v", s)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fn()
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "storehttp: ") {
				t.Errorf("error %q does not say where it comes from", err)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

func TestClientClose(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "a", "1")
	c := e.client("alice", "alice/mail")
	ctx := t.Context()
	events, err := c.Watch(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Error("watch delivered an event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch channel still open 10s after Close")
	}
	calls := map[string]func() error{
		"Get":          func() error { _, _, err := c.Get(ctx, "", "a"); return err },
		"Stat":         func() error { _, err := c.Stat(ctx, "", "a"); return err },
		"List":         func() error { _, err := c.List(ctx, "", ""); return err },
		"Resolve":      func() error { _, err := c.Resolve(ctx, ""); return err },
		"Commit":       func() error { _, err := c.Commit(ctx, store.Change{Ops: []store.Op{{Key: "b"}}}); return err },
		"Revert":       func() error { _, err := c.Revert(ctx, store.RevertRequest{}); return err },
		"Log":          func() error { _, err := c.Log(ctx, "", 0); return err },
		"History":      func() error { _, err := c.History(ctx, "", "a", 0); return err },
		"Diff":         func() error { _, err := c.Diff(ctx, "", "", ""); return err },
		"Branches":     func() error { _, err := c.Branches(ctx); return err },
		"CreateBranch": func() error { _, err := c.CreateBranch(ctx, "x", ""); return err },
		"DeleteBranch": func() error { return c.DeleteBranch(ctx, "x") },
		"FastForward":  func() error { return c.FastForward(ctx, "main", store.Missing) },
		"Merge":        func() error { _, err := c.Merge(ctx, store.MergeRequest{}); return err },
		"Watch":        func() error { _, err := c.Watch(ctx, "", ""); return err },
		"bad key":      func() error { _, _, err := c.Get(ctx, "", ""); return err },
	}
	for name, fn := range calls {
		if err := fn(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestClientCloseUnblocks checks that a call waiting on the server returns ErrClosed when
// the client closes.
func TestClientCloseUnblocks(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := NewClient(srv.URL, "alice/mail", ClientOptions{})
	done := make(chan error, 1)
	go func() { _, err := c.Resolve(context.Background(), ""); done <- err }()
	<-entered
	c.Close()
	if err := <-done; !errors.Is(err, store.ErrClosed) {
		t.Errorf("blocked Resolve after Close: %v, want ErrClosed", err)
	}
}

func TestClientWatch(t *testing.T) {
	e := newEnv(t, Options{})
	e.commit("alice/mail", "", "INBOX/1", "a")
	c := e.client("alice", "alice/mail")

	if _, err := c.Watch(t.Context(), "nope", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Watch of a missing branch: %v, want ErrNotFound", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	events, err := c.Watch(ctx, "main", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	// The receiver is slow: three commits happen before it reads. It must end up with
	// the last commit and every change since the watch began, in one or more events.
	e.commit("alice/mail", "", "INBOX/2", "b")
	e.commit("alice/mail", "", "elsewhere", "x")
	e.commit("alice/mail", "", "INBOX/2", "c", "INBOX/1", "z")
	last := e.commit("alice/mail", "", "INBOX/3", "d")
	got := map[string]store.Diff{}
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("channel closed early")
			}
			for _, d := range ev.Diffs {
				if prev, ok := got[d.Key]; ok {
					d.Old = prev.Old
				}
				got[d.Key] = d
			}
			done = ev.Commit.ID == last.ID
		case <-timeout:
			t.Fatal("no event for the last commit within 10s")
		}
	}
	want := map[string]store.Hash{"INBOX/1": store.BlobHash([]byte("z")), "INBOX/2": store.BlobHash([]byte("c")), "INBOX/3": store.BlobHash([]byte("d"))}
	if len(got) != len(want) {
		t.Errorf("changes seen = %+v, want keys of %v", got, want)
	}
	for k, v := range want {
		if got[k].New != v {
			t.Errorf("%s: new version %s, want %s", k, got[k].New, v)
		}
	}
	cancel()
	for range events {
	}
}

// TestClientWatchStreamEnds checks that the channel closes when the server's store closes.
func TestClientWatchStreamEnds(t *testing.T) {
	e := newEnv(t, Options{})
	s := e.store("alice/mail")
	c := e.client("alice", "alice/mail")
	events, err := c.Watch(t.Context(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case _, ok := <-events:
		if ok {
			t.Error("event after the store closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel open 10s after the server's store closed")
	}
}

func TestCoalesce(t *testing.T) {
	v := func(s string) store.Hash { return store.BlobHash([]byte(s)) }
	commit1 := store.Commit{ID: v("c1")}
	commit2 := store.Commit{ID: v("c2")}
	tests := []struct {
		name string
		a, b []store.Diff
		want []store.Diff
	}{
		{"disjoint keys", []store.Diff{{Key: "b", Kind: store.Added, New: v("1")}}, []store.Diff{{Key: "a", Kind: store.Deleted, Old: v("0")}},
			[]store.Diff{{Key: "a", Kind: store.Deleted, Old: v("0")}, {Key: "b", Kind: store.Added, New: v("1")}}},
		{"added then modified", []store.Diff{{Key: "k", Kind: store.Added, New: v("1")}}, []store.Diff{{Key: "k", Kind: store.Modified, Old: v("1"), New: v("2")}},
			[]store.Diff{{Key: "k", Kind: store.Added, New: v("2")}}},
		{"added then deleted", []store.Diff{{Key: "k", Kind: store.Added, New: v("1")}}, []store.Diff{{Key: "k", Kind: store.Deleted, Old: v("1")}},
			[]store.Diff{}},
		{"deleted then added", []store.Diff{{Key: "k", Kind: store.Deleted, Old: v("1")}}, []store.Diff{{Key: "k", Kind: store.Added, New: v("2")}},
			[]store.Diff{{Key: "k", Kind: store.Modified, Old: v("1"), New: v("2")}}},
		{"modified back", []store.Diff{{Key: "k", Kind: store.Modified, Old: v("1"), New: v("2")}}, []store.Diff{{Key: "k", Kind: store.Modified, Old: v("2"), New: v("1")}},
			[]store.Diff{}},
		{"modified then deleted", []store.Diff{{Key: "k", Kind: store.Modified, Old: v("1"), New: v("2")}}, []store.Diff{{Key: "k", Kind: store.Deleted, Old: v("2")}},
			[]store.Diff{{Key: "k", Kind: store.Deleted, Old: v("1")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := coalesce(store.Event{Branch: "main", Commit: commit1, Diffs: tc.a}, store.Event{Branch: "main", Commit: commit2, Diffs: tc.b})
			if got.Commit.ID != commit2.ID || got.Branch != "main" || !slices.Equal(got.Diffs, tc.want) {
				t.Errorf("coalesce = %+v, want commit %s with %+v", got, commit2.ID, tc.want)
			}
		})
	}
}

func TestDeliverCoalescesAndDrainsOnEnd(t *testing.T) {
	in := make(chan store.Event, 3)
	out := make(chan store.Event)
	add := func(id, key, val string) store.Event {
		return store.Event{Branch: "main", Commit: store.Commit{ID: store.BlobHash([]byte(id))}, Diffs: []store.Diff{{Key: key, Kind: store.Added, New: store.BlobHash([]byte(val))}}}
	}
	in <- add("1", "a", "x")
	in <- add("2", "b", "y")
	in <- add("3", "c", "z")
	close(in)
	finished := make(chan struct{})
	go func() { deliver(t.Context(), in, out); close(finished) }()
	var got []store.Event
	for done := false; !done; {
		select {
		case ev := <-out:
			got = append(got, ev)
		case <-finished: // deliver returns only once nothing is pending
			done = true
		}
	}
	var keys []string
	for _, ev := range got {
		for _, d := range ev.Diffs {
			keys = append(keys, d.Key)
		}
	}
	if len(got) == 0 || got[len(got)-1].Commit.ID != store.BlobHash([]byte("3")) || !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Errorf("delivered %+v; want every change, ending at commit 3", got)
	}
}

func TestReadEvents(t *testing.T) {
	tests := []struct {
		name    string
		stream  string
		want    []string // commit messages of the events
		wantErr bool
	}{
		{"one", "data: {\"branch\":\"main\",\"commit\":{\"message\":\"m1\"}}\n\n", []string{"m1"}, false},
		{"comments and other fields", ": hi\nevent: x\nid: 3\ndata: {\"commit\":{\"message\":\"m1\"}}\n\n: keep-alive\n\n", []string{"m1"}, false},
		{"CRLF", "data: {\"commit\":{\"message\":\"m1\"}}\r\n\r\n", []string{"m1"}, false},
		{"data over two lines", "data: {\"commit\":\ndata: {\"message\":\"m2\"}}\n\n", []string{"m2"}, false},
		{"two", "data: {\"commit\":{\"message\":\"a\"}}\n\ndata:{\"commit\":{\"message\":\"b\"}}\n\n", []string{"a", "b"}, false},
		{"unterminated last event", "data: {\"commit\":{\"message\":\"a\"}}\n", nil, false},
		{"bad JSON", "data: {nope\n\n", nil, true},
		{"unknown fields are fine", "data: {\"commit\":{\"message\":\"a\"},\"extra\":1}\n\n", []string{"a"}, false},
		{"empty", "", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := readEvents(strings.NewReader(tc.stream), func(ev store.Event) bool {
				got = append(got, ev.Commit.Message)
				return true
			})
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("readEvents = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	huge := "data: " + strings.Repeat("x", maxEventSize+10) + "\n\n"
	if err := readEvents(bytes.NewReader([]byte(huge)), func(store.Event) bool { return true }); err == nil {
		t.Error("an event over the limit was accepted")
	}
}
