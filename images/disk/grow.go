package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ErrTable is returned (wrapped) for a partition table GrowLast cannot read or trust.
var ErrTable = errors.New("disk: bad partition table")

// ErrNotLast is returned (wrapped) by GrowPartition when another partition ends last.
var ErrNotLast = errors.New("disk: partition does not end last")

// maxGPTEntryBytes bounds the GPT entry array GrowLast reads from a disk.
const maxGPTEntryBytes = 1 << 20

// ReadWriterAt is a disk GrowLast reads and rewrites.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Grown says what GrowLast found and did.
type Grown struct {
	// Kind is the disk's table kind.
	Kind Kind
	// Partition is the number (from 1) of the partition that ends last on the disk.
	Partition int
	// Start is its first byte on the disk.
	Start int64
	// OldSize and NewSize are its size in bytes before and after; equal when there was
	// nothing to grow.
	OldSize, NewSize int64
}

// Changed reports whether GrowLast rewrote the table.
func (g Grown) Changed() bool { return g.NewSize != g.OldSize }

// GrowLast extends the partition that ends last on the disk rw of size bytes (a whole
// disk from offset 0) to the end of the disk's usable area, when at least Align bytes lie
// free after it: for MBR it rewrites that entry's size (at most 2^32 sectors are
// addressable); for GPT it rewrites the entry, moves the backup entries and header to the
// disk's last sectors, fixes every CRC, zeros the old backup header and widens the
// protective MBR. Nothing else on the disk changes. The caller syncs rw.
func GrowLast(rw ReadWriterAt, size int64) (Grown, error) { return GrowPartition(rw, size, 0) }

