package storedav

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/hearth-home/hearth/store"
)

// RecyclingRepos hands out repositories like a *store.Repos, and can replace its
// store.Repos with a fresh one when nothing uses it, which drops everything the store
// caches per repository (objects, trees, open packs, the history index): what an idle
// appliance does so that it stays small. Users of the repositories mark their use with
// Hold (HTTP handlers) or Use; Recycle waits for none of them. Repositories that must
// stay open across recycling (the accounts) belong in another store.Repos.
type RecyclingRepos struct {
	root string
	opts *store.Options

	use sync.RWMutex // read-held while a repository is in use; write-held to recycle
	mu  sync.Mutex   // guards cur
	cur *store.Repos
}

// NewRecyclingRepos opens the repositories below root (see store.OpenRepos).
func NewRecyclingRepos(root string, opts *store.Options) (*RecyclingRepos, error) {
	r, err := store.OpenRepos(root, opts)
	if err != nil {
		return nil, fmt.Errorf("storedav: repositories: %w", err)
	}
	return &RecyclingRepos{root: root, opts: opts, cur: r}, nil
}

// Open opens a repository of the current store.Repos. Call it only inside Hold or Use:
// a repository may be closed by Recycle once they return.
func (r *RecyclingRepos) Open(ctx context.Context, name string, create bool) (store.Store, error) {
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	return cur.Open(ctx, name, create)
}

// Use runs fn while the repositories may not be recycled.
func (r *RecyclingRepos) Use(fn func()) {
	r.use.RLock()
	defer r.use.RUnlock()
	fn()
}

// Hold returns h with every request marked as a use of the repositories.
func (r *RecyclingRepos) Hold(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.use.RLock()
		defer r.use.RUnlock()
		h.ServeHTTP(w, req)
	})
}

// Recycle starts over with a fresh store.Repos and closes the old one, unless a use is
// in progress; it reports whether it did. Repositories reopen on their next use. The
// old repositories are closed after new uses are let in (closing waits for a pack merge
// in progress), which is safe as two processes sharing a repository are.
func (r *RecyclingRepos) Recycle() (bool, error) {
	if !r.use.TryLock() {
		return false, nil
	}
	fresh, err := store.OpenRepos(r.root, r.opts)
	if err != nil {
		r.use.Unlock()
		return false, fmt.Errorf("storedav: recycle repositories: %w", err)
	}
	r.mu.Lock()
	old := r.cur
	r.cur = fresh
	r.mu.Unlock()
	r.use.Unlock()
	if err := old.Close(); err != nil {
		return true, fmt.Errorf("storedav: recycle repositories: %w", err)
	}
	return true, nil
}

// Close closes the repositories.
func (r *RecyclingRepos) Close() error {
	r.use.Lock()
	defer r.use.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.Close()
}

// idleListings is how many cached listing entries DropCaches keeps (about 100 bytes
// each): enough for the collections in use to answer at once after an idle spell.
const idleListings = 10000

// DropCaches empties the object-bytes cache, and the listing cache when it is large, so
// that an idle appliance gives the memory back. Later requests fill them again.
func (c *Collections) DropCaches() {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	c.blobs, c.blobBytes = nil, 0
	if c.listed > idleListings {
		c.lists, c.listed = nil, 0
	}
}

// DropCaches empties the handler's caches (see Collections.DropCaches).
func (h *Handler) DropCaches() { h.coll.DropCaches() }
