package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// maxBatch is the most changes one group commit holds.
const maxBatch = 512

// request is work for the writer goroutine: a Change to batch, or a closure that must
// run alone (branch operations, merges, reverts).
type request struct {
	change *Change
	// parent2 is a second parent for a merge commit (with change.Parent as the first).
	parent2 plumbing.Hash
	fn      func() (Commit, error)
	reply   chan result
}

type result struct {
	c   Commit
	err error
}

// submit hands a request to the writer and waits for its answer.
func (r *Repo) submit(ctx context.Context, req *request) (Commit, error) {
	if err := r.check(); err != nil {
		return Commit{}, err
	}
	req.reply = make(chan result, 1)
	select {
	case r.reqs <- req:
	case <-r.done:
		return Commit{}, ErrClosed
	case <-ctx.Done():
		return Commit{}, ctx.Err()
	}
	// Once queued the request is carried out even if ctx ends, so wait for it:
	// the caller must learn whether the write happened.
	select {
	case res := <-req.reply:
		return res.c, res.err
	case <-r.done:
		// The writer finishes its current batch before exiting.
		select {
		case res := <-req.reply:
			return res.c, res.err
		default:
			return Commit{}, ErrClosed
		}
	}
}

// writer is the one goroutine that changes the repository's refs from this process.
// It takes every queued Change for the same branch into one commit.
func (r *Repo) writer() {
	defer r.wg.Done()
	var next *request
	for {
		req := next
		next = nil
		if req == nil {
			select {
			case req = <-r.reqs:
			case <-r.done:
				r.drain()
				return
			}
		}
		if req.fn != nil {
			c, err := req.fn()
			req.reply <- result{c, err}
			continue
		}
		batch := []*request{req}
		branch := branchOf(req.change)
	collect:
		for len(batch) < maxBatch && req.parent2 == plumbing.ZeroHash {
			select {
			case q := <-r.reqs:
				// A CAS on the head, a merge, or another branch starts a new batch.
				if q.fn != nil || q.change.Parent != "" || q.parent2 != plumbing.ZeroHash || branchOf(q.change) != branch {
					next = q
					break collect
				}
				batch = append(batch, q)
			default:
				break collect
			}
		}
		r.commitBatch(branch, batch)
		r.maybeMergePacks()
		r.maybeAutoPack()
	}
}

func (r *Repo) drain() {
	for {
		select {
		case q := <-r.reqs:
			q.reply <- result{err: ErrClosed}
		default:
			return
		}
	}
}

func branchOf(c *Change) string {
	if c.Branch == "" {
		return DefaultBranch
	}
	return c.Branch
}

// commitBatch applies a batch of changes to one branch as one commit and answers each.
func (r *Repo) commitBatch(branch string, batch []*request) {
	answer := func(reqs []*request, c Commit, err error) {
		for _, q := range reqs {
			q.reply <- result{c, err}
		}
	}
	lock, err := r.lockRef(branch)
	if err != nil {
		answer(batch, Commit{}, err)
		return
	}
	defer func() {
		if lock != nil {
			lock.release()
		}
	}()
	head, err := r.readRef(branch)
	exists := err == nil
	if err != nil && !isNotFound(err) {
		answer(batch, Commit{}, err)
		return
	}
	err = nil
	var root *mtree
	var parents []plumbing.Hash
	var headInfo *commitInfo
	if exists {
		h := plumbing.NewHash(string(head))
		if headInfo, err = r.commit(h); err == nil {
			root, err = r.loadMtree(headInfo.tree)
		}
		if err != nil {
			answer(batch, Commit{}, err)
			return
		}
		parents = []plumbing.Hash{h}
	} else {
		root = &mtree{r: r, hash: emptyTree.hash, entries: map[string]*mentry{}}
	}
	var ok []*request
	var blobs []rawObject
	var valueBytes int64
	for _, q := range batch {
		c := q.change
		if err := r.precheck(c, root, exists, head, branch); err != nil {
			q.reply <- result{err: err}
			continue
		}
		for _, op := range c.Ops {
			segs := strings.Split(op.Key, "/")
			switch {
			case op.Delete:
				_, err = root.del(segs)
			case op.Copy != "":
				_, err = root.put(segs, plumbing.NewHash(string(op.Copy)))
			default:
				valueBytes += int64(len(op.Value))
				o := newObject(plumbing.BlobObject, op.Value)
				blobs = append(blobs, o)
				_, err = root.put(segs, o.hash)
			}
			if err != nil {
				break
			}
		}
		if err != nil {
			// The tree may be half-changed: fail the whole batch.
			answer(ok, Commit{}, err)
			answer([]*request{q}, Commit{}, err)
			for _, rest := range batch[slices.Index(batch, q)+1:] {
				rest.reply <- result{err: err}
			}
			return
		}
		ok = append(ok, q)
	}
	if len(ok) == 0 {
		return
	}
	objs := blobs
	tree := root.encode(&objs)
	if exists && tree == headInfo.tree && batch[0].parent2 == plumbing.ZeroHash {
		answer(ok, headInfo.Commit, nil) // nothing changed: no empty commit
		return
	}
	if batch[0].parent2 != plumbing.ZeroHash {
		parents = append(parents, batch[0].parent2)
	}
	author, msg, when := r.describe(ok)
	h, err := r.writeCommit(tree, parents, author, msg, when, objs)
	if err == nil {
		err = lock.commit(toHash(h))
	}
	lock = nil
	if err != nil {
		answer(ok, Commit{}, fmt.Errorf("store: commit on %s: %w", branch, err))
		return
	}
	ci, err := r.commit(h)
	if err != nil {
		answer(ok, Commit{}, err)
		return
	}
	var old plumbing.Hash
	if exists {
		old = plumbing.NewHash(string(head))
	}
	r.afterCommit(branch, old, h)
	if r.opts.OnCommit != nil {
		r.opts.OnCommit(CommitStats{Dir: r.dir, Branch: branch, Changes: len(ok), Bytes: valueBytes})
	}
	answer(ok, ci.Commit, nil)
}

