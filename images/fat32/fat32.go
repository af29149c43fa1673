// Package fat32 writes FAT32 file systems with long file names (VFAT), such as a boot partition.
package fat32

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits and constants of the format.
const (
	SectorSize     = 512
	MinClusters    = 65525 // fewer clusters is FAT16 by definition
	MaxClusters    = 0x0ffffff5 - 2
	MaxFileSize    = 1<<32 - 1 // bytes of one file
	MaxDirEntries  = 65536     // 32-byte slots in one directory
	MaxNameLen     = 255       // UTF-16 units of a long name
	MaxPathLen     = 4095      // bytes of a path
	reservedSecs   = 32
	numFATs        = 2
	eoc            = 0x0fffffff
	attrVolumeID   = 0x08
	attrDirectory  = 0x10
	attrArchive    = 0x20
	attrLongName   = 0x0f
	lfnCharsPerEnt = 13
)

// Errors returned (wrapped) by FS methods.
var (
	ErrExist    = errors.New("fat32: entry exists")
	ErrNoSpace  = errors.New("fat32: no space left")
	ErrTooSmall = errors.New("fat32: too small for FAT32")
)

// Options configure Format.
type Options struct {
	// Label is the volume label: up to 11 characters of A-Z, 0-9, space and
	// !#$%&'()-@^_`{}~ (lower case is upper-cased); empty means "NO NAME".
	Label string
	// VolumeID is the volume serial number (Linux shows it as the UUID, "XXXX-XXXX").
	VolumeID uint32
	// ClusterSize is the cluster size in bytes, a power of two from 512 to 32768;
	// 0 picks it from the size (512 up to 260 MiB, 4 KiB up to 8 GiB, 8 KiB up to
	// 16 GiB, 16 KiB up to 32 GiB, 32 KiB above), smaller if needed for 65525 clusters.
	ClusterSize int
	// HiddenSectors is the partition's start sector on its disk (written to the boot sector).
	HiddenSectors uint32
	// ModTime is the time of directories created implicitly and of files with a zero time.
	// Zero means 1980-01-01, the format's epoch.
	ModTime time.Time
}

// FS is a file system being written. Files are written to the data area as they are added,
// each in consecutive clusters; directories, the FATs and FSInfo are written by Close.
// The same calls always give the same bytes. Unused clusters are left as they were in w.
type FS struct {
	w            io.WriterAt
	opts         Options
	totalSectors uint32
	fatSectors   uint32
	clusterSize  int64
	clusters     uint32 // data clusters
	dataStart    int64  // byte offset of cluster 2
	fat          []uint32
	next         uint32 // next free cluster
	root         *entry
	label        [11]byte
	buf          []byte // file data on its way to w
	closed       bool
	err          error
}

type entry struct {
	name     string
	dir      bool
	first    uint32
	size     uint32
	mtime    time.Time
	children []*entry
	byName   map[string]*entry // keyed by upper-cased name
}

// Format starts a FAT32 file system of size bytes in w (from offset 0; wrap a partition
// with io.NewOffsetWriter). It returns ErrTooSmall (wrapped) when size has room for fewer
// than 65525 clusters (about 33 MiB at 512-byte clusters).
func Format(w io.WriterAt, size int64, opts Options) (*FS, error) {
	if size < 0 || size/SectorSize > 0xffffffff {
		return nil, fmt.Errorf("fat32: size %d: want 0 to 2^32 sectors", size)
	}
	label, err := volumeLabel(opts.Label)
	if err != nil {
		return nil, err
	}
	total := uint32(size / SectorSize)
	cs := opts.ClusterSize
	auto := cs == 0
	if auto {
		switch {
		case size <= 260<<20:
			cs = 512
		case size <= 8<<30:
			cs = 4 << 10
		case size <= 16<<30:
			cs = 8 << 10
		case size <= 32<<30:
			cs = 16 << 10
		default:
			cs = 32 << 10
		}
	}
	if cs < SectorSize || cs > 32<<10 || cs&(cs-1) != 0 {
		return nil, fmt.Errorf("fat32: cluster size %d: want a power of two from 512 to 32768", cs)
	}
	for {
		fs := &FS{w: w, opts: opts, totalSectors: total, clusterSize: int64(cs), label: label}
		if fs.layout() {
			fs.fat = []uint32{0x0fffff00 | 0xf8, eoc}
			fs.next = 2
			fs.root = &entry{dir: true, mtime: opts.ModTime, byName: map[string]*entry{}}
			fs.root.first = fs.alloc() // the root starts at cluster 2, like mkfs.fat's
			return fs, nil
		}
		if !auto || cs == SectorSize {
			return nil, fmt.Errorf("%w: %d bytes give too few clusters of %d bytes (want at least %d)", ErrTooSmall, size, cs, MinClusters)
		}
		cs /= 2
	}
}

