package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/hearth-home/hearth/store"
)

func testConcurrentDistinctKeys(h *harness) {
	const goroutines, commits = 16, 25
	type written struct {
		key, value string
		commit     store.Hash
	}
	results := make(chan written, goroutines*commits)
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range commits {
				key, value := fmt.Sprintf("g%02d/k%02d", g, i), fmt.Sprintf("value %d.%d", g, i)
				c, err := h.s.Commit(h.ctx, store.Change{Author: author, Message: "write " + key, Ops: []store.Op{put(key, value)}})
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, commit %d: %w", g, i, err)
					return
				}
				results <- written{key, value, c.ID}
			}
		})
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		h.t.Error(err)
	}
	if h.t.Failed() {
		return
	}
	es, err := h.s.List(h.ctx, "main", "")
	if err != nil {
		h.t.Fatalf("List: %v", err)
	}
	if len(es) != goroutines*commits {
		h.t.Errorf("after %d concurrent commits of distinct keys, main has %d keys, want %d", goroutines*commits, len(es), goroutines*commits)
	}
	versions := map[string]store.Hash{}
	for _, e := range es {
		versions[e.Key] = e.Version
	}
	inLog := map[store.Hash]bool{}
	for _, c := range h.log("main", 0) {
		inLog[c.ID] = true
	}
	for w := range results {
		if versions[w.key] != store.BlobHash([]byte(w.value)) {
			h.t.Errorf("key %s has version %q on main, want that of %q", w.key, versions[w.key], w.value)
		}
		if got := h.get(string(w.commit), w.key); got != w.value {
			h.t.Errorf("Get(%s, %s) = %q: the commit returned for the write does not hold %q", short(w.commit), w.key, got, w.value)
		}
		if !inLog[w.commit] {
			h.t.Errorf("commit %s returned for %s is not in Log(main)", short(w.commit), w.key)
		}
	}
}

func testConcurrentCounter(h *harness) {
	const goroutines, increments, maxAttempts = 8, 10, 1000
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range increments {
				if err := h.increment(maxAttempts); err != nil {
					errs <- fmt.Errorf("goroutine %d, increment %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Error(err)
	}
	if h.t.Failed() {
		return
	}
	if got, want := h.get("main", "counter"), strconv.Itoa(goroutines*increments); got != want {
		h.t.Errorf("counter = %s after %s increments with IfMatch and retry: an update was lost", got, want)
	}
	hist, err := h.s.History(h.ctx, "main", "counter", 0)
	if err != nil || len(hist) != goroutines*increments {
		h.t.Errorf("History(main, counter) has %d commits, %v; want one per increment (%d)", len(hist), err, goroutines*increments)
	}
}

// increment adds one to the decimal value of "counter" with a read, a conditional write
// and a retry when another writer got there first.
func (h *harness) increment(maxAttempts int) error {
	for range maxAttempts {
		v, e, err := h.s.Get(h.ctx, "main", "counter")
		n, match := 0, e.Version
		switch {
		case errors.Is(err, store.ErrNotFound):
			match = store.Missing
		case err != nil:
			return err
		default:
			if n, err = strconv.Atoi(string(v)); err != nil {
				return fmt.Errorf("counter holds %q: %w", v, err)
			}
		}
		_, err = h.s.Commit(h.ctx, store.Change{Author: author, Message: "increment to " + strconv.Itoa(n+1),
			Ops: []store.Op{{Key: "counter", Value: []byte(strconv.Itoa(n + 1)), IfMatch: match}}})
		var pe *store.PreconditionError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pe) && errors.Is(err, store.ErrConflict):
			continue
		default:
			return err
		}
	}
	return fmt.Errorf("no success in %d attempts", maxAttempts)
}

func testClose(h *harness) {
	ch := h.watch(h.ctx, "main", "")
	head := h.head("main")
	h.commit("main", "before close", put("k", "v"))
	if err := h.s.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.wantClosed(ch, "after Close")
	ctx, s := h.ctx, h.s
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, _, err := s.Get(ctx, "main", "k"); return err }},
		{"Stat", func() error { _, err := s.Stat(ctx, "main", "k"); return err }},
		{"List", func() error { _, err := s.List(ctx, "main", ""); return err }},
		{"Resolve", func() error { _, err := s.Resolve(ctx, "main"); return err }},
		{"Commit", func() error {
			_, err := s.Commit(ctx, store.Change{Author: author, Message: "after close", Ops: []store.Op{put("k", "w")}})
			return err
		}},
		{"Revert", func() error {
			_, err := s.Revert(ctx, store.RevertRequest{Branch: "main", To: head, Author: author, Message: "r"})
			return err
		}},
		{"Log", func() error { _, err := s.Log(ctx, "main", 0); return err }},
		{"History", func() error { _, err := s.History(ctx, "main", "k", 0); return err }},
		{"Diff", func() error { _, err := s.Diff(ctx, "", "main", ""); return err }},
		{"Branches", func() error { _, err := s.Branches(ctx); return err }},
		{"CreateBranch", func() error { _, err := s.CreateBranch(ctx, "b", "main"); return err }},
		{"DeleteBranch", func() error { return s.DeleteBranch(ctx, "b") }},
		{"FastForward", func() error { return s.FastForward(ctx, "main", head) }},
		{"Merge", func() error {
			_, err := s.Merge(ctx, store.MergeRequest{Into: "main", From: string(head), Author: author, Message: "m"})
			return err
		}},
		{"Watch", func() error { _, err := s.Watch(ctx, "main", ""); return err }},
	}
	for _, c := range calls {
		h.wantErr(c.name+" after Close", c.call(), store.ErrClosed)
	}
}
