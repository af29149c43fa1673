package memstore

import (
	"context"
	"fmt"

	"github.com/hearth-home/hearth/store"
)

// watcher is one Watch call. Writers only poke wake (never blocking); the watcher's own
// goroutine computes events, so a slow receiver never holds up a commit.
type watcher struct {
	branch, prefix string
	wake           chan struct{} // capacity 1: pokes coalesce
	out            chan store.Event
}

// Watch reports commits on branch that change keys below prefix. Events a slow receiver
// has not taken yet are coalesced into one that spans them. The channel closes when ctx
// ends or the store closes.
func (s *Store) Watch(ctx context.Context, branch, prefix string) (<-chan store.Event, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: watch %q: %w", branch, err)
	}
	defer s.mu.Unlock()
	if branch == "" {
		branch = store.DefaultBranch
	}
	if err := store.CheckBranch(branch); err != nil {
		return nil, err
	}
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	head, ok := s.branches[branch]
	if !ok {
		return nil, fmt.Errorf("memstore: watch branch %q: %w", branch, store.ErrNotFound)
	}
	w := &watcher{branch: branch, prefix: prefix, wake: make(chan struct{}, 1), out: make(chan store.Event)}
	s.watchers[w] = struct{}{}
	go s.runWatch(ctx, w, head)
	return w.out, nil
}

// runWatch delivers w's events until ctx ends or the store closes. last is the commit the
// receiver has seen; a pending event always spans last to the newest head.
func (s *Store) runWatch(ctx context.Context, w *watcher, last store.Hash) {
	defer close(w.out)
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	var pending *store.Event
	for {
		var out chan<- store.Event
		var ev store.Event
		if pending != nil {
			out, ev = w.out, *pending
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-w.wake:
			ev, head := s.eventSince(w, last)
			switch {
			case ev != nil:
				pending = ev
			case head != "":
				// Nothing below the prefix changed since last: the receiver is current.
				pending, last = nil, head
			}
		case out <- ev:
			last = ev.Commit.ID
			pending = nil
		}
	}
}

// eventSince returns the event from commit last to w's branch head (nil when nothing below
// the prefix changed) and that head ("" when the branch does not exist).
func (s *Store) eventSince(w *watcher, last store.Hash) (*store.Event, store.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	head, ok := s.branches[w.branch]
	if !ok {
		return nil, ""
	}
	if head == last {
		return nil, head
	}
	var from map[string]store.Hash
	if c, ok := s.commits[last]; ok {
		from = c.tree
	}
	to := s.commits[head]
	diffs := store.DiffMaps(from, to.tree, w.prefix)
	if len(diffs) == 0 {
		return nil, head
	}
	return &store.Event{Branch: w.branch, Commit: cloneCommit(to.c), Diffs: diffs}, head
}
