// Package squashfs writes SquashFS 4.0 file system images (gzip-compressed) that Linux mounts read-only.
package squashfs

import (
	"archive/tar"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-home/hearth/images/internal/fstree"
)

// Limits of a Writer.
const (
	MaxEntries    = 1 << 20   // entries in one image
	MaxNameLen    = 256       // bytes of one path element (the format's limit)
	MaxPathLen    = 4095      // bytes of a path or a symlink target
	MaxFileSize   = 1 << 40   // bytes of one file
	DefaultBlock  = 128 << 10 // default data block size
	MinBlock      = 4 << 10
	MaxBlock      = 1 << 20
	metadataSize  = 8192
	superSize     = 96
	invalidTable  = math.MaxUint64
	padTo         = 4096
	uncompressedB = 1 << 24 // data block size flag: stored uncompressed
)

// ErrExist is returned (wrapped) when a path is added twice.
var ErrExist = errors.New("squashfs: entry exists")

// Attr is the metadata of an entry.
type Attr = fstree.Attr

// Options configure a Writer.
type Options struct {
	// BlockSize is the data block size, a power of two from 4 KiB to 1 MiB; 0 means 128 KiB.
	BlockSize int
	// Level is the zlib compression level (1..9); 0 means zlib's default.
	Level int
	// ModTime is the image's time and that of entries with a zero ModTime, including
	// implicitly created directories. Zero is the Unix epoch (reproducible).
	ModTime time.Time
}

// Writer builds an image. File data is compressed and written as files are added, in that
// order; the inode, directory and id tables are written by Close, with every directory's
// entries sorted by name, so the same calls always give the same bytes. Missing parent
// directories are created with mode 0755, owned by root.
type Writer struct {
	w         io.WriterAt
	opts      Options
	blockLog  uint16
	pos       int64 // where the next data block goes
	root      *node
	count     int
	closed    bool
	err       error
	size      int64
	zw        *zlib.Writer
	zbuf      bytes.Buffer
	slots     []slot // data blocks compressed in parallel
	ids       []uint32
	idIndex   map[uint32]uint16
	nextInode uint32
}

type node struct {
	name     string
	typ      fs.FileMode
	attr     Attr
	children []*node // directories, sorted at Close
	byName   map[string]*node
	size     uint64   // regular files
	start    uint64   // first data block
	blocks   []uint32 // on-disk sizes of data blocks
	sparse   uint64
	target   string // symlinks
	rdev     uint32 // devices
	ino      uint32
	ref      uint64 // inode reference, set while writing
	explicit bool
}

// NewWriter returns a Writer that writes an image into w from offset 0 (wrap a region with
// io.NewOffsetWriter to write into a partition).
func NewWriter(w io.WriterAt, opts Options) (*Writer, error) {
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlock
	}
	if opts.BlockSize < MinBlock || opts.BlockSize > MaxBlock || opts.BlockSize&(opts.BlockSize-1) != 0 {
		return nil, fmt.Errorf("squashfs: block size %d: want a power of two from %d to %d", opts.BlockSize, MinBlock, MaxBlock)
	}
	if opts.Level == 0 {
		opts.Level = zlib.DefaultCompression
	}
	zw, err := zlib.NewWriterLevel(io.Discard, opts.Level)
	if err != nil {
		return nil, fmt.Errorf("squashfs: compression level %d: %w", opts.Level, err)
	}
	var log uint16
	for 1<<log < opts.BlockSize {
		log++
	}
	root := &node{typ: fs.ModeDir, attr: Attr{Mode: 0o755, ModTime: opts.ModTime}, byName: map[string]*node{}}
	return &Writer{w: w, opts: opts, blockLog: log, pos: superSize, root: root, zw: zw,
		slots: make([]slot, min(2*runtime.GOMAXPROCS(0), 16)), idIndex: map[uint32]uint16{}}, nil
}

// Mkdir adds a directory (and missing parents); on an existing directory it sets its
// attributes. The root is "" or "/".
func (w *Writer) Mkdir(name string, a Attr) error {
	if strings.Trim(name, "/") == "" {
		if err := w.usable(); err != nil {
			return err
		}
		w.root.attr = w.fill(a)
		return nil
	}
	n, err := w.add(name, fs.ModeDir, a)
	if err != nil {
		return err
	}
	n.byName = map[string]*node{}
	return nil
}

