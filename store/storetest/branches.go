package storetest

import (
	"errors"
	"slices"
	"time"

	"github.com/hearth-home/hearth/store"
)

func (h *harness) branch(name, rev string) store.Branch {
	h.t.Helper()
	b, err := h.s.CreateBranch(h.ctx, name, rev)
	if err != nil {
		h.t.Fatalf("CreateBranch(%q, %q): %v", name, rev, err)
	}
	return b
}

func (h *harness) merge(into, from, msg string) store.Commit {
	h.t.Helper()
	c, err := h.s.Merge(h.ctx, store.MergeRequest{Into: into, From: from, Author: author, Message: msg})
	if err != nil {
		h.t.Fatalf("Merge(%q into %q): %v", from, into, err)
	}
	return c
}

func testBranches(h *harness) {
	c0 := h.head("main")
	c1 := h.commit("main", "c1", put("a", "1"))
	if b := h.branch("feature", "main"); b != (store.Branch{Name: "feature", Head: c1.ID}) {
		h.t.Errorf("CreateBranch(feature, main) = %+v, want {feature %s}", b, c1.ID)
	}
	if b := h.branch("zeta", string(c0)); b != (store.Branch{Name: "zeta", Head: c0}) {
		h.t.Errorf("CreateBranch(zeta, <initial commit>) = %+v, want {zeta %s}", b, c0)
	}
	h.branch("alpha", "feature")
	h.branch("team/x", "")
	want := []store.Branch{{Name: "alpha", Head: c1.ID}, {Name: "feature", Head: c1.ID}, {Name: "main", Head: c1.ID}, {Name: "team/x", Head: c1.ID}, {Name: "zeta", Head: c0}}
	wantBranches := func(what string, want []store.Branch) {
		h.t.Helper()
		got, err := h.s.Branches(h.ctx)
		if err != nil || !slices.Equal(got, want) {
			h.t.Errorf("%s: Branches = %+v, %v\nwant %+v (sorted by name)", what, got, err, want)
		}
	}
	wantBranches("after CreateBranch", want)

	_, err := h.s.CreateBranch(h.ctx, "feature", string(c0))
	h.wantErr("CreateBranch of an existing branch", err, store.ErrConflict)
	h.wantHead("feature", c1.ID, "after CreateBranch of an existing branch")
	for _, rev := range []string{string(unknownHash), "ghost"} {
		_, err = h.s.CreateBranch(h.ctx, "new", rev)
		h.wantErr("CreateBranch at missing revision "+rev, err, store.ErrNotFound)
	}
	wantBranches("after failed CreateBranch", want)

	f1 := h.commit("feature", "f1", put("a", "feature"))
	h.wantValue("main", "a", "1")
	h.wantValue("feature", "a", "feature")
	h.wantHead("main", c1.ID, "after a commit on another branch")

	if err := h.s.DeleteBranch(h.ctx, "feature"); err != nil {
		h.t.Fatalf("DeleteBranch(feature): %v", err)
	}
	wantBranches("after DeleteBranch", []store.Branch{{Name: "alpha", Head: c1.ID}, {Name: "main", Head: c1.ID}, {Name: "team/x", Head: c1.ID}, {Name: "zeta", Head: c0}})
	_, err = h.s.Resolve(h.ctx, "feature")
	h.wantErr("Resolve of a deleted branch", err, store.ErrNotFound)
	h.wantValue(string(f1.ID), "a", "feature")
	err = h.s.DeleteBranch(h.ctx, "feature")
	h.wantErr("DeleteBranch of a deleted branch", err, store.ErrNotFound)
	err = h.s.DeleteBranch(h.ctx, "never")
	h.wantErr("DeleteBranch of a missing branch", err, store.ErrNotFound)
	err = h.s.DeleteBranch(h.ctx, "main")
	h.wantErr("DeleteBranch(main)", err, store.ErrInvalid)
	h.wantHead("main", c1.ID, "after DeleteBranch(main)")

	if b := h.branch("feature", string(f1.ID)); b.Head != f1.ID {
		h.t.Errorf("re-created branch at %s, want %s", b.Head, f1.ID)
	}
	h.wantValue("feature", "a", "feature")
}