// precheck verifies a change against the batch's current tree: the head CAS, IfMatch
// versions, Copy sources and key shapes. It changes nothing.
func (r *Repo) precheck(c *Change, root *mtree, exists bool, head Hash, branch string) error {
	switch {
	case !exists && c.Parent != Missing:
		return fmt.Errorf("store: branch %q: %w", branch, ErrNotFound)
	case exists && c.Parent != "" && c.Parent != head:
		return &PreconditionError{Branch: branch, Want: c.Parent, Have: head}
	}
	for _, op := range c.Ops {
		cur, _, err := root.get(op.Key)
		if err != nil {
			return err
		}
		if op.IfMatch != "" {
			have := Missing
			if cur != plumbing.ZeroHash {
				have = toHash(cur)
			}
			if have != op.IfMatch {
				return &PreconditionError{Branch: branch, Key: op.Key, Want: op.IfMatch, Have: have}
			}
		}
		if op.Copy != "" && !r.db.has(plumbing.NewHash(string(op.Copy))) {
			return fmt.Errorf("store: copy to %q: version %s: %w", op.Key, op.Copy, ErrNotFound)
		}
		if !op.Delete {
			if err := root.checkPut(op.Key); err != nil {
				return err
			}
		}
	}
	return nil
}

// describe makes the author, message and time of a group commit: those of its one change,
// or for several, the common author (else hearth), the distinct messages, the latest time.
func (r *Repo) describe(reqs []*request) (Signature, string, time.Time) {
	author := reqs[0].change.Author
	var msgs []string
	var when time.Time
	for _, q := range reqs {
		c := q.change
		if c.Author != author {
			author = Signature{Name: "hearth", Email: "hearth@localhost"}
		}
		if !slices.Contains(msgs, c.Message) {
			msgs = append(msgs, c.Message)
		}
		t := c.Time
		if t.IsZero() {
			t = r.now()
		}
		if t.After(when) {
			when = t
		}
	}
	return author, strings.Join(msgs, "\n"), when.Truncate(time.Second)
}

// afterCommit brings the history index and the watchers up to date with a new head.
func (r *Repo) afterCommit(branch string, old, head plumbing.Hash) {
	if err := r.hist.addNew(head); err != nil {
		r.log.Warn("store: history index", "dir", r.dir, "err", err)
	}
	r.watch.headMoved(branch, head)
}

// Commit implements Writer.
func (r *Repo) Commit(ctx context.Context, c Change) (Commit, error) {
	if err := r.check(); err != nil {
		return Commit{}, err
	}
	if err := CheckChange(&c, r.opts.MaxValueSize); err != nil {
		return Commit{}, err
	}
	return r.submit(ctx, &request{change: &c})
}

// run executes fn in the writer goroutine, after the writes queued before it.
func (r *Repo) run(ctx context.Context, fn func() (Commit, error)) (Commit, error) {
	return r.submit(ctx, &request{fn: fn})
}

// Revert implements Writer.
func (r *Repo) Revert(ctx context.Context, rv RevertRequest) (Commit, error) {
	if err := r.check(); err != nil {
		return Commit{}, err
	}
	if err := CheckPrefix(rv.Prefix); err != nil {
		return Commit{}, err
	}
	if err := CheckAuthor(rv.Author, rv.Message); err != nil {
		return Commit{}, err
	}
	branch := rv.Branch
	if branch == "" {
		branch = DefaultBranch
	}
	if err := CheckBranch(branch); err != nil {
		return Commit{}, err
	}
	if !IsHash(string(rv.To)) {
		return Commit{}, fmt.Errorf("store: revert to %q: %w", rv.To, ErrInvalid)
	}
	to, err := r.commit(plumbing.NewHash(string(rv.To)))
	if err != nil {
		return Commit{}, err
	}
	for {
		head, err := r.resolve(branch)
		if err != nil {
			return Commit{}, err
		}
		diffs, err := r.diffCommits(head, plumbing.NewHash(string(to.ID)), rv.Prefix)
		if err != nil {
			return Commit{}, err
		}
		if len(diffs) == 0 {
			ci, err := r.commit(head)
			if err != nil {
				return Commit{}, err
			}
			return ci.Commit, nil
		}
		hc, err := r.commit(head)
		if err != nil {
			return Commit{}, err
		}
		ops, err := RevertOps(diffs, rv.Rules, func(h Hash) ([]byte, error) {
			_, data, err := r.db.get(plumbing.NewHash(string(h)))
			return data, err
		}, hc.Time)
		if err != nil {
			return Commit{}, err
		}
		if len(ops) == 0 { // the rules keep everything as it is
			return hc.Commit, nil
		}
		msg := rv.Message
		if msg == "" {
			msg = fmt.Sprintf("Revert %s to %s", orAll(rv.Prefix), to.ID[:12])
		}
		c, err := r.submit(ctx, &request{change: &Change{Branch: branch, Parent: toHash(head), Author: rv.Author, Message: msg, Ops: ops}})
		if isPrecondition(err) {
			continue // the branch moved meanwhile: diff again
		}
		return c, err
	}
}

func orAll(prefix string) string {
	if prefix == "" {
		return "everything"
	}
	return prefix
}
