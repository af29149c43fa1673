package store

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/objfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// odb is the object database of one git directory: the packs under objects/pack and the
// loose objects under objects/xx. It reads with go-git's pack and object-file decoders and
// writes each batch of new objects as one fsynced pack. It is safe for concurrent use
// (go-git's own ObjectStorage is not, and does not notice packs added by other processes).
type odb struct {
	dir   string // the git directory
	cache *cache.ObjectLRU

	mu    sync.RWMutex
	packs []*pack

	// Compressors and buffers reused across packs: a zlib writer holds hundreds of KiB
	// of state, too much to make per commit.
	zlibFast, zlibHuff, bufs sync.Pool
}

// pack is one pack file with its index. go-git's Packfile is not safe for concurrent
// use, so each has its own mutex.
type pack struct {
	name  string // pack-<hash>, without extension
	idx   *idxfile.MemoryIndex
	count int64
	size  int64 // bytes of the .pack file

	mu sync.Mutex
	pf *packfile.Packfile
}

// rawObject is an object to write: its id, type and content.
type rawObject struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
}

func hashObject(t plumbing.ObjectType, data []byte) plumbing.Hash {
	h := sha1.New()
	h.Write([]byte(t.String() + " " + strconv.Itoa(len(data)) + "\x00"))
	h.Write(data)
	var out plumbing.Hash
	copy(out[:], h.Sum(nil))
	return out
}

func newObject(t plumbing.ObjectType, data []byte) rawObject {
	return rawObject{hash: hashObject(t, data), typ: t, data: data}
}

func openODB(dir string) (*odb, error) {
	db := &odb{dir: dir, cache: cache.NewObjectLRU(16 * cache.MiByte)}
	if err := db.rescan(); err != nil {
		return nil, err
	}
	return db, nil
}

func (db *odb) packDir() string { return filepath.Join(db.dir, "objects", "pack") }

// rescan opens packs that appeared on disk (written by another process or the git CLI)
// and forgets packs that disappeared.
func (db *odb) rescan() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	// A pack that vanishes between listing and opening was merged into a newer pack by
	// another process, which the listing may have missed: list again.
	for range 10 {
		if vanished, err := db.rescanLocked(); err != nil || !vanished {
			return err
		}
	}
	return nil
}

func (db *odb) rescanLocked() (vanished bool, err error) {
	names, err := filepath.Glob(filepath.Join(db.packDir(), "pack-*.idx"))
	if err != nil {
		return false, err
	}
	known := map[string]*pack{}
	for _, p := range db.packs {
		known[p.name] = p
	}
	var packs []*pack
	for _, n := range names {
		name := strings.TrimSuffix(filepath.Base(n), ".idx")
		if p, ok := known[name]; ok {
			packs = append(packs, p)
			delete(known, name)
			continue
		}
		p, err := openPack(db.packDir(), name, db.cache)
		if errors.Is(err, os.ErrNotExist) {
			vanished = true // removed since the listing
			continue
		}
		if err != nil {
			// A crash can leave an index unwritten (only packs are fsynced): rebuild it.
			if err = reindexPack(db.packDir(), name); err == nil {
				p, err = openPack(db.packDir(), name, db.cache)
			}
		}
		if err != nil {
			return false, fmt.Errorf("store: open %s: %w", name, err)
		}
		packs = append(packs, p)
	}
	for _, p := range known {
		p.close()
	}
	// Largest first: most objects live in the big packs.
	slices.SortFunc(packs, func(a, b *pack) int { return int(b.count - a.count) })
	db.packs = packs
	return vanished, nil
}

// reindexPack writes a pack's index again from the pack, as git index-pack does.
func reindexPack(dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name+".pack"))
	if err != nil {
		return err
	}
	defer f.Close()
	idx, err := indexPack(f)
	if err != nil {
		return fmt.Errorf("pack damaged: %w", err)
	}
	return writeFileSync(filepath.Join(dir, name+".idx"), idx, 0o444)
}

// indexPack parses a pack and returns its encoded index.
func indexPack(pack io.ReadSeeker) ([]byte, error) {
	iw := new(idxfile.Writer)
	parser, err := packfile.NewParser(packfile.NewScanner(pack), iw)
	if err != nil {
		return nil, err
	}
	if _, err := parser.Parse(); err != nil {
		return nil, err
	}
	idx, err := iw.Index()
	if err != nil {
		return nil, err
	}
	var ibuf bytes.Buffer
	if _, err := idxfile.NewEncoder(&ibuf).Encode(idx); err != nil {
		return nil, err
	}
	return ibuf.Bytes(), nil
}

func openPack(dir, name string, c cache.Object) (*pack, error) {
	f, err := os.Open(filepath.Join(dir, name+".idx"))
	if err != nil {
		return nil, err
	}
	idx := idxfile.NewMemoryIndex()
	err = idxfile.NewDecoder(f).Decode(idx)
	f.Close()
	if err != nil {
		return nil, err
	}
	return openPackWith(dir, name, idx, c)
}

