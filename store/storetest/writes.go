package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

func testAtomicCommit(h *harness) {
	before := len(h.log("main", 0))
	c := h.commit("main", "three keys", put("x", "1"), put("y", "2"), put("z/w", "3"))
	if n := len(h.log("main", 0)); n != before+1 {
		h.t.Errorf("one Change with three ops made %d commits, want 1", n-before)
	}
	for _, k := range []string{"x", "y", "z/w"} {
		hist, err := h.s.History(h.ctx, "main", k, 0)
		if err != nil || len(hist) != 1 || hist[0].ID != c.ID {
			h.t.Errorf("History(main, %q) = %s, %v; want just the commit of the change", k, describeCommits(hist), err)
		}
	}
	head := h.head("main")
	want := map[string]string{"x": "1", "y": "2", "z/w": "3"}

	h.run("failing IfMatch leaves nothing", func(h *harness) {
		bad := store.BlobHash([]byte("not the value"))
		_, err := h.s.Commit(h.ctx, store.Change{Author: author, Message: "half", Ops: []store.Op{
			put("p", "new key"),
			{Key: "x", Value: []byte("changed"), IfMatch: bad},
			del("y"),
		}})
		h.wantPrecondition("Commit with a stale IfMatch on x", err,
			store.PreconditionError{Branch: "main", Key: "x", Want: bad, Have: store.BlobHash([]byte("1"))})
		h.wantHead("main", head, "after a failed Commit")
		h.wantState("main", want)
	})
	h.run("unknown Copy leaves nothing", func(h *harness) {
		_, err := h.try("main", "half", put("p", "new key"), del("x"), store.Op{Key: "q", Copy: unknownHash})
		h.wantErr("Commit copying an unknown version", err, store.ErrNotFound)
		h.wantHead("main", head, "after a failed Commit")
		h.wantState("main", want)
	})
	h.run("shape conflict leaves nothing", func(h *harness) {
		_, err := h.try("main", "half", put("p", "new key"), del("y"), put("x/below", "v"))
		h.wantErr("Commit putting x/below while x is a value", err, store.ErrConflict)
		h.wantHead("main", head, "after a failed Commit")
		h.wantState("main", want)
	})
}

func testParentCAS(h *harness) {
	h0 := h.head("main")
	c1 := h.change(store.Change{Branch: "main", Parent: h0, Message: "on h0", Ops: []store.Op{put("a", "1")}})
	if !slices.Equal(c1.Parents, []store.Hash{h0}) {
		h.t.Errorf("commit parents %v, want [%s]", c1.Parents, h0)
	}
	_, err := h.s.Commit(h.ctx, store.Change{Parent: h0, Author: author, Message: "stale", Ops: []store.Op{put("a", "2")}})
	h.wantPrecondition("Commit with a stale Parent", err, store.PreconditionError{Branch: "main", Want: h0, Have: c1.ID})
	_, err = h.s.Commit(h.ctx, store.Change{Branch: "main", Parent: store.Missing, Author: author, Message: "exists", Ops: []store.Op{put("a", "2")}})
	h.wantPrecondition("Commit with Parent Missing on an existing branch", err, store.PreconditionError{Branch: "main", Want: store.Missing, Have: c1.ID})
	h.wantHead("main", c1.ID, "after failed compare-and-swaps")
	h.wantValue("main", "a", "1")
	c2 := h.change(store.Change{Parent: c1.ID, Message: "on c1", Ops: []store.Op{put("a", "2")}})
	h.wantHead("main", c2.ID, `Commit with Branch "" and the right Parent`)

	h.run("Missing creates a branch", func(h *harness) {
		root := h.change(store.Change{Branch: "fresh", Parent: store.Missing, Message: "root of fresh", Ops: []store.Op{put("only", "here")}})
		if len(root.Parents) != 0 {
			h.t.Errorf("the first commit of a new branch has parents %v, want none", root.Parents)
		}
		h.wantHead("fresh", root.ID, "after creating a branch by Commit")
		h.wantState("fresh", map[string]string{"only": "here"})
		h.wantCommits("Log(fresh)", h.log("fresh", 0), []store.Commit{root})
		h.wantValue("main", "a", "2")
		_, err := h.s.Commit(h.ctx, store.Change{Branch: "fresh", Parent: store.Missing, Author: author, Message: "again", Ops: []store.Op{put("only", "x")}})
		h.wantPrecondition("Commit with Parent Missing on the branch it created", err, store.PreconditionError{Branch: "fresh", Want: store.Missing, Have: root.ID})
	})
	h.run("missing branch", func(h *harness) {
		for _, parent := range []store.Hash{"", c2.ID, unknownHash} {
			_, err := h.s.Commit(h.ctx, store.Change{Branch: "ghost", Parent: parent, Author: author, Message: "ghost", Ops: []store.Op{put("g", "1")}})
			h.wantErr(fmt.Sprintf("Commit on a missing branch with Parent %q", parent), err, store.ErrNotFound)
		}
		_, err := h.s.Resolve(h.ctx, "ghost")
		h.wantErr("Resolve(ghost) after failed commits", err, store.ErrNotFound)
	})
}