// layout computes the FAT size and cluster count; false if there are too few clusters.
func (fs *FS) layout() bool {
	spc := uint32(fs.clusterSize / SectorSize)
	if fs.totalSectors <= reservedSecs {
		return false
	}
	avail := fs.totalSectors - reservedSecs
	// Smallest FAT that has an entry for every cluster left after the FATs.
	f := uint32(1)
	for {
		if numFATs*f >= avail {
			return false
		}
		clusters := (avail - numFATs*f) / spc
		if uint64(clusters)+2 <= uint64(f)*SectorSize/4 {
			if clusters > MaxClusters {
				clusters = MaxClusters
			}
			fs.fatSectors, fs.clusters = f, clusters
			fs.dataStart = int64(reservedSecs+numFATs*f) * SectorSize
			return clusters >= MinClusters
		}
		f = max(f+1, uint32((uint64(clusters)+2)*4/SectorSize))
	}
}

// volumeLabel checks and pads a label.
func volumeLabel(s string) ([11]byte, error) {
	var l [11]byte
	copy(l[:], "NO NAME    ")
	if s == "" {
		return l, nil
	}
	s = strings.ToUpper(s)
	if len(s) > 11 {
		return l, fmt.Errorf("fat32: label %q longer than 11 characters", s)
	}
	for _, c := range []byte(s) {
		if !shortChar(c) && c != ' ' {
			return l, fmt.Errorf("fat32: label %q: character %q not allowed", s, c)
		}
	}
	copy(l[:], s+strings.Repeat(" ", 11-len(s)))
	return l, nil
}

func shortChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'()-@^_`{}~", c) >= 0
}

// Clusters returns the number of data clusters and the cluster size in bytes.
func (fs *FS) Clusters() (n uint32, size int) { return fs.clusters, int(fs.clusterSize) }

// alloc takes the next free cluster, or 0 when the disk is full.
func (fs *FS) alloc() uint32 {
	if fs.next-2 >= fs.clusters {
		return 0
	}
	c := fs.next
	fs.next++
	fs.fat = append(fs.fat, eoc)
	return c
}

func (fs *FS) usable() error {
	if fs.closed {
		return errors.New("fat32: file system closed")
	}
	return fs.err
}

func (fs *FS) fail(err error) error {
	if fs.err == nil {
		fs.err = err
	}
	return err
}

// parent walks to the directory that holds name's last element, creating missing
// directories on the way.
func (fs *FS) parent(name string) (*entry, string, error) {
	clean := strings.Trim(name, "/")
	if clean == "" || len(clean) > MaxPathLen || path.Clean(clean) != clean || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, "", fmt.Errorf("fat32: bad path %q", clip(name))
	}
	parts := strings.Split(clean, "/")
	dir := fs.root
	for _, p := range parts[:len(parts)-1] {
		child := dir.byName[strings.ToUpper(p)]
		if child == nil {
			var err error
			if child, err = fs.newEntry(dir, p, true, fs.opts.ModTime); err != nil {
				return nil, "", err
			}
		} else if !child.dir {
			return nil, "", fmt.Errorf("fat32: %s: %s is a file", clip(name), p)
		}
		dir = child
	}
	return dir, parts[len(parts)-1], nil
}

func (fs *FS) newEntry(dir *entry, name string, isDir bool, mtime time.Time) (*entry, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if _, ok := dir.byName[strings.ToUpper(name)]; ok {
		return nil, fmt.Errorf("%w: %s", ErrExist, name)
	}
	if len(dir.children) >= MaxDirEntries/2 {
		return nil, fmt.Errorf("fat32: %s: directory full", name)
	}
	if mtime.IsZero() {
		mtime = fs.opts.ModTime
	}
	e := &entry{name: name, dir: isDir, mtime: mtime}
	if isDir {
		e.byName = map[string]*entry{}
		if e.first = fs.alloc(); e.first == 0 {
			return nil, fmt.Errorf("%w: directory %s", ErrNoSpace, name)
		}
	}
	dir.children = append(dir.children, e)
	dir.byName[strings.ToUpper(name)] = e
	return e, nil
}

