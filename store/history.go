package store

import (
	"bufio"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// historyIndex knows every commit reachable from the branches: its parents, its position
// in a topological order (seq) and generation, and which keys it changed against its
// first parent. It answers History without walking trees, and ancestry questions (merge
// base, fast-forward) without reading commits.
//
// It is kept in hearth/history inside the git directory, one line per commit appended as
// commits are made: "<id> <parent>,<parent> <quoted key> <quoted key>...". It is a cache:
// a torn last line is dropped, and commits missing from it (made by another process, the
// git CLI, or lost in a crash) are indexed from git when a branch head is not in it.
type historyIndex struct {
	r *Repo

	mu    sync.Mutex
	nodes map[plumbing.Hash]*cnode
	byKey map[string][]*cnode // seq ascending
	order []*cnode            // by seq
	epoch uint32
	file  *os.File
}

type cnode struct {
	id      plumbing.Hash
	parents []*cnode
	seq     int32
	gen     int32
	mark    uint32
}

func newHistoryIndex(r *Repo) *historyIndex {
	return &historyIndex{r: r, nodes: map[plumbing.Hash]*cnode{}, byKey: map[string][]*cnode{}}
}

func (x *historyIndex) path() string { return filepath.Join(x.r.dir, "hearth", "history") }

// load reads the index file and indexes what the branches have that it lacks.
func (x *historyIndex) load() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(x.path()), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(x.path(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("store: history index: %w", err)
	}
	x.file = f
	br := bufio.NewReaderSize(f, 1<<16)
	var good int64
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			break // a torn last line is dropped
		}
		if err != nil {
			return fmt.Errorf("store: history index: %w", err)
		}
		if !x.parseLine(strings.TrimSuffix(line, "\n")) {
			x.r.log.Warn("store: history index damaged; rebuilding", "dir", x.r.dir)
			x.reset()
			good = 0
			break
		}
		good += int64(len(line))
	}
	if err := f.Truncate(good); err != nil {
		return err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return err
	}
	return nil
}

// catchUp indexes what the branches have that the index lacks. Open runs it in the
// background: a repository with much history made elsewhere (a push, a migration, a lost
// index) opens at once; History, Log and merges wait for the index as they need it.
func (x *historyIndex) catchUp() {
	branches, err := x.r.listBranches()
	if err != nil {
		x.r.log.Warn("store: history index", "dir", x.r.dir, "err", err)
		return
	}
	for _, b := range branches {
		if err := x.ensure(plumbing.NewHash(string(b.Head))); err != nil && !errors.Is(err, ErrClosed) {
			x.r.log.Warn("store: history index", "dir", x.r.dir, "branch", b.Name, "err", err)
		}
	}
}

// addNew indexes a commit just made if its parents are indexed and the index is free;
// otherwise it leaves it to the next ensure, so a commit never waits for indexing.
func (x *historyIndex) addNew(h plumbing.Hash) error {
	if !x.mu.TryLock() {
		return nil
	}
	defer x.mu.Unlock()
	c, err := x.r.commit(h)
	if err != nil {
		return err
	}
	for _, p := range c.Parents {
		if _, ok := x.nodes[plumbing.NewHash(string(p))]; !ok {
			return nil
		}
	}
	return x.ensureLocked(h)
}

func (x *historyIndex) reset() {
	x.nodes = map[plumbing.Hash]*cnode{}
	x.byKey = map[string][]*cnode{}
	x.order = nil
	if x.file != nil {
		x.file.Truncate(0)
		x.file.Seek(0, io.SeekStart)
	}
}

func (x *historyIndex) parseLine(line string) bool {
	fields := strings.SplitN(line, " ", 3)
	if len(fields) < 2 || !IsHash(fields[0]) {
		return false
	}
	var parents []plumbing.Hash
	if fields[1] != "-" {
		for p := range strings.SplitSeq(fields[1], ",") {
			if !IsHash(p) {
				return false
			}
			parents = append(parents, plumbing.NewHash(p))
		}
	}
	var keys []string
	rest := ""
	if len(fields) == 3 {
		rest = fields[2]
	}
	for rest != "" {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return false
		}
		k, _ := strconv.Unquote(q)
		keys = append(keys, k)
		rest = strings.TrimPrefix(rest[len(q):], " ")
	}
	return x.add(plumbing.NewHash(fields[0]), parents, keys)
}

// add puts a commit whose parents are indexed into the index.
func (x *historyIndex) add(id plumbing.Hash, parents []plumbing.Hash, keys []string) bool {
	if _, ok := x.nodes[id]; ok {
		return true
	}
	n := &cnode{id: id, seq: int32(len(x.order))}
	for _, p := range parents {
		pn, ok := x.nodes[p]
		if !ok {
			return false
		}
		n.parents = append(n.parents, pn)
		n.gen = max(n.gen, pn.gen+1)
	}
	x.nodes[id] = n
	x.order = append(x.order, n)
	for _, k := range keys {
		x.byKey[k] = append(x.byKey[k], n)
	}
	return true
}

