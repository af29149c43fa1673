package store

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

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

const maxPacks = 24

// maybeMergePacks runs in the writer goroutine after each commit.
func (r *Repo) maybeMergePacks() {
	r.db.mu.RLock()
	n := len(r.db.packs)
	r.db.mu.RUnlock()
	if n <= maxPacks {
		return
	}
	unlock, ok := r.lockPacks()
	if !ok {
		return // another process is at it
	}
	defer unlock()
	// Another process may have merged or added packs: start from what is on disk.
	if err := r.db.rescan(); err != nil {
		r.log.Warn("store: merge packs", "dir", r.dir, "err", err)
		return
	}
	r.db.mu.RLock()
	packs := slices.Clone(r.db.packs)
	r.db.mu.RUnlock()
	if len(packs) <= maxPacks {
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

// lockPacks takes objects/pack/hearth-pack.lock, which serialises pack maintenance
// between processes; ok is false when another holds it. A lock older than staleLock was
// left by a crash and is taken over.
func (r *Repo) lockPacks() (unlock func(), ok bool) {
	path := filepath.Join(r.db.packDir(), "hearth-pack.lock")
	for range 2 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, true
		}
		st, err := os.Stat(path)
		if err != nil || time.Since(st.ModTime()) < staleLock {
			return nil, false
		}
		os.Remove(path)
	}
	return nil, false
}

// mergePacks writes the objects of packs into one new pack and removes them. Entries are
// copied byte for byte; only delta entries (from packs git or a push wrote) are resolved
// and written whole.
func (r *Repo) mergePacks(packs []*pack) error {
	distinct := map[plumbing.Hash]bool{}
	for _, p := range packs {
		if err := forEachEntry(p, func(e *idxfile.Entry) error { distinct[e.Hash] = true; return nil }); err != nil {
			return err
		}
	}
	b, err := newPackBuilder(r.db, len(distinct))
	if err != nil {
		return err
	}
	for _, p := range packs {
		if err := copyPack(b, r.db.packDir(), p); err != nil {
			b.abort()
			return fmt.Errorf("store: merge %s: %w", p.name, err)
		}
	}
	if err := r.db.installPack(b); err != nil {
		return err
	}
	return r.removePacks(packs)
}

