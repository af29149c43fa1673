package storedav

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hearth-home/hearth/store"
)

// Item is one object for PutMany.
type Item struct {
	Name string // resource name
	Data []byte
}

// ItemResult says what PutMany did with one item.
type ItemResult struct {
	Name      string // the resource written (another one than asked when its UID lived there)
	ETag      store.Hash
	Created   bool
	Unchanged bool  // the same bytes were there already: nothing written
	Err       error // why the item was skipped (a *PreconditionError for bad data)
}

// maxBatch is how many items PutMany commits together (each needs up to three ops).
const maxBatch = store.MaxOps / 4

// PutMany stores many objects in a collection with few commits (one per maxBatch items),
// for imports. Each item is validated like Put; an item whose UID another resource
// already holds replaces that resource (so importing the same data twice changes
// nothing); two items with one UID in the batch keep the last. Items that fail are
// reported in their result and skipped; the error is for the whole operation.
func (c *Collections) PutMany(ctx context.Context, owner, coll string, items []Item) ([]ItemResult, error) {
	if err := CheckName(coll); err != nil {
		return nil, err
	}
	out := make([]ItemResult, len(items))
	for start := 0; start < len(items); start += maxBatch {
		end := min(start+maxBatch, len(items))
		var err error
		for range 5 {
			if err = c.putBatch(ctx, owner, coll, items[start:end], out[start:end]); !errors.Is(err, store.ErrConflict) {
				break
			}
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (c *Collections) putBatch(ctx context.Context, owner, coll string, items []Item, out []ItemResult) error {
	_, metaVer, err := c.getMeta(ctx, owner, coll)
	if err != nil {
		return err
	}
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return err
	}
	head, err := s.Resolve(ctx, "")
	if err != nil {
		return fmt.Errorf("storedav: put %s/%s: %w", owner, coll, err)
	}
	rev := string(head)
	n, err := c.count(ctx, s, owner, head, coll)
	if err != nil {
		return err
	}
	type pending struct {
		idx  int
		name string
		uid  string
		data []byte
		old  store.Hash // Missing when new
	}
	byName := map[string]*pending{}
	byUID := map[string]*pending{}
	var order []*pending
	for i, it := range items {
		out[i] = ItemResult{Name: it.Name}
		if err := CheckName(it.Name); err != nil {
			out[i].Err = err
			continue
		}
		if int64(len(it.Data)) > c.limits.MaxResourceSize {
			out[i].Err = &PreconditionError{Status: http.StatusRequestEntityTooLarge, Name: xmlName(c.kind.NS, "max-resource-size"), Reason: "too large"}
			continue
		}
		obj, err := c.kind.Validate(it.Data)
		if err == nil && obj.UID == "" {
			err = validDataError(c.kind, http.StatusBadRequest, "no UID")
		}
		if err != nil {
			out[i].Err = err
			continue
		}
		name := it.Name
		if p, ok := byUID[obj.UID]; ok {
			name = p.name // the same UID earlier in the batch: this one wins
		} else if holder, _, err := s.Get(ctx, rev, uidKey(coll, obj.UID)); err == nil {
			if _, serr := s.Stat(ctx, rev, objKey(coll, string(holder))); serr == nil {
				name = string(holder)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		out[i].Name = name
		p := byName[name]
		if p == nil {
			p = &pending{name: name, old: store.Missing}
			old, e, err := s.Get(ctx, rev, objKey(coll, name))
			switch {
			case err == nil:
				p.old = e.Version
				if prev, perr := c.kind.Validate(old); perr == nil && prev.UID != obj.UID {
					// The resource changes UID: its old index entry goes below.
					byUID[prev.UID+"\x00old"] = &pending{uid: prev.UID}
				}
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			byName[name] = p
			order = append(order, p)
		} else if p.idx >= 0 && p.idx != i {
			out[p.idx].Err = fmt.Errorf("storedav: replaced by a later item with the same UID or name: %w", ErrExists)
		}
		p.idx, p.uid, p.data = i, obj.UID, it.Data
		byUID[obj.UID] = p
	}
	ops := []store.Op{{Key: metaKey(coll), Copy: metaVer, IfMatch: metaVer}}
	created := 0
	for _, p := range order {
		if p.old != store.Missing && p.old == store.BlobHash(p.data) {
			out[p.idx].ETag, out[p.idx].Unchanged = p.old, true
			continue
		}
		if p.old == store.Missing {
			if n+created >= c.limits.MaxResources {
				out[p.idx].Err = &PreconditionError{Status: http.StatusInsufficientStorage, Name: nameDAV("quota-not-exceeded"), Reason: "collection full"}
				continue
			}
			created++
		}
		ops = append(ops, store.Op{Key: objKey(coll, p.name), Value: p.data, IfMatch: p.old},
			store.Op{Key: uidKey(coll, p.uid), Value: []byte(p.name)})
		out[p.idx].ETag, out[p.idx].Created = store.BlobHash(p.data), p.old == store.Missing
	}
	for k, p := range byUID {
		if bytes.HasSuffix([]byte(k), []byte("\x00old")) {
			if q, ok := byUID[p.uid]; !ok || q.name == "" {
				ops = append(ops, store.Op{Key: uidKey(coll, p.uid), Delete: true})
			}
		}
	}
	if len(ops) == 1 {
		return nil
	}
	cm, err := s.Commit(ctx, store.Change{Author: author(ctx), Message: fmt.Sprintf("put %d objects into %s", len(ops)/2, coll), Ops: ops})
	if err != nil {
		return fmt.Errorf("storedav: put %s/%s: %w", owner, coll, err)
	}
	c.setCount(owner, coll, cm.ID, n+created)
	return nil
}
