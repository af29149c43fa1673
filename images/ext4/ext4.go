// Package ext4 formats an empty ext4 file system (extents, no journal) for a persistent data partition.
package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Limits and geometry.
const (
	BlockSize      = 4096
	MinSize        = 1 << 20 // bytes
	MaxSize        = 1 << 44 // 16 TiB: 2^32 blocks of 4 KiB (no 64bit feature)
	inodeSize      = 256
	extraIsize     = 32
	blocksPerGroup = 8 * BlockSize // one bitmap block per group
	inodeRatio     = 16384         // bytes per inode, like mke2fs's default
	rootIno        = 2
	lostFoundIno   = 11
	firstIno       = 11
	descSize       = 32
	minLastGroup   = 64 // a smaller trailing group is dropped, as mke2fs does
)

// Feature flags written to the superblock.
const (
	compatDirIndex    = 0x0020
	incompatFiletype  = 0x0002
	incompatExtents   = 0x0040
	roSparseSuper     = 0x0001
	roLargeFile       = 0x0002
	roHugeFile        = 0x0008
	roDirNlink        = 0x0020
	roExtraIsize      = 0x0040
	roMetadataCsum    = 0x0400
	bgInodeZeroed     = 0x0004
	inodeFlagExtents  = 0x00080000
	extentMagic       = 0xf30a
	dirFileTypeDir    = 2
	dirTailFileType   = 0xde
	dirTailSize       = 12
	superblockOffset  = 1024
	superChecksumOffs = 0x3fc
)

// ErrSize is returned (wrapped) for a size Format cannot use.
var ErrSize = errors.New("ext4: bad size")