func testIfMatch(h *harness) {
	h.commit("main", "create k", store.Op{Key: "k", Value: []byte("v1"), IfMatch: store.Missing})
	v1 := store.BlobHash([]byte("v1"))
	_, err := h.try("main", "create k again", store.Op{Key: "k", Value: []byte("v2"), IfMatch: store.Missing})
	h.wantPrecondition("IfMatch Missing on an existing key", err, store.PreconditionError{Branch: "main", Key: "k", Want: store.Missing, Have: v1})

	h.commit("main", "update k", store.Op{Key: "k", Value: []byte("v2"), IfMatch: v1})
	v2 := store.BlobHash([]byte("v2"))
	_, err = h.try("main", "stale update", store.Op{Key: "k", Value: []byte("v3"), IfMatch: v1})
	h.wantPrecondition("IfMatch with a stale version", err, store.PreconditionError{Branch: "main", Key: "k", Want: v1, Have: v2})
	h.wantValue("main", "k", "v2")

	h.commit("main", "delete k", store.Op{Key: "k", Delete: true, IfMatch: v2})
	h.wantMissing("main", "k")
	_, err = h.try("main", "delete absent k", store.Op{Key: "k", Delete: true, IfMatch: v2})
	h.wantPrecondition("IfMatch on an absent key", err, store.PreconditionError{Branch: "main", Key: "k", Want: v2, Have: store.Missing})

	head := h.head("main")
	c := h.commit("main", "delete absent k", del("k"))
	if c.ID != head {
		h.t.Errorf("deleting a missing key made commit %s, want no commit (head %s returned)", short(c.ID), short(head))
	}
	c = h.commit("main", "delete absent k if absent", store.Op{Key: "k", Delete: true, IfMatch: store.Missing})
	if c.ID != head {
		h.t.Errorf("deleting a missing key with IfMatch Missing made commit %s, want none", short(c.ID))
	}
	h.wantHead("main", head, "after no-op deletes")
}

func testCopy(h *harness) {
	h.commit("main", "put a", put("a", "payload"), put("gone", "only in history"))
	h.commit("main", "delete gone", del("gone"))
	version := store.BlobHash([]byte("payload"))
	h.commit("main", "copy", store.Op{Key: "b/c", Copy: version}, store.Op{Key: "d", Copy: store.BlobHash([]byte("only in history"))})
	h.wantValue("main", "b/c", "payload")
	h.wantValue("main", "d", "only in history")
	if e, err := h.s.Stat(h.ctx, "main", "b/c"); err != nil || e.Version != version {
		h.t.Errorf("Stat(main, b/c) after Copy = %+v, %v; want version %s", e, err, version)
	}
	head := h.head("main")
	_, err := h.try("main", "copy unknown", store.Op{Key: "e", Copy: unknownHash})
	h.wantErr("Copy of an unknown version", err, store.ErrNotFound)
	_, err = h.try("main", "copy with value", store.Op{Key: "e", Copy: version, Value: []byte("x")})
	h.wantErr("Copy with a Value", err, store.ErrInvalid)
	_, err = h.try("main", "copy with delete", store.Op{Key: "e", Copy: version, Delete: true})
	h.wantErr("Copy with Delete", err, store.ErrInvalid)
	h.wantHead("main", head, "after failed copies")
	h.wantMissing("main", "e")
}