// openPackWith opens a pack whose index is already decoded.
func openPackWith(dir, name string, idx *idxfile.MemoryIndex, c cache.Object) (*pack, error) {
	pf, err := osfs.New(dir).Open(name + ".pack")
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(filepath.Join(dir, name+".pack"))
	if err != nil {
		pf.Close()
		return nil, err
	}
	n, _ := idx.Count()
	return &pack{name: name, idx: idx, count: n, size: st.Size(),
		pf: packfile.NewPackfileWithCache(idx, nil, pf, c, 0)}, nil
}

func (p *pack) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pf != nil {
		p.pf.Close()
		p.pf = nil
	}
}

func (p *pack) get(h plumbing.Hash) (plumbing.EncodedObject, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pf == nil {
		return nil, plumbing.ErrObjectNotFound
	}
	return p.pf.Get(h)
}

// objectSize reads an object's size from its entry header (for a delta, the delta's header).
func (p *pack) objectSize(h plumbing.Hash) (int64, error) {
	off, err := p.idx.FindOffset(h)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pf == nil {
		return 0, plumbing.ErrObjectNotFound
	}
	return p.pf.GetSizeByOffset(off)
}

func (p *pack) has(h plumbing.Hash) bool {
	ok, _ := p.idx.Contains(h)
	return ok
}

func (db *odb) loosePath(h plumbing.Hash) string {
	s := h.String()
	return filepath.Join(db.dir, "objects", s[:2], s[2:])
}

// has reports whether the object exists.
func (db *odb) has(h plumbing.Hash) bool {
	if db.hasCached(h) {
		return true
	}
	if _, err := os.Stat(db.loosePath(h)); err == nil {
		return true
	}
	if db.rescan() == nil {
		return db.hasCached(h)
	}
	return false
}

func (db *odb) hasCached(h plumbing.Hash) bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	for _, p := range db.packs {
		if p.has(h) {
			return true
		}
	}
	return false
}

// size returns an object's size from its header, without inflating its content.
func (db *odb) size(h plumbing.Hash) (int64, error) {
	if o, ok := db.cache.Get(h); ok {
		return o.Size(), nil
	}
	for attempt := 0; attempt < 2; attempt++ {
		db.mu.RLock()
		var p *pack
		for _, q := range db.packs {
			if q.has(h) {
				p = q
				break
			}
		}
		db.mu.RUnlock()
		if p != nil {
			if n, err := p.objectSize(h); err == nil {
				return n, nil
			}
		}
		if n, err := db.looseSize(h); err == nil {
			return n, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		if err := db.rescan(); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("store: object %s: %w", h, ErrNotFound)
}

func (db *odb) looseSize(h plumbing.Hash) (int64, error) {
	f, err := os.Open(db.loosePath(h))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := objfile.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("store: loose object %s: %w", h, err)
	}
	defer r.Close()
	_, n, err := r.Header()
	return n, err
}

// get returns an object's type and content. ErrNotFound if it does not exist.
func (db *odb) get(h plumbing.Hash) (plumbing.ObjectType, []byte, error) {
	o, err := db.object(h)
	if err != nil {
		return 0, nil, err
	}
	data, err := readAll(o)
	return o.Type(), data, err
}

func readAll(o plumbing.EncodedObject) ([]byte, error) {
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// object returns an object as go-git's EncodedObject.
func (db *odb) object(h plumbing.Hash) (plumbing.EncodedObject, error) {
	if o, ok := db.cache.Get(h); ok {
		return o, nil
	}
	for attempt := 0; attempt < 2; attempt++ {
		if o, err := db.fromPacks(h); err == nil {
			return o, nil
		} else if !errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, err
		}
		if o, err := db.loose(h); err == nil {
			db.cache.Put(o)
			return o, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err := db.rescan(); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("store: object %s: %w", h, ErrNotFound)
}

func (db *odb) fromPacks(h plumbing.Hash) (plumbing.EncodedObject, error) {
	db.mu.RLock()
	var p *pack
	for _, q := range db.packs {
		if q.has(h) {
			p = q
			break
		}
	}
	db.mu.RUnlock()
	if p == nil {
		return nil, plumbing.ErrObjectNotFound
	}
	o, err := p.get(h)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (db *odb) loose(h plumbing.Hash) (plumbing.EncodedObject, error) {
	f, err := os.Open(db.loosePath(h))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := objfile.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("store: loose object %s: %w", h, err)
	}
	defer r.Close()
	t, size, err := r.Header()
	if err != nil {
		return nil, fmt.Errorf("store: loose object %s: %w", h, err)
	}
	o := &plumbing.MemoryObject{}
	o.SetType(t)
	o.SetSize(size)
	if _, err := io.Copy(o, r); err != nil {
		return nil, fmt.Errorf("store: loose object %s: %w", h, err)
	}
	if o.Hash() != h {
		return nil, fmt.Errorf("store: loose object %s: hash mismatch", h)
	}
	return o, nil
}

// packBuilder streams a pack to a temporary file in the pack directory, hashing it as it
// goes, and builds its index. The object count in the header must be known up front.
type packBuilder struct {
	db   *odb
	dir  string
	f    *os.File
	w    *bufio.Writer
	sum  hash.Hash
	off  int64
	want uint32
	n    uint32
	iw   *idxfile.Writer
	seen map[plumbing.Hash]bool
	// offsets says where each object landed, for deltas copied from other packs.
	offsets map[plumbing.Hash]int64
	zbuf    bytes.Buffer
	hdr     bytes.Buffer
	zw      map[int]*zlib.Writer
	err     error
}

// newPackBuilder starts a pack of exactly count distinct objects in db's pack directory.
func newPackBuilder(db *odb, count int) (*packBuilder, error) {
	dir := db.packDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := createTemp(dir, ".tmp-pack-", 0o444)
	if err != nil {
		return nil, err
	}
	b := &packBuilder{db: db, dir: dir, f: f, sum: sha1.New(), want: uint32(count), iw: new(idxfile.Writer),
		seen: make(map[plumbing.Hash]bool, count), offsets: make(map[plumbing.Hash]int64, count), zw: map[int]*zlib.Writer{}}
	if w, ok := db.bufs.Get().(*bufio.Writer); ok {
		w.Reset(io.MultiWriter(f, b.sum))
		b.w = w
	} else {
		b.w = bufio.NewWriterSize(io.MultiWriter(f, b.sum), 1<<16)
	}
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(count))
	b.write(hdr[:])
	b.iw.OnHeader(uint32(count))
	return b, nil
}

func (b *packBuilder) write(p []byte) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
		b.off += int64(len(p))
	}
}

