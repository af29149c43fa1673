// Package ext4 formats an empty journaled ext4 file system (extents, metadata checksums) for a persistent data partition.
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
	journalIno     = 8
	maxExtentLen   = 32768 // longest initialized extent
	inodeExtents   = 4     // extents that fit in an inode's i_block
	minLastGroup   = 64    // a smaller trailing group is dropped, as mke2fs does
)

// Feature flags written to the superblock.
const (
	compatDirIndex    = 0x0020
	compatHasJournal  = 0x0004
	jnlBackupBlocks   = 1 // s_jnl_backup_type: s_jnl_blocks holds i_block, i_size_high, i_size
	jbd2Magic         = 0xc03b3998
	jbd2SuperblockV2  = 4
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
	// Zero writes zeros over the inode tables and the journal; leave it false only when w
	// already reads as zeros (a new or truncated file).
	Zero bool
	// JournalBlocks is the size of the jbd2 journal in 4 KiB blocks: 0 picks mke2fs's
	// default for the size (DefaultJournalBlocks), a negative value leaves the journal
	// out, otherwise MinJournalBlocks to MaxJournalBlocks and at most half the file system.
	JournalBlocks int
}

// Journal size limits, in blocks.
const (
	MinJournalBlocks = 1024  // jbd2's minimum
	MaxJournalBlocks = 65536 // 256 MiB
)

