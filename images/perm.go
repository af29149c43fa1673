package images

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/hearth-home/hearth/images/ext4"
)

// formatPerm formats a persistent data partition or disk, which w must hold zeroed: an
// empty ext4 file system labelled "perm", its UUID from seed.
func formatPerm(w io.WriterAt, size int64, seed uint32) error {
	var uuid [16]byte
	binary.LittleEndian.PutUint32(uuid[0:], seed)
	binary.LittleEndian.PutUint32(uuid[4:], seed*2654435761)
	binary.LittleEndian.PutUint32(uuid[8:], seed^0x68656172)
	binary.LittleEndian.PutUint32(uuid[12:], seed*40503+7)
	uuid[6] = uuid[6]&0x0f | 0x40
	uuid[8] = uuid[8]&0x3f | 0x80
	return ext4.Format(w, size, ext4.Options{UUID: uuid, Label: "perm", ModTime: DefaultEpoch.Add(0 * time.Second)})
}
