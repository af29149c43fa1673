package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// treeEntry is one entry of a git tree.
type treeEntry struct {
	name string
	mode filemode.FileMode
	hash plumbing.Hash
}

func (e treeEntry) isDir() bool  { return e.mode == filemode.Dir }
func (e treeEntry) isBlob() bool { return e.mode.IsFile() }

// parseTree decodes a git tree object.
func parseTree(data []byte) ([]treeEntry, error) {
	var out []treeEntry
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("store: malformed tree")
		}
		mode, err := filemode.New(string(data[:sp]))
		if err != nil {
			return nil, fmt.Errorf("store: malformed tree mode: %w", err)
		}
		data = data[sp+1:]
		nul := bytes.IndexByte(data, 0)
		if nul < 0 || len(data) < nul+1+20 {
			return nil, fmt.Errorf("store: malformed tree")
		}
		e := treeEntry{name: string(data[:nul]), mode: mode}
		copy(e.hash[:], data[nul+1:nul+21])
		out = append(out, e)
		data = data[nul+21:]
	}
	return out, nil
}

// encodeTree encodes entries in git's order: by name, a directory compared as name + "/".
func encodeTree(entries []treeEntry) []byte {
	slices.SortFunc(entries, cmpGitOrder)
	var b bytes.Buffer
	for _, e := range entries {
		mode := "100644"
		switch e.mode {
		case filemode.Dir:
			mode = "40000"
		case filemode.Executable:
			mode = "100755"
		case filemode.Symlink:
			mode = "120000"
		case filemode.Submodule:
			mode = "160000"
		}
		b.WriteString(mode)
		b.WriteByte(' ')
		b.WriteString(e.name)
		b.WriteByte(0)
		b.Write(e.hash[:])
	}
	return b.Bytes()
}

var emptyTree = newObject(plumbing.TreeObject, nil)

// mtree is a mutable tree that a batch of changes is applied to. Subtrees are loaded from
// the object database when first touched; only changed nodes are encoded again.
type mtree struct {
	r       *Repo
	hash    plumbing.Hash // of the tree as loaded; valid while !dirty
	entries map[string]*mentry
	dirty   bool
}

type mentry struct {
	mode filemode.FileMode
	hash plumbing.Hash
	sub  *mtree // loaded subtree, for directories
}

func (r *Repo) loadMtree(h plumbing.Hash) (*mtree, error) {
	entries, err := r.tree(h)
	if err != nil {
		return nil, err
	}
	t := &mtree{r: r, hash: h, entries: make(map[string]*mentry, len(entries))}
	for _, e := range entries {
		t.entries[e.name] = &mentry{mode: e.mode, hash: e.hash}
	}
	return t, nil
}

func (t *mtree) subtree(e *mentry) (*mtree, error) {
	if e.sub == nil {
		s, err := t.r.loadMtree(e.hash)
		if err != nil {
			return nil, err
		}
		e.sub = s
	}
	return e.sub, nil
}

// get returns the version of key ("" when absent or a directory) and whether it is a directory.
func (t *mtree) get(key string) (plumbing.Hash, bool, error) {
	segs := strings.Split(key, "/")
	cur := t
	for i, s := range segs {
		e, ok := cur.entries[s]
		if !ok {
			return plumbing.ZeroHash, false, nil
		}
		if i == len(segs)-1 {
			if e.mode == filemode.Dir {
				return plumbing.ZeroHash, true, nil
			}
			if !e.mode.IsFile() {
				return plumbing.ZeroHash, false, nil
			}
			return e.hash, false, nil
		}
		if e.mode != filemode.Dir {
			return plumbing.ZeroHash, false, nil
		}
		sub, err := cur.subtree(e)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		cur = sub
	}
	return plumbing.ZeroHash, false, nil
}

// checkPut reports ErrConflict if key cannot be a value: a parent path is a value, or
// key is a directory.
func (t *mtree) checkPut(key string) error {
	segs := strings.Split(key, "/")
	cur := t
	for i, s := range segs {
		e, ok := cur.entries[s]
		if !ok {
			return nil
		}
		if i == len(segs)-1 {
			if e.mode == filemode.Dir {
				return fmt.Errorf("store: put %q: it is a directory of other keys: %w", key, ErrConflict)
			}
			return nil
		}
		if e.mode != filemode.Dir {
			return fmt.Errorf("store: put %q: %q is a key: %w", key, strings.Join(segs[:i+1], "/"), ErrConflict)
		}
		sub, err := cur.subtree(e)
		if err != nil {
			return err
		}
		cur = sub
	}
	return nil
}

// put sets key to a blob (checkPut must have passed). It reports whether anything changed.
func (t *mtree) put(segs []string, h plumbing.Hash) (bool, error) {
	e, ok := t.entries[segs[0]]
	if len(segs) == 1 {
		if ok && e.hash == h && e.mode.IsFile() {
			return false, nil
		}
		t.entries[segs[0]] = &mentry{mode: filemode.Regular, hash: h}
		t.dirty = true
		return true, nil
	}
	var sub *mtree
	if !ok {
		sub = &mtree{r: t.r, entries: map[string]*mentry{}, dirty: true}
		t.entries[segs[0]] = &mentry{mode: filemode.Dir, sub: sub}
	} else {
		var err error
		if sub, err = t.subtree(e); err != nil {
			return false, err
		}
	}
	changed, err := sub.put(segs[1:], h)
	if changed {
		t.dirty = true
	}
	return changed, err
}

// del removes key, and directories it leaves empty. It reports whether anything changed.
func (t *mtree) del(segs []string) (bool, error) {
	e, ok := t.entries[segs[0]]
	if !ok {
		return false, nil
	}
	if len(segs) == 1 {
		if e.mode == filemode.Dir {
			return false, nil
		}
		delete(t.entries, segs[0])
		t.dirty = true
		return true, nil
	}
	if e.mode != filemode.Dir {
		return false, nil
	}
	sub, err := t.subtree(e)
	if err != nil {
		return false, err
	}
	changed, err := sub.del(segs[1:])
	if changed {
		t.dirty = true
		if len(sub.entries) == 0 {
			delete(t.entries, segs[0])
		}
	}
	return changed, err
}

// encode writes the dirty nodes as tree objects into objs and returns the root's hash.
func (t *mtree) encode(objs *[]rawObject) plumbing.Hash {
	if !t.dirty {
		return t.hash
	}
	entries := make([]treeEntry, 0, len(t.entries))
	for name, e := range t.entries {
		if e.sub != nil {
			e.hash = e.sub.encode(objs)
		}
		entries = append(entries, treeEntry{name: name, mode: e.mode, hash: e.hash})
	}
	o := newObject(plumbing.TreeObject, encodeTree(entries))
	*objs = append(*objs, o)
	t.r.cacheTree(o.hash, entries) // the history index and watchers read it next
	t.hash, t.dirty = o.hash, false
	return o.hash
}
