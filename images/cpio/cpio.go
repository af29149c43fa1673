// Package cpio writes newc ("070701") cpio archives, the format Linux unpacks as an initramfs.
package cpio

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/hearth-home/hearth/images/internal/fstree"
)

// Limits of a Writer.
const (
	MaxEntries  = 1 << 20 // entries in one archive
	MaxPathLen  = 4095    // bytes of a path
	MaxFileSize = 1 << 32 // bytes of one file (newc sizes are 32-bit)
	trailerName = "TRAILER!!!"
)

// ErrExist is returned (wrapped) when a path is added twice.
var ErrExist = errors.New("cpio: entry exists")

// Attr is the metadata of an entry.
type Attr = fstree.Attr

// Options configure a Writer.
type Options struct {
	// ModTime is the time of entries with a zero ModTime and of parent directories
	// created implicitly. Zero is the Unix epoch, which keeps archives reproducible.
	ModTime time.Time
}

// Writer writes an archive entry by entry, in the order they are added. Missing parent
// directories are added first (mode 0755, owned by root), because the kernel needs a
// directory before its entries. Inode numbers count from 1, so the same calls always
// give the same bytes. Compress the output (gzip) yourself if wanted.
type Writer struct {
	w      *bufio.Writer
	opts   Options
	seen   map[string]fs.FileMode // path → type
	ino    uint32
	closed bool
	err    error
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer, opts Options) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), opts: opts, seen: map[string]fs.FileMode{"": fs.ModeDir}}
}

// Mkdir adds a directory (and any missing parents). A directory already in the archive,
// added or created implicitly, is left as it is: its entry has been written.
func (w *Writer) Mkdir(name string, a Attr) error {
	return w.add(name, fs.ModeDir, a, nil, 0, 0, 0)
}

// WriteFile adds a regular file of size bytes read from r.
func (w *Writer) WriteFile(name string, r io.Reader, size int64, a Attr) error {
	if size < 0 || size >= MaxFileSize {
		return fmt.Errorf("cpio: %s: size %d out of range [0, %d)", clip(name), size, int64(MaxFileSize))
	}
	return w.add(name, 0, a, r, size, 0, 0)
}

// Symlink adds a symbolic link name pointing to target.
func (w *Writer) Symlink(target, name string, a Attr) error {
	if target == "" || len(target) > MaxPathLen || strings.ContainsRune(target, 0) {
		return fmt.Errorf("cpio: symlink %s: target must be 1..%d bytes without NUL", clip(name), MaxPathLen)
	}
	return w.add(name, fs.ModeSymlink, a, strings.NewReader(target), int64(len(target)), 0, 0)
}

// Mknod adds a device node: a character device when typ is fs.ModeDevice|fs.ModeCharDevice,
// a block device when it is fs.ModeDevice, a FIFO for fs.ModeNamedPipe, a socket for
// fs.ModeSocket.
func (w *Writer) Mknod(name string, typ fs.FileMode, major, minor uint32, a Attr) error {
	switch typ {
	case fs.ModeDevice | fs.ModeCharDevice, fs.ModeDevice, fs.ModeNamedPipe, fs.ModeSocket:
	default:
		return fmt.Errorf("cpio: mknod %s: type %v is not a device, FIFO or socket", clip(name), typ)
	}
	return w.add(name, typ, a, nil, 0, major, minor)
}

// Add adds the entry a tar header describes (directory, regular file, symlink, device
// node or FIFO); body holds a regular file's h.Size bytes.
func (w *Writer) Add(h *tar.Header, body io.Reader) error {
	err := fstree.AddTar(w, h, body)
	if errors.Is(err, fstree.ErrTarEntry) {
		return fmt.Errorf("cpio: %w", err) // the methods' errors say "cpio:" already
	}
	return err
}