// Options configure Format.
type Options struct {
	// UUID is the file system's UUID; it also seeds the directory hash and checksums.
	UUID [16]byte
	// Label is the volume name (at most 16 bytes).
	Label string
	// ModTime is the creation time and that of the root and lost+found directories.
	ModTime time.Time
	// Zero writes zeros over the inode tables; leave it false only when w already reads
	// as zeros (a new or truncated file).
	Zero bool
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the raw CRC32C update ext4 uses (no final inversion).
func crc32c(seed uint32, b []byte) uint32 { return ^crc32.Update(^seed, castagnoli, b) }

// group is one block group's geometry.
type group struct {
	start, blocks uint32 // first block, number of blocks
	backup        bool   // holds a superblock and descriptor copy
	blockBitmap   uint32
	inodeBitmap   uint32
	inodeTable    uint32
	used          uint32 // blocks in use (metadata, and the directories in group 0)
	usedInodes    uint32
	dirs          uint32
}

// hasBackup reports whether sparse_super keeps a superblock copy in group g.
func hasBackup(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, p := range []uint32{3, 5, 7} {
		n := p
		for n < g {
			n *= p
		}
		if n == g {
			return true
		}
	}
	return false
}

// Format writes an empty ext4 file system of size bytes (rounded down to whole 4 KiB
// blocks) into w from offset 0: a root directory and lost+found, metadata checksums on,
// no journal. The same options give the same bytes.
func Format(w io.WriterAt, size int64, opts Options) error {
	if size < MinSize || size > MaxSize {
		return fmt.Errorf("%w: %d bytes, want %d to %d", ErrSize, size, int64(MinSize), int64(MaxSize))
	}
	if len(opts.Label) > 16 {
		return fmt.Errorf("ext4: label %q: at most 16 bytes", opts.Label)
	}
	blocks := uint32(size / BlockSize)
	var ngroups, gdtBlocks, ipg, itBlocks uint32
	perBlock := uint32(BlockSize / inodeSize)
	for {
		ngroups = (blocks + blocksPerGroup - 1) / blocksPerGroup
		gdtBlocks = (ngroups*descSize + BlockSize - 1) / BlockSize
		// Inodes per group: a multiple of the inodes in a block, at most one bitmap's worth.
		ipg = uint32(uint64(blocks) * BlockSize / inodeRatio / uint64(ngroups))
		ipg = min(8*BlockSize, max(perBlock, (ipg+perBlock-1)/perBlock*perBlock))
		itBlocks = ipg / perBlock
		// Drop a trailing group too small for its metadata and some data, as mke2fs does.
		last := blocks - (ngroups-1)*blocksPerGroup
		overhead := 2 + itBlocks
		if hasBackup(ngroups - 1) {
			overhead += 1 + gdtBlocks
		}
		if ngroups == 1 || last >= overhead+minLastGroup {
			break
		}
		blocks -= last
	}
	groups := make([]group, ngroups)
	for i := range groups {
		g := &groups[i]
		g.start = uint32(i) * blocksPerGroup
		g.blocks = min(blocksPerGroup, blocks-g.start)
		g.backup = hasBackup(uint32(i))
		next := g.start
		if g.backup {
			next += 1 + gdtBlocks
		}
		g.blockBitmap, g.inodeBitmap, g.inodeTable = next, next+1, next+2
		g.used = g.inodeTable + itBlocks - g.start
		if g.used+1 > g.blocks || (i == 0 && g.used+3 > g.blocks) {
			return fmt.Errorf("%w: %d bytes leave group %d no room for its metadata", ErrSize, size, i)
		}
	}
	// Group 0 holds the two directories' blocks and the reserved inodes.
	g0 := &groups[0]
	rootBlock := g0.start + g0.used
	lostBlock := rootBlock + 1
	g0.used += 2
	g0.usedInodes = firstIno // inodes 1..11
	g0.dirs = 2

	le := binary.LittleEndian
	t := uint32(0)
	if !opts.ModTime.IsZero() && opts.ModTime.Unix() > 0 {
		t = uint32(min(opts.ModTime.Unix(), 0xffffffff))
	}
	var freeBlocks, freeInodes uint32
	for _, g := range groups {
		freeBlocks += g.blocks - g.used
		freeInodes += ipg - g.usedInodes
	}

	// Superblock.
	sb := make([]byte, 1024)
	le.PutUint32(sb[0x00:], ipg*ngroups)
	le.PutUint32(sb[0x04:], blocks)
	le.PutUint32(sb[0x0c:], freeBlocks)
	le.PutUint32(sb[0x10:], freeInodes)
	le.PutUint32(sb[0x14:], 0) // first data block
	le.PutUint32(sb[0x18:], 2) // 1024 << 2
	le.PutUint32(sb[0x1c:], 2)
	le.PutUint32(sb[0x20:], blocksPerGroup)
	le.PutUint32(sb[0x24:], blocksPerGroup)
	le.PutUint32(sb[0x28:], ipg)
	le.PutUint32(sb[0x30:], t)      // write time
	le.PutUint16(sb[0x36:], 0xffff) // max mount count: no forced checks
	le.PutUint16(sb[0x38:], 0xef53)
	le.PutUint16(sb[0x3a:], 1) // clean
	le.PutUint16(sb[0x3c:], 1) // errors: continue
	le.PutUint32(sb[0x40:], t) // last check
	le.PutUint32(sb[0x4c:], 1) // dynamic revision
	le.PutUint32(sb[0x54:], firstIno)
	le.PutUint16(sb[0x58:], inodeSize)
	le.PutUint32(sb[0x5c:], compatDirIndex)
	le.PutUint32(sb[0x60:], incompatFiletype|incompatExtents)
	le.PutUint32(sb[0x64:], roSparseSuper|roLargeFile|roHugeFile|roDirNlink|roExtraIsize|roMetadataCsum)
	copy(sb[0x68:0x78], opts.UUID[:])
	copy(sb[0x78:0x88], opts.Label)
	// Directory hash seed: derived from the UUID so the output is reproducible.
	seed := crc32c(^uint32(0), opts.UUID[:])
	for i := range 4 {
		le.PutUint32(sb[0xec+4*i:], crc32c(seed, []byte{byte(i)}))
	}
	sb[0xfc] = 1                // half_md4
	le.PutUint32(sb[0x108:], t) // mkfs time
	le.PutUint16(sb[0x15c:], extraIsize)
	le.PutUint16(sb[0x15e:], extraIsize)
	le.PutUint32(sb[0x160:], 1) // signed directory hash
	sb[0x175] = 1               // checksum type: crc32c
	// The checksum seed of every metadata checksum.
	csumSeed := crc32c(^uint32(0), opts.UUID[:])

	// Group descriptors.
	gdt := make([]byte, gdtBlocks*BlockSize)
	blockBitmaps := make([][]byte, ngroups)
	inodeBitmaps := make([][]byte, ngroups)
	for i, g := range groups {
		bb := make([]byte, BlockSize)
		setBits(bb, 0, g.used)
		setBits(bb, g.blocks, 8*BlockSize) // past the end of a short last group
		ib := make([]byte, BlockSize)
		setBits(ib, 0, g.usedInodes)
		setBits(ib, ipg, 8*BlockSize)
		blockBitmaps[i], inodeBitmaps[i] = bb, ib
		d := gdt[i*descSize : (i+1)*descSize]
		le.PutUint32(d[0x00:], g.blockBitmap)
		le.PutUint32(d[0x04:], g.inodeBitmap)
		le.PutUint32(d[0x08:], g.inodeTable)
		le.PutUint16(d[0x0c:], uint16(g.blocks-g.used))
		le.PutUint16(d[0x0e:], uint16(ipg-g.usedInodes))
		le.PutUint16(d[0x10:], uint16(g.dirs))
		le.PutUint16(d[0x12:], bgInodeZeroed)
		le.PutUint16(d[0x18:], uint16(crc32c(csumSeed, bb)))
		le.PutUint16(d[0x1a:], uint16(crc32c(csumSeed, ib[:ipg/8])))
		le.PutUint16(d[0x1c:], uint16(ipg-g.usedInodes)) // unused inodes at the table's end
		c := crc32c(csumSeed, le.AppendUint32(nil, uint32(i)))
		c = crc32c(c, d[:0x1e])
		c = crc32c(c, []byte{0, 0})
		le.PutUint16(d[0x1e:], uint16(c))
	}

	// Inodes 2 (root) and 11 (lost+found), and their directory blocks.
	inode := func(ino uint32, mode uint16, links uint16, block uint32) []byte {
		b := make([]byte, inodeSize)
		le.PutUint16(b[0x00:], mode)
		le.PutUint32(b[0x04:], BlockSize)
		le.PutUint32(b[0x08:], t)
		le.PutUint32(b[0x0c:], t)
		le.PutUint32(b[0x10:], t)
		le.PutUint16(b[0x1a:], links)
		le.PutUint32(b[0x1c:], BlockSize/512)
		le.PutUint32(b[0x20:], inodeFlagExtents)
		// Extent header and one extent in i_block.
		le.PutUint16(b[0x28:], extentMagic)
		le.PutUint16(b[0x2a:], 1)
		le.PutUint16(b[0x2c:], 4)
		le.PutUint32(b[0x34:], 0)     // first logical block
		le.PutUint16(b[0x38:], 1)     // length
		le.PutUint32(b[0x3c:], block) // physical block (low 32 bits)
		le.PutUint16(b[0x80:], extraIsize)
		le.PutUint32(b[0x90:], t) // crtime
		c := crc32c(csumSeed, le.AppendUint32(nil, ino))
		c = crc32c(c, []byte{0, 0, 0, 0}) // generation
		c = crc32c(c, b)                  // checksum fields are still zero
		le.PutUint16(b[0x7c:], uint16(c))
		le.PutUint16(b[0x82:], uint16(c>>16))
		return b
	}
	dirBlock := func(ino uint32, entries []dirent) []byte {
		b := make([]byte, BlockSize)
		off := 0
		for i, e := range entries {
			rec := (8 + len(e.name) + 3) &^ 3
			if i == len(entries)-1 {
				rec = BlockSize - dirTailSize - off
			}
			le.PutUint32(b[off:], e.ino)
			le.PutUint16(b[off+4:], uint16(rec))
			b[off+6] = byte(len(e.name))
			b[off+7] = dirFileTypeDir
			copy(b[off+8:], e.name)
			off += rec
		}
		tail := b[BlockSize-dirTailSize:]
		le.PutUint16(tail[4:], dirTailSize)
		tail[7] = dirTailFileType
		c := crc32c(csumSeed, le.AppendUint32(nil, ino))
		c = crc32c(c, []byte{0, 0, 0, 0})
		le.PutUint32(tail[8:], crc32c(c, b[:BlockSize-dirTailSize]))
		return b
	}
	rootInode := inode(rootIno, 0o040755, 3, rootBlock)
	lostInode := inode(lostFoundIno, 0o040700, 2, lostBlock)
	rootDir := dirBlock(rootIno, []dirent{{rootIno, "."}, {rootIno, ".."}, {lostFoundIno, "lost+found"}})
	lostDir := dirBlock(lostFoundIno, []dirent{{lostFoundIno, "."}, {rootIno, ".."}})

	write := func(what string, b []byte, block uint32, off int64) error {
		if _, err := w.WriteAt(b, int64(block)*BlockSize+off); err != nil {
			return fmt.Errorf("ext4: write %s: %w", what, err)
		}
		return nil
	}
	zeros := make([]byte, BlockSize)
	for i, g := range groups {
		if g.backup {
			s := append([]byte(nil), sb...)
			le.PutUint16(s[0x5a:], uint16(i)) // block group of this copy
			le.PutUint32(s[superChecksumOffs:], crc32c(^uint32(0), s[:superChecksumOffs]))
			off := int64(0)
			if i == 0 {
				off = superblockOffset
				if err := write("boot block", make([]byte, superblockOffset), 0, 0); err != nil {
					return err
				}
			}
			if err := write("superblock", s, g.start, off); err != nil {
				return err
			}
			if i == 0 {
				if err := write("superblock padding", make([]byte, BlockSize-superblockOffset-len(s)), 0, superblockOffset+int64(len(s))); err != nil {
					return err
				}
			} else if err := write("superblock padding", make([]byte, BlockSize-len(s)), g.start, int64(len(s))); err != nil {
				return err
			}
			if err := write("group descriptors", gdt, g.start+1, 0); err != nil {
				return err
			}
		}
		if err := write("block bitmap", blockBitmaps[i], g.blockBitmap, 0); err != nil {
			return err
		}
		if err := write("inode bitmap", inodeBitmaps[i], g.inodeBitmap, 0); err != nil {
			return err
		}
		if opts.Zero {
			for b := range itBlocks {
				if err := write("inode table", zeros, g.inodeTable+b, 0); err != nil {
					return err
				}
			}
		}
	}
	// Inodes 1..16 share the first inode-table block of group 0 (11 of them reserved).
	itb := make([]byte, BlockSize)
	copy(itb[(rootIno-1)*inodeSize:], rootInode)
	if lostFoundIno <= perBlock {
		copy(itb[(lostFoundIno-1)*inodeSize:], lostInode)
	}
	if err := write("inode table", itb, g0.inodeTable, 0); err != nil {
		return err
	}
	if err := write("root directory", rootDir, rootBlock, 0); err != nil {
		return err
	}
	return write("lost+found", lostDir, lostBlock, 0)
}

type dirent struct {
	ino  uint32
	name string
}

// setBits sets bits [from, to) of a bitmap.
func setBits(b []byte, from, to uint32) {
	for i := from; i < to && i/8 < uint32(len(b)); i++ {
		b[i/8] |= 1 << (i % 8)
	}
}
