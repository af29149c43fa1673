package memstore

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/hearth-home/hearth/store"
)

// Repos holds many named in-memory stores, the twin of store.Repos for REST tests.
// It is safe for concurrent use.
type Repos struct {
	opts Options

	mu     sync.Mutex
	stores map[string]*Store
	closed bool
}

// NewRepos returns an empty set of repositories; opts (which may be nil) applies to
// every store created through it.
func NewRepos(opts *Options) *Repos {
	r := &Repos{stores: map[string]*Store{}}
	if opts != nil {
		r.opts = *opts
	}
	return r
}

// List returns the names of all repositories, sorted.
func (r *Repos) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("memstore: list repos: %w", store.ErrClosed)
	}
	names := make([]string, 0, len(r.stores))
	for n := range r.stores {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// Open returns the named repository. If it does not exist, Open creates it when create is
// true and returns store.ErrNotFound otherwise.
func (r *Repos) Open(ctx context.Context, name string, create bool) (store.Store, error) {
	if err := store.CheckRepoName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("memstore: open repository %q: %w", name, store.ErrClosed)
	}
	if s, ok := r.stores[name]; ok {
		return s, nil
	}
	if !create {
		return nil, fmt.Errorf("memstore: repository %q: %w", name, store.ErrNotFound)
	}
	s := New(&r.opts)
	r.stores[name] = s
	return s, nil
}

// Close closes every repository; later calls return store.ErrClosed.
func (r *Repos) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("memstore: close repos: %w", store.ErrClosed)
	}
	r.closed = true
	for _, s := range r.stores {
		s.Close() // a store closed through Store.Close reports ErrClosed; that is fine
	}
	r.stores = nil
	return nil
}
