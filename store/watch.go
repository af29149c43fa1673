package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// watchers tracks the watches of one Repo. The writer tells it when a branch moves; a
// poller, running while there are watches, notices commits made by other processes.
type watchers struct {
	r       *Repo
	mu      sync.Mutex
	list    map[*watcher]bool
	heads   map[string]plumbing.Hash // last head seen per watched branch
	polling bool
}

type watcher struct {
	branch, prefix string
	ch             chan Event
	wake           chan struct{} // capacity 1: "latest changed"

	mu     sync.Mutex
	latest plumbing.Hash
}

// Watch implements Watcher.
func (r *Repo) Watch(ctx context.Context, branch, prefix string) (<-chan Event, error) {
	if branch == "" {
		branch = DefaultBranch
	}
	if err := CheckBranch(branch); err != nil {
		return nil, err
	}
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	head, err := r.resolve(branch)
	if err != nil {
		return nil, err
	}
	w := &watcher{branch: branch, prefix: prefix, ch: make(chan Event, 16), wake: make(chan struct{}, 1), latest: head}
	ws := &r.watch
	ws.mu.Lock()
	if ws.list == nil {
		ws.list = map[*watcher]bool{}
		ws.heads = map[string]plumbing.Hash{}
	}
	ws.list[w] = true
	if _, ok := ws.heads[branch]; !ok {
		ws.heads[branch] = head
	}
	if !ws.polling {
		ws.polling = true
		r.wg.Add(1)
		go ws.poll()
	}
	ws.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(w.ch)
		defer ws.remove(w)
		w.run(ctx, r, head)
	}()
	return w.ch, nil
}

// run delivers events: on each wake it diffs from the last delivered commit to the latest
// head, so events a slow receiver could not take are merged, never lost.
func (w *watcher) run(ctx context.Context, r *Repo, last plumbing.Hash) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		to := w.latest
		w.mu.Unlock()
		if to == last {
			continue
		}
		diffs, err := r.diffCommits(last, to, w.prefix)
		if err != nil {
			r.log.Warn("store: watch", "branch", w.branch, "err", err)
			continue
		}
		if len(diffs) == 0 {
			last = to
			continue
		}
		ci, err := r.commit(to)
		if err != nil {
			r.log.Warn("store: watch", "branch", w.branch, "err", err)
			continue
		}
		select {
		case w.ch <- Event{Branch: w.branch, Commit: ci.Commit, Diffs: diffs}:
			last = to
		case <-ctx.Done():
			return
		case <-r.done:
			return
		}
	}
}

func (ws *watchers) remove(w *watcher) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.list, w)
}

// headMoved tells the watches of branch that its head is now h.
func (ws *watchers) headMoved(branch string, h plumbing.Hash) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.heads == nil {
		return
	}
	if _, watched := ws.heads[branch]; watched {
		ws.heads[branch] = h
	}
	for w := range ws.list {
		if w.branch != branch {
			continue
		}
		w.mu.Lock()
		w.latest = h
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// poll looks at the watched branches' refs every PollInterval, for commits made by other
// processes. It stops when no watch is left.
func (ws *watchers) poll() {
	r := ws.r
	defer r.wg.Done()
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		ws.mu.Lock()
		if len(ws.list) == 0 {
			ws.polling = false
			ws.heads = map[string]plumbing.Hash{}
			ws.mu.Unlock()
			return
		}
		branches := map[string]plumbing.Hash{}
		for w := range ws.list {
			branches[w.branch] = ws.heads[w.branch]
		}
		ws.mu.Unlock()
		for b, known := range branches {
			h, err := r.readRef(b)
			if err != nil {
				continue
			}
			if head := plumbing.NewHash(string(h)); head != known {
				if err := r.hist.ensure(head); err != nil {
					r.log.Warn("store: watch", "branch", b, "err", fmt.Errorf("index: %w", err))
				}
				ws.headMoved(b, head)
			}
		}
	}
}