func testFastForward(h *harness) {
	h0 := h.head("main")
	h.branch("feature", "main")
	f1 := h.commit("feature", "f1", put("a", "1"))
	f2 := h.commit("feature", "f2", put("b", "2"))
	ff := func(name string, to store.Hash) error { return h.s.FastForward(h.ctx, name, to) }

	if err := ff("main", f1.ID); err != nil {
		h.t.Fatalf("FastForward(main, f1): %v", err)
	}
	h.wantHead("main", f1.ID, "after FastForward to f1")
	if err := ff("main", f2.ID); err != nil {
		h.t.Fatalf("FastForward(main, f2): %v", err)
	}
	h.wantHead("main", f2.ID, "after FastForward to f2")
	h.wantState("main", map[string]string{"a": "1", "b": "2"})
	if err := ff("main", f2.ID); err != nil {
		h.t.Errorf("FastForward to the head: %v, want a no-op", err)
	}
	h.wantErr("FastForward backwards", ff("main", f1.ID), store.ErrConflict)
	h.wantErr("FastForward to the initial commit", ff("main", h0), store.ErrConflict)
	h.wantHead("main", f2.ID, "after FastForward backwards")

	m3 := h.commit("main", "m3", put("m", "3"))
	f3 := h.commit("feature", "f3", put("f", "3"))
	h.wantErr("FastForward to a diverged commit", ff("main", f3.ID), store.ErrConflict)
	h.wantHead("main", m3.ID, "after FastForward to a diverged commit")
	h.wantErr("FastForward of a missing branch", ff("ghost", f3.ID), store.ErrNotFound)
	h.wantErr("FastForward to an unknown commit", ff("main", unknownHash), store.ErrNotFound)
	h.wantHead("main", m3.ID, "after failed FastForwards")
}

// testEmptyRootReplaced: a branch whose head is an empty root commit (what a new store
// starts with) may move to an unrelated commit, by FastForward or Merge, since nothing
// would be lost; a root commit that holds keys may not.
func testEmptyRootReplaced(h *harness) {
	h0 := h.head("main")
	other := h.change(store.Change{Branch: "orphan", Parent: store.Missing, Message: "elsewhere", Ops: []store.Op{put("x", "1")}})
	h.branch("fresh", string(h0))
	if err := h.s.FastForward(h.ctx, "fresh", other.ID); err != nil {
		h.t.Fatalf("FastForward of an empty root branch to an unrelated commit: %v", err)
	}
	h.wantHead("fresh", other.ID, "after FastForward from an empty root")
	h.branch("fresh2", string(h0))
	c, err := h.s.Merge(h.ctx, store.MergeRequest{Into: "fresh2", From: "orphan", Message: "m"})
	if err != nil {
		h.t.Fatalf("Merge into an empty root branch: %v", err)
	}
	if c.ID != other.ID {
		h.t.Errorf("Merge into an empty root branch made %s, want a fast-forward to %s", c.ID, other.ID)
	}
	second := h.change(store.Change{Branch: "orphan2", Parent: store.Missing, Message: "again", Ops: []store.Op{put("y", "2")}})
	h.wantErr("FastForward of a root commit with keys to an unrelated commit", h.s.FastForward(h.ctx, "orphan", second.ID), store.ErrConflict)
	h.wantHead("orphan", other.ID, "after a refused FastForward")
}

