package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

func (h *harness) watch(ctx context.Context, branch, prefix string) <-chan store.Event {
	h.t.Helper()
	ch, err := h.s.Watch(ctx, branch, prefix)
	if err != nil {
		h.t.Fatalf("Watch(%q, %q): %v", branch, prefix, err)
	}
	return ch
}

// next returns the next event on ch, failing the test if none comes within waitFor.
func (h *harness) next(ch <-chan store.Event, what string) store.Event {
	h.t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			h.t.Fatalf("%s: watch channel closed, want an event", what)
		}
		return ev
	case <-time.After(waitFor):
		h.t.Fatalf("%s: no event within %v", what, waitFor)
	}
	return store.Event{}
}

// wantEvent checks an event's branch, commit and diffs.
func (h *harness) wantEvent(what string, ev store.Event, branch string, c store.Commit, diffs []store.Diff) {
	h.t.Helper()
	if ev.Branch != branch {
		h.t.Errorf("%s: event for branch %q, want %q", what, ev.Branch, branch)
	}
	if ev.Commit.ID != c.ID {
		h.t.Errorf("%s: event for commit %q(%s), want %q(%s)", what, ev.Commit.Message, short(ev.Commit.ID), c.Message, short(c.ID))
		return
	}
	h.wantSameCommit(what+": event commit", ev.Commit, c)
	if !slices.Equal(ev.Diffs, diffs) {
		h.t.Errorf("%s: event diffs\n  %+v\nwant\n  %+v", what, ev.Diffs, diffs)
	}
}

// wantClosed waits for ch to close, discarding events.
func (h *harness) wantClosed(ch <-chan store.Event, what string) {
	h.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			h.t.Fatalf("%s: watch channel still open after %v", what, waitFor)
		}
	}
}

func testWatch(h *harness) {
	v := func(s string) store.Hash { return store.BlobHash([]byte(s)) }
	h.run("EventPerCommit", func(h *harness) {
		h.commit("main", "before the watch", put("inbox/0", "zero"))
		ch := h.watch(h.ctx, "main", "inbox")
		c1 := h.commit("main", "inbox/1=a", put("inbox/1", "a"))
		h.wantEvent("first commit", h.next(ch, "first commit"), "main", c1,
			[]store.Diff{{Key: "inbox/1", Kind: store.Added, New: v("a")}})
		c2 := h.commit("main", "inbox/1=b, delete inbox/0", put("inbox/1", "b"), del("inbox/0"))
		h.wantEvent("second commit", h.next(ch, "second commit"), "main", c2, []store.Diff{
			{Key: "inbox/0", Kind: store.Deleted, Old: v("zero")},
			{Key: "inbox/1", Kind: store.Modified, Old: v("a"), New: v("b")},
		})
	})
	h.run("PrefixFiltering", func(h *harness) {
		ch := h.watch(h.ctx, "main", "box")
		one := h.watch(h.ctx, "main", "box/2")
		h.commit("main", "outside the prefix", put("other/x", "1"))
		h.commit("main", "longer names", put("boxes/y", "1"), put("box-2", "1"))
		c3 := h.commit("main", "box/3", put("box/3", "1"))
		h.wantEvent("first commit below the prefix", h.next(ch, "box/3"), "main", c3,
			[]store.Diff{{Key: "box/3", Kind: store.Added, New: v("1")}})
		c2 := h.commit("main", "box/2", put("box/2", "1"), put("other/y", "2"))
		h.wantEvent("second commit below the prefix", h.next(ch, "box/2"), "main", c2,
			[]store.Diff{{Key: "box/2", Kind: store.Added, New: v("1")}})
		h.wantEvent("watch of one key", h.next(one, "watch of box/2"), "main", c2,
			[]store.Diff{{Key: "box/2", Kind: store.Added, New: v("1")}})
	})
	h.run("OtherBranch", func(h *harness) {
		h.branch("feature", "main")
		ch := h.watch(h.ctx, "feature", "")
		h.commit("main", "on main", put("m", "1"))
		c := h.commit("feature", "on feature", put("f", "1"))
		h.wantEvent("commit on the watched branch", h.next(ch, "commit on feature"), "feature", c,
			[]store.Diff{{Key: "f", Kind: store.Added, New: v("1")}})
	})
	h.run("FastForwardAndMerge", func(h *harness) {
		ch := h.watch(h.ctx, "main", "w")
		h.branch("ffw", "main")
		f1 := h.commit("ffw", "w/1 on ffw", put("w/1", "1"))
		if err := h.s.FastForward(h.ctx, "main", f1.ID); err != nil {
			h.t.Fatalf("FastForward: %v", err)
		}
		h.wantEvent("fast-forward", h.next(ch, "fast-forward"), "main", f1, []store.Diff{{Key: "w/1", Kind: store.Added, New: v("1")}})
		h.commit("ffw", "w/2 on ffw", put("w/2", "2"))
		m2 := h.commit("main", "w/m on main", put("w/m", "m"))
		h.wantEvent("commit on main", h.next(ch, "commit on main"), "main", m2, []store.Diff{{Key: "w/m", Kind: store.Added, New: v("m")}})
		mc := h.merge("main", "ffw", "merge ffw")
		h.wantEvent("merge", h.next(ch, "merge"), "main", mc, []store.Diff{{Key: "w/2", Kind: store.Added, New: v("2")}})
	})
	h.run("SlowReceiver", testWatchSlowReceiver)
	h.run("ClosesOnCancel", func(h *harness) {
		ctx, cancel := context.WithCancel(h.ctx)
		ch := h.watch(ctx, "main", "")
		h.commit("main", "unread", put("unread", "1"))
		cancel()
		h.wantClosed(ch, "after cancelling the watch's context")
	})
	h.run("Errors", func(h *harness) {
		_, err := h.s.Watch(h.ctx, "ghost", "")
		h.wantErr("Watch of a missing branch", err, store.ErrNotFound)
		_, err = h.s.Watch(h.ctx, "main", "a//b")
		h.wantErr("Watch with a malformed prefix", err, store.ErrInvalid)
	})
}