func testShapeConflicts(h *harness) {
	h.commit("main", "values", put("a", "1"), put("d/e", "2"))
	head := h.head("main")
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"below a value", []store.Op{put("a/b", "x")}},
		{"deep below a value", []store.Op{put("a/b/c", "x")}},
		{"value over a directory", []store.Op{put("d", "x")}},
		{"copy over a directory", []store.Op{{Key: "d", Copy: store.BlobHash([]byte("1"))}}},
		{"both in one change", []store.Op{put("x", "1"), put("x/y", "2")}},
	}
	for _, tc := range tests {
		h.run(tc.name, func(h *harness) {
			_, err := h.try("main", tc.name, tc.ops...)
			h.wantErr(describeOps(tc.ops), err, store.ErrConflict)
			var pe *store.PreconditionError
			if errors.As(err, &pe) {
				h.t.Errorf("%s: error is a PreconditionError (%v), want a plain ErrConflict", describeOps(tc.ops), err)
			}
			h.wantHead("main", head, "after a conflicting change")
		})
	}
	h.run("after removing the value", func(h *harness) {
		h.commit("main", "delete a", del("a"))
		h.commit("main", "a is a directory now", put("a/b", "x"))
		h.commit("main", "d/e goes", del("d/e"))
		h.commit("main", "d is a value now", put("d", "y"))
		h.wantState("main", map[string]string{"a/b": "x", "d": "y"})
	})
}

func testInvalidKeys(h *harness) {
	// Malformed keys and prefixes.
	badKeys := []struct{ name, key string }{
		{"empty", ""},
		{"dot-dot", ".."},
		{"dot-dot segment", "a/../b"},
		{"dot segment", "a/./b"},
		{"empty segment", "a//b"},
		{"leading slash", "/a"},
		{"trailing slash", "a/"},
		{"NUL", "a\x00b"},
		{"newline", "a\nb"},
		{"backslash", `a\b`},
		{".git", ".git"},
		{".Git segment", "x/.Git/y"},
		{"over-long key", strings.Repeat("abcdefghi/", 103) + "z"},
		{"over-long segment", strings.Repeat("s", store.MaxSegmentLen+1)},
		{"not UTF-8", "a\xffb"},
	}
	h.commit("main", "seed", put("seed", "1"))
	head := h.head("main")
	for _, tc := range badKeys {
		h.run(tc.name, func(h *harness) {
			_, err := h.try("main", "bad put", put(tc.key, "v"))
			h.wantErr(fmt.Sprintf("put %q", tc.key), err, store.ErrInvalid)
			_, err = h.try("main", "bad delete", del(tc.key))
			h.wantErr(fmt.Sprintf("delete %q", tc.key), err, store.ErrInvalid)
			_, _, err = h.s.Get(h.ctx, "main", tc.key)
			h.wantErr(fmt.Sprintf("Get %q", tc.key), err, store.ErrInvalid)
			_, err = h.s.Stat(h.ctx, "main", tc.key)
			h.wantErr(fmt.Sprintf("Stat %q", tc.key), err, store.ErrInvalid)
			_, err = h.s.History(h.ctx, "main", tc.key, 0)
			h.wantErr(fmt.Sprintf("History %q", tc.key), err, store.ErrInvalid)
			if tc.key == "" {
				return // "" is a valid prefix: everything
			}
			_, err = h.s.List(h.ctx, "main", tc.key)
			h.wantErr(fmt.Sprintf("List prefix %q", tc.key), err, store.ErrInvalid)
			_, err = h.s.Diff(h.ctx, "", "main", tc.key)
			h.wantErr(fmt.Sprintf("Diff prefix %q", tc.key), err, store.ErrInvalid)
			_, err = h.s.Revert(h.ctx, store.RevertRequest{Branch: "main", Prefix: tc.key, To: head, Author: author, Message: "bad"})
			h.wantErr(fmt.Sprintf("Revert prefix %q", tc.key), err, store.ErrInvalid)
			ch, err := h.s.Watch(h.ctx, "main", tc.key)
			h.wantErr(fmt.Sprintf("Watch prefix %q", tc.key), err, store.ErrInvalid)
			if ch != nil && err == nil {
				h.t.Errorf("Watch prefix %q returned a channel", tc.key)
			}
		})
	}
	h.wantHead("main", head, "after invalid keys")

	h.run("valid edge cases", func(h *harness) {
		good := []string{
			strings.Repeat("abcdefghi/", 102) + "wxyz", // exactly MaxKeyLen
			strings.Repeat("s", store.MaxSegmentLen),
			"ünïcødé/日本",
			".gitignore/x.git",
			"a b/c~d:e",
			"-dash/_under/.hidden",
		}
		for i, k := range good {
			h.commit("main", fmt.Sprintf("edge case %d", i), put(k, "ok"))
			h.wantValue("main", k, "ok")
		}
	})
}