func testMerge(h *harness) {
	h.run("FastForward", func(h *harness) {
		h.commit("main", "base", put("a", "1"))
		h.branch("ff", "main")
		h.commit("ff", "f1", put("b", "1"))
		f2 := h.commit("ff", "f2", put("c", "1"))
		got := h.merge("main", "ff", "merge ff")
		h.wantSameCommit("Merge of a branch ahead", got, f2)
		h.wantHead("main", f2.ID, "after a fast-forward merge")
		h.wantCommits("Log(main) after a fast-forward merge", h.log("main", 0), h.log("ff", 0))
	})
	h.run("AlreadyUpToDate", func(h *harness) {
		base := h.commit("main", "base2", put("a", "2"))
		h.branch("behind", "main")
		m1 := h.commit("main", "m1", put("m", "1"))
		n := len(h.log("main", 0))
		for _, from := range []string{"behind", "main", string(base.ID), string(m1.ID)} {
			got := h.merge("main", from, "merge "+from)
			h.wantSameCommit("Merge of "+from+" (an ancestor of main)", got, m1)
		}
		h.wantHead("main", m1.ID, "after up-to-date merges")
		h.wantHead("behind", base.ID, "after merging it")
		if m := len(h.log("main", 0)); m != n {
			h.t.Errorf("up-to-date merges made %d commits, want 0", m-n)
		}
	})
	h.run("Clean3Way", func(h *harness) {
		h.commit("main", "base3", put("a", "1"), put("b", "1"), put("c", "1"), put("gone", "1"), put("same", "0"))
		h.branch("feature", "main")
		m := h.commit("main", "ours", put("a", "2"), put("ours", "1"), put("same", "x"))
		f := h.commit("feature", "theirs", put("b", "2"), del("gone"), put("theirs/new", "1"), put("same", "x"))
		sig := store.Signature{Name: "Merger", Email: "merger@example.org"}
		mc, err := h.s.Merge(h.ctx, store.MergeRequest{Into: "main", From: "feature", Author: sig, Message: "merge feature"})
		if err != nil {
			h.t.Fatalf("Merge: %v", err)
		}
		if !slices.Equal(mc.Parents, []store.Hash{m.ID, f.ID}) || mc.Author != sig || mc.Message != "merge feature" {
			h.t.Errorf("merge commit %+v, want parents [%s %s], author %+v, message %q", mc, m.ID, f.ID, sig, "merge feature")
		}
		h.wantTime("merge commit", mc.Time)
		h.wantHead("main", mc.ID, "after a 3-way merge")
		h.wantHead("feature", f.ID, "after merging it")
		h.wantState("main", map[string]string{"a": "2", "b": "2", "c": "1", "m": "1", "ours": "1", "theirs/new": "1", "same": "x"})
		h.wantSameCommit("Log(main, 1)[0]", h.log("main", 1)[0], mc)

		// From may be a commit id.
		f3 := h.commit("feature", "f3", put("g", "1"))
		m3 := h.commit("main", "m3", put("h", "1"))
		mc2 := h.merge("main", string(f3.ID), "merge f3")
		if !slices.Equal(mc2.Parents, []store.Hash{m3.ID, f3.ID}) {
			h.t.Errorf("merge of a commit id has parents %v, want [%s %s]", mc2.Parents, m3.ID, f3.ID)
		}
		h.wantValue("main", "g", "1")
		h.wantValue("main", "h", "1")
		// Merging back is a fast-forward now.
		back := h.merge("feature", "main", "merge back")
		h.wantSameCommit("merging main back into feature", back, mc2)
		h.wantHead("feature", mc2.ID, "after merging back")
	})
	h.run("Conflict", func(h *harness) {
		h.commit("main", "base4", put("k", "0"), put("k2", "0"), put("d", "0"), put("fine", "0"))
		h.branch("conflicting", "main")
		m := h.commit("main", "ours4", put("k", "1"), put("k2", "1"), del("d"), put("new", "ours"), put("mine", "1"))
		h.commit("conflicting", "theirs4", put("k", "2"), put("k2", "2"), put("d", "2"), put("new", "theirs"), put("fine", "2"))
		before := h.state("main", "")
		_, err := h.s.Merge(h.ctx, store.MergeRequest{Into: "main", From: "conflicting", Author: author, Message: "conflict"})
		var mce *store.MergeConflictError
		if !errors.As(err, &mce) {
			h.t.Fatalf("Merge with conflicts: error %v, want a *store.MergeConflictError", err)
		}
		if want := []string{"d", "k", "k2", "new"}; !slices.Equal(mce.Keys, want) {
			h.t.Errorf("MergeConflictError.Keys = %q, want %q", mce.Keys, want)
		}
		h.wantErr("Merge with conflicts", err, store.ErrConflict)
		h.wantHead("main", m.ID, "after a conflicting merge")
		h.wantState("main", before)
	})
	h.run("Rules", func(h *harness) {
		t1 := time.Date(2020, 5, 1, 10, 0, 0, 0, time.UTC)
		t2 := t1.Add(time.Hour)
		h.commit("main", "base5", put("lww/a", "base"), put("inbox/flags", "\\Seen\n"), put("deep/y/flags", "1\n"), put("lww/deep/x", "0"))
		for _, b := range []string{"o1", "t1", "o2", "t2", "o3", "t3"} {
			h.branch(b, "main")
		}
		at := func(branch string, tm time.Time, ops ...store.Op) store.Commit {
			h.t.Helper()
			return h.change(store.Change{Branch: branch, Time: tm, Message: branch + " at " + tm.Format(time.TimeOnly), Ops: ops})
		}

		at("o1", t1, put("lww/a", "ours"), put("inbox/flags", "\\Flagged\n\\Seen\n"))
		at("t1", t2, put("lww/a", "theirs"), put("inbox/flags", "\\Answered\n"))
		h.merge("o1", "t1", "theirs newer")
		h.wantValue("o1", "lww/a", "theirs")
		h.wantValue("o1", "inbox/flags", "\\Answered\n\\Flagged\n")

		o2 := at("o2", t2, put("lww/a", "ours"))
		t2c := at("t2", t1, put("lww/a", "theirs"))
		mc := h.merge("o2", "t2", "ours newer")
		h.wantValue("o2", "lww/a", "ours")
		if !slices.Equal(mc.Parents, []store.Hash{o2.ID, t2c.ID}) {
			h.t.Errorf("merge resolved by rules has parents %v, want [%s %s]", mc.Parents, o2.ID, t2c.ID)
		}

		o3 := at("o3", t1, put("deep/y/flags", "2\n"), put("lww/deep/x", "1"))
		at("t3", t2, put("deep/y/flags", "3\n"), put("lww/deep/x", "2"))
		_, err := h.s.Merge(h.ctx, store.MergeRequest{Into: "o3", From: "t3", Author: author, Message: "no rule"})
		var mce *store.MergeConflictError
		if !errors.As(err, &mce) || !slices.Equal(mce.Keys, []string{"deep/y/flags", "lww/deep/x"}) {
			h.t.Errorf("Merge of keys no pattern matches (patterns are path.Match: * stops at /): %v, want a MergeConflictError on deep/y/flags and lww/deep/x", err)
		}
		h.wantHead("o3", o3.ID, "after a merge with unresolved keys")
	})
	h.run("Errors", func(h *harness) {
		for _, m := range []store.MergeRequest{
			{Into: "ghost", From: "main"},
			{Into: "main", From: "ghost"},
			{Into: "main", From: string(unknownHash)},
		} {
			m.Author, m.Message = author, "missing"
			_, err := h.s.Merge(h.ctx, m)
			h.wantErr("Merge "+m.From+" into "+m.Into, err, store.ErrNotFound)
		}
	})
}