func forEachEntry(p *pack, fn func(*idxfile.Entry) error) error {
	it, err := p.idx.EntriesByOffset()
	if err != nil {
		return err
	}
	defer it.Close()
	for {
		e, err := it.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// copyPack appends every object of p to b, reading entries with ReadAt (a pack is never
// read into memory whole).
func copyPack(b *packBuilder, dir string, p *pack) error {
	f, err := os.Open(filepath.Join(dir, p.name+".pack"))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var entries []*idxfile.Entry
	if err := forEachEntry(p, func(e *idxfile.Entry) error { entries = append(entries, e); return nil }); err != nil {
		return err
	}
	end := st.Size() - 20
	var buf []byte
	for i, e := range entries {
		next := end
		if i+1 < len(entries) {
			next = int64(entries[i+1].Offset)
		}
		off := int64(e.Offset)
		if off < 12 || next > end || off >= next {
			return fmt.Errorf("pack entry of %s out of range", e.Hash)
		}
		if n := int(next - off); cap(buf) < n {
			buf = make([]byte, n)
		}
		entry := buf[:next-off]
		if _, err := f.ReadAt(entry, off); err != nil {
			return err
		}
		switch plumbing.ObjectType(entry[0] >> 4 & 7) {
		case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
			b.addRaw(e.Hash, entry, e.CRC32)
			continue
		case plumbing.OFSDeltaObject:
			// Keep the delta: its base, earlier in this pack, is already in the new
			// pack; only the distance to it changes.
			if moved, ok := b.moveOfsDelta(p, off, entry); ok {
				b.addRaw(e.Hash, moved, crc32.ChecksumIEEE(moved))
				continue
			}
		case plumbing.REFDeltaObject:
			if _, ok := b.offsets[refDeltaBase(entry)]; ok {
				b.addRaw(e.Hash, entry, e.CRC32) // its base is in the new pack
				continue
			}
		}
		{ // otherwise resolve the object and write it whole
			o, err := p.get(e.Hash)
			if err != nil {
				return err
			}
			body, err := readAll(o)
			if err != nil {
				return err
			}
			b.add(rawObject{hash: e.Hash, typ: o.Type(), data: body})
		}
	}
	return nil
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
// (git gc without pruning: nothing is deleted that is not in the new pack). It is pure Go
// (appliance images have no git binary) and runs beside writes, not in the writer: it
// holds the pack lock, which keeps pack merging (here or in another process) away, and
// readers find objects again in the new pack. The writer also starts it by itself when
// the packs have grown past Options.AutoPackBytes and twice their size after the last Pack.
func (r *Repo) Pack(ctx context.Context) error {
	for {
		if err := r.check(); err != nil {
			return err
		}
		err := r.pack()
		if !errors.Is(err, errPacking) {
			return err
		}
		select { // pack merging holds the lock for moments; wait for it
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errPacking: another pack job (here or in another process) holds the pack lock.
var errPacking = fmt.Errorf("store: pack: another pack job is running: %w", ErrConflict)

// maybeAutoPack starts a background Pack when the packs have grown enough.
func (r *Repo) maybeAutoPack() {
	if r.opts.AutoPackBytes < 0 {
		return
	}
	limit := r.opts.AutoPackBytes
	if limit == 0 {
		limit = 32 << 20
	}
	var total int64
	r.db.mu.RLock()
	for _, p := range r.db.packs {
		total += p.size
	}
	r.db.mu.RUnlock()
	if total < limit || total < 2*r.packedBytes.Load() || !r.packing.CompareAndSwap(false, true) {
		return
	}
	r.wg.Go(func() {
		defer r.packing.Store(false)
		if err := r.pack(); err != nil {
			r.log.Warn("store: automatic pack", "dir", r.dir, "err", err)
		}
	})
}

func (r *Repo) pack() error {
	unlock, ok := r.lockPacks()
	if !ok {
		return errPacking
	}
	defer unlock()
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
	// go-git's encoder holds every object it packs in memory, inflated: a repository
	// whose big trees change often (a 10 000-item folder) would need gigabytes. So the
	// objects are packed in groups of at most packGroupBytes, sorted by size so that the
	// versions of one tree, which are about the same size, share a group and delta
	// against each other.
	sizes := make(map[plumbing.Hash]int64, len(hashes))
	for _, h := range hashes {
		n, err := r.db.size(h)
		if err != nil {
			return fmt.Errorf("store: pack: %w", err)
		}
		sizes[h] = n
	}
	slices.SortFunc(hashes, func(a, b plumbing.Hash) int {
		if c := cmp.Compare(sizes[b], sizes[a]); c != 0 {
			return c
		}
		return bytes.Compare(a[:], b[:])
	})
	keep := map[string]bool{}
	var size int64
	for start := 0; start < len(hashes); {
		end, group := start, int64(0)
		for end < len(hashes) && (end == start || group+sizes[hashes[end]] <= packGroupBytes) {
			group += sizes[hashes[end]]
			end++
		}
		name, n, err := r.encodePack(hashes[start:end])
		if err != nil {
			return err
		}
		keep[name] = true
		size += n
		start = end
	}
	var old []*pack
	for _, p := range packs {
		if !keep[p.name] {
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
	r.packedBytes.Store(size)
	r.log.Info("store: packed", "dir", r.dir, "objects", len(hashes), "packs", len(keep), "bytes", size)
	return nil
}

// packGroupBytes bounds the inflated size of the objects packed together by Pack, and so
// the memory it needs.
const packGroupBytes = 16 << 20

// encodePack writes the objects named by hashes as one delta-compressed pack with its
// index, durably, and returns its name ("pack-SUM") and size. It does not tell the
// object database: the caller rescans or installs.
func (r *Repo) encodePack(hashes []plumbing.Hash) (string, int64, error) {
	// Encode to a temporary file (a repository's pack can be large), fsync it, index it
	// by parsing it back as git's index-pack does, then put both in place.
	dir := r.db.packDir()
	f, err := os.CreateTemp(dir, ".tmp-pack-*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<16)
	sum, err := packfile.NewEncoder(bw, storerAdapter{r.db}, false).Encode(hashes, 10)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	var idx []byte
	if err == nil {
		if _, err = f.Seek(0, io.SeekStart); err == nil {
			idx, err = indexPack(f)
		}
	}
	if err != nil {
		return "", 0, fmt.Errorf("store: pack: %w", err)
	}
	size, _ := f.Seek(0, io.SeekEnd)
	name := "pack-" + sum.String()
	os.Chmod(f.Name(), 0o444)
	if err := os.Rename(f.Name(), filepath.Join(dir, name+".pack")); err != nil {
		return "", 0, err
	}
	if err := writeFileSync(filepath.Join(dir, name+".idx"), idx, 0o444); err != nil {
		return "", 0, err
	}
	if err := syncDir(dir); err != nil {
		return "", 0, err
	}
	return name, size, nil
}

// entryHeaderLen returns the length of a pack entry's type-and-size header.
func entryHeaderLen(entry []byte) int {
	n := 1
	for n <= len(entry) && entry[n-1]&0x80 != 0 {
		n++
	}
	return n
}

// refDeltaBase returns the base object id of a REF_DELTA entry (zero if malformed).
func refDeltaBase(entry []byte) plumbing.Hash {
	var h plumbing.Hash
	n := entryHeaderLen(entry)
	if len(entry) >= n+20 {
		copy(h[:], entry[n:n+20])
	}
	return h
}

// moveOfsDelta re-encodes an OFS_DELTA entry at old offset off in pack p for its place
// at the end of b: the same type, size and compressed delta, with the distance to where
// its base now is. ok is false when the base is not in b or the entry is malformed.
func (b *packBuilder) moveOfsDelta(p *pack, off int64, entry []byte) ([]byte, bool) {
	n := entryHeaderLen(entry)
	if n > len(entry) {
		return nil, false
	}
	// Git's offset encoding: big-endian base-128 where each continuation adds one.
	i := n
	if i >= len(entry) {
		return nil, false
	}
	c := entry[i]
	dist := int64(c & 0x7f)
	for c&0x80 != 0 {
		i++
		if i >= len(entry) || dist > 1<<48 {
			return nil, false
		}
		c = entry[i]
		dist = (dist+1)<<7 | int64(c&0x7f)
	}
	i++
	baseHash, err := p.idx.FindHash(off - dist)
	if err != nil {
		return nil, false
	}
	newBase, ok := b.offsets[baseHash]
	if !ok {
		return nil, false
	}
	d := b.off - newBase
	var enc [10]byte
	k := len(enc) - 1
	enc[k] = byte(d & 0x7f)
	for d >>= 7; d > 0; d >>= 7 {
		d--
		k--
		enc[k] = 0x80 | byte(d&0x7f)
	}
	out := make([]byte, 0, n+len(enc)-k+len(entry)-i)
	out = append(out, entry[:n]...)
	out = append(out, enc[k:]...)
	return append(out, entry[i:]...), true
}
