package store

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// MaxPackSize is the largest pack ReceivePack accepts.
const MaxPackSize = 1 << 30

// ObjectStorer returns the repository's objects as go-git's read-only
// EncodedObjectStorer, for the git protocol (upload-pack encodes packs from it).
func (r *Repo) ObjectStorer() storer.EncodedObjectStorer { return storerAdapter{r.db} }

// ReceivePack reads a pack (as git push or fetch sends it, possibly thin: its deltas
// may name bases the repository already has), checks it, and stores its objects as one
// durable pack of the repository's own. Refs are not changed: see UpdateRefs.
func (r *Repo) ReceivePack(ctx context.Context, pack io.Reader) error {
	if err := r.check(); err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(pack, MaxPackSize+1))
	if err != nil {
		return fmt.Errorf("store: receive pack: %w", err)
	}
	if len(data) > MaxPackSize {
		return fmt.Errorf("store: receive pack: over %d bytes: %w", MaxPackSize, ErrTooLarge)
	}
	if len(data) == 0 {
		return nil // a push that only deletes refs sends no pack
	}
	col := &collector{base: storerAdapter{r.db}, objs: map[plumbing.Hash]rawObject{}}
	parser, err := packfile.NewParserWithStorage(packfile.NewScanner(bytes.NewReader(data)), col)
	if err != nil {
		return fmt.Errorf("store: receive pack: %w", err)
	}
	if _, err := parser.Parse(); err != nil {
		return fmt.Errorf("store: receive pack: %w: %v", ErrInvalid, err)
	}
	objs := make([]rawObject, 0, len(col.objs))
	for _, o := range col.objs {
		if !r.db.hasCached(o.hash) {
			objs = append(objs, o)
		}
	}
	if err := r.db.writePack(objs); err != nil {
		return fmt.Errorf("store: receive pack: %w", err)
	}
	return nil
}

// collector is the storage go-git's pack parser resolves thin deltas against and hands
// each decoded object to.
type collector struct {
	base storerAdapter
	objs map[plumbing.Hash]rawObject
}

func (c *collector) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }
func (c *collector) SetEncodedObject(o plumbing.EncodedObject) (plumbing.Hash, error) {
	data, err := readAll(o)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	ro := newObject(o.Type(), data)
	c.objs[ro.hash] = ro
	return ro.hash, nil
}
func (c *collector) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if o, ok := c.objs[h]; ok {
		mo := &plumbing.MemoryObject{}
		mo.SetType(o.typ)
		mo.Write(o.data)
		return mo, nil
	}
	return c.base.EncodedObject(t, h)
}
func (c *collector) IterEncodedObjects(t plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	return c.base.IterEncodedObjects(t)
}
func (c *collector) HasEncodedObject(h plumbing.Hash) error {
	if _, ok := c.objs[h]; ok {
		return nil
	}
	return c.base.HasEncodedObject(h)
}
func (c *collector) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if o, ok := c.objs[h]; ok {
		return int64(len(o.data)), nil
	}
	return c.base.EncodedObjectSize(h)
}
func (c *collector) AddAlternate(string) error { return c.base.AddAlternate("") }

// RefUpdate asks UpdateRefs to move a branch from Old to New, as a git push does.
// Old Missing: the branch must not exist (create). New Missing: delete the branch.
type RefUpdate struct {
	Branch string
	Old    Hash
	New    Hash
}

// UpdateRefs applies ref updates one by one, each a compare-and-swap under the branch's
// lock in the writer goroutine, so pushes serialise with the store's own commits. An
// update fails with a *PreconditionError if the branch is not at Old (someone committed
// meanwhile: fetch first), with ErrConflict if New does not descend from Old (history is
// never rewritten), ErrNotFound if New's commit is missing, and ErrInvalid for the
// default branch's deletion or a bad name. Watchers and the history index are told.
func (r *Repo) UpdateRefs(ctx context.Context, updates []RefUpdate) []error {
	errs := make([]error, len(updates))
	for i, u := range updates {
		_, errs[i] = r.run(ctx, func() (Commit, error) { return Commit{}, r.updateRef(u) })
	}
	return errs
}

func (r *Repo) updateRef(u RefUpdate) error {
	if err := CheckBranch(u.Branch); err != nil {
		return err
	}
	if !IsHash(string(u.Old)) || !IsHash(string(u.New)) {
		return fmt.Errorf("store: update %s: %w: bad hash", u.Branch, ErrInvalid)
	}
	if u.New == Missing && u.Branch == DefaultBranch {
		return fmt.Errorf("store: delete branch %q: %w: it is the default branch", u.Branch, ErrInvalid)
	}
	newH := plumbing.NewHash(string(u.New))
	if u.New != Missing {
		if _, err := r.commit(newH); err != nil {
			return err
		}
	}
	l, err := r.lockRef(u.Branch)
	if err != nil {
		return err
	}
	head, err := r.readRef(u.Branch)
	if isNotFound(err) {
		head, err = Missing, nil
	}
	if err != nil || head != u.Old {
		l.release()
		if err == nil {
			err = &PreconditionError{Branch: u.Branch, Want: u.Old, Have: head}
		}
		return err
	}
	if u.New == Missing {
		defer l.release()
		return r.deleteRef(u.Branch)
	}
	if u.Old != Missing {
		old := plumbing.NewHash(string(u.Old))
		// A branch holding only an empty root commit (what Init makes) may be replaced:
		// that loses nothing, and lets a first push into a new repository land.
		if ok, err := r.hist.isAncestor(old, newH); err != nil || !ok && !r.isEmptyRoot(old) {
			l.release()
			if err == nil {
				err = fmt.Errorf("store: update %s: %w: non-fast-forward", u.Branch, ErrConflict)
			}
			return err
		}
	}
	if err := l.commit(u.New); err != nil {
		return err
	}
	var old plumbing.Hash
	if u.Old != Missing {
		old = plumbing.NewHash(string(u.Old))
	}
	r.afterCommit(u.Branch, old, newH)
	return nil
}

// isEmptyRoot reports whether h is a commit without parents whose tree is empty.
func (r *Repo) isEmptyRoot(h plumbing.Hash) bool {
	c, err := r.commit(h)
	return err == nil && len(c.Parents) == 0 && c.tree == emptyTree.hash
}
