// Package permfmt formats an empty persistent data partition or disk at first boot.
package permfmt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hearth-home/hearth/images/ext4"
)

// emptyProbe is how much of the device's start must be zeros for it to count as empty.
const emptyProbe = 1 << 20

// ErrNotEmpty is returned (wrapped) when the device holds data: it is never formatted.
var ErrNotEmpty = errors.New("permfmt: device is not empty")

// FormatIfEmpty formats dev with an empty ext4 file system when its
// first MiB is all zeros, and syncs it.
func FormatIfEmpty(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("permfmt: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("permfmt: size of %s: %w", dev, err)
	}
	head := make([]byte, min(size, emptyProbe))
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("permfmt: read %s: %w", dev, err)
	}
	if !Empty(head) {
		return fmt.Errorf("%w: %s", ErrNotEmpty, dev)
	}
	var uuid [16]byte
	rand.Read(uuid[:])
	uuid[6] = uuid[6]&0x0f | 0x40
	uuid[8] = uuid[8]&0x3f | 0x80
	if err := ext4.Format(f, size, ext4.Options{UUID: uuid, Label: "perm", Zero: true}); err != nil {
		return fmt.Errorf("permfmt: format %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("permfmt: sync %s: %w", dev, err)
	}
	return f.Close()
}

// Empty says whether b is all zeros.
func Empty(b []byte) bool {
	var zero [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zero))
		if !bytes.Equal(b[:n], zero[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