// WriteFile adds a regular file of size bytes read from r, compressing and writing its
// data now. All-zero blocks are stored as holes.
func (w *Writer) WriteFile(name string, r io.Reader, size int64, a Attr) error {
	if size < 0 || size > MaxFileSize {
		return fmt.Errorf("squashfs: %s: size %d out of range [0, %d]", clip(name), size, int64(MaxFileSize))
	}
	n, err := w.add(name, 0, a)
	if err != nil {
		return err
	}
	n.size = uint64(size)
	n.start = uint64(w.pos)
	// Read a batch of blocks, compress them in parallel, write them in order.
	for left := size; left > 0; {
		k := 0
		for ; k < len(w.slots) && left > 0; k++ {
			sl := &w.slots[k]
			if sl.raw == nil {
				sl.raw = make([]byte, w.opts.BlockSize)
			}
			sl.in = sl.raw[:min(left, int64(w.opts.BlockSize))]
			if _, err := io.ReadFull(r, sl.in); err != nil {
				return w.fail(fmt.Errorf("squashfs: %s: read: %w", clip(name), err))
			}
			left -= int64(len(sl.in))
		}
		var wg sync.WaitGroup
		for i := range k {
			wg.Go(func() { w.slots[i].compress(w.opts.BlockSize, w.opts.Level) })
		}
		wg.Wait()
		for i := range k {
			sl := &w.slots[i]
			if sl.err != nil {
				return w.fail(fmt.Errorf("squashfs: %s: %w", clip(name), sl.err))
			}
			if sl.sparse {
				n.blocks = append(n.blocks, 0)
				n.sparse += uint64(len(sl.in))
				continue
			}
			if _, err := w.w.WriteAt(sl.out, w.pos); err != nil {
				return w.fail(fmt.Errorf("squashfs: %s: write: %w", clip(name), err))
			}
			w.pos += int64(len(sl.out))
			n.blocks = append(n.blocks, uint32(len(sl.out))|sl.flag)
		}
	}
	return nil
}

// slot is one data block being compressed.
type slot struct {
	raw, in []byte
	zw      *zlib.Writer
	buf     bytes.Buffer
	out     []byte
	flag    uint32
	sparse  bool
	err     error
}

// compress fills out and flag from in: the compressed block, or in itself when that is
// not smaller; a full all-zero block becomes a hole.
func (s *slot) compress(blockSize, level int) {
	s.err = nil
	s.sparse = len(s.in) == blockSize && allZero(s.in)
	if s.sparse {
		return
	}
	if s.zw == nil {
		s.zw, s.err = zlib.NewWriterLevel(&s.buf, level)
		if s.err != nil {
			return
		}
	}
	s.buf.Reset()
	s.zw.Reset(&s.buf)
	if _, s.err = s.zw.Write(s.in); s.err != nil {
		return
	}
	if s.err = s.zw.Close(); s.err != nil {
		return
	}
	if s.buf.Len() < len(s.in) {
		s.out, s.flag = s.buf.Bytes(), 0
	} else {
		s.out, s.flag = s.in, uncompressedB
	}
}

// Symlink adds a symbolic link name pointing to target.
func (w *Writer) Symlink(target, name string, a Attr) error {
	if target == "" || len(target) > MaxPathLen || strings.ContainsRune(target, 0) {
		return fmt.Errorf("squashfs: symlink %s: target must be 1..%d bytes without NUL", clip(name), MaxPathLen)
	}
	n, err := w.add(name, fs.ModeSymlink, a)
	if err != nil {
		return err
	}
	n.target = target
	return nil
}

// Mknod adds a device node: a character device when typ is fs.ModeDevice|fs.ModeCharDevice,
// a block device for fs.ModeDevice, a FIFO for fs.ModeNamedPipe, a socket for fs.ModeSocket.
func (w *Writer) Mknod(name string, typ fs.FileMode, major, minor uint32, a Attr) error {
	switch typ {
	case fs.ModeDevice | fs.ModeCharDevice, fs.ModeDevice, fs.ModeNamedPipe, fs.ModeSocket:
	default:
		return fmt.Errorf("squashfs: mknod %s: type %v is not a device, FIFO or socket", clip(name), typ)
	}
	if major > 0xfff || minor > 0xfffff {
		return fmt.Errorf("squashfs: mknod %s: device %d:%d out of range (major < 4096, minor < 1048576)", clip(name), major, minor)
	}
	n, err := w.add(name, typ, a)
	if err != nil {
		return err
	}
	n.rdev = minor&0xff | major<<8 | (minor&^0xff)<<12
	return nil
}

// Add adds the entry a tar header describes (directory, regular file, symlink, device node
// or FIFO); body holds a regular file's h.Size bytes.
func (w *Writer) Add(h *tar.Header, body io.Reader) error {
	err := fstree.AddTar(w, h, body)
	if errors.Is(err, fstree.ErrTarEntry) {
		return fmt.Errorf("squashfs: %w", err) // the methods' errors say "squashfs:" already
	}
	return err
}