func testRevert(h *harness) {
	revert := func(branch, prefix string, to store.Hash, msg string) store.Commit {
		h.t.Helper()
		c, err := h.s.Revert(h.ctx, store.RevertRequest{Branch: branch, Prefix: prefix, To: to, Author: author, Message: msg})
		if err != nil {
			h.t.Fatalf("Revert(%q, %q, %s): %v", branch, prefix, short(to), err)
		}
		return c
	}
	c0 := h.head("main")
	h.run("Key", func(h *harness) {
		c1 := h.commit("main", "k=1", put("k", "1"), put("other", "0"))
		h.commit("main", "k=2", put("k", "2"))
		c3 := h.commit("main", "k=3", put("k", "3"), put("other", "1"))
		r := revert("main", "k", c1.ID, "revert k")
		if !slices.Equal(r.Parents, []store.Hash{c3.ID}) || r.Author != author || r.Message != "revert k" {
			h.t.Errorf("revert commit %+v, want parents [%s], author %+v, message %q", r, c3.ID, author, "revert k")
		}
		h.wantHead("main", r.ID, "after Revert")
		h.wantValue("main", "k", "1")
		h.wantValue("main", "other", "1")
		again := revert("main", "k", c1.ID, "revert k again")
		h.wantSameCommit("a Revert that changes nothing", again, r)
		h.wantHead("main", r.ID, "after a Revert that changes nothing")
		revert("main", "k", c0, "revert k to before it existed")
		h.wantMissing("main", "k")
		h.wantValue("main", "other", "1")
	})
	h.run("Prefix", func(h *harness) {
		c1 := h.commit("main", "p1", put("p/a", "1"), put("p/b", "1"), put("p/sub/c", "1"), put("q", "1"), put("pp", "1"))
		h.commit("main", "p2", del("p/a"), put("p/b", "2"), put("p/new", "1"), put("p/sub/c", "2"), put("q", "2"), put("pp", "2"))
		revert("main", "p", c1.ID, "revert p")
		h.wantState("main", map[string]string{"p/a": "1", "p/b": "1", "p/sub/c": "1", "q": "2", "pp": "2", "other": "1"})
		if d, err := h.s.Diff(h.ctx, string(c1.ID), "main", "p"); err != nil || len(d) != 0 {
			h.t.Errorf("Diff(p1, main, p) after Revert = %+v, %v; want none", d, err)
		}
		revert("main", "", c1.ID, "revert everything")
		h.wantState("main", h.state(string(c1.ID), ""))
	})
	h.run("Rules", func(h *harness) {
		rules := RevertRules()
		c1 := h.commit("main", "n1", put("n/max", "5"), put("n/gone", "a"), put("n/keep", "a"), put("n/conflict", "a"), put("plain", "a"))
		h.commit("main", "n2", put("n/max", "9"), put("n/gone", "b"), put("n/keep", "b"), put("n/conflict", "b"), put("plain", "b"), put("n/new", "1"))
		c, err := h.s.Revert(h.ctx, store.RevertRequest{Branch: "main", To: c1.ID, Author: author, Message: "revert with rules", Rules: rules})
		if err != nil {
			h.t.Fatalf("Revert with rules: %v", err)
		}
		h.wantHead("main", c.ID, "after a Revert with rules")
		h.wantValue("main", "n/max", "9")
		h.wantMissing("main", "n/gone")
		h.wantValue("main", "n/keep", "b")
		h.wantValue("main", "n/conflict", "a")
		h.wantValue("main", "plain", "a")
		h.wantValue("main", "n/new", "1") // the rule keeps the head's "1" over the older absence
		// Rules that keep everything as it is make no commit.
		h.commit("main", "n3", put("n/max", "12"))
		before := h.head("main")
		c, err = h.s.Revert(h.ctx, store.RevertRequest{Branch: "main", Prefix: "n/max", To: c1.ID, Author: author, Message: "r", Rules: rules})
		if err != nil || c.ID != before {
			h.t.Errorf("a Revert whose rules keep the head: %s, %v; want the head %s", short(c.ID), err, short(before))
		}
	})
	h.run("Errors", func(h *harness) {
		_, err := h.s.Revert(h.ctx, store.RevertRequest{Branch: "main", Prefix: "k", To: unknownHash, Author: author, Message: "r"})
		h.wantErr("Revert to an unknown commit", err, store.ErrNotFound)
		_, err = h.s.Revert(h.ctx, store.RevertRequest{Branch: "ghost", Prefix: "k", To: c0, Author: author, Message: "r"})
		h.wantErr("Revert on a missing branch", err, store.ErrNotFound)
	})
}

// RevertRules are the rules the suite's Revert case passes in its RevertRequest. A store
// behind a server, which cannot send rules over the wire, passes the suite when its server
// applies these to every revert. A rule for "n/*" keeps the larger number (a counter that
// must never go back) and deletes "n/gone"; "n/keep" keeps the head's value;
// "n/conflict" gives ErrConflict, which takes the older value; keys no rule matches go back.
func RevertRules() store.MergeRules {
	return store.MergeRules{{Pattern: "n/*", Rule: func(c store.MergeCase) ([]byte, error) {
		switch c.Key {
		case "n/gone":
			return nil, nil
		case "n/keep":
			return c.Ours, nil
		case "n/conflict":
			return nil, store.ErrConflict
		}
		if len(c.Ours) > len(c.Theirs) || (len(c.Ours) == len(c.Theirs) && string(c.Ours) > string(c.Theirs)) {
			return c.Ours, nil
		}
		return c.Theirs, nil
	}}}
}