// testWatchSlowReceiver commits while nobody reads the watch, then checks that the events
// (possibly coalesced) replay exactly onto the final state and end at the last commit.
func testWatchSlowReceiver(h *harness) {
	const n = 30
	ch := h.watch(h.ctx, "main", "slow")
	type result struct {
		commits []store.Commit
		err     error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for i := range n {
			ops := []store.Op{put(fmt.Sprintf("slow/k%d", i%7), fmt.Sprintf("v%d", i))}
			if i%5 == 0 {
				ops = append(ops, del(fmt.Sprintf("slow/k%d", (i+3)%7)))
			}
			if i%4 == 3 {
				ops = []store.Op{put(fmt.Sprintf("elsewhere/%d", i), "x")}
			}
			c, err := h.s.Commit(h.ctx, store.Change{Author: author, Message: fmt.Sprintf("slow %d", i), Ops: ops})
			if err != nil {
				r.err = fmt.Errorf("commit %d: %w", i, err)
				break
			}
			r.commits = append(r.commits, c)
			// Let the store notice each commit on its own, so that a pending event is
			// replaced by newer ones while the receiver sleeps. Not a timing assertion.
			time.Sleep(time.Millisecond)
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(3 * waitFor):
		h.t.Fatalf("%d commits did not finish within %v while a watcher was not reading: writers must not wait for watchers", n, 3*waitFor)
	}
	if r.err != nil {
		h.t.Fatal(r.err)
	}
	order := map[store.Hash]int{}
	for i, c := range r.commits {
		order[c.ID] = i
	}
	last := r.commits[len(r.commits)-1]
	model := map[string]store.Hash{}
	prev := -1
	for events := 0; ; events++ {
		if events > n {
			h.t.Fatalf("more than %d events for %d commits", n, n)
		}
		ev := h.next(ch, fmt.Sprintf("event %d (want one for %q eventually)", events, last.Message))
		i, ok := order[ev.Commit.ID]
		if !ok || i <= prev {
			h.t.Fatalf("event %d is for %q(%s), which is not a later commit than the previous event's", events, ev.Commit.Message, short(ev.Commit.ID))
		}
		prev = i
		if !slices.IsSortedFunc(ev.Diffs, func(a, b store.Diff) int { return strings.Compare(a.Key, b.Key) }) {
			h.t.Errorf("event %d: diffs not sorted by key: %+v", events, ev.Diffs)
		}
		for _, d := range ev.Diffs {
			have, exists := model[d.Key]
			ok := store.UnderPrefix(d.Key, "slow")
			switch d.Kind {
			case store.Added:
				ok = ok && !exists && d.Old == "" && d.New != ""
				model[d.Key] = d.New
			case store.Modified:
				ok = ok && exists && d.Old == have && d.New != "" && d.New != have
				model[d.Key] = d.New
			case store.Deleted:
				ok = ok && exists && d.Old == have && d.New == ""
				delete(model, d.Key)
			default:
				ok = false
			}
			if !ok {
				h.t.Fatalf("event %d (%q): diff %+v does not follow from the earlier events (state %v)", events, ev.Commit.Message, d, model)
			}
		}
		if ev.Commit.ID == last.ID {
			break
		}
	}
	es, err := h.s.List(h.ctx, "main", "slow")
	if err != nil {
		h.t.Fatalf("List: %v", err)
	}
	want := map[string]store.Hash{}
	for _, e := range es {
		want[e.Key] = e.Version
	}
	if fmt.Sprint(model) != fmt.Sprint(want) {
		h.t.Errorf("replaying the events gives %v, but the keys below slow are %v", model, want)
	}
}
