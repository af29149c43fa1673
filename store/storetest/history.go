package storetest

import (
	"fmt"
	"slices"

	"github.com/hearth-home/hearth/store"
)

// wantTopological checks that log lists each commit once, head first, every commit
// before its parents, and that it holds exactly the commits in want (in any order).
func (h *harness) wantTopological(what string, log []store.Commit, head store.Hash, want []store.Commit) {
	h.t.Helper()
	if len(log) == 0 || log[0].ID != head {
		h.t.Errorf("%s = %s, want head %s first", what, describeCommits(log), short(head))
	}
	pos := map[store.Hash]int{}
	for i, c := range log {
		if _, dup := pos[c.ID]; dup {
			h.t.Errorf("%s lists %q twice: %s", what, c.Message, describeCommits(log))
		}
		pos[c.ID] = i
	}
	for i, c := range log {
		for _, p := range c.Parents {
			if j, ok := pos[p]; !ok || j <= i {
				h.t.Errorf("%s: parent %s of %q is missing or listed before it: %s", what, short(p), c.Message, describeCommits(log))
			}
		}
	}
	if len(log) != len(want) {
		h.t.Errorf("%s has %d commits, want %d: %s", what, len(log), len(want), describeCommits(want))
	}
	for _, c := range want {
		if _, ok := pos[c.ID]; !ok {
			h.t.Errorf("%s lacks %q(%s)", what, c.Message, short(c.ID))
		}
	}
}

func testLog(h *harness) {
	initial := h.log("main", 0)[0]
	cs := []store.Commit{initial}
	for i := 1; i <= 5; i++ {
		cs = append(cs, h.commit("main", fmt.Sprintf("c%d", i), put("n", fmt.Sprint(i))))
	}
	newestFirst := slices.Clone(cs)
	slices.Reverse(newestFirst)
	for _, limit := range []int{0, -1, 6, 100} {
		h.wantCommits(fmt.Sprintf("Log(main, %d)", limit), h.log("main", limit), newestFirst)
	}
	h.wantCommits("Log(main, 1)", h.log("main", 1), newestFirst[:1])
	h.wantCommits("Log(main, 2)", h.log("main", 2), newestFirst[:2])
	h.wantCommits("Log(c3, 0)", h.log(string(cs[3].ID), 0), newestFirst[2:])
	h.wantCommits("Log(c3, 2)", h.log(string(cs[3].ID), 2), newestFirst[2:4])
	for i, c := range newestFirst[:5] {
		if !slices.Equal(c.Parents, []store.Hash{newestFirst[i+1].ID}) {
			h.t.Errorf("%q has parents %v, want [%s]", c.Message, c.Parents, newestFirst[i+1].ID)
		}
	}

	h.run("with a merge", func(h *harness) {
		if _, err := h.s.CreateBranch(h.ctx, "side", string(cs[3].ID)); err != nil {
			h.t.Fatalf("CreateBranch(side, c3): %v", err)
		}
		s1 := h.commit("side", "s1", put("side", "1"))
		s2 := h.commit("side", "s2", put("side", "2"))
		m1 := h.commit("main", "m1", put("main", "1"))
		mc, err := h.s.Merge(h.ctx, store.MergeRequest{Into: "main", From: "side", Author: author, Message: "merge side"})
		if err != nil {
			h.t.Fatalf("Merge(side into main): %v", err)
		}
		if !slices.Equal(mc.Parents, []store.Hash{m1.ID, s2.ID}) {
			h.t.Errorf("merge commit parents %v, want [m1 %s, s2 %s]", mc.Parents, m1.ID, s2.ID)
		}
		all := append(slices.Clone(cs), s1, s2, m1, mc)
		full := h.log("main", 0)
		h.wantTopological("Log(main, 0)", full, mc.ID, all)
		for _, limit := range []int{1, 3, 7} {
			h.wantCommits(fmt.Sprintf("Log(main, %d)", limit), h.log("main", limit), full[:limit])
		}
		h.wantTopological("Log(side, 0)", h.log("side", 0), s2.ID, append(slices.Clone(cs[:4]), s1, s2))
	})
}

func testHistory(h *harness) {
	c1 := h.commit("main", "k=1", put("k", "1"))
	c2 := h.commit("main", "other=1", put("other", "1"))
	c3 := h.commit("main", "k=2", put("k", "2"))
	c4 := h.commit("main", "delete k", del("k"))
	c5 := h.commit("main", "other=2", put("other", "2"))
	c6 := h.commit("main", "k=3 again", put("k", "3"))
	history := func(rev, key string, limit int) []store.Commit {
		h.t.Helper()
		cs, err := h.s.History(h.ctx, rev, key, limit)
		if err != nil {
			h.t.Fatalf("History(%q, %q, %d): %v", rev, key, limit, err)
		}
		return cs
	}
	all := []store.Commit{c6, c4, c3, c1}
	for _, limit := range []int{0, -1, 4, 50} {
		h.wantCommits(fmt.Sprintf("History(main, k, %d)", limit), history("main", "k", limit), all)
	}
	h.wantCommits("History(main, k, 2)", history("main", "k", 2), all[:2])
	h.wantCommits("History(main, k, 1)", history("main", "k", 1), all[:1])
	h.wantCommits("History(c3, k, 0)", history(string(c3.ID), "k", 0), []store.Commit{c3, c1})
	h.wantCommits("History(c5, k, 0)", history(string(c5.ID), "k", 0), []store.Commit{c4, c3, c1})
	h.wantCommits("History(main, other, 0)", history("main", "other", 0), []store.Commit{c5, c2})
	for _, c := range history("main", "k", 0) {
		h.wantTime("commit from History", c.Time)
		if c.ID == c6.ID {
			h.wantSameCommit("History(main, k)[0]", c, c6)
		}
	}
	if got := history("main", "never", 0); len(got) != 0 {
		h.t.Errorf("History of a key that never existed = %s, want empty", describeCommits(got))
	}
	h.run("root commit", func(h *harness) {
		root := h.change(store.Change{Branch: "fresh", Parent: store.Missing, Message: "fresh root", Ops: []store.Op{put("k", "root")}})
		next := h.commit("fresh", "fresh k", put("k", "next"))
		h.wantCommits("History(fresh, k)", history("fresh", "k", 0), []store.Commit{next, root})
	})
}