// Close writes the trailer and flushes; it does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if err := w.header(trailerName, 0, 0, 1, 0, 0, 0, 0, 0, 0); err != nil {
		return w.fail(err)
	}
	if err := w.w.Flush(); err != nil {
		return w.fail(fmt.Errorf("cpio: flush: %w", err))
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// clean validates and normalises an archive path ("/a/b/" → "a/b").
func clean(name string) (string, error) {
	n := strings.Trim(name, "/")
	if n == "" || len(n) > MaxPathLen || strings.ContainsRune(n, 0) || path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../") || n == "." || n == trailerName {
		return "", fmt.Errorf("cpio: bad path %q: want a clean relative path of 1..%d bytes", clip(name), MaxPathLen)
	}
	return n, nil
}

func (w *Writer) add(name string, typ fs.FileMode, a Attr, body io.Reader, size int64, major, minor uint32) error {
	if w.closed {
		return errors.New("cpio: writer closed")
	}
	if w.err != nil {
		return w.err
	}
	n, err := clean(name)
	if err != nil {
		return err
	}
	if old, ok := w.seen[n]; ok {
		if old == fs.ModeDir && typ == fs.ModeDir {
			return nil // an implicit or repeated directory
		}
		return fmt.Errorf("%w: %s", ErrExist, n)
	}
	if len(w.seen) >= MaxEntries {
		return fmt.Errorf("cpio: %s: more than %d entries", n, MaxEntries)
	}
	if dir := path.Dir(n); dir != "." {
		if t, ok := w.seen[dir]; ok && t != fs.ModeDir {
			return fmt.Errorf("cpio: %s: parent %s is not a directory", n, dir)
		} else if !ok {
			if err := w.add(dir, fs.ModeDir, Attr{Mode: 0o755}, nil, 0, 0, 0); err != nil {
				return err
			}
		}
	}
	mtime := a.ModTime
	if mtime.IsZero() {
		mtime = w.opts.ModTime
	}
	secs := mtime.Unix()
	if secs < 0 || mtime.IsZero() {
		secs = 0
	}
	if secs > 0xffffffff {
		secs = 0xffffffff
	}
	mode := uint32(a.Mode.Perm() | a.Mode&0o7000)
	if a.Mode&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if a.Mode&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if a.Mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	nlink := uint32(1)
	switch typ {
	case fs.ModeDir:
		mode |= 0o040000
		nlink = 2
	case 0:
		mode |= 0o100000
	case fs.ModeSymlink:
		mode |= 0o120000
	case fs.ModeDevice | fs.ModeCharDevice:
		mode |= 0o020000
	case fs.ModeDevice:
		mode |= 0o060000
	case fs.ModeNamedPipe:
		mode |= 0o010000
	case fs.ModeSocket:
		mode |= 0o140000
	}
	w.ino++
	w.seen[n] = typ
	if err := w.header(n, w.ino, mode, nlink, a.UID, a.GID, uint32(secs), uint32(size), major, minor); err != nil {
		return w.fail(err)
	}
	if size > 0 {
		got, err := io.Copy(w.w, io.LimitReader(body, size))
		if err != nil {
			return w.fail(fmt.Errorf("cpio: %s: %w", n, err))
		}
		if got != size {
			return w.fail(fmt.Errorf("cpio: %s: read %d bytes, want %d", n, got, size))
		}
		if err := w.pad(size); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// header writes one newc header and the NUL-terminated, padded name.
func (w *Writer) header(name string, ino, mode, nlink, uid, gid, mtime, size, rmajor, rminor uint32) error {
	_, err := fmt.Fprintf(w.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	if err == nil {
		_, err = w.w.WriteString(name)
	}
	if err == nil {
		err = w.w.WriteByte(0)
	}
	if err == nil {
		err = w.pad(int64(110 + len(name) + 1))
	}
	if err != nil {
		return fmt.Errorf("cpio: write %s: %w", clip(name), err)
	}
	return nil
}

// pad writes zeros up to the next multiple of 4 after n bytes.
func (w *Writer) pad(n int64) error {
	if k := (4 - n%4) % 4; k > 0 {
		_, err := w.w.Write(make([]byte, k))
		return err
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