// Size is the image's length in bytes (padded to 4 KiB), known after Close.
func (w *Writer) Size() int64 { return w.size }

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// compress returns b compressed, or b itself and the uncompressed flag when that is not smaller.
func (w *Writer) compress(b []byte) ([]byte, uint32, error) {
	w.zbuf.Reset()
	w.zw.Reset(&w.zbuf)
	if _, err := w.zw.Write(b); err != nil {
		return nil, 0, err
	}
	if err := w.zw.Close(); err != nil {
		return nil, 0, err
	}
	if w.zbuf.Len() < len(b) {
		return w.zbuf.Bytes(), 0, nil
	}
	return b, uncompressedB, nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

func (w *Writer) usable() error {
	if w.closed {
		return errors.New("squashfs: writer closed")
	}
	return w.err
}

func (w *Writer) fill(a Attr) Attr {
	if a.ModTime.IsZero() {
		a.ModTime = w.opts.ModTime
	}
	return a
}

// add validates name and inserts a node of type typ, creating missing parents.
func (w *Writer) add(name string, typ fs.FileMode, a Attr) (*node, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	clean := strings.Trim(name, "/")
	if clean == "" || len(clean) > MaxPathLen || strings.ContainsRune(clean, 0) || path.Clean(clean) != clean || clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
		return nil, fmt.Errorf("squashfs: bad path %q: want a clean path of 1..%d bytes", clip(name), MaxPathLen)
	}
	dir := w.root
	parts := strings.Split(clean, "/")
	for i, p := range parts {
		if len(p) > MaxNameLen {
			return nil, fmt.Errorf("squashfs: %s: name %q longer than %d bytes", clip(name), clip(p), MaxNameLen)
		}
		child := dir.byName[p]
		last := i == len(parts)-1
		if last {
			if child != nil {
				if child.typ == fs.ModeDir && typ == fs.ModeDir && !child.explicit {
					child.attr, child.explicit = w.fill(a), true
					return child, nil
				}
				return nil, fmt.Errorf("%w: %s", ErrExist, clean)
			}
			if w.count >= MaxEntries {
				return nil, fmt.Errorf("squashfs: %s: more than %d entries", clean, MaxEntries)
			}
			n := &node{name: p, typ: typ, attr: w.fill(a), explicit: true}
			if typ == fs.ModeDir {
				n.byName = map[string]*node{}
			}
			dir.byName[p] = n
			dir.children = append(dir.children, n)
			w.count++
			return n, nil
		}
		if child == nil {
			if w.count >= MaxEntries {
				return nil, fmt.Errorf("squashfs: %s: more than %d entries", clean, MaxEntries)
			}
			child = &node{name: p, typ: fs.ModeDir, attr: w.fill(Attr{Mode: 0o755}), byName: map[string]*node{}}
			dir.byName[p] = child
			dir.children = append(dir.children, child)
			w.count++
		} else if child.typ != fs.ModeDir {
			return nil, fmt.Errorf("squashfs: %s: %s is not a directory", clip(name), strings.Join(parts[:i+1], "/"))
		}
		dir = child
	}
	return nil, fmt.Errorf("squashfs: bad path %q", clip(name)) // not reached: parts is never empty
}

// metaWriter collects a metadata table: 8 KiB blocks, each compressed if that helps and
// prefixed by a 16-bit length.
type metaWriter struct {
	w   *Writer
	out bytes.Buffer
	cur []byte
	err error
}

// ref is the reference of the next byte written: the block's offset in the table << 16
// | the offset inside the uncompressed block.
func (m *metaWriter) ref() uint64 { return uint64(m.out.Len())<<16 | uint64(len(m.cur)) }

func (m *metaWriter) write(b []byte) {
	m.cur = append(m.cur, b...)
	for len(m.cur) >= metadataSize {
		m.flush(m.cur[:metadataSize])
		m.cur = append(m.cur[:0], m.cur[metadataSize:]...)
	}
}

func (m *metaWriter) flush(b []byte) {
	stored, flag, err := m.w.compress(b)
	if err != nil && m.err == nil {
		m.err = err
	}
	hdr := uint16(len(stored))
	if flag != 0 {
		hdr |= 0x8000
	}
	m.out.Write(binary.LittleEndian.AppendUint16(nil, hdr))
	m.out.Write(stored)
}

func (m *metaWriter) finish() []byte {
	if len(m.cur) > 0 {
		m.flush(m.cur)
		m.cur = m.cur[:0]
	}
	return m.out.Bytes()
}

