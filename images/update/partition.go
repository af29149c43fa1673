package update

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const sector = 512

// maxGPTEntries bounds the GPT partition entries read from an untrusted image.
const maxGPTEntries = 1024

// ErrNoPartition is returned (wrapped) when an image has no such partition.
var ErrNoPartition = errors.New("update: no such partition")

// Partition returns partition n (numbered from 1, as Linux does) of the disk image r of the
// given size, read from its MBR or, when the MBR is protective, its GPT.
func Partition(r io.ReaderAt, size int64, n int) (*io.SectionReader, error) {
	if n < 1 || n > maxGPTEntries {
		return nil, fmt.Errorf("update: partition %d: %w", n, ErrNoPartition)
	}
	mbr := make([]byte, sector)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("update: read partition table: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, errors.New("update: image has no partition table (no MBR signature)")
	}
	entry := func(i int) []byte { return mbr[446+16*i : 446+16*(i+1)] }
	var start, length int64
	if entry(0)[4] == 0xee {
		var err error
		start, length, err = gptPartition(r, size, n)
		if err != nil {
			return nil, err
		}
	} else {
		if n > 4 {
			return nil, fmt.Errorf("update: MBR partition %d: %w", n, ErrNoPartition)
		}
		e := entry(n - 1)
		if e[4] == 0 {
			return nil, fmt.Errorf("update: MBR partition %d: %w", n, ErrNoPartition)
		}
		start = int64(binary.LittleEndian.Uint32(e[8:])) * sector
		length = int64(binary.LittleEndian.Uint32(e[12:])) * sector
	}
	if start <= 0 || length <= 0 || start > size || length > size-start {
		return nil, fmt.Errorf("update: partition %d (%d bytes at %d) lies outside the %d-byte image", n, length, start, size)
	}
	return io.NewSectionReader(r, start, length), nil
}

func gptPartition(r io.ReaderAt, size int64, n int) (start, length int64, err error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, sector); err != nil {
		return 0, 0, fmt.Errorf("update: read GPT header: %w", err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		return 0, 0, errors.New("update: protective MBR but no GPT header")
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	count := int(binary.LittleEndian.Uint32(hdr[80:]))
	esize := int64(binary.LittleEndian.Uint32(hdr[84:]))
	if count > maxGPTEntries || esize < 128 || esize > 4096 || entriesLBA < 2 || entriesLBA > size/sector {
		return 0, 0, errors.New("update: malformed GPT header")
	}
	if n > count {
		return 0, 0, fmt.Errorf("update: GPT partition %d: %w", n, ErrNoPartition)
	}
	e := make([]byte, 128)
	if _, err := r.ReadAt(e, entriesLBA*sector+int64(n-1)*esize); err != nil {
		return 0, 0, fmt.Errorf("update: read GPT entry %d: %w", n, err)
	}
	if bytes.Equal(e[:16], make([]byte, 16)) {
		return 0, 0, fmt.Errorf("update: GPT partition %d: %w", n, ErrNoPartition)
	}
	first := binary.LittleEndian.Uint64(e[32:])
	last := binary.LittleEndian.Uint64(e[40:])
	if last < first || last >= uint64(size/sector) {
		return 0, 0, fmt.Errorf("update: GPT partition %d has a bad extent", n)
	}
	return int64(first) * sector, int64(last-first+1) * sector, nil
}

// RootImage returns the root file system to push from image: the image itself when it is a
// bare SquashFS file, else its partition 2 (root A of the gokrazy layout), which must hold a
// SquashFS. size is returned without the partition's trailing free space: the SquashFS's
// own size, rounded up to 4 KiB.
func RootImage(r io.ReaderAt, size int64) (*io.SectionReader, error) {
	root := io.NewSectionReader(r, 0, size)
	if !isSquashFS(root) {
		p, err := Partition(r, size, 2)
		if err != nil {
			return nil, err
		}
		if !isSquashFS(p) {
			return nil, errors.New("update: partition 2 of the image is not a SquashFS root")
		}
		root = p
	}
	// bytes_used, at offset 40 of the superblock, is the file system's length.
	b := make([]byte, 8)
	if _, err := root.ReadAt(b, 40); err != nil {
		return nil, fmt.Errorf("update: read SquashFS superblock: %w", err)
	}
	used := int64(binary.LittleEndian.Uint64(b))
	if used <= 0 || used > root.Size() {
		return nil, fmt.Errorf("update: SquashFS says it is %d bytes in a %d-byte partition", used, root.Size())
	}
	used = min((used+4095)&^4095, root.Size())
	_, off, _ := root.Outer()
	return io.NewSectionReader(r, off, used), nil
}

func isSquashFS(r io.ReaderAt) bool {
	b := make([]byte, 4)
	_, err := r.ReadAt(b, 0)
	return err == nil && string(b) == "hsqs"
}