func testHistoryThroughMerge(h *harness) {
	c1 := h.commit("main", "base", put("k", "1"), put("other", "0"))
	if _, err := h.s.CreateBranch(h.ctx, "feature", "main"); err != nil {
		h.t.Fatalf("CreateBranch: %v", err)
	}
	f1 := h.commit("feature", "f1: k=2", put("k", "2"))
	m1 := h.commit("main", "m1: other=1", put("other", "1"))
	mc, err := h.s.Merge(h.ctx, store.MergeRequest{Into: "main", From: "feature", Author: author, Message: "merge feature"})
	if err != nil {
		h.t.Fatalf("Merge: %v", err)
	}
	if !slices.Equal(mc.Parents, []store.Hash{m1.ID, f1.ID}) {
		h.t.Fatalf("merge commit parents %v, want [m1 %s, f1 %s]", mc.Parents, m1.ID, f1.ID)
	}
	for _, tc := range []struct {
		rev, key string
		want     []store.Commit
	}{
		{"main", "k", []store.Commit{mc, f1, c1}},
		{"main", "other", []store.Commit{m1, c1}},
		{"feature", "k", []store.Commit{f1, c1}},
		{"feature", "other", []store.Commit{c1}},
	} {
		got, err := h.s.History(h.ctx, tc.rev, tc.key, 0)
		if err != nil {
			h.t.Fatalf("History(%q, %q): %v", tc.rev, tc.key, err)
		}
		h.wantCommits(fmt.Sprintf("History(%q, %q)", tc.rev, tc.key), got, tc.want)
	}
}

func testDiff(h *harness) {
	v := func(s string) store.Hash { return store.BlobHash([]byte(s)) }
	c1 := h.commit("main", "c1", put("a", "1"), put("b", "2"), put("c/d", "3"), put("c/e", "4"))
	c2 := h.commit("main", "c2", put("b", "22"), del("c/d"), put("f", "5"))
	if _, err := h.s.CreateBranch(h.ctx, "old", string(c1.ID)); err != nil {
		h.t.Fatalf("CreateBranch: %v", err)
	}
	forward := []store.Diff{
		{Key: "b", Kind: store.Modified, Old: v("2"), New: v("22")},
		{Key: "c/d", Kind: store.Deleted, Old: v("3")},
		{Key: "f", Kind: store.Added, New: v("5")},
	}
	tests := []struct {
		name, from, to, prefix string
		want                   []store.Diff
	}{
		{"forward", string(c1.ID), string(c2.ID), "", forward},
		{"by branch name", "old", "main", "", forward},
		{"backward", string(c2.ID), string(c1.ID), "", []store.Diff{
			{Key: "b", Kind: store.Modified, Old: v("22"), New: v("2")},
			{Key: "c/d", Kind: store.Added, New: v("3")},
			{Key: "f", Kind: store.Deleted, Old: v("5")},
		}},
		{"from the empty tree", "", string(c1.ID), "", []store.Diff{
			{Key: "a", Kind: store.Added, New: v("1")},
			{Key: "b", Kind: store.Added, New: v("2")},
			{Key: "c/d", Kind: store.Added, New: v("3")},
			{Key: "c/e", Kind: store.Added, New: v("4")},
		}},
		{"prefix", string(c1.ID), string(c2.ID), "c", []store.Diff{{Key: "c/d", Kind: store.Deleted, Old: v("3")}}},
		{"prefix naming a key", string(c1.ID), string(c2.ID), "b", forward[:1]},
		{"unchanged prefix", string(c1.ID), string(c2.ID), "c/e", nil},
		{"prefix is not a string prefix", string(c1.ID), string(c2.ID), "c/d/x", nil},
		{"same commit", string(c2.ID), "main", "", nil},
	}
	for _, tc := range tests {
		h.run(tc.name, func(h *harness) {
			got, err := h.s.Diff(h.ctx, tc.from, tc.to, tc.prefix)
			if err != nil {
				h.t.Fatalf("Diff(%q, %q, %q): %v", tc.from, tc.to, tc.prefix, err)
			}
			if !slices.Equal(got, tc.want) {
				h.t.Errorf("Diff(%q, %q, %q) =\n  %+v\nwant\n  %+v", tc.from, tc.to, tc.prefix, got, tc.want)
			}
		})
	}
	_, err := h.s.Diff(h.ctx, string(unknownHash), "main", "")
	h.wantErr("Diff from an unknown commit", err, store.ErrNotFound)
	_, err = h.s.Diff(h.ctx, "main", "ghost", "")
	h.wantErr("Diff to a missing branch", err, store.ErrNotFound)
	_, err = h.s.Diff(h.ctx, "main", "main", "a//b")
	h.wantErr("Diff with a malformed prefix", err, store.ErrInvalid)
}