// checkName rejects names a long file name cannot hold.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || !utf8.ValidString(name) {
		return fmt.Errorf("fat32: bad name %q: want valid UTF-8, not \".\" or \"..\"", name)
	}
	if len(utf16.Encode([]rune(name))) > MaxNameLen {
		return fmt.Errorf("fat32: name %q longer than %d UTF-16 units", clip(name), MaxNameLen)
	}
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) || r == 0x7f {
			return fmt.Errorf("fat32: name %q: character %q not allowed", clip(name), r)
		}
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return fmt.Errorf("fat32: name %q ends in a dot or space", clip(name))
	}
	return nil
}

// Mkdir creates a directory and any missing parents; an existing directory is not an error.
func (fs *FS) Mkdir(name string, mtime time.Time) error {
	if err := fs.usable(); err != nil {
		return err
	}
	dir, base, err := fs.parent(name)
	if err != nil {
		return err
	}
	if e := dir.byName[strings.ToUpper(base)]; e != nil {
		if e.dir {
			return nil
		}
		return fmt.Errorf("%w: %s is a file", ErrExist, clip(name))
	}
	_, err = fs.newEntry(dir, base, true, mtime)
	return err
}

// WriteFile adds a file with the contents of r (at most 4 GiB - 1), creating missing
// parent directories, and writes its data now.
func (fs *FS) WriteFile(name string, r io.Reader, mtime time.Time) error {
	if err := fs.usable(); err != nil {
		return err
	}
	dir, base, err := fs.parent(name)
	if err != nil {
		return err
	}
	e, err := fs.newEntry(dir, base, false, mtime)
	if err != nil {
		return err
	}
	// Write in runs of up to 1 MiB of consecutive clusters.
	if fs.buf == nil {
		fs.buf = make([]byte, max(fs.clusterSize, 1<<20))
	}
	buf := fs.buf
	var size int64
	prev := uint32(0)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			size += int64(n)
			if size > MaxFileSize {
				return fs.fail(fmt.Errorf("fat32: %s: larger than %d bytes", clip(name), int64(MaxFileSize)))
			}
			k := (int64(n) + fs.clusterSize - 1) / fs.clusterSize
			start := uint32(0)
			for range k {
				c := fs.alloc()
				if c == 0 {
					return fs.fail(fmt.Errorf("%w: writing %s", ErrNoSpace, clip(name)))
				}
				if start == 0 {
					start = c
				}
				if prev != 0 {
					fs.fat[prev] = c
				} else {
					e.first = c
				}
				prev = c
			}
			chunk := buf[:k*fs.clusterSize]
			clear(chunk[n:])
			if _, err := fs.w.WriteAt(chunk, fs.clusterOffset(start)); err != nil {
				return fs.fail(fmt.Errorf("fat32: write %s: %w", clip(name), err))
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fs.fail(fmt.Errorf("fat32: read %s: %w", clip(name), rerr))
		}
	}
	e.size = uint32(size)
	return nil
}

func (fs *FS) clusterOffset(c uint32) int64 {
	return fs.dataStart + int64(c-2)*fs.clusterSize
}

