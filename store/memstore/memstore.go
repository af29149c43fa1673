// Package memstore is an in-memory implementation of store.Store for tests.
//
// It follows the same semantics as the git-backed store.Repo (checked by the conformance
// suite in store/storetest) but keeps every blob, tree and commit in maps guarded by one
// mutex. Nothing is persisted.
package memstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// MergeRules resolve keys both sides of a merge changed.
	MergeRules store.MergeRules
	// MaxValueSize is the largest value accepted (<= 0: store.MaxValueSize).
	MaxValueSize int64
	// Now returns the current time (nil: time.Now); tests set it.
	Now func() time.Time
}

// Store is an in-memory versioned store. It is safe for concurrent use.
type Store struct {
	rules    store.MergeRules
	maxValue int64
	now      func() time.Time

	mu       sync.Mutex
	closed   bool
	done     chan struct{} // closed by Close
	blobs    map[store.Hash][]byte
	commits  map[store.Hash]*commitObj
	branches map[string]store.Hash
	watchers map[*watcher]struct{}
	seq      int
}

// commitObj is a stored commit with its tree. Both are immutable once stored.
type commitObj struct {
	c    store.Commit
	tree map[string]store.Hash
	seq  int // creation order: every commit's parents have a lower seq
}

var _ store.Store = (*Store)(nil)

// New returns a store holding branch "main" with one empty initial commit, as store.Init
// makes it. opts may be nil.
func New(opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxValueSize <= 0 || o.MaxValueSize > store.MaxValueSize {
		o.MaxValueSize = store.MaxValueSize
	}
	s := &Store{
		rules:    o.MergeRules,
		maxValue: o.MaxValueSize,
		now:      o.Now,
		done:     make(chan struct{}),
		blobs:    map[store.Hash][]byte{},
		commits:  map[store.Hash]*commitObj{},
		branches: map[string]store.Hash{},
		watchers: map[*watcher]struct{}{},
	}
	root := s.addCommit(nil, map[string]store.Hash{},
		store.Signature{Name: "hearth", Email: "hearth@localhost"}, "Initial commit", time.Time{})
	s.branches[store.DefaultBranch] = root.ID
	return s
}

// lock takes the mutex and reports ErrClosed (leaving it unlocked) if the store is closed
// or ctx has ended.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

// resolve returns the commit rev names; the caller holds mu.
func (s *Store) resolve(rev string) (*commitObj, error) {
	if err := store.CheckRev(rev); err != nil {
		return nil, err
	}
	if rev == "" {
		rev = store.DefaultBranch
	}
	if store.IsHash(rev) {
		if c, ok := s.commits[store.Hash(rev)]; ok {
			return c, nil
		}
		return nil, fmt.Errorf("memstore: commit %s: %w", rev, store.ErrNotFound)
	}
	if h, ok := s.branches[rev]; ok {
		return s.commits[h], nil
	}
	return nil, fmt.Errorf("memstore: branch %q: %w", rev, store.ErrNotFound)
}