// abort removes the temporary file.
func (b *packBuilder) abort() {
	b.f.Close()
	os.Remove(b.f.Name())
	b.release()
}

// release gives the compressors and buffer back for the next pack.
func (b *packBuilder) release() {
	for level, zw := range b.zw {
		b.pool(level).Put(zw)
	}
	b.zw = nil
	if b.w != nil {
		b.w.Reset(io.Discard)
		b.db.bufs.Put(b.w)
		b.w = nil
	}
}

func (b *packBuilder) pool(level int) *sync.Pool {
	if level == zlib.HuffmanOnly {
		return &b.db.zlibHuff
	}
	return &b.db.zlibFast
}

// add appends an object: trees compressed Huffman-only (they are mostly hashes, and
// each commit rewrites the trees on its path), everything else with the fastest LZ.
func (b *packBuilder) add(o rawObject) {
	if b.seen[o.hash] {
		return
	}
	b.seen[o.hash] = true
	level := zlib.BestSpeed
	if o.typ == plumbing.TreeObject {
		level = zlib.HuffmanOnly
	}
	zw, ok := b.zw[level]
	if !ok {
		if zw, ok = b.pool(level).Get().(*zlib.Writer); !ok {
			zw, _ = zlib.NewWriterLevel(&b.zbuf, level)
		}
		b.zw[level] = zw
	}
	b.hdr.Reset()
	writeObjHeader(&b.hdr, o.typ, int64(len(o.data)))
	b.zbuf.Reset()
	zw.Reset(&b.zbuf)
	zw.Write(o.data)
	zw.Close()
	crc := crc32.Update(crc32.ChecksumIEEE(b.hdr.Bytes()), crc32.IEEETable, b.zbuf.Bytes())
	b.iw.Add(o.hash, uint64(b.off), crc)
	b.offsets[o.hash] = b.off
	b.write(b.hdr.Bytes())
	b.write(b.zbuf.Bytes())
	b.n++
}

// addRaw appends an entry copied as it is from another pack (it must not be an offset
// delta, whose base offset would be wrong here); its CRC stays the same.
func (b *packBuilder) addRaw(h plumbing.Hash, entry []byte, crc uint32) {
	if b.seen[h] {
		return
	}
	b.seen[h] = true
	b.iw.Add(h, uint64(b.off), crc)
	b.offsets[h] = b.off
	b.write(entry)
	b.n++
}