// DefaultJournalBlocks returns the journal size Format picks for a file system of size
// bytes, following mke2fs: none below 8 MiB, 4 MiB up to 128 MiB, 16 MiB up to 1 GiB,
// 32 MiB up to 2 GiB, 64 MiB up to 16 GiB, 128 MiB up to 32 GiB and 256 MiB above.
func DefaultJournalBlocks(size int64) int {
	blocks := size / BlockSize
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	}
	return MaxJournalBlocks
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
// and a jbd2 journal in inode 8 (see Options.JournalBlocks). The same options give the
// same bytes.
func Format(w io.WriterAt, size int64, opts Options) error {
	if size < MinSize || size > MaxSize {
		return fmt.Errorf("%w: %d bytes, want %d to %d", ErrSize, size, int64(MinSize), int64(MaxSize))
	}
	if len(opts.Label) > 16 {
		return fmt.Errorf("ext4: label %q: at most 16 bytes", opts.Label)
	}
	journalBlocks := opts.JournalBlocks
	switch {
	case journalBlocks == 0:
		journalBlocks = DefaultJournalBlocks(size)
	case journalBlocks < 0:
		journalBlocks = 0
	case journalBlocks < MinJournalBlocks || journalBlocks > MaxJournalBlocks:
		return fmt.Errorf("%w: journal of %d blocks, want %d to %d", ErrSize, journalBlocks, MinJournalBlocks, MaxJournalBlocks)
	case int64(journalBlocks) > size/BlockSize/2:
		return fmt.Errorf("%w: journal of %d blocks is more than half of %d bytes", ErrSize, journalBlocks, size)
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

	// The journal: contiguous runs right after the used blocks of the first groups, one
	// extent per group.
	var journal []extent
	for i, left := 0, uint32(journalBlocks); left > 0; i++ {
		if i >= len(groups) || len(journal) == inodeExtents {
			return fmt.Errorf("%w: %d bytes have no room for a journal of %d blocks", ErrSize, size, journalBlocks)
		}
		g := &groups[i]
		n := min(left, g.blocks-g.used, maxExtentLen)
		if n == 0 {
			continue
		}
		logical := uint32(journalBlocks) - left
		journal = append(journal, extent{logical: logical, start: g.start + g.used, length: n})
		g.used += n
		left -= n
	}

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
	if journalBlocks > 0 {
		le.PutUint32(sb[0x5c:], compatDirIndex|compatHasJournal)
		le.PutUint32(sb[0xe0:], journalIno)
	} else {
		le.PutUint32(sb[0x5c:], compatDirIndex)
	}
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

	// Inodes 2 (root), 8 (journal) and 11 (lost+found), and the directory blocks.
	inode := func(ino uint32, mode uint16, links uint16, bytes int64, exts []extent) []byte {
		b := make([]byte, inodeSize)
		le.PutUint16(b[0x00:], mode)
		le.PutUint32(b[0x04:], uint32(bytes))
		le.PutUint32(b[0x6c:], uint32(bytes>>32))
		le.PutUint32(b[0x08:], t)
		le.PutUint32(b[0x0c:], t)
		le.PutUint32(b[0x10:], t)
		le.PutUint16(b[0x1a:], links)
		le.PutUint32(b[0x1c:], uint32(bytes/512))
		le.PutUint32(b[0x20:], inodeFlagExtents)
		// Extent header and the extents in i_block (a tree of depth 0).
		le.PutUint16(b[0x28:], extentMagic)
		le.PutUint16(b[0x2a:], uint16(len(exts)))
		le.PutUint16(b[0x2c:], inodeExtents)
		for i, e := range exts {
			x := b[0x34+12*i:]
			le.PutUint32(x[0:], e.logical)
			le.PutUint16(x[4:], uint16(e.length))
			le.PutUint32(x[8:], e.start) // physical block (low 32 bits)
		}
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
	rootInode := inode(rootIno, 0o040755, 3, BlockSize, []extent{{0, rootBlock, 1}})
	lostInode := inode(lostFoundIno, 0o040700, 2, BlockSize, []extent{{0, lostBlock, 1}})
	var journalInode []byte
	if journalBlocks > 0 {
		journalInode = inode(journalIno, 0o100600, 1, int64(journalBlocks)*BlockSize, journal)
		// The superblock keeps a backup of the journal inode's extents and size.
		copy(sb[0x10c:0x10c+60], journalInode[0x28:0x28+60])
		le.PutUint32(sb[0x10c+15*4:], uint32(int64(journalBlocks)*BlockSize>>32))
		le.PutUint32(sb[0x10c+16*4:], uint32(int64(journalBlocks)*BlockSize))
		sb[0xfd] = jnlBackupBlocks
	}
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
	copy(itb[(journalIno-1)*inodeSize:], journalInode)
	if err := write("inode table", itb, g0.inodeTable, 0); err != nil {
		return err
	}
	if journalBlocks > 0 {
		if opts.Zero {
			chunk := make([]byte, 256*BlockSize)
			for _, e := range journal {
				for b := uint32(0); b < e.length; b += uint32(len(chunk) / BlockSize) {
					n := min(e.length-b, uint32(len(chunk)/BlockSize))
					if err := write("journal", chunk[:n*BlockSize], e.start+b, 0); err != nil {
						return err
					}
				}
			}
		}
		if err := write("journal superblock", journalSuperblock(uint32(journalBlocks), opts.UUID), journal[0].start, 0); err != nil {
			return err
		}
	}
	if err := write("root directory", rootDir, rootBlock, 0); err != nil {
		return err
	}
	return write("lost+found", lostDir, lostBlock, 0)
}

// extent is a run of blocks of a file: logical is its first block in the file, start the
// first block on disk.
type extent struct {
	logical, start, length uint32
}

// journalSuperblock returns block 0 of an empty internal jbd2 journal of blocks blocks
// (format v2, big-endian, no optional features: the kernel turns on checksums v3 itself
// when it mounts a metadata_csum file system).
func journalSuperblock(blocks uint32, uuid [16]byte) []byte {
	be := binary.BigEndian
	b := make([]byte, BlockSize)
	be.PutUint32(b[0x00:], jbd2Magic)
	be.PutUint32(b[0x04:], jbd2SuperblockV2)
	be.PutUint32(b[0x0c:], BlockSize)
	be.PutUint32(b[0x10:], blocks) // s_maxlen
	be.PutUint32(b[0x14:], 1)      // s_first: the first log block
	be.PutUint32(b[0x18:], 1)      // s_sequence: the first transaction's id
	// s_start 0: the journal is empty, nothing to replay.
	copy(b[0x30:0x40], uuid[:])
	be.PutUint32(b[0x40:], 1) // s_nr_users
	return b
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