// ensure indexes head and every ancestor of it the index lacks.
func (x *historyIndex) ensure(head plumbing.Hash) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.ensureLocked(head)
}

func (x *historyIndex) ensureLocked(head plumbing.Hash) error {
	if _, ok := x.nodes[head]; ok {
		return nil
	}
	// Collect unindexed ancestors, then index them parents first.
	var todo []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	type frame struct {
		h    plumbing.Hash
		done bool
	}
	stack := []frame{{h: head}}
	for len(stack) > 0 {
		if x.r.closed.Load() {
			return ErrClosed
		}
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if f.done {
			todo = append(todo, f.h)
			continue
		}
		if seen[f.h] {
			continue
		}
		if _, ok := x.nodes[f.h]; ok {
			continue
		}
		seen[f.h] = true
		ci, err := x.r.commit(f.h)
		if err != nil {
			return err
		}
		stack = append(stack, frame{h: f.h, done: true})
		for _, p := range ci.Parents {
			stack = append(stack, frame{h: plumbing.NewHash(string(p))})
		}
	}
	var buf strings.Builder
	for _, h := range todo {
		if x.r.closed.Load() {
			return ErrClosed
		}
		ci, err := x.r.commit(h)
		if err != nil {
			return err
		}
		var first plumbing.Hash
		parents := make([]plumbing.Hash, len(ci.Parents))
		for i, p := range ci.Parents {
			parents[i] = plumbing.NewHash(string(p))
		}
		if len(parents) > 0 {
			first = parents[0]
		}
		diffs, err := x.r.diffCommits(first, h, "")
		if err != nil {
			return err
		}
		keys := make([]string, len(diffs))
		for i, d := range diffs {
			keys[i] = d.Key
		}
		if !x.add(h, parents, keys) {
			return fmt.Errorf("store: history index: parent of %s missing", h)
		}
		buf.Reset()
		buf.WriteString(h.String())
		buf.WriteByte(' ')
		if len(parents) == 0 {
			buf.WriteByte('-')
		}
		for i, p := range parents {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(p.String())
		}
		for _, k := range keys {
			buf.WriteByte(' ')
			buf.WriteString(strconv.Quote(k))
		}
		buf.WriteByte('\n')
		if x.file != nil {
			if _, err := x.file.WriteString(buf.String()); err != nil {
				x.r.log.Warn("store: history index write", "err", err)
			}
		}
	}
	return nil
}

func (x *historyIndex) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.file != nil {
		x.file.Close()
		x.file = nil
	}
}

// markAncestors marks every ancestor of n (itself included) with generation >= minGen
// with a new epoch, which it returns.
func (x *historyIndex) markAncestors(n *cnode, minGen int32) uint32 {
	x.epoch++
	e := x.epoch
	stack := []*cnode{n}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.mark == e || c.gen < minGen {
			continue
		}
		c.mark = e
		stack = append(stack, c.parents...)
	}
	return e
}

// node returns the indexed node of a commit, indexing it first if needed.
func (x *historyIndex) node(h plumbing.Hash) (*cnode, error) {
	if err := x.ensureLocked(h); err != nil {
		return nil, err
	}
	return x.nodes[h], nil
}

// isAncestor reports whether a is an ancestor of b or equal to it.
func (x *historyIndex) isAncestor(a, b plumbing.Hash) (bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	na, err := x.node(a)
	if err != nil {
		return false, err
	}
	nb, err := x.node(b)
	if err != nil {
		return false, err
	}
	e := x.markAncestors(nb, na.gen)
	return na.mark == e, nil
}

// mergeBase returns a lowest common ancestor of a and b (zero if they share none): of the
// common ancestors the one latest in topological order, which no other descends from.
func (x *historyIndex) mergeBase(a, b plumbing.Hash) (plumbing.Hash, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	na, err := x.node(a)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	nb, err := x.node(b)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	e := x.markAncestors(na, 0)
	var found *cnode
	x.walk(nb, func(c *cnode) bool {
		if c.mark == e {
			found = c
			return false
		}
		return true
	})
	if found == nil {
		return plumbing.ZeroHash, nil
	}
	return found.id, nil
}

// walk visits the ancestors of n (itself first) in descending seq order, so children
// always come before their parents, until fn returns false.
func (x *historyIndex) walk(n *cnode, fn func(*cnode) bool) {
	h := &seqHeap{n}
	seen := map[*cnode]bool{n: true}
	for h.Len() > 0 {
		c := heap.Pop(h).(*cnode)
		if !fn(c) {
			return
		}
		for _, p := range c.parents {
			if !seen[p] {
				seen[p] = true
				heap.Push(h, p)
			}
		}
	}
}

