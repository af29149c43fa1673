// Package fstree holds what Hearth's file system image writers (cpio, squashfs) share: an
// entry's attributes and the adding of a tar entry through a writer's methods.
package fstree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// Attr is the metadata of an entry.
type Attr struct {
	// Mode holds the permission bits and setuid/setgid/sticky, either as fs.ModeSetuid,
	// fs.ModeSetgid, fs.ModeSticky or as the Unix bits 0o4000, 0o2000, 0o1000; the type bits
	// are set by the method that adds the entry (for Mknod, fs.ModeCharDevice or not).
	Mode fs.FileMode
	// UID and GID own the entry.
	UID, GID uint32
	// ModTime is the entry's modification time; zero uses the writer's default.
	ModTime time.Time
}

// ErrTarEntry is returned (wrapped) by AddTar for a header it cannot add: nil, or of a
// type no image holds. Errors of the writer's methods come back as they are.
var ErrTarEntry = errors.New("tar entry not supported")

// Writer is an image writer's way of adding entries.
type Writer interface {
	Mkdir(name string, a Attr) error
	WriteFile(name string, r io.Reader, size int64, a Attr) error
	Symlink(target, name string, a Attr) error
	Mknod(name string, typ fs.FileMode, major, minor uint32, a Attr) error
}

// AddTar adds to w the entry a tar header describes (directory, regular file, symlink,
// device node or FIFO); body holds a regular file's h.Size bytes (nil: empty).
func AddTar(w Writer, h *tar.Header, body io.Reader) error {
	if h == nil {
		return fmt.Errorf("nil header: %w", ErrTarEntry)
	}
	a := Attr{Mode: tarPerm(h.Mode), UID: uint32(h.Uid), GID: uint32(h.Gid), ModTime: h.ModTime}
	switch h.Typeflag {
	case tar.TypeDir:
		return w.Mkdir(h.Name, a)
	case tar.TypeReg:
		if body == nil {
			body = strings.NewReader("")
		}
		return w.WriteFile(h.Name, body, h.Size, a)
	case tar.TypeSymlink:
		return w.Symlink(h.Linkname, h.Name, a)
	case tar.TypeChar:
		return w.Mknod(h.Name, fs.ModeDevice|fs.ModeCharDevice, uint32(h.Devmajor), uint32(h.Devminor), a)
	case tar.TypeBlock:
		return w.Mknod(h.Name, fs.ModeDevice, uint32(h.Devmajor), uint32(h.Devminor), a)
	case tar.TypeFifo:
		return w.Mknod(h.Name, fs.ModeNamedPipe, 0, 0, a)
	}
	name := h.Name
	if len(name) > 64 {
		name = name[:64] + "…"
	}
	return fmt.Errorf("%q: tar type %q: %w", name, h.Typeflag, ErrTarEntry)
}

// tarPerm turns a tar header's mode into permission bits with setuid, setgid and sticky.
func tarPerm(m int64) fs.FileMode {
	p := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		p |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		p |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		p |= fs.ModeSticky
	}
	return p
}