func testInvalidBranches(h *harness) {
	// Malformed branch names; rev says whether the name is also a malformed revision
	// (a commit id is a valid revision that names nothing).
	badBranches := []struct {
		name, branch string
		rev          bool
	}{
		{"dot-dot", "a..b", true},
		{"space", "a b", true},
		{"tilde", "a~1", true},
		{"colon", "a:b", true},
		{"lock suffix", "x.lock", true},
		{"leading dot", ".hidden", true},
		{"trailing dot", "x.", true},
		{"double slash", "a//b", true},
		{"trailing slash", "a/", true},
		{"HEAD", "HEAD", true},
		{"too long", strings.Repeat("b", store.MaxBranchLen+1), true},
		{"NUL", "a\x00", true},
		{"unicode", "zweig-ü", true},
		{"commit id", string(unknownHash), false},
	}
	head := h.head("main")
	for _, tc := range badBranches {
		h.run(tc.name, func(h *harness) {
			_, err := h.s.CreateBranch(h.ctx, tc.branch, "main")
			h.wantErr(fmt.Sprintf("CreateBranch(%q)", tc.branch), err, store.ErrInvalid)
			_, err = h.try(tc.branch, "bad branch", put("k", "v"))
			h.wantErr(fmt.Sprintf("Commit on branch %q", tc.branch), err, store.ErrInvalid)
			_, err = h.s.Commit(h.ctx, store.Change{Branch: tc.branch, Parent: store.Missing, Author: author, Message: "bad", Ops: []store.Op{put("k", "v")}})
			h.wantErr(fmt.Sprintf("Commit creating branch %q", tc.branch), err, store.ErrInvalid)
			err = h.s.DeleteBranch(h.ctx, tc.branch)
			h.wantErr(fmt.Sprintf("DeleteBranch(%q)", tc.branch), err, store.ErrInvalid)
			err = h.s.FastForward(h.ctx, tc.branch, head)
			h.wantErr(fmt.Sprintf("FastForward(%q)", tc.branch), err, store.ErrInvalid)
			_, err = h.s.Watch(h.ctx, tc.branch, "")
			h.wantErr(fmt.Sprintf("Watch(%q)", tc.branch), err, store.ErrInvalid)
			_, err = h.s.Merge(h.ctx, store.MergeRequest{Into: tc.branch, From: "main", Author: author, Message: "bad"})
			h.wantErr(fmt.Sprintf("Merge into %q", tc.branch), err, store.ErrInvalid)
			_, err = h.s.Revert(h.ctx, store.RevertRequest{Branch: tc.branch, To: head, Author: author, Message: "bad"})
			h.wantErr(fmt.Sprintf("Revert on %q", tc.branch), err, store.ErrInvalid)
			want := store.ErrInvalid
			if !tc.rev {
				want = store.ErrNotFound
			}
			_, _, err = h.s.Get(h.ctx, tc.branch, "k")
			h.wantErr(fmt.Sprintf("Get at revision %q", tc.branch), err, want)
			_, err = h.s.Merge(h.ctx, store.MergeRequest{Into: "main", From: tc.branch, Author: author, Message: "bad"})
			h.wantErr(fmt.Sprintf("Merge from %q", tc.branch), err, want)
		})
	}
	bs, err := h.s.Branches(h.ctx)
	if err != nil || len(bs) != 1 {
		h.t.Errorf("Branches after invalid names = %+v, %v; want just main", bs, err)
	}
	_, err = h.s.CreateBranch(h.ctx, "", "main")
	h.wantErr(`CreateBranch("")`, err, store.ErrInvalid)
	h.run("valid names", func(h *harness) {
		for _, name := range []string{"feature", "team/alice/x", "v1.2_rc-3", strings.Repeat("b", store.MaxBranchLen), "0123456789"} {
			if _, err := h.s.CreateBranch(h.ctx, name, "main"); err != nil {
				h.t.Errorf("CreateBranch(%q): %v", name, err)
			}
		}
	})
}