// finish completes the pack (fsynced), writes its index, renames both into place and
// returns the pack's name. Only the pack is fsynced: an index a crash damaged is rebuilt
// from its pack (rescan). The caller fsyncs the directory.
func (b *packBuilder) finish() (name string, idx *idxfile.MemoryIndex, err error) {
	defer func() {
		if err != nil {
			b.abort()
		} else {
			b.release()
		}
	}()
	if b.err == nil && b.n != b.want {
		b.err = fmt.Errorf("pack has %d objects, header says %d", b.n, b.want)
	}
	if b.err == nil {
		b.err = b.w.Flush()
	}
	if b.err != nil {
		return "", nil, b.err
	}
	var packHash plumbing.Hash
	copy(packHash[:], b.sum.Sum(nil))
	if _, err := b.f.Write(packHash[:]); err != nil {
		return "", nil, err
	}
	if err := b.f.Sync(); err != nil {
		return "", nil, err
	}
	if err := b.f.Close(); err != nil {
		return "", nil, err
	}
	if err := b.iw.OnFooter(packHash); err != nil {
		return "", nil, err
	}
	idx, err = b.iw.Index()
	if err != nil {
		return "", nil, err
	}
	var ibuf bytes.Buffer
	if _, err := idxfile.NewEncoder(&ibuf).Encode(idx); err != nil {
		return "", nil, err
	}
	name = "pack-" + packHash.String()
	// The pack goes in place first and the index last: readers find packs by their index.
	if err := os.Rename(b.f.Name(), filepath.Join(b.dir, name+".pack")); err != nil {
		return "", nil, err
	}
	if err := writeFile(filepath.Join(b.dir, name+".idx"), ibuf.Bytes(), 0o444, false); err != nil {
		return "", nil, err
	}
	return name, idx, nil
}

// writePack writes objects as one durable pack plus index and makes them readable.
func (db *odb) writePack(objs []rawObject) error {
	distinct := make(map[plumbing.Hash]bool, len(objs))
	for _, o := range objs {
		distinct[o.hash] = true
	}
	if len(distinct) == 0 {
		return nil
	}
	b, err := newPackBuilder(db, len(distinct))
	if err != nil {
		return err
	}
	for _, o := range objs {
		b.add(o)
	}
	return db.installPack(b)
}

// installPack finishes a pack, fsyncs the pack directory and opens the pack.
func (db *odb) installPack(b *packBuilder) error {
	name, idx, err := b.finish()
	if err != nil {
		return err
	}
	if err := syncDir(b.dir); err != nil {
		return err
	}
	p, err := openPackWith(b.dir, name, idx, db.cache)
	if err != nil {
		return err
	}
	db.mu.Lock()
	db.packs = append(db.packs, p)
	db.mu.Unlock()
	return nil
}

func writeObjHeader(w *bytes.Buffer, t plumbing.ObjectType, size int64) {
	b := byte(t)<<4 | byte(size&0x0f)
	size >>= 4
	for size > 0 {
		w.WriteByte(b | 0x80)
		b = byte(size & 0x7f)
		size >>= 7
	}
	w.WriteByte(b)
}

// writeFileSync writes data to path atomically and durably: a temporary file in the same
// directory, fsynced, then renamed. The caller fsyncs the directory.
// createTemp creates a new file with a random name in dir, opened for writing, with its
// final mode from the start (no chmod before the rename).
func createTemp(dir, prefix string, mode os.FileMode) (*os.File, error) {
	for range 100 {
		var rnd [8]byte
		rand.Read(rnd[:])
		f, err := os.OpenFile(filepath.Join(dir, prefix+hex.EncodeToString(rnd[:])), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("store: cannot create a temporary file in %s", dir)
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	return writeFile(path, data, mode, true)
}

func writeFile(path string, data []byte, mode os.FileMode, sync bool) error {
	f, err := createTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-", mode)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (db *odb) close() {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, p := range db.packs {
		p.close()
	}
	db.packs = nil
}

// storerAdapter exposes the odb read-only as go-git's EncodedObjectStorer, for go-git's
// encoders and walkers (upload-pack, repacking).
type storerAdapter struct{ db *odb }

func (s storerAdapter) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }
func (s storerAdapter) SetEncodedObject(plumbing.EncodedObject) (plumbing.Hash, error) {
	return plumbing.ZeroHash, errors.New("store: object storer is read-only")
}
func (s storerAdapter) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	o, err := s.db.object(h)
	if err != nil {
		return nil, plumbing.ErrObjectNotFound
	}
	if t != plumbing.AnyObject && o.Type() != t {
		return nil, plumbing.ErrObjectNotFound
	}
	return o, nil
}
func (s storerAdapter) IterEncodedObjects(plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	return nil, errors.New("store: iterating all objects is not supported")
}
func (s storerAdapter) HasEncodedObject(h plumbing.Hash) error {
	if s.db.has(h) {
		return nil
	}
	return plumbing.ErrObjectNotFound
}
func (s storerAdapter) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	o, err := s.db.object(h)
	if err != nil {
		return 0, plumbing.ErrObjectNotFound
	}
	return o.Size(), nil
}
func (s storerAdapter) AddAlternate(string) error {
	return errors.New("store: alternates are not supported")
}
