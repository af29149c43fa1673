package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// Pack housekeeping. Every group commit writes a small pack; so that their number stays
// small (readers look an object up in each pack's index), the writer merges the smaller
// packs whenever there are more than maxPacks, choosing them so that each merged pack
// is at least twice the size of all the packs it absorbs (a geometric progression, as
// git's repack --geometric): a pack's objects are copied O(log n) times in its life.
// Pack consolidates everything, loose objects included, into one delta-compressed pack.

const maxPacks = 12

// maybeMergePacks runs in the writer goroutine after each commit.
func (r *Repo) maybeMergePacks() {
	r.db.mu.RLock()
	n := len(r.db.packs)
	packs := slices.Clone(r.db.packs)
	r.db.mu.RUnlock()
	if n <= maxPacks {
		return
	}
	slices.SortFunc(packs, func(a, b *pack) int { return int(a.count - b.count) })
	// Take the smallest packs while the next one is not twice their total.
	var total int64
	k := 0
	for k < len(packs) && (k < 2 || packs[k].count < 2*total) {
		total += packs[k].count
		k++
	}
	if k < 2 {
		return
	}
	if err := r.mergePacks(packs[:k]); err != nil {
		r.log.Warn("store: merge packs", "dir", r.dir, "err", err)
	}
}

// mergePacks writes the objects of packs into one new pack and removes them.
func (r *Repo) mergePacks(packs []*pack) error {
	var objs []rawObject
	seen := map[plumbing.Hash]bool{}
	for _, p := range packs {
		it, err := p.idx.Entries()
		if err != nil {
			return err
		}
		for {
			e, err := it.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				it.Close()
				return err
			}
			if seen[e.Hash] {
				continue
			}
			seen[e.Hash] = true
			o, err := p.get(e.Hash)
			if err != nil {
				it.Close()
				return err
			}
			data, err := readAll(o)
			if err != nil {
				it.Close()
				return err
			}
			objs = append(objs, rawObject{hash: e.Hash, typ: o.Type(), data: data})
		}
		it.Close()
	}
	if err := r.db.writePack(objs, 1); err != nil {
		return err
	}
	return r.removePacks(packs)
}

func (r *Repo) removePacks(packs []*pack) error {
	dir := r.db.packDir()
	for _, p := range packs {
		// The index goes first, so no reader finds a pack without its data.
		os.Remove(filepath.Join(dir, p.name+".idx"))
		os.Remove(filepath.Join(dir, p.name+".pack"))
		os.Remove(filepath.Join(dir, p.name+".rev"))
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return r.db.rescan()
}

// PackStats counts the repository's packs and loose objects.
type PackStats struct {
	Packs, LooseObjects int
	PackBytes           int64
}

// Stats returns the repository's pack and loose-object counts.
func (r *Repo) Stats() (PackStats, error) {
	if err := r.db.rescan(); err != nil {
		return PackStats{}, err
	}
	var s PackStats
	r.db.mu.RLock()
	for _, p := range r.db.packs {
		s.Packs++
		s.PackBytes += p.size
	}
	r.db.mu.RUnlock()
	loose, err := r.looseObjects()
	s.LooseObjects = len(loose)
	return s, err
}

func (r *Repo) looseObjects() ([]plumbing.Hash, error) {
	var out []plumbing.Hash
	dirs, err := filepath.Glob(filepath.Join(r.dir, "objects", "[0-9a-f][0-9a-f]"))
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		names, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			h := filepath.Base(d) + n.Name()
			if IsHash(h) {
				out = append(out, plumbing.NewHash(h))
			}
		}
	}
	return out, nil
}

// Pack consolidates every pack and loose object into one pack with delta compression
// (git gc without pruning: nothing is deleted that is not in the new pack). It runs in
// the writer, between commits, and is pure Go: appliance images have no git binary.
func (r *Repo) Pack(ctx context.Context) error {
	_, err := r.run(ctx, func() (Commit, error) { return Commit{}, r.pack() })
	return err
}

func (r *Repo) pack() error {
	if err := r.db.rescan(); err != nil {
		return err
	}
	r.db.mu.RLock()
	packs := slices.Clone(r.db.packs)
	r.db.mu.RUnlock()
	loose, err := r.looseObjects()
	if err != nil {
		return err
	}
	if len(packs) <= 1 && len(loose) == 0 {
		return nil
	}
	var hashes []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, p := range packs {
		it, err := p.idx.Entries()
		if err != nil {
			return err
		}
		for {
			e, err := it.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				it.Close()
				return err
			}
			if !seen[e.Hash] {
				seen[e.Hash] = true
				hashes = append(hashes, e.Hash)
			}
		}
		it.Close()
	}
	for _, h := range loose {
		if !seen[h] {
			seen[h] = true
			hashes = append(hashes, h)
		}
	}
	var buf bytes.Buffer
	enc := packfile.NewEncoder(&buf, storerAdapter{r.db}, false)
	sum, err := enc.Encode(hashes, 10)
	if err != nil {
		return fmt.Errorf("store: pack: %w", err)
	}
	// Index it by parsing it back, as git's index-pack does.
	iw := new(idxfile.Writer)
	parser, err := packfile.NewParser(packfile.NewScanner(bytes.NewReader(buf.Bytes())), iw)
	if err != nil {
		return err
	}
	if _, err := parser.Parse(); err != nil {
		return fmt.Errorf("store: pack: index: %w", err)
	}
	idx, err := iw.Index()
	if err != nil {
		return err
	}
	var ibuf bytes.Buffer
	if _, err := idxfile.NewEncoder(&ibuf).Encode(idx); err != nil {
		return err
	}
	name := "pack-" + sum.String()
	dir := r.db.packDir()
	if err := writeFileSync(filepath.Join(dir, name+".pack"), buf.Bytes(), 0o444); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(dir, name+".idx"), ibuf.Bytes(), 0o444); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	var old []*pack
	for _, p := range packs {
		if p.name != name {
			old = append(old, p)
		}
	}
	if err := r.removePacks(old); err != nil {
		return err
	}
	for _, h := range loose {
		s := h.String()
		os.Remove(filepath.Join(r.dir, "objects", s[:2], s[2:]))
	}
	r.log.Info("store: packed", "dir", r.dir, "objects", len(hashes), "bytes", buf.Len())
	return nil
}