func testInvalidArguments(h *harness) {
	h.commit("main", "seed", put("k", "v"))
	head := h.head("main")
	tests := []struct {
		name string
		c    store.Change
	}{
		{"no ops", store.Change{Author: author, Message: "none"}},
		{"key twice", store.Change{Author: author, Message: "dup", Ops: []store.Op{put("a", "1"), del("a")}}},
		{"parent not a hash", store.Change{Parent: "main", Author: author, Message: "p", Ops: []store.Op{put("a", "1")}}},
		{"uppercase parent", store.Change{Parent: store.Hash(strings.ToUpper(string(head))), Author: author, Message: "p", Ops: []store.Op{put("a", "1")}}},
		{"ifMatch not a hash", store.Change{Author: author, Message: "i", Ops: []store.Op{{Key: "a", Value: []byte("1"), IfMatch: "abc"}}}},
		{"copy not a hash", store.Change{Author: author, Message: "c", Ops: []store.Op{{Key: "a", Copy: "abc"}}}},
		{"angle bracket in author", store.Change{Author: store.Signature{Name: "Eve <x>", Email: "e@example.org"}, Message: "a", Ops: []store.Op{put("a", "1")}}},
		{"newline in email", store.Change{Author: store.Signature{Name: "Eve", Email: "e@example.org\n"}, Message: "a", Ops: []store.Op{put("a", "1")}}},
		{"NUL in message", store.Change{Author: author, Message: "a\x00b", Ops: []store.Op{put("a", "1")}}},
	}
	for _, tc := range tests {
		h.run(tc.name, func(h *harness) {
			_, err := h.s.Commit(h.ctx, tc.c)
			h.wantErr("Commit", err, store.ErrInvalid)
			h.wantHead("main", head, "after an invalid change")
		})
	}
	h.run("other calls", func(h *harness) {
		_, err := h.s.Revert(h.ctx, store.RevertRequest{Branch: "main", Prefix: "k", To: "nothex", Author: author, Message: "r"})
		h.wantErr("Revert to a malformed commit id", err, store.ErrInvalid)
		err = h.s.FastForward(h.ctx, "main", "nothex")
		h.wantErr("FastForward to a malformed commit id", err, store.ErrInvalid)
		_, err = h.s.CreateBranch(h.ctx, "x", "bad..rev")
		h.wantErr("CreateBranch at a malformed revision", err, store.ErrInvalid)
		_, err = h.s.Revert(h.ctx, store.RevertRequest{Branch: "main", Prefix: "k", To: head, Author: store.Signature{Name: "<>"}, Message: "r"})
		h.wantErr("Revert with a malformed author", err, store.ErrInvalid)
	})
}