// Close writes the inode, directory and id tables and the superblock, and pads the image
// to a multiple of 4 KiB. It does not close w.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if w.err != nil {
		w.closed = true
		return w.err
	}
	w.closed = true
	// Number inodes in the order they are written: children before their directory.
	w.nextInode = 1
	w.number(w.root)
	inodes := &metaWriter{w: w}
	dirs := &metaWriter{w: w}
	if err := w.writeTree(w.root, inodes, dirs, w.nextInode); err != nil {
		return w.fail(err)
	}
	inodeTable := inodes.finish()
	dirTable := dirs.finish()
	ids := &metaWriter{w: w}
	idBlocks := []uint64{}
	for i, id := range w.ids {
		if i%(metadataSize/4) == 0 {
			idBlocks = append(idBlocks, uint64(ids.out.Len()))
		}
		ids.write(binary.LittleEndian.AppendUint32(nil, id))
	}
	idTable := ids.finish()
	if inodes.err != nil || dirs.err != nil || ids.err != nil {
		return w.fail(errors.Join(inodes.err, dirs.err, ids.err))
	}
	inodeStart := w.pos
	dirStart := inodeStart + int64(len(inodeTable))
	fragStart := dirStart + int64(len(dirTable))
	idMeta := fragStart
	idIndexStart := idMeta + int64(len(idTable))
	var idIndex []byte
	for _, b := range idBlocks {
		idIndex = binary.LittleEndian.AppendUint64(idIndex, uint64(idMeta)+b)
	}
	end := idIndexStart + int64(len(idIndex))
	tail := slices.Concat(inodeTable, dirTable, idTable, idIndex)
	w.size = (end + padTo - 1) / padTo * padTo
	tail = append(tail, make([]byte, w.size-end)...)
	if _, err := w.w.WriteAt(tail, inodeStart); err != nil {
		return w.fail(fmt.Errorf("squashfs: write tables: %w", err))
	}
	sb := make([]byte, superSize)
	le := binary.LittleEndian
	le.PutUint32(sb[0:], 0x73717368)
	le.PutUint32(sb[4:], w.nextInode-1)
	le.PutUint32(sb[8:], unixTime(w.opts.ModTime))
	le.PutUint32(sb[12:], uint32(w.opts.BlockSize))
	le.PutUint32(sb[16:], 0) // fragments
	le.PutUint16(sb[20:], 1) // gzip (zlib)
	le.PutUint16(sb[22:], w.blockLog)
	le.PutUint16(sb[24:], 0x0010|0x0200) // no fragments, no xattrs
	le.PutUint16(sb[26:], uint16(len(w.ids)))
	le.PutUint16(sb[28:], 4)
	le.PutUint16(sb[30:], 0)
	le.PutUint64(sb[32:], w.root.ref)
	le.PutUint64(sb[40:], uint64(end))
	le.PutUint64(sb[48:], uint64(idIndexStart))
	le.PutUint64(sb[56:], invalidTable) // xattr
	le.PutUint64(sb[64:], uint64(inodeStart))
	le.PutUint64(sb[72:], uint64(dirStart))
	le.PutUint64(sb[80:], uint64(fragStart))
	le.PutUint64(sb[88:], invalidTable) // export
	if _, err := w.w.WriteAt(sb, 0); err != nil {
		return w.fail(fmt.Errorf("squashfs: write superblock: %w", err))
	}
	return nil
}

func unixTime(t time.Time) uint32 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	if t.Unix() > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(t.Unix())
}

// number sorts every directory and assigns inode numbers in post-order.
func (w *Writer) number(n *node) {
	if n.typ == fs.ModeDir {
		slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		for _, c := range n.children {
			w.number(c)
		}
	}
	n.ino = w.nextInode
	w.nextInode++
}

func (w *Writer) id(v uint32) uint16 {
	if i, ok := w.idIndex[v]; ok {
		return i
	}
	i := uint16(len(w.ids))
	w.idIndex[v] = i
	w.ids = append(w.ids, v)
	return i
}

// Inode types.
const (
	tDir = 1 + iota
	tFile
	tSymlink
	tBlock
	tChar
	tFifo
	tSocket
	tExtDir
	tExtFile
)

func basicType(n *node) uint16 {
	switch n.typ {
	case fs.ModeDir:
		return tDir
	case 0:
		return tFile
	case fs.ModeSymlink:
		return tSymlink
	case fs.ModeDevice:
		return tBlock
	case fs.ModeDevice | fs.ModeCharDevice:
		return tChar
	case fs.ModeNamedPipe:
		return tFifo
	}
	return tSocket
}