// GrowPartition is GrowLast for partition n (numbered from 1), which must be the one
// that ends last (ErrNotLast otherwise); n 0 takes whichever is.
func GrowPartition(rw ReadWriterAt, size int64, n int) (Grown, error) {
	if size <= 0 || size%SectorSize != 0 {
		return Grown{}, fmt.Errorf("disk: grow: disk size %d is not a positive multiple of %d", size, SectorSize)
	}
	mbr := make([]byte, SectorSize)
	if _, err := rw.ReadAt(mbr, 0); err != nil {
		return Grown{}, fmt.Errorf("disk: grow: read MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return Grown{}, fmt.Errorf("%w: no MBR signature", ErrTable)
	}
	if mbr[446+4] == MBRProtective {
		return growGPT(rw, size, mbr, n)
	}
	return growMBR(rw, size, mbr, n)
}

func growMBR(rw ReadWriterAt, size int64, mbr []byte, want int) (Grown, error) {
	sectors := uint64(size / SectorSize)
	last, lastEnd := -1, uint64(0)
	for i := range 4 {
		e := mbr[446+16*i:]
		if e[4] == 0 {
			continue
		}
		lba, n := uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
		if lba == 0 || n == 0 || lba+n > sectors {
			return Grown{}, fmt.Errorf("%w: MBR partition %d (%d sectors at %d) does not fit the %d-sector disk", ErrTable, i+1, n, lba, sectors)
		}
		if lba+n > lastEnd {
			last, lastEnd = i, lba+n
		}
	}
	if last < 0 {
		return Grown{}, fmt.Errorf("%w: no MBR partitions", ErrTable)
	}
	if want != 0 && last+1 != want {
		return Grown{}, fmt.Errorf("%w: partition %d, not %d, ends last", ErrNotLast, last+1, want)
	}
	e := mbr[446+16*last : 446+16*(last+1)]
	switch e[4] {
	case 0x05, 0x0f, 0x85:
		return Grown{}, fmt.Errorf("%w: the last MBR partition %d is an extended one", ErrTable, last+1)
	}
	lba, n := uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
	g := Grown{Kind: MBR, Partition: last + 1, Start: int64(lba) * SectorSize, OldSize: int64(n) * SectorSize}
	g.NewSize = g.OldSize
	end := min(sectors, 1<<32)
	if end < lba+n+Align/SectorSize {
		return g, nil
	}
	n = end - lba
	binary.LittleEndian.PutUint32(e[12:], uint32(n))
	copy(e[5:8], chs(lba+n-1))
	if _, err := rw.WriteAt(mbr, 0); err != nil {
		return g, fmt.Errorf("disk: grow: write MBR: %w", err)
	}
	g.NewSize = int64(n) * SectorSize
	return g, nil
}

func growGPT(rw ReadWriterAt, size int64, mbr []byte, want int) (Grown, error) {
	le := binary.LittleEndian
	sectors := uint64(size / SectorSize)
	hdr := make([]byte, SectorSize)
	if _, err := rw.ReadAt(hdr, SectorSize); err != nil {
		return Grown{}, fmt.Errorf("disk: grow: read GPT header: %w", err)
	}
	hsize := le.Uint32(hdr[12:])
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) || hsize < 92 || hsize > SectorSize {
		return Grown{}, fmt.Errorf("%w: no primary GPT header", ErrTable)
	}
	h := append([]byte(nil), hdr[:hsize]...)
	le.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != le.Uint32(hdr[16:]) {
		return Grown{}, fmt.Errorf("%w: primary GPT header CRC mismatch", ErrTable)
	}
	oldBackup := le.Uint64(hdr[32:])
	firstUsable, lastUsable := le.Uint64(hdr[40:]), le.Uint64(hdr[48:])
	entriesLBA := le.Uint64(hdr[72:])
	count, esize := uint64(le.Uint32(hdr[80:])), uint64(le.Uint32(hdr[84:]))
	if esize < 128 || esize%8 != 0 || count == 0 || count*esize > maxGPTEntryBytes ||
		entriesLBA < 2 || entriesLBA >= sectors || lastUsable >= sectors || firstUsable > lastUsable {
		return Grown{}, fmt.Errorf("%w: malformed GPT header (entries %d of %d bytes at %d, usable %d-%d, %d sectors)",
			ErrTable, count, esize, entriesLBA, firstUsable, lastUsable, sectors)
	}
	entries := make([]byte, count*esize)
	if _, err := rw.ReadAt(entries, int64(entriesLBA)*SectorSize); err != nil {
		return Grown{}, fmt.Errorf("disk: grow: read GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(entries) != le.Uint32(hdr[88:]) {
		return Grown{}, fmt.Errorf("%w: GPT entries CRC mismatch", ErrTable)
	}
	var zero [16]byte
	last, lastEnd := -1, uint64(0)
	for i := range count {
		e := entries[i*esize:]
		if bytes.Equal(e[:16], zero[:]) {
			continue
		}
		first, end := le.Uint64(e[32:]), le.Uint64(e[40:])
		if first < firstUsable || end < first || end > lastUsable {
			return Grown{}, fmt.Errorf("%w: GPT partition %d (%d-%d) lies outside the usable area %d-%d", ErrTable, i+1, first, end, firstUsable, lastUsable)
		}
		if end >= lastEnd {
			last, lastEnd = int(i), end
		}
	}
	if last < 0 {
		return Grown{}, fmt.Errorf("%w: no GPT partitions", ErrTable)
	}
	if want != 0 && last+1 != want {
		return Grown{}, fmt.Errorf("%w: partition %d, not %d, ends last", ErrNotLast, last+1, want)
	}
	e := entries[uint64(last)*esize:]
	first := le.Uint64(e[32:])
	g := Grown{Kind: GPT, Partition: last + 1, Start: int64(first) * SectorSize, OldSize: int64(lastEnd-first+1) * SectorSize}
	g.NewSize = g.OldSize
	entrySectors := (count*esize + SectorSize - 1) / SectorSize
	newLast := sectors - 1
	if newLast < 1+entrySectors+1 || newLast-entrySectors-1 < lastEnd+Align/SectorSize {
		return g, nil // less than Align to gain
	}
	newLastUsable := newLast - entrySectors - 1
	le.PutUint64(e[40:], newLastUsable)
	entryCRC := crc32.ChecksumIEEE(entries)
	header := func(current, backup, entries uint64) []byte {
		b := make([]byte, SectorSize)
		copy(b, hdr[:hsize])
		le.PutUint64(b[24:], current)
		le.PutUint64(b[32:], backup)
		le.PutUint64(b[48:], newLastUsable)
		le.PutUint64(b[72:], entries)
		le.PutUint32(b[88:], entryCRC)
		le.PutUint32(b[16:], 0)
		le.PutUint32(b[16:], crc32.ChecksumIEEE(b[:hsize]))
		return b
	}
	// The protective MBR covers the whole disk (or as much of it as 32 bits address).
	p := mbr[446:462]
	n := min(sectors-1, 0xffffffff)
	le.PutUint32(p[12:], uint32(n))
	copy(p[5:8], chs(n))
	// The new backup first, then the primary: a crash in between leaves one valid copy.
	writes := []struct {
		what string
		b    []byte
		lba  uint64
	}{
		{"backup GPT entries", entries, newLast - entrySectors},
		{"backup GPT header", header(newLast, 1, newLast-entrySectors), newLast},
		{"primary GPT entries", entries, entriesLBA},
		{"primary GPT header", header(1, newLast, entriesLBA), 1},
		{"protective MBR", mbr, 0},
	}
	for _, w := range writes {
		if _, err := rw.WriteAt(w.b, int64(w.lba)*SectorSize); err != nil {
			return g, fmt.Errorf("disk: grow: write %s: %w", w.what, err)
		}
	}
	g.NewSize = int64(newLastUsable-first+1) * SectorSize
	// The old backup header now lies inside the grown partition: blank it, so no tool
	// takes it for this disk's table.
	if oldBackup > lastEnd && oldBackup < newLast-entrySectors {
		old := make([]byte, SectorSize)
		if _, err := rw.ReadAt(old, int64(oldBackup)*SectorSize); err == nil && bytes.Equal(old[:8], []byte("EFI PART")) {
			if _, err := rw.WriteAt(make([]byte, SectorSize), int64(oldBackup)*SectorSize); err != nil {
				return g, fmt.Errorf("disk: grow: blank the old backup GPT header: %w", err)
			}
		}
	}
	return g, nil
}