// Get returns a key's value and entry at rev.
func (s *Store) Get(ctx context.Context, rev, key string) ([]byte, store.Entry, error) {
	if err := s.lock(ctx); err != nil {
		return nil, store.Entry{}, fmt.Errorf("memstore: get %q: %w", key, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckKey(key); err != nil {
		return nil, store.Entry{}, err
	}
	c, err := s.resolve(rev)
	if err != nil {
		return nil, store.Entry{}, fmt.Errorf("memstore: get %q: %w", key, err)
	}
	v, ok := c.tree[key]
	if !ok {
		return nil, store.Entry{}, fmt.Errorf("memstore: get %q at %s: %w", key, c.c.ID, store.ErrNotFound)
	}
	b := s.blobs[v]
	return slices.Clone(b), store.Entry{Key: key, Version: v, Size: int64(len(b))}, nil
}

// Stat returns a key's entry at rev without its value.
func (s *Store) Stat(ctx context.Context, rev, key string) (store.Entry, error) {
	if err := s.lock(ctx); err != nil {
		return store.Entry{}, fmt.Errorf("memstore: stat %q: %w", key, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckKey(key); err != nil {
		return store.Entry{}, err
	}
	c, err := s.resolve(rev)
	if err != nil {
		return store.Entry{}, fmt.Errorf("memstore: stat %q: %w", key, err)
	}
	v, ok := c.tree[key]
	if !ok {
		return store.Entry{}, fmt.Errorf("memstore: stat %q at %s: %w", key, c.c.ID, store.ErrNotFound)
	}
	return store.Entry{Key: key, Version: v, Size: int64(len(s.blobs[v]))}, nil
}

// List returns every key at rev that is prefix or lies below it, sorted by key.
func (s *Store) List(ctx context.Context, rev, prefix string) ([]store.Entry, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: list %q: %w", prefix, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	c, err := s.resolve(rev)
	if err != nil {
		return nil, fmt.Errorf("memstore: list %q: %w", prefix, err)
	}
	out := []store.Entry{}
	for k, v := range c.tree {
		if store.UnderPrefix(k, prefix) {
			out = append(out, store.Entry{Key: k, Version: v, Size: int64(len(s.blobs[v]))})
		}
	}
	slices.SortFunc(out, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Resolve returns the commit rev names.
func (s *Store) Resolve(ctx context.Context, rev string) (store.Hash, error) {
	if err := s.lock(ctx); err != nil {
		return "", fmt.Errorf("memstore: resolve %q: %w", rev, err)
	}
	defer s.mu.Unlock()
	c, err := s.resolve(rev)
	if err != nil {
		return "", err
	}
	return c.c.ID, nil
}

// Commit applies c atomically and returns the commit that holds it.
func (s *Store) Commit(ctx context.Context, c store.Change) (store.Commit, error) {
	if err := s.lock(ctx); err != nil {
		return store.Commit{}, fmt.Errorf("memstore: commit: %w", err)
	}
	defer s.mu.Unlock()
	if err := store.CheckChange(&c, s.maxValue); err != nil {
		return store.Commit{}, err
	}
	branch := c.Branch
	if branch == "" {
		branch = store.DefaultBranch
	}
	var parents []store.Hash
	base := map[string]store.Hash{}
	head, exists := s.branches[branch]
	switch {
	case !exists && c.Parent != store.Missing:
		return store.Commit{}, fmt.Errorf("memstore: commit on branch %q: %w", branch, store.ErrNotFound)
	case exists && c.Parent != "" && c.Parent != head:
		return store.Commit{}, &store.PreconditionError{Branch: branch, Want: c.Parent, Have: head}
	case exists:
		parents = []store.Hash{head}
		base = s.commits[head].tree
	}
	for _, op := range c.Ops {
		if op.IfMatch == "" {
			continue
		}
		have, ok := base[op.Key]
		if !ok {
			have = store.Missing
		}
		if have != op.IfMatch {
			return store.Commit{}, &store.PreconditionError{Branch: branch, Key: op.Key, Want: op.IfMatch, Have: have}
		}
	}
	tree, blobs, err := s.applyOps(base, c.Ops)
	if err != nil {
		return store.Commit{}, fmt.Errorf("memstore: commit on branch %q: %w", branch, err)
	}
	if exists && sameTree(base, tree) {
		return cloneCommit(s.commits[head].c), nil
	}
	for h, b := range blobs {
		s.blobs[h] = b
	}
	nc := s.addCommit(parents, tree, c.Author, c.Message, c.Time)
	s.setBranch(branch, nc.ID)
	return cloneCommit(nc), nil
}

// applyOps returns base with ops applied (IfMatch is not checked here) and the new blobs
// the result needs. It fails with ErrNotFound for a Copy of an unknown version and with
// ErrConflict when a put would make a path both a value and a directory. The caller holds mu.
func (s *Store) applyOps(base map[string]store.Hash, ops []store.Op) (map[string]store.Hash, map[store.Hash][]byte, error) {
	tree := make(map[string]store.Hash, len(base)+len(ops))
	for k, v := range base {
		tree[k] = v
	}
	blobs := map[store.Hash][]byte{}
	var puts []string
	for _, op := range ops {
		switch {
		case op.Delete:
			delete(tree, op.Key)
			continue
		case op.Copy != "":
			if _, ok := s.blobs[op.Copy]; !ok {
				if _, ok := blobs[op.Copy]; !ok {
					return nil, nil, fmt.Errorf("copy %s to %q: %w", op.Copy, op.Key, store.ErrNotFound)
				}
			}
			tree[op.Key] = op.Copy
		default:
			h := store.BlobHash(op.Value)
			if _, ok := s.blobs[h]; !ok {
				blobs[h] = slices.Clip(append([]byte{}, op.Value...))
			}
			tree[op.Key] = h
		}
		puts = append(puts, op.Key)
	}
	if a, b, bad := shapeConflict(tree, puts); bad {
		return nil, nil, &shapeError{value: a, below: b}
	}
	return tree, blobs, nil
}

// shapeError reports a path that would be both a value and a directory. It matches
// store.ErrConflict.
type shapeError struct{ value, below string }

func (e *shapeError) Error() string {
	return fmt.Sprintf("%q is a value and %q lies below it: %v", e.value, e.below, store.ErrConflict)
}

func (e *shapeError) Unwrap() error { return store.ErrConflict }

// shapeConflict finds a put key that is also a directory of tree, or lies below a value.
// It returns the value's key and the key below it.
func shapeConflict(tree map[string]store.Hash, puts []string) (string, string, bool) {
	if len(puts) == 0 {
		return "", "", false
	}
	for _, k := range puts {
		for i := strings.IndexByte(k, '/'); i >= 0; i = nextSlash(k, i) {
			if _, ok := tree[k[:i]]; ok {
				return k[:i], k, true
			}
		}
	}
	put := make(map[string]bool, len(puts))
	for _, k := range puts {
		put[k] = true
	}
	for k := range tree {
		for i := strings.IndexByte(k, '/'); i >= 0; i = nextSlash(k, i) {
			if put[k[:i]] {
				return k[:i], k, true
			}
		}
	}
	return "", "", false
}

func nextSlash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func sameTree(a, b map[string]store.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// addCommit stores a commit and returns it; the caller holds mu (or owns s).
// A zero t means now.
func (s *Store) addCommit(parents []store.Hash, tree map[string]store.Hash, author store.Signature, msg string, t time.Time) store.Commit {
	if t.IsZero() {
		t = s.now()
	}
	c := store.Commit{
		Parents: parents,
		Author:  author,
		Message: msg,
		Time:    t.Truncate(time.Second).UTC(),
	}
	c.ID = commitID(c, tree)
	if old, ok := s.commits[c.ID]; ok {
		return old.c // the same content is the same commit
	}
	s.seq++
	s.commits[c.ID] = &commitObj{c: c, tree: tree, seq: s.seq}
	return c
}

// commitID hashes a deterministic, unambiguous encoding of a commit and its tree.
func commitID(c store.Commit, tree map[string]store.Hash) store.Hash {
	h := sha1.New()
	field := func(name, v string) {
		h.Write([]byte(name + " " + strconv.Itoa(len(v)) + ":" + v + "\n"))
	}
	field("memstore-commit", "1")
	for _, p := range c.Parents {
		field("parent", string(p))
	}
	keys := make([]string, 0, len(tree))
	for k := range tree {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field("key", k)
		field("version", string(tree[k]))
	}
	field("author-name", c.Author.Name)
	field("author-email", c.Author.Email)
	field("time", strconv.FormatInt(c.Time.Unix(), 10))
	field("message", c.Message)
	return store.Hash(hex.EncodeToString(h.Sum(nil)))
}

func cloneCommit(c store.Commit) store.Commit {
	c.Parents = slices.Clone(c.Parents)
	return c
}

// setBranch points a branch at a commit and wakes its watchers; the caller holds mu.
func (s *Store) setBranch(name string, h store.Hash) {
	s.branches[name] = h
	for w := range s.watchers {
		if w.branch == name {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// isEmptyRoot reports whether commit h has no parents and no keys (what a new store
// starts with): a branch there may move to any commit, as nothing would be lost.
func (s *Store) isEmptyRoot(h store.Hash) bool {
	c := s.commits[h]
	return c != nil && len(c.c.Parents) == 0 && len(c.tree) == 0
}

// isAncestor reports whether commit a is b or one of b's ancestors; the caller holds mu.
func (s *Store) isAncestor(a, b store.Hash) bool {
	ca, ok := s.commits[a]
	if !ok {
		return false
	}
	seen := map[store.Hash]bool{}
	stack := []store.Hash{b}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if h == a {
			return true
		}
		c := s.commits[h]
		if seen[h] || c == nil || c.seq < ca.seq {
			continue
		}
		seen[h] = true
		stack = append(stack, c.c.Parents...)
	}
	return false
}

// ancestors returns the commits reachable from h, itself included, children before
// parents (newest creation first); the caller holds mu.
func (s *Store) ancestors(h store.Hash) []*commitObj {
	seen := map[store.Hash]bool{h: true}
	var out []*commitObj
	stack := []store.Hash{h}
	for len(stack) > 0 {
		c := s.commits[stack[len(stack)-1]]
		stack = stack[:len(stack)-1]
		out = append(out, c)
		for _, p := range c.c.Parents {
			if !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	// A parent always exists before its child, so creation order is a topological order.
	slices.SortFunc(out, func(a, b *commitObj) int { return b.seq - a.seq })
	return out
}

// Revert makes a commit that restores everything below r.Prefix to its state at r.To.
func (s *Store) Revert(ctx context.Context, r store.RevertRequest) (store.Commit, error) {
	if err := s.lock(ctx); err != nil {
		return store.Commit{}, fmt.Errorf("memstore: revert: %w", err)
	}
	defer s.mu.Unlock()
	branch := r.Branch
	if branch == "" {
		branch = store.DefaultBranch
	}
	if err := checkMeta(branch, r.Author, r.Message); err != nil {
		return store.Commit{}, err
	}
	if err := store.CheckPrefix(r.Prefix); err != nil {
		return store.Commit{}, err
	}
	if !store.IsHash(string(r.To)) {
		return store.Commit{}, fmt.Errorf("memstore: revert to %q: %w: not a commit id", r.To, store.ErrInvalid)
	}
	head, ok := s.branches[branch]
	if !ok {
		return store.Commit{}, fmt.Errorf("memstore: revert branch %q: %w", branch, store.ErrNotFound)
	}
	to, ok := s.commits[r.To]
	if !ok {
		return store.Commit{}, fmt.Errorf("memstore: revert to %s: %w", r.To, store.ErrNotFound)
	}
	base := s.commits[head].tree
	ops, err := store.RevertOps(store.DiffMaps(base, to.tree, r.Prefix), r.Rules, func(h store.Hash) ([]byte, error) {
		v, ok := s.blobs[h]
		if !ok {
			return nil, fmt.Errorf("memstore: value %s: %w", h, store.ErrNotFound)
		}
		return v, nil
	}, s.commits[head].c.Time)
	if err != nil {
		return store.Commit{}, err
	}
	if len(ops) == 0 {
		return cloneCommit(s.commits[head].c), nil
	}
	tree, _, err := s.applyOps(base, ops)
	if err != nil {
		return store.Commit{}, fmt.Errorf("memstore: revert %q on branch %q: %w", r.Prefix, branch, err)
	}
	nc := s.addCommit([]store.Hash{head}, tree, r.Author, r.Message, time.Time{})
	s.setBranch(branch, nc.ID)
	return cloneCommit(nc), nil
}

// checkMeta validates a branch, author and message the way store.CheckChange does.
func checkMeta(branch string, author store.Signature, msg string) error {
	probe := store.Change{Branch: branch, Author: author, Message: msg, Ops: []store.Op{{Key: "probe"}}}
	return store.CheckChange(&probe, 0)
}

// Log lists the commits reachable from rev, newest first, at most limit (<= 0: all).
func (s *Store) Log(ctx context.Context, rev string, limit int) ([]store.Commit, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: log %q: %w", rev, err)
	}
	defer s.mu.Unlock()
	c, err := s.resolve(rev)
	if err != nil {
		return nil, fmt.Errorf("memstore: log: %w", err)
	}
	out := []store.Commit{}
	for _, a := range s.ancestors(c.c.ID) {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, cloneCommit(a.c))
	}
	return out, nil
}

// History lists the commits reachable from rev that changed key compared with their first
// parent, newest first, at most limit (<= 0: all).
func (s *Store) History(ctx context.Context, rev, key string, limit int) ([]store.Commit, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: history %q: %w", key, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	c, err := s.resolve(rev)
	if err != nil {
		return nil, fmt.Errorf("memstore: history %q: %w", key, err)
	}
	out := []store.Commit{}
	for _, a := range s.ancestors(c.c.ID) {
		if limit > 0 && len(out) >= limit {
			break
		}
		v, ok := a.tree[key]
		var pv store.Hash
		var pok bool
		if len(a.c.Parents) > 0 {
			pv, pok = s.commits[a.c.Parents[0]].tree[key]
		}
		if ok != pok || v != pv {
			out = append(out, cloneCommit(a.c))
		}
	}
	return out, nil
}

// Diff lists the keys below prefix that differ between two revisions; an empty from is
// the empty tree.
func (s *Store) Diff(ctx context.Context, from, to, prefix string) ([]store.Diff, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: diff: %w", err)
	}
	defer s.mu.Unlock()
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	fromTree := map[string]store.Hash{}
	if from != "" {
		c, err := s.resolve(from)
		if err != nil {
			return nil, fmt.Errorf("memstore: diff from: %w", err)
		}
		fromTree = c.tree
	}
	c, err := s.resolve(to)
	if err != nil {
		return nil, fmt.Errorf("memstore: diff to: %w", err)
	}
	out := store.DiffMaps(fromTree, c.tree, prefix)
	if out == nil {
		out = []store.Diff{}
	}
	return out, nil
}

// Branches lists all branches sorted by name.
func (s *Store) Branches(ctx context.Context) ([]store.Branch, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: branches: %w", err)
	}
	defer s.mu.Unlock()
	out := make([]store.Branch, 0, len(s.branches))
	for n, h := range s.branches {
		out = append(out, store.Branch{Name: n, Head: h})
	}
	slices.SortFunc(out, func(a, b store.Branch) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// CreateBranch makes a branch at the commit rev names. ErrConflict if it exists.
func (s *Store) CreateBranch(ctx context.Context, name, rev string) (store.Branch, error) {
	if err := s.lock(ctx); err != nil {
		return store.Branch{}, fmt.Errorf("memstore: create branch %q: %w", name, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckBranch(name); err != nil {
		return store.Branch{}, err
	}
	if _, ok := s.branches[name]; ok {
		return store.Branch{}, fmt.Errorf("memstore: create branch %q: %w: it exists", name, store.ErrConflict)
	}
	c, err := s.resolve(rev)
	if err != nil {
		return store.Branch{}, fmt.Errorf("memstore: create branch %q: %w", name, err)
	}
	s.setBranch(name, c.c.ID)
	return store.Branch{Name: name, Head: c.c.ID}, nil
}

// DeleteBranch removes a branch. ErrNotFound if it does not exist; ErrInvalid for "main".
func (s *Store) DeleteBranch(ctx context.Context, name string) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("memstore: delete branch %q: %w", name, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckBranch(name); err != nil {
		return err
	}
	if name == store.DefaultBranch {
		return fmt.Errorf("memstore: delete branch %q: %w: the default branch stays", name, store.ErrInvalid)
	}
	if _, ok := s.branches[name]; !ok {
		return fmt.Errorf("memstore: delete branch %q: %w", name, store.ErrNotFound)
	}
	delete(s.branches, name)
	return nil
}

// FastForward moves a branch to a commit that descends from its head.
func (s *Store) FastForward(ctx context.Context, name string, to store.Hash) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("memstore: fast-forward %q: %w", name, err)
	}
	defer s.mu.Unlock()
	if err := store.CheckBranch(name); err != nil {
		return err
	}
	if !store.IsHash(string(to)) {
		return fmt.Errorf("memstore: fast-forward %q to %q: %w: not a commit id", name, to, store.ErrInvalid)
	}
	head, ok := s.branches[name]
	if !ok {
		return fmt.Errorf("memstore: fast-forward branch %q: %w", name, store.ErrNotFound)
	}
	if _, ok := s.commits[to]; !ok {
		return fmt.Errorf("memstore: fast-forward %q to %s: %w", name, to, store.ErrNotFound)
	}
	if to == head {
		return nil
	}
	if !s.isAncestor(head, to) && !s.isEmptyRoot(head) {
		return fmt.Errorf("memstore: fast-forward %q to %s: %w: not a descendant of %s", name, to, store.ErrConflict, head)
	}
	s.setBranch(name, to)
	return nil
}

// Merge merges m.From into branch m.Into, fast-forwarding when Into has not moved.
func (s *Store) Merge(ctx context.Context, m store.MergeRequest) (store.Commit, error) {
	if err := s.lock(ctx); err != nil {
		return store.Commit{}, fmt.Errorf("memstore: merge: %w", err)
	}
	defer s.mu.Unlock()
	into := m.Into
	if into == "" {
		into = store.DefaultBranch
	}
	if err := checkMeta(into, m.Author, m.Message); err != nil {
		return store.Commit{}, err
	}
	if m.From == "" {
		return store.Commit{}, fmt.Errorf("memstore: merge into %q: %w: empty source", into, store.ErrInvalid)
	}
	intoHead, ok := s.branches[into]
	if !ok {
		return store.Commit{}, fmt.Errorf("memstore: merge into branch %q: %w", into, store.ErrNotFound)
	}
	from, err := s.resolve(m.From)
	if err != nil {
		return store.Commit{}, fmt.Errorf("memstore: merge %q into %q: %w", m.From, into, err)
	}
	ours, theirs := s.commits[intoHead], from
	switch {
	case s.isAncestor(theirs.c.ID, ours.c.ID):
		return cloneCommit(ours.c), nil
	case s.isAncestor(ours.c.ID, theirs.c.ID), s.isEmptyRoot(ours.c.ID):
		s.setBranch(into, theirs.c.ID)
		return cloneCommit(theirs.c), nil
	}
	base := map[string]store.Hash{}
	if lca := s.mergeBase(ours.c.ID, theirs.c.ID); lca != nil {
		base = lca.tree
	}
	ops, err := store.Merge3(store.MergeInput{
		Base:   base,
		Ours:   ours.tree,
		Theirs: theirs.tree,
		Load: func(h store.Hash) ([]byte, error) {
			b, ok := s.blobs[h]
			if !ok {
				return nil, fmt.Errorf("memstore: blob %s: %w", h, store.ErrNotFound)
			}
			return slices.Clone(b), nil
		},
		Rules:      s.rules,
		OursTime:   ours.c.Time,
		TheirsTime: theirs.c.Time,
	})
	if err != nil {
		return store.Commit{}, fmt.Errorf("memstore: merge %q into %q: %w", m.From, into, err)
	}
	tree, blobs, err := s.applyOps(ours.tree, ops)
	var se *shapeError
	if errors.As(err, &se) {
		// One side made a path a value, the other a directory: no rule can settle that.
		err = &store.MergeConflictError{Keys: []string{se.value, se.below}}
	}
	if err != nil {
		return store.Commit{}, fmt.Errorf("memstore: merge %q into %q: %w", m.From, into, err)
	}
	for h, b := range blobs {
		s.blobs[h] = b
	}
	nc := s.addCommit([]store.Hash{ours.c.ID, theirs.c.ID}, tree, m.Author, m.Message, time.Time{})
	s.setBranch(into, nc.ID)
	return cloneCommit(nc), nil
}

// mergeBase returns a lowest common ancestor of a and b, or nil if they share no history;
// the caller holds mu. The common ancestor created last is an ancestor of no other one.
func (s *Store) mergeBase(a, b store.Hash) *commitObj {
	inA := map[store.Hash]bool{}
	for _, c := range s.ancestors(a) {
		inA[c.c.ID] = true
	}
	for _, c := range s.ancestors(b) { // newest first
		if inA[c.c.ID] {
			return c
		}
	}
	return nil
}

// Close releases the store: later calls return ErrClosed and watch channels close.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: close: %w", store.ErrClosed)
	}
	s.closed = true
	close(s.done)
	return nil
}