// writeTree writes n's subtree: every child's inode, then n's directory listing and inode.
func (w *Writer) writeTree(n *node, inodes, dirs *metaWriter, parent uint32) error {
	le := binary.LittleEndian
	var listing []byte
	var listRef uint64
	subdirs := 0
	if n.typ == fs.ModeDir {
		for _, c := range n.children {
			if err := w.writeTree(c, inodes, dirs, n.ino); err != nil {
				return err
			}
			if c.typ == fs.ModeDir {
				subdirs++
			}
		}
		listRef = dirs.ref()
		for i := 0; i < len(n.children); {
			first := n.children[i]
			j := i + 1
			for j < len(n.children) && j-i < 256 {
				c := n.children[j]
				d := int64(c.ino) - int64(first.ino)
				if c.ref>>16 != first.ref>>16 || d > math.MaxInt16 || d < math.MinInt16 {
					break
				}
				j++
			}
			listing = le.AppendUint32(listing, uint32(j-i-1))
			listing = le.AppendUint32(listing, uint32(first.ref>>16))
			listing = le.AppendUint32(listing, first.ino)
			for _, c := range n.children[i:j] {
				listing = le.AppendUint16(listing, uint16(c.ref&0xffff))
				listing = le.AppendUint16(listing, uint16(int16(int64(c.ino)-int64(first.ino))))
				listing = le.AppendUint16(listing, basicType(c))
				listing = le.AppendUint16(listing, uint16(len(c.name)-1))
				listing = append(listing, c.name...)
			}
			i = j
		}
		dirs.write(listing)
	}
	mode := uint16(n.attr.Mode.Perm() | n.attr.Mode&0o7000)
	if n.attr.Mode&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if n.attr.Mode&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if n.attr.Mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	typ := basicType(n)
	var b []byte
	header := func(t uint16) {
		b = le.AppendUint16(b, t)
		b = le.AppendUint16(b, mode)
		b = le.AppendUint16(b, w.id(n.attr.UID))
		b = le.AppendUint16(b, w.id(n.attr.GID))
		b = le.AppendUint32(b, unixTime(n.attr.ModTime))
		b = le.AppendUint32(b, n.ino)
	}
	switch typ {
	case tDir:
		size := len(listing) + 3
		if size <= math.MaxUint16 {
			header(tDir)
			b = le.AppendUint32(b, uint32(listRef>>16))
			b = le.AppendUint32(b, uint32(2+subdirs))
			b = le.AppendUint16(b, uint16(size))
			b = le.AppendUint16(b, uint16(listRef&0xffff))
			b = le.AppendUint32(b, parent)
		} else {
			header(tExtDir)
			b = le.AppendUint32(b, uint32(2+subdirs))
			b = le.AppendUint32(b, uint32(size))
			b = le.AppendUint32(b, uint32(listRef>>16))
			b = le.AppendUint32(b, parent)
			b = le.AppendUint16(b, 0) // no directory index
			b = le.AppendUint16(b, uint16(listRef&0xffff))
			b = le.AppendUint32(b, 0xffffffff)
		}
	case tFile:
		if n.start <= math.MaxUint32 && n.size <= math.MaxUint32 {
			header(tFile)
			b = le.AppendUint32(b, uint32(n.start))
			b = le.AppendUint32(b, 0xffffffff) // no fragment
			b = le.AppendUint32(b, 0)
			b = le.AppendUint32(b, uint32(n.size))
		} else {
			header(tExtFile)
			b = le.AppendUint64(b, n.start)
			b = le.AppendUint64(b, n.size)
			b = le.AppendUint64(b, n.sparse)
			b = le.AppendUint32(b, 1)
			b = le.AppendUint32(b, 0xffffffff)
			b = le.AppendUint32(b, 0)
			b = le.AppendUint32(b, 0xffffffff)
		}
		for _, s := range n.blocks {
			b = le.AppendUint32(b, s)
		}
	case tSymlink:
		header(tSymlink)
		b = le.AppendUint32(b, 1)
		b = le.AppendUint32(b, uint32(len(n.target)))
		b = append(b, n.target...)
	case tBlock, tChar:
		header(typ)
		b = le.AppendUint32(b, 1)
		b = le.AppendUint32(b, n.rdev)
	default:
		header(typ)
		b = le.AppendUint32(b, 1)
	}
	if len(w.ids) > math.MaxUint16 {
		return errors.New("squashfs: more than 65535 distinct uids and gids")
	}
	n.ref = inodes.ref()
	inodes.write(b)
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