// Close writes the directories, both FATs, the boot sectors and FSInfo.
func (fs *FS) Close() error {
	if fs.closed {
		return fs.err
	}
	fs.closed = true
	if fs.err != nil {
		return fs.err
	}
	if err := fs.writeDir(fs.root, nil); err != nil {
		return fs.fail(err)
	}
	// FATs.
	fat := make([]byte, int64(fs.fatSectors)*SectorSize)
	for i, v := range fs.fat {
		binary.LittleEndian.PutUint32(fat[4*i:], v)
	}
	for i := range int64(numFATs) {
		if _, err := fs.w.WriteAt(fat, reservedSecs*SectorSize+i*int64(len(fat))); err != nil {
			return fs.fail(fmt.Errorf("fat32: write FAT: %w", err))
		}
	}
	// Reserved area: boot sector, FSInfo, their backups at 6 and 7.
	res := make([]byte, reservedSecs*SectorSize)
	boot := res[:SectorSize]
	le := binary.LittleEndian
	copy(boot[0:], []byte{0xeb, 0x58, 0x90})
	copy(boot[3:11], "HEARTH  ")
	le.PutUint16(boot[11:], SectorSize)
	boot[13] = byte(fs.clusterSize / SectorSize)
	le.PutUint16(boot[14:], reservedSecs)
	boot[16] = numFATs
	boot[21] = 0xf8
	le.PutUint16(boot[24:], 63)
	le.PutUint16(boot[26:], 255)
	le.PutUint32(boot[28:], fs.opts.HiddenSectors)
	le.PutUint32(boot[32:], fs.totalSectors)
	le.PutUint32(boot[36:], fs.fatSectors)
	le.PutUint32(boot[44:], fs.root.first)
	le.PutUint16(boot[48:], 1)
	le.PutUint16(boot[50:], 6)
	boot[64] = 0x80
	boot[66] = 0x29
	le.PutUint32(boot[67:], fs.opts.VolumeID)
	copy(boot[71:82], fs.label[:])
	copy(boot[82:90], "FAT32   ")
	// Boot code: print nothing, halt (int 0x18: "no bootable disk").
	copy(boot[90:], []byte{0xcd, 0x18, 0xeb, 0xfe})
	boot[510], boot[511] = 0x55, 0xaa
	info := res[SectorSize : 2*SectorSize]
	le.PutUint32(info[0:], 0x41615252)
	le.PutUint32(info[484:], 0x61417272)
	le.PutUint32(info[488:], fs.clusters-(fs.next-2))
	le.PutUint32(info[492:], fs.next)
	le.PutUint32(info[508:], 0xaa550000)
	res[2*SectorSize+510], res[2*SectorSize+511] = 0x55, 0xaa
	copy(res[6*SectorSize:], res[:3*SectorSize])
	if _, err := fs.w.WriteAt(res, 0); err != nil {
		return fs.fail(fmt.Errorf("fat32: write boot sector: %w", err))
	}
	return nil
}

// writeDir writes dir's subdirectories, then dir's own entries into its clusters.
func (fs *FS) writeDir(dir, parent *entry) error {
	for _, c := range dir.children {
		if c.dir {
			if err := fs.writeDir(c, dir); err != nil {
				return err
			}
		}
	}
	var b []byte
	if parent == nil {
		if fs.label != [11]byte([]byte("NO NAME    ")) {
			b = appendEntry(b, fs.label, 0, attrVolumeID, 0, 0, fs.opts.ModTime)
		}
	} else {
		var dot, dotdot [11]byte
		copy(dot[:], ".          ")
		copy(dotdot[:], "..         ")
		b = appendEntry(b, dot, 0, attrDirectory, dir.first, 0, dir.mtime)
		up := parent.first
		if parent == fs.root {
			up = 0
		}
		b = appendEntry(b, dotdot, 0, attrDirectory, up, 0, parent.mtime)
	}
	used := map[[11]byte]bool{}
	for _, c := range dir.children {
		short, lfn := shortName(c.name, used)
		used[short] = true
		if lfn {
			b = appendLFN(b, c.name, short)
		}
		attr := byte(attrArchive)
		if c.dir {
			attr = attrDirectory
		}
		b = appendEntry(b, short, 0, attr, c.first, c.size, c.mtime)
	}
	if len(b)/32 > MaxDirEntries {
		return fmt.Errorf("fat32: directory %q: %d entries, at most %d", dir.name, len(b)/32, MaxDirEntries)
	}
	need := max(1, (int64(len(b))+fs.clusterSize-1)/fs.clusterSize)
	b = append(b, make([]byte, need*fs.clusterSize-int64(len(b)))...)
	c := dir.first
	for i := range need {
		if i > 0 {
			n := fs.alloc()
			if n == 0 {
				return fmt.Errorf("%w: directory %q", ErrNoSpace, dir.name)
			}
			fs.fat[c] = n
			c = n
		}
		if _, err := fs.w.WriteAt(b[i*fs.clusterSize:(i+1)*fs.clusterSize], fs.clusterOffset(c)); err != nil {
			return fmt.Errorf("fat32: write directory %q: %w", dir.name, err)
		}
	}
	return nil
}