func testTooLarge(h *harness) {
	head := h.head("main")
	ops := make([]store.Op, store.MaxOps+1)
	for i := range ops {
		ops[i] = put(fmt.Sprintf("many/%05d", i), "x")
	}
	tests := []struct {
		name string
		c    store.Change
	}{
		{"value", store.Change{Author: author, Message: "big", Ops: []store.Op{{Key: "big", Value: make([]byte, store.MaxValueSize+1)}}}},
		{"ops", store.Change{Author: author, Message: "many", Ops: ops}},
		{"message", store.Change{Author: author, Message: strings.Repeat("m", store.MaxMessageLen+1), Ops: []store.Op{put("a", "1")}}},
	}
	for _, tc := range tests {
		h.run(tc.name, func(h *harness) {
			_, err := h.s.Commit(h.ctx, tc.c)
			h.wantErr("Commit", err, store.ErrTooLarge)
			h.wantHead("main", head, "after a change over a limit")
		})
	}
	h.run("under the limits", func(h *harness) {
		big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
		h.commit("main", strings.Repeat("m", 1000), put("big", big), put("small", "s"))
		if h.get("main", "big") != big {
			h.t.Errorf("a 1 MiB value did not round-trip")
		}
	})
}

func testNoOpChange(h *harness) {
	c1 := h.commit("main", "a and b", put("a", "1"), put("b", "2"))
	n := len(h.log("main", 0))
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"same value", []store.Op{put("a", "1")}},
		{"same values and absent delete", []store.Op{put("a", "1"), put("b", "2"), del("zzz")}},
		{"copy of the same version", []store.Op{{Key: "a", Copy: store.BlobHash([]byte("1"))}}},
		{"ifMatch holds", []store.Op{{Key: "a", Value: []byte("1"), IfMatch: store.BlobHash([]byte("1"))}}},
	}
	for _, tc := range tests {
		h.run(tc.name, func(h *harness) {
			c, err := h.s.Commit(h.ctx, store.Change{Author: store.Signature{Name: "Other", Email: "o@example.org"},
				Message: "different message", Time: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), Ops: tc.ops})
			if err != nil {
				h.t.Fatalf("Commit(%s): %v", describeOps(tc.ops), err)
			}
			h.wantSameCommit("commit of a change that changes nothing", c, c1)
			if m := len(h.log("main", 0)); m != n {
				h.t.Errorf("a change that changes nothing made %d commits, want 0", m-n)
			}
		})
	}
	h.wantHead("main", c1.ID, "after changes that change nothing")
}

func testCommitMetadata(h *harness) {
	h0 := h.head("main")
	sig := store.Signature{Name: "Ada Lovelace", Email: "ada@example.org"}
	when := time.Date(2021, 3, 4, 5, 6, 7, 890_000_000, time.FixedZone("UTC+5", 5*3600))
	msg := "multi-line\n\nmessage ✓"
	c, err := h.s.Commit(h.ctx, store.Change{Author: sig, Message: msg, Time: when, Ops: []store.Op{put("k", "v")}})
	if err != nil {
		h.t.Fatalf("Commit: %v", err)
	}
	want := store.Commit{ID: c.ID, Parents: []store.Hash{h0}, Author: sig, Message: msg, Time: when.Truncate(time.Second)}
	h.wantSameCommit("Commit result", c, want)
	if !store.IsHash(string(c.ID)) {
		h.t.Errorf("commit id %q is not 40 lowercase hex", c.ID)
	}
	h.wantTime("commit with an explicit time", c.Time)
	log := h.log("main", 1)
	if len(log) != 1 {
		h.t.Fatalf("Log(main, 1) = %s, want one commit", describeCommits(log))
	}
	h.wantSameCommit("Log(main, 1)[0]", log[0], want)
	h.wantTime("commit from Log", log[0].Time)

	now := h.commit("main", "zero time", put("k", "v2"))
	h.wantTime("commit with a zero time", now.Time)
	if !slices.Equal(now.Parents, []store.Hash{c.ID}) {
		h.t.Errorf("commit parents %v, want [%s]", now.Parents, c.ID)
	}
}