type seqHeap []*cnode

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i].seq > h[j].seq }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(*cnode)) }
func (h *seqHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// Log implements Historian.
func (r *Repo) Log(ctx context.Context, rev string, limit int) ([]Commit, error) {
	return r.commitsFrom(rev, func(x *historyIndex, head *cnode) []plumbing.Hash {
		var ids []plumbing.Hash
		x.walk(head, func(c *cnode) bool {
			ids = append(ids, c.id)
			return limit <= 0 || len(ids) < limit
		})
		return ids
	})
}

// History implements Historian: the index's commits for the key, filtered by reachability
// from rev, which one pruned walk of the commit graph decides.
func (r *Repo) History(ctx context.Context, rev, key string, limit int) ([]Commit, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	return r.commitsFrom(rev, func(x *historyIndex, head *cnode) []plumbing.Hash {
		cands := x.byKey[key]
		if len(cands) == 0 {
			return nil
		}
		minGen := cands[0].gen
		for _, c := range cands {
			minGen = min(minGen, c.gen)
		}
		e := x.markAncestors(head, minGen)
		var ids []plumbing.Hash
		for i := len(cands) - 1; i >= 0 && (limit <= 0 || len(ids) < limit); i-- {
			if cands[i].mark == e {
				ids = append(ids, cands[i].id)
			}
		}
		return ids
	})
}

// commitsFrom resolves rev, lets pick choose commit ids from the history index (under its
// lock) starting at rev's node, and returns those commits.
func (r *Repo) commitsFrom(rev string, pick func(x *historyIndex, head *cnode) []plumbing.Hash) ([]Commit, error) {
	head, err := r.resolve(rev)
	if err != nil {
		return nil, err
	}
	x := r.hist
	x.mu.Lock()
	n, err := x.node(head)
	var ids []plumbing.Hash
	if err == nil {
		ids = pick(x, n)
	}
	x.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]Commit, 0, len(ids))
	for _, id := range ids {
		ci, err := r.commit(id)
		if err != nil {
			return nil, err
		}
		out = append(out, ci.Commit)
	}
	return out, nil
}

// ---- branches ----

// Branches implements Brancher.
func (r *Repo) Branches(ctx context.Context) ([]Branch, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	return r.listBranches()
}

// CreateBranch implements Brancher.
func (r *Repo) CreateBranch(ctx context.Context, name, rev string) (Branch, error) {
	if err := CheckBranch(name); err != nil {
		return Branch{}, err
	}
	h, err := r.resolve(rev)
	if err != nil {
		return Branch{}, err
	}
	_, err = r.run(ctx, func() (Commit, error) {
		l, err := r.lockRef(name)
		if err != nil {
			return Commit{}, err
		}
		if _, err := r.readRef(name); err == nil {
			l.release()
			return Commit{}, fmt.Errorf("store: branch %q exists: %w", name, ErrConflict)
		}
		if err := l.commit(toHash(h)); err != nil {
			return Commit{}, err
		}
		r.afterCommit(name, plumbing.ZeroHash, h)
		return Commit{}, nil
	})
	if err != nil {
		return Branch{}, err
	}
	return Branch{Name: name, Head: toHash(h)}, nil
}

// DeleteBranch implements Brancher.
func (r *Repo) DeleteBranch(ctx context.Context, name string) error {
	if err := CheckBranch(name); err != nil {
		return err
	}
	if name == DefaultBranch {
		return fmt.Errorf("store: delete branch %q: %w: it is the default branch", name, ErrInvalid)
	}
	_, err := r.run(ctx, func() (Commit, error) {
		l, err := r.lockRef(name)
		if err != nil {
			return Commit{}, err
		}
		defer l.release()
		if _, err := r.readRef(name); err != nil {
			return Commit{}, err
		}
		return Commit{}, r.deleteRef(name)
	})
	return err
}

// FastForward implements Brancher.
func (r *Repo) FastForward(ctx context.Context, name string, to Hash) error {
	if err := CheckBranch(name); err != nil {
		return err
	}
	if !IsHash(string(to)) {
		return fmt.Errorf("store: fast-forward to %q: %w", to, ErrInvalid)
	}
	target := plumbing.NewHash(string(to))
	if _, err := r.commit(target); err != nil {
		return err
	}
	_, err := r.run(ctx, func() (Commit, error) { return Commit{}, r.fastForward(name, target) })
	return err
}

