package images

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/hearth-home/hearth/images/ext4"
)

// permJournalBlocks is the journal of a persistent partition of at least 64 MiB: 16 MiB,
// what mke2fs gives a file system of 128 MiB to 1 GiB. A board's partition grows to fill
// its card at first boot, and an online resize keeps the journal it was made with, so it
// gets more than mke2fs's 4 MiB for the image's own small partition.
const permJournalBlocks = 4096

// formatPerm formats a persistent data partition or disk, which w must hold zeroed: an
// empty journaled ext4 file system labelled "perm", its UUID from seed.
func formatPerm(w io.WriterAt, size int64, seed uint32) error {
	var uuid [16]byte
	binary.LittleEndian.PutUint32(uuid[0:], seed)
	binary.LittleEndian.PutUint32(uuid[4:], seed*2654435761)
	binary.LittleEndian.PutUint32(uuid[8:], seed^0x68656172)
	binary.LittleEndian.PutUint32(uuid[12:], seed*40503+7)
	uuid[6] = uuid[6]&0x0f | 0x40
	uuid[8] = uuid[8]&0x3f | 0x80
	opts := ext4.Options{UUID: uuid, Label: "perm", ModTime: DefaultEpoch.Add(0 * time.Second)}
	if size >= 64<<20 {
		opts.JournalBlocks = permJournalBlocks
	}
	return ext4.Format(w, size, opts)
}
