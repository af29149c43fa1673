package jitsu

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Limits of WriteInitramfs.
const (
	MaxInitramfsFiles    = 1 << 16
	MaxInitramfsPath     = 4096
	MaxInitramfsFileSize = 1 << 30
)

// InitramfsFile is one entry of an initramfs.
type InitramfsFile struct {
	// Path is the entry's path inside the archive, relative ("init", "dev/console").
	Path string
	// Mode is the permission bits and the type: a regular file, fs.ModeDir,
	// fs.ModeSymlink (Data is the target) or fs.ModeDevice|fs.ModeCharDevice.
	Mode fs.FileMode
	// Data is a regular file's content or a symlink's target.
	Data []byte
	// Major and Minor are a character device's numbers (e.g. 5, 1 for /dev/console).
	Major, Minor uint32
}

// WriteInitramfs writes files as a gzip-compressed newc cpio archive, the format Linux
// unpacks into its initial root file system. Parent directories must come before their
// entries; the archive ends with the TRAILER!!! entry.
func WriteInitramfs(w io.Writer, files []InitramfsFile) error {
	if len(files) > MaxInitramfsFiles {
		return fmt.Errorf("jitsu: initramfs: %d files, at most %d", len(files), MaxInitramfsFiles)
	}
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriter(zw)
	for i, f := range files {
		if err := writeCpioEntry(bw, uint32(i+1), f); err != nil {
			return err
		}
	}
	if err := writeCpioEntry(bw, 0, InitramfsFile{Path: "TRAILER!!!"}); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("jitsu: initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("jitsu: initramfs: %w", err)
	}
	return nil
}

// writeCpioEntry writes one newc header, name and data, each padded to 4 bytes.
func writeCpioEntry(w *bufio.Writer, ino uint32, f InitramfsFile) error {
	name := strings.TrimPrefix(f.Path, "/")
	switch {
	case name == "" || len(name) > MaxInitramfsPath || strings.ContainsRune(name, 0):
		return fmt.Errorf("jitsu: initramfs: path %q: want 1..%d bytes, no NUL", clip(f.Path), MaxInitramfsPath)
	case len(f.Data) > MaxInitramfsFileSize:
		return fmt.Errorf("jitsu: initramfs: %s: %d bytes, at most %d", clip(name), len(f.Data), MaxInitramfsFileSize)
	}
	mode := uint32(f.Mode.Perm())
	var data []byte
	var rmaj, rmin uint32
	nlink := uint32(1)
	typ := f.Mode.Type()
	if (typ == fs.ModeDir || typ == fs.ModeDevice|fs.ModeCharDevice) && len(f.Data) > 0 {
		return errors.New("jitsu: initramfs: " + clip(name) + ": data for a directory or device")
	}
	switch {
	case name == "TRAILER!!!" && ino == 0:
	case typ == 0:
		mode |= 0o100000
		data = f.Data
	case typ == fs.ModeDir:
		mode |= 0o040000
		nlink = 2
	case typ == fs.ModeSymlink:
		mode |= 0o120000
		data = f.Data
	case typ == fs.ModeDevice|fs.ModeCharDevice:
		mode |= 0o020000
		rmaj, rmin = f.Major, f.Minor
	default:
		return fmt.Errorf("jitsu: initramfs: %s: unsupported file type %v", clip(name), typ)
	}
	fields := [13]uint32{ino, mode, 0, 0, nlink, 0, uint32(len(data)), 0, 0, rmaj, rmin, uint32(len(name) + 1), 0}
	w.WriteString("070701")
	for _, v := range fields {
		fmt.Fprintf(w, "%08x", v)
	}
	w.WriteString(name)
	w.WriteByte(0)
	pad(w, 110+len(name)+1)
	w.Write(data)
	_, err := pad(w, len(data))
	if err != nil {
		return fmt.Errorf("jitsu: initramfs: %w", err)
	}
	return nil
}

// pad writes the zero bytes that align n written bytes to 4.
func pad(w *bufio.Writer, n int) (int, error) {
	k := (4 - n%4) % 4
	return w.Write(make([]byte, k))
}

// WriteGuestInitramfs writes the smallest initramfs an appliance's static binary can run
// from as PID 1: /dev with the console and null devices it needs before anything mounts,
// and the binary as /init.
func WriteGuestInitramfs(w io.Writer, init []byte) error {
	return WriteInitramfs(w, []InitramfsFile{
		{Path: "dev", Mode: fs.ModeDir | 0o755},
		{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
		{Path: "init", Mode: 0o755, Data: init},
	})
}