// fastForward moves a branch to a descendant of its head; it runs in the writer.
func (r *Repo) fastForward(name string, target plumbing.Hash) error {
	l, err := r.lockRef(name)
	if err != nil {
		return err
	}
	head, err := r.readRef(name)
	if err != nil {
		l.release()
		return err
	}
	h := plumbing.NewHash(string(head))
	if h == target {
		l.release()
		return nil
	}
	ok, err := r.hist.isAncestor(h, target)
	if err != nil || !ok && !r.isEmptyRoot(h) {
		l.release()
		if err == nil {
			err = fmt.Errorf("store: fast-forward %q to %s: %w: not a descendant of %s", name, target, ErrConflict, head)
		}
		return err
	}
	if err := l.commit(toHash(target)); err != nil {
		return err
	}
	r.afterCommit(name, h, target)
	return nil
}

// Merge implements Merger.
func (r *Repo) Merge(ctx context.Context, m MergeRequest) (Commit, error) {
	if err := CheckBranch(m.Into); err != nil {
		return Commit{}, err
	}
	if err := CheckAuthor(m.Author, m.Message); err != nil {
		return Commit{}, err
	}
	for {
		into, err := r.resolve(m.Into)
		if err != nil {
			return Commit{}, err
		}
		from, err := r.resolve(m.From)
		if err != nil {
			return Commit{}, err
		}
		if up, err := r.hist.isAncestor(from, into); err != nil {
			return Commit{}, err
		} else if up {
			ci, err := r.commit(into)
			if err != nil {
				return Commit{}, err
			}
			return ci.Commit, nil
		}
		if ff, err := r.hist.isAncestor(into, from); err != nil {
			return Commit{}, err
		} else if ff || r.isEmptyRoot(into) {
			_, err := r.run(ctx, func() (Commit, error) { return Commit{}, r.fastForward(m.Into, from) })
			if errors.Is(err, ErrConflict) {
				continue // the branch moved meanwhile
			}
			if err != nil {
				return Commit{}, err
			}
			ci, err := r.commit(from)
			if err != nil {
				return Commit{}, err
			}
			return ci.Commit, nil
		}
		ops, err := r.mergeOps(into, from)
		if err != nil {
			return Commit{}, err
		}
		msg := m.Message
		if msg == "" {
			msg = fmt.Sprintf("Merge %s into %s", m.From, m.Into)
		}
		c, err := r.submit(ctx, &request{
			change:  &Change{Branch: m.Into, Parent: toHash(into), Author: m.Author, Message: msg, Ops: ops},
			parent2: from,
		})
		if isPrecondition(err) {
			continue
		}
		return c, err
	}
}

// mergeOps computes the operations that merge commit theirs into ours.
func (r *Repo) mergeOps(ours, theirs plumbing.Hash) ([]Op, error) {
	base, err := r.hist.mergeBase(ours, theirs)
	if err != nil {
		return nil, err
	}
	oc, err := r.commit(ours)
	if err != nil {
		return nil, err
	}
	tc, err := r.commit(theirs)
	if err != nil {
		return nil, err
	}
	// Only keys that changed on some side matter: build the three maps from the two
	// diffs against the base instead of flattening whole trees.
	dOurs, err := r.diffCommits(base, ours, "")
	if err != nil {
		return nil, err
	}
	dTheirs, err := r.diffCommits(base, theirs, "")
	if err != nil {
		return nil, err
	}
	in := MergeInput{
		Base: map[string]Hash{}, Ours: map[string]Hash{}, Theirs: map[string]Hash{},
		Rules: r.opts.MergeRules, OursTime: oc.Time, TheirsTime: tc.Time,
		Load: func(h Hash) ([]byte, error) {
			_, data, err := r.db.get(plumbing.NewHash(string(h)))
			return data, err
		},
	}
	touched := map[string]bool{}
	for _, d := range append(slices.Clone(dOurs), dTheirs...) {
		touched[d.Key] = true
		if d.Old != "" {
			in.Base[d.Key] = d.Old
		}
	}
	// Keys one side left alone keep the base value there.
	for k := range touched {
		if v, ok := in.Base[k]; ok {
			in.Ours[k], in.Theirs[k] = v, v
		}
	}
	for _, d := range dOurs {
		if d.New == "" {
			delete(in.Ours, d.Key)
		} else {
			in.Ours[d.Key] = d.New
		}
	}
	for _, d := range dTheirs {
		if d.New == "" {
			delete(in.Theirs, d.Key)
		} else {
			in.Theirs[d.Key] = d.New
		}
	}
	return Merge3(in)
}

func isNotFound(err error) bool     { return errors.Is(err, ErrNotFound) }
func isPrecondition(err error) bool { var p *PreconditionError; return errors.As(err, &p) }

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
}

func sortDiffs(ds []Diff) {
	slices.SortFunc(ds, func(a, b Diff) int { return strings.Compare(a.Key, b.Key) })
}
