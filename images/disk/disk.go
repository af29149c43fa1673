// Package disk writes MBR and GPT partition tables into disk images.
package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// SectorSize is the logical sector size the tables are written for.
const SectorSize = 512

// Align is where partitions placed automatically start: on a 1 MiB boundary.
const Align = 1 << 20

// MaxPartitions is the most partitions a Table may hold (4 for MBR, 128 for GPT).
const MaxPartitions = 128

// MBR partition type bytes.
const (
	MBRFAT32LBA   byte = 0x0c // FAT32 with LBA addressing, what the Pi firmware boots from
	MBRLinux      byte = 0x83 // Linux file system
	MBREFI        byte = 0xef // EFI system partition
	MBRProtective byte = 0xee // GPT protective entry
)

// Kind says which partition table a Table is.
type Kind int

// The partition table kinds.
const (
	MBR Kind = iota + 1 // DOS/MBR table: at most 4 primary partitions
	GPT                 // GUID partition table with a protective MBR
)

// String returns "mbr" or "gpt".
func (k Kind) String() string {
	switch k {
	case MBR:
		return "mbr"
	case GPT:
		return "gpt"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ErrLayout is returned (wrapped) for partitions that don't fit or overlap.
var ErrLayout = errors.New("disk: bad layout")

// GUID is a GPT GUID in its on-disk byte order (the first three fields little-endian).
type GUID [16]byte

// Well-known GPT partition type GUIDs.
var (
	TypeEFISystem       = MustParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	TypeLinuxFilesystem = MustParseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	TypeBasicData       = MustParseGUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
)

// String formats g the way Linux shows it (uppercase-insensitive; lower case here), e.g.
// "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

// IsZero reports whether g is all zeros.
func (g GUID) IsZero() bool { return g == GUID{} }

// ParseGUID parses the textual form "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX".
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("disk: parse GUID %q: want 8-4-4-4-12 hex digits", s)
	}
	var raw [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return g, fmt.Errorf("disk: parse GUID %q: want 8-4-4-4-12 hex digits", s)
	}
	for i := range 16 {
		hi, ok1 := unhex(h[2*i])
		lo, ok2 := unhex(h[2*i+1])
		if !ok1 || !ok2 {
			return g, fmt.Errorf("disk: parse GUID %q: not hexadecimal", s)
		}
		raw[i] = hi<<4 | lo
	}
	// raw is big-endian text order; the first three fields are stored little-endian.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a malformed string.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Partition is one entry of a Table.
type Partition struct {
	// Start is the byte offset of the partition on the disk, a multiple of SectorSize;
	// 0 places it after the previous partition (or the table) on an Align boundary.
	Start int64
	// Size is the partition's length in bytes, a multiple of SectorSize; 0 on the last
	// partition takes the rest of the disk.
	Size int64
	// MBRType is the type byte in an MBR table (MBRFAT32LBA, MBRLinux, ...).
	MBRType byte
	// Bootable sets the MBR active flag.
	Bootable bool
	// Type is the GPT partition type GUID (TypeEFISystem, TypeLinuxFilesystem, ...).
	Type GUID
	// GUID is the GPT unique partition GUID; zero derives one from the disk GUID and
	// the partition's number, so the same table always gets the same GUIDs.
	GUID GUID
	// Name is the GPT partition name (at most 36 UTF-16 code units).
	Name string
}

// Table is a partition table and the disk it describes.
type Table struct {
	// Kind is MBR or GPT.
	Kind Kind
	// DiskSize is the size of the whole disk image in bytes, a multiple of SectorSize.
	DiskSize int64
	// DiskID is the MBR disk signature; PARTUUIDs of MBR partitions are built from it.
	// Zero derives one from DiskGUID (or the layout) deterministically.
	DiskID uint32
	// DiskGUID is the GPT disk GUID; zero derives one from DiskID and the layout.
	DiskGUID GUID
	// Partitions are the entries, numbered from 1 in this order.
	Partitions []Partition
}

// Layout fills in the zero Start, Size, DiskID, DiskGUID and partition GUIDs of t and
// checks that every partition lies inside the usable area of the disk without overlapping
// another. Write calls it; call it first to learn where to write each file system.
func (t *Table) Layout() error {
	if t.Kind != MBR && t.Kind != GPT {
		return fmt.Errorf("%w: unknown table kind %d", ErrLayout, t.Kind)
	}
	if t.DiskSize <= 0 || t.DiskSize%SectorSize != 0 {
		return fmt.Errorf("%w: disk size %d is not a positive multiple of %d", ErrLayout, t.DiskSize, SectorSize)
	}
	maxParts := 4
	if t.Kind == GPT {
		maxParts = MaxPartitions
	}
	if len(t.Partitions) > maxParts {
		return fmt.Errorf("%w: %d partitions, at most %d", ErrLayout, len(t.Partitions), maxParts)
	}
	first, last := t.usable()
	if t.Kind == MBR && t.DiskSize/SectorSize > 1<<32 {
		// MBR addresses at most 2^32 sectors; the usable area stops there.
		last = 1<<32*SectorSize - 1
	}
	next := first
	for i := range t.Partitions {
		p := &t.Partitions[i]
		if p.Start == 0 {
			p.Start = (next + Align - 1) / Align * Align
		}
		if p.Size == 0 && i == len(t.Partitions)-1 {
			p.Size = (last + 1 - p.Start) / SectorSize * SectorSize
		}
		switch {
		case p.Start%SectorSize != 0 || p.Size%SectorSize != 0:
			return fmt.Errorf("%w: partition %d: start %d and size %d must be multiples of %d", ErrLayout, i+1, p.Start, p.Size, SectorSize)
		case p.Size <= 0:
			return fmt.Errorf("%w: partition %d: size %d", ErrLayout, i+1, p.Size)
		case p.Start < next:
			return fmt.Errorf("%w: partition %d starts at %d, before the end of the previous one or the table (%d)", ErrLayout, i+1, p.Start, next)
		case p.Start+p.Size-1 > last:
			return fmt.Errorf("%w: partition %d ends at %d, past the last usable byte %d", ErrLayout, i+1, p.Start+p.Size-1, last)
		case t.Kind == MBR && p.MBRType == 0:
			return fmt.Errorf("%w: partition %d: MBR type 0 marks an empty entry", ErrLayout, i+1)
		case t.Kind == GPT && p.Type.IsZero():
			return fmt.Errorf("%w: partition %d: zero GPT type marks an empty entry", ErrLayout, i+1)
		case t.Kind == GPT && len(utf16Name(p.Name)) > 36:
			return fmt.Errorf("%w: partition %d: name %q longer than 36 UTF-16 units", ErrLayout, i+1, p.Name)
		}
		next = p.Start + p.Size
	}
	seed := sha256.New()
	fmt.Fprintf(seed, "hearth disk %d %d %d\n", t.Kind, t.DiskSize, len(t.Partitions))
	for _, p := range t.Partitions {
		fmt.Fprintf(seed, "%d %d %d %x %s\n", p.Start, p.Size, p.MBRType, p.Type, p.Name)
	}
	sum := seed.Sum(nil)
	if t.DiskID == 0 {
		if !t.DiskGUID.IsZero() {
			t.DiskID = binary.LittleEndian.Uint32(t.DiskGUID[:4])
		} else {
			t.DiskID = binary.LittleEndian.Uint32(sum[:4])
		}
		if t.DiskID == 0 {
			t.DiskID = 1
		}
	}
	if t.Kind == GPT {
		if t.DiskGUID.IsZero() {
			t.DiskGUID = derivedGUID(sum, 0)
		}
		for i := range t.Partitions {
			if t.Partitions[i].GUID.IsZero() {
				t.Partitions[i].GUID = derivedGUID(t.DiskGUID[:], i+1)
			}
		}
	}
	return nil
}

// usable returns the first and last byte a partition may occupy.
func (t *Table) usable() (first, last int64) {
	if t.Kind == GPT {
		entrySectors := int64(gptEntries * gptEntrySize / SectorSize)
		return (2 + entrySectors) * SectorSize, t.DiskSize - (1+entrySectors)*SectorSize - 1
	}
	return SectorSize, t.DiskSize - 1
}

// derivedGUID makes a version-4-shaped GUID from a seed and a number.
func derivedGUID(seed []byte, n int) GUID {
	h := sha256.New()
	h.Write(seed)
	fmt.Fprintf(h, "partition %d", n)
	var g GUID
	copy(g[:], h.Sum(nil))
	g[7] = g[7]&0x0f | 0x40 // version 4 (the third field is little-endian)
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g
}

// PARTUUID returns the PARTUUID Linux gives partition n (numbered from 1), as used in
// root=PARTUUID=...: "SSSSSSSS-NN" (disk signature, partition number) for MBR and the
// partition GUID for GPT. Call it after Layout or Write.
func (t *Table) PARTUUID(n int) string {
	if n < 1 || n > len(t.Partitions) {
		return ""
	}
	if t.Kind == GPT {
		return t.Partitions[n-1].GUID.String()
	}
	return fmt.Sprintf("%08x-%02x", t.DiskID, n)
}

const (
	gptEntries   = 128
	gptEntrySize = 128
)

// Write lays out t (see Layout) and writes its partition table into w, which holds the
// whole disk from offset 0: the MBR, or for GPT the protective MBR, the primary header and
// entries and the backup entries and header at the end of the disk. The partitions'
// contents are not touched.
func Write(w io.WriterAt, t *Table) error {
	if err := t.Layout(); err != nil {
		return err
	}
	if t.Kind == MBR {
		var parts [4]mbrEntry
		for i, p := range t.Partitions {
			parts[i] = mbrEntry{boot: p.Bootable, typ: p.MBRType, lba: uint64(p.Start / SectorSize), sectors: uint64(p.Size / SectorSize)}
		}
		if _, err := w.WriteAt(mbrSector(t.DiskID, parts), 0); err != nil {
			return fmt.Errorf("disk: write MBR: %w", err)
		}
		return nil
	}
	sectors := uint64(t.DiskSize / SectorSize)
	prot := [4]mbrEntry{{typ: MBRProtective, lba: 1, sectors: sectors - 1}}
	if _, err := w.WriteAt(mbrSector(0, prot), 0); err != nil {
		return fmt.Errorf("disk: write protective MBR: %w", err)
	}
	entries := make([]byte, gptEntries*gptEntrySize)
	for i, p := range t.Partitions {
		e := entries[i*gptEntrySize:]
		copy(e[0:16], p.Type[:])
		copy(e[16:32], p.GUID[:])
		binary.LittleEndian.PutUint64(e[32:], uint64(p.Start/SectorSize))
		binary.LittleEndian.PutUint64(e[40:], uint64((p.Start+p.Size)/SectorSize-1))
		for j, u := range utf16Name(p.Name) {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	entryCRC := crc32.ChecksumIEEE(entries)
	entrySectors := uint64(len(entries) / SectorSize)
	firstUsable, lastUsable := t.usable()
	header := func(current, backup, entriesLBA uint64) []byte {
		h := make([]byte, SectorSize)
		copy(h[0:8], "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], current)
		binary.LittleEndian.PutUint64(h[32:], backup)
		binary.LittleEndian.PutUint64(h[40:], uint64(firstUsable/SectorSize))
		binary.LittleEndian.PutUint64(h[48:], uint64(lastUsable/SectorSize))
		copy(h[56:72], t.DiskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[80:], gptEntries)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], entryCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	lastLBA := sectors - 1
	writes := []struct {
		what string
		b    []byte
		lba  uint64
	}{
		{"primary GPT header", header(1, lastLBA, 2), 1},
		{"primary GPT entries", entries, 2},
		{"backup GPT entries", entries, lastLBA - entrySectors},
		{"backup GPT header", header(lastLBA, 1, lastLBA-entrySectors), lastLBA},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.b, int64(wr.lba)*SectorSize); err != nil {
			return fmt.Errorf("disk: write %s: %w", wr.what, err)
		}
	}
	return nil
}

// utf16Name encodes a GPT partition name.
func utf16Name(s string) []uint16 {
	var out []uint16
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			out = append(out, uint16(0xd800+(r>>10)), uint16(0xdc00+(r&0x3ff)))
			continue
		}
		out = append(out, uint16(r))
	}
	return out
}

type mbrEntry struct {
	boot         bool
	typ          byte
	lba, sectors uint64
}

// mbrSector builds a master boot record with the given disk signature and entries.
func mbrSector(diskID uint32, parts [4]mbrEntry) []byte {
	b := make([]byte, SectorSize)
	binary.LittleEndian.PutUint32(b[440:], diskID)
	for i, p := range parts {
		e := b[446+16*i : 446+16*(i+1)]
		if p.typ == 0 {
			continue
		}
		if p.boot {
			e[0] = 0x80
		}
		lba, n := p.lba, p.sectors
		if lba > 0xffffffff {
			lba = 0xffffffff
		}
		if lba+n > 0xffffffff {
			n = 0xffffffff - lba
		}
		copy(e[1:4], chs(lba))
		e[4] = p.typ
		copy(e[5:8], chs(lba+n-1))
		binary.LittleEndian.PutUint32(e[8:], uint32(lba))
		binary.LittleEndian.PutUint32(e[12:], uint32(n))
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

// chs encodes an LBA as the legacy cylinder/head/sector triple (255 heads, 63 sectors),
// saturating at 1023/254/63 as partitioning tools do.
func chs(lba uint64) []byte {
	const heads, spt = 255, 63
	c := lba / (heads * spt)
	if c > 1023 {
		return []byte{0xfe, 0xff, 0xff}
	}
	h := (lba / spt) % heads
	s := lba%spt + 1
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}