// appendEntry appends one 32-byte short directory entry.
func appendEntry(b []byte, name [11]byte, lower byte, attr byte, first, size uint32, mtime time.Time) []byte {
	var e [32]byte
	copy(e[:11], name[:])
	e[11] = attr
	e[12] = lower
	d, t := fatTime(mtime)
	le := binary.LittleEndian
	le.PutUint16(e[14:], t)
	le.PutUint16(e[16:], d)
	le.PutUint16(e[18:], d)
	le.PutUint16(e[20:], uint16(first>>16))
	le.PutUint16(e[22:], t)
	le.PutUint16(e[24:], d)
	le.PutUint16(e[26:], uint16(first))
	le.PutUint32(e[28:], size)
	return append(b, e[:]...)
}

// fatTime encodes t (as UTC) in FAT's date and time fields, clamped to 1980..2107.
func fatTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		return 1<<5 | 1, 0
	}
	if t.Year() > 2107 {
		return 127<<9 | 12<<5 | 31, 23<<11 | 59<<5 | 29
	}
	return uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day()),
		uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
}

// shortName picks an 8.3 name unique among used, and says whether a long name is needed.
func shortName(name string, used map[[11]byte]bool) ([11]byte, bool) {
	var s [11]byte
	upper := strings.ToUpper(name)
	base, ext := upper, ""
	if i := strings.LastIndexByte(upper, '.'); i > 0 {
		base, ext = upper[:i], upper[i+1:]
	}
	exact := len(base) >= 1 && len(base) <= 8 && len(ext) <= 3 && !strings.Contains(base, ".")
	for _, c := range []byte(base + ext) {
		if !shortChar(c) {
			exact = false
		}
	}
	if exact {
		copy(s[:], base+strings.Repeat(" ", 8-len(base))+ext+strings.Repeat(" ", 3-len(ext)))
		if !used[s] {
			return s, name != upper
		}
	}
	strip := func(x string, n int) string {
		var out []byte
		for _, c := range []byte(x) {
			switch {
			case c == ' ' || c == '.':
			case shortChar(c):
				out = append(out, c)
			default:
				out = append(out, '_')
			}
			if len(out) == n {
				break
			}
		}
		return string(out)
	}
	b, e := strip(strings.TrimLeft(base, "."), 8), strip(ext, 3)
	if b == "" {
		b = "_"
	}
	// Like Windows: BASIS~1 to ~4, then two characters, four hex digits of a hash of the
	// long name and ~N, so big directories don't search through every tail.
	h := fnv.New32a()
	h.Write([]byte(name))
	hashed := b[:min(2, len(b))] + fmt.Sprintf("%04X", h.Sum32()&0xffff)
	for n := 1; ; n++ {
		basis := b
		if n > 4 {
			basis = hashed
		}
		tail := fmt.Sprintf("~%d", n)
		if n > 4 {
			tail = fmt.Sprintf("~%d", n-4)
		}
		if len(basis)+len(tail) > 8 {
			basis = basis[:8-len(tail)]
		}
		basis += tail
		copy(s[:], basis+strings.Repeat(" ", 8-len(basis))+e+strings.Repeat(" ", 3-len(e)))
		if !used[s] {
			return s, true
		}
	}
}

// appendLFN appends the long-name entries for name, last part first.
func appendLFN(b []byte, name string, short [11]byte) []byte {
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	u := utf16.Encode([]rune(name))
	n := (len(u) + lfnCharsPerEnt - 1) / lfnCharsPerEnt
	if len(u)%lfnCharsPerEnt != 0 {
		u = append(u, 0)
	}
	for len(u)%lfnCharsPerEnt != 0 {
		u = append(u, 0xffff)
	}
	offsets := [lfnCharsPerEnt]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
	for i := n; i >= 1; i-- {
		var e [32]byte
		e[0] = byte(i)
		if i == n {
			e[0] |= 0x40
		}
		e[11] = attrLongName
		e[13] = sum
		for j, off := range offsets {
			binary.LittleEndian.PutUint16(e[off:], u[(i-1)*lfnCharsPerEnt+j])
		}
		b = append(b, e[:]...)
	}
	return b
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
