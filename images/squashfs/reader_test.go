package squashfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"
)

// memImage is an in-memory io.WriterAt.
type memImage struct{ b []byte }

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if need := off + int64(len(p)); need > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, need-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

// entryInfo is what the test reader finds for one path.
type entryInfo struct {
	typ  fs.FileMode
	mode uint16
	uid  uint32
	data []byte // contents or symlink target
	rdev uint32
}

// reader is a small SquashFS reader, independent of the writer, for round-trip tests.
type reader struct {
	img                  []byte
	inodeStart, dirStart int64
	blockSize            uint32
	ids                  []uint32
	out                  map[string]entryInfo
	budget               int
}

var le = binary.LittleEndian

func readImage(img []byte) (map[string]entryInfo, error) {
	if len(img) < superSize || le.Uint32(img) != 0x73717368 {
		return nil, errors.New("no superblock")
	}
	r := &reader{img: img, inodeStart: int64(le.Uint64(img[64:])), dirStart: int64(le.Uint64(img[72:])),
		blockSize: le.Uint32(img[12:]), out: map[string]entryInfo{}, budget: 1 << 20}
	if used := le.Uint64(img[40:]); used > uint64(len(img)) {
		return nil, fmt.Errorf("bytes_used %d > image %d", used, len(img))
	}
	idIndex := int64(le.Uint64(img[48:]))
	nIDs := int(le.Uint16(img[26:]))
	if idIndex+8 > int64(len(img)) || idIndex < 0 {
		return nil, errors.New("id table out of range")
	}
	idb, err := r.meta(int64(le.Uint64(img[idIndex:])), 0, 0, 4*nIDs)
	if err != nil {
		return nil, fmt.Errorf("ids: %w", err)
	}
	for i := range nIDs {
		r.ids = append(r.ids, le.Uint32(idb[4*i:]))
	}
	if err := r.walk("", le.Uint64(img[32:])); err != nil {
		return nil, err
	}
	return r.out, nil
}

// meta returns n bytes of a metadata table from start, block at blk, offset off.
func (r *reader) meta(start int64, blk uint64, off, n int) ([]byte, error) {
	pos := start + int64(blk)
	var buf []byte
	for len(buf) < off+n {
		if pos < 0 || pos+2 > int64(len(r.img)) {
			return nil, errors.New("metadata out of range")
		}
		h := le.Uint16(r.img[pos:])
		size := int64(h & 0x7fff)
		if pos+2+size > int64(len(r.img)) {
			return nil, errors.New("metadata block out of range")
		}
		b := r.img[pos+2 : pos+2+size]
		if h&0x8000 == 0 {
			zr, err := zlib.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			if b, err = io.ReadAll(io.LimitReader(zr, metadataSize+1)); err != nil {
				return nil, err
			}
		}
		if len(b) == 0 || len(b) > metadataSize {
			return nil, fmt.Errorf("metadata block of %d bytes", len(b))
		}
		buf = append(buf, b...)
		pos += 2 + size
	}
	return buf[off : off+n], nil
}

func (r *reader) walk(p string, ref uint64) error {
	if r.budget--; r.budget < 0 {
		return errors.New("too many entries")
	}
	// Inodes are at most 32 bytes plus block lists or targets; read generously.
	head, err := r.meta(r.inodeStart, ref>>16, int(ref&0xffff), 16)
	if err != nil {
		return fmt.Errorf("%s: inode: %w", p, err)
	}
	typ, mode, uidIdx := le.Uint16(head), le.Uint16(head[2:]), le.Uint16(head[4:])
	if int(uidIdx) >= len(r.ids) {
		return fmt.Errorf("%s: uid index %d", p, uidIdx)
	}
	body := func(n int) ([]byte, error) {
		b, err := r.meta(r.inodeStart, ref>>16, int(ref&0xffff), 16+n)
		if err != nil {
			return nil, err
		}
		return b[16:], nil
	}
	info := entryInfo{mode: mode, uid: r.ids[uidIdx]}
	switch typ {
	case tDir, tExtDir:
		var blk uint32
		var size, off int
		if typ == tDir {
			b, err := body(16)
			if err != nil {
				return err
			}
			blk, size, off = le.Uint32(b), int(le.Uint16(b[8:])), int(le.Uint16(b[10:]))
		} else {
			b, err := body(24)
			if err != nil {
				return err
			}
			blk, size, off = le.Uint32(b[8:]), int(le.Uint32(b[4:])), int(le.Uint16(b[18:]))
		}
		info.typ = fs.ModeDir
		if p != "" {
			r.out[p] = info
		}
		if size < 3 {
			return fmt.Errorf("%s: directory size %d", p, size)
		}
		list, err := r.meta(r.dirStart, uint64(blk), off, size-3)
		if err != nil {
			return fmt.Errorf("%s: listing: %w", p, err)
		}
		prev := ""
		for len(list) > 0 {
			if len(list) < 12 {
				return errors.New("short directory header")
			}
			count, start := int(le.Uint32(list))+1, le.Uint32(list[4:])
			list = list[12:]
			for range count {
				if len(list) < 8 {
					return errors.New("short directory entry")
				}
				off, nlen := le.Uint16(list), int(le.Uint16(list[6:]))+1
				if len(list) < 8+nlen {
					return errors.New("short name")
				}
				name := string(list[8 : 8+nlen])
				list = list[8+nlen:]
				if name <= prev {
					return fmt.Errorf("%s: entries not sorted: %q after %q", p, name, prev)
				}
				prev = name
				if err := r.walk(path.Join(p, name), uint64(start)<<16|uint64(off)); err != nil {
					return err
				}
			}
		}
	case tFile, tExtFile:
		var start, size uint64
		hdr := 16
		if typ == tFile {
			b, err := body(16)
			if err != nil {
				return err
			}
			start, size = uint64(le.Uint32(b)), uint64(le.Uint32(b[12:]))
		} else {
			b, err := body(40)
			if err != nil {
				return err
			}
			start, size, hdr = le.Uint64(b), le.Uint64(b[8:]), 40
		}
		nblocks := int((size + uint64(r.blockSize) - 1) / uint64(r.blockSize))
		if nblocks > 1<<16 {
			return fmt.Errorf("%s: %d blocks", p, nblocks)
		}
		b, err := body(hdr + 4*nblocks)
		if err != nil {
			return err
		}
		pos := start
		for i := range nblocks {
			bs := le.Uint32(b[hdr+4*i:])
			want := min(uint64(r.blockSize), size-uint64(len(info.data)))
			if bs == 0 {
				info.data = append(info.data, make([]byte, want)...)
				continue
			}
			n := uint64(bs &^ uncompressedB)
			if pos+n > uint64(len(r.img)) {
				return fmt.Errorf("%s: block out of range", p)
			}
			raw := r.img[pos : pos+n]
			pos += n
			if bs&uncompressedB == 0 {
				zr, err := zlib.NewReader(bytes.NewReader(raw))
				if err != nil {
					return err
				}
				if raw, err = io.ReadAll(io.LimitReader(zr, int64(r.blockSize)+1)); err != nil {
					return err
				}
			}
			if uint64(len(raw)) != want {
				return fmt.Errorf("%s: block %d has %d bytes, want %d", p, i, len(raw), want)
			}
			info.data = append(info.data, raw...)
		}
		r.out[p] = info
	case tSymlink:
		b, err := body(8)
		if err != nil {
			return err
		}
		n := int(le.Uint32(b[4:]))
		if n > MaxPathLen {
			return fmt.Errorf("%s: target of %d bytes", p, n)
		}
		if b, err = body(8 + n); err != nil {
			return err
		}
		info.typ, info.data = fs.ModeSymlink, b[8:]
		r.out[p] = info
	case tBlock, tChar:
		b, err := body(8)
		if err != nil {
			return err
		}
		info.typ, info.rdev = fs.ModeDevice, le.Uint32(b[4:])
		if typ == tChar {
			info.typ |= fs.ModeCharDevice
		}
		r.out[p] = info
	case tFifo:
		info.typ = fs.ModeNamedPipe
		r.out[p] = info
	case tSocket:
		info.typ = fs.ModeSocket
		r.out[p] = info
	default:
		return fmt.Errorf("%s: inode type %d", p, typ)
	}
	return nil
}

func TestReader(t *testing.T) {
	items := testTree(4096)
	m := &memImage{}
	w, err := NewWriter(m, Options{BlockSize: 4096, ModTime: epoch})
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, w, items)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readImage(m.b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != countEntries(items) {
		t.Errorf("read %d entries, want %d", len(got), countEntries(items))
	}
	for _, it := range items {
		e, ok := got[it.path]
		if !ok || e.typ != it.typ || (it.typ == 0 || it.typ == fs.ModeSymlink) && !bytes.Equal(e.data, it.data) || e.uid != it.uid {
			t.Errorf("%s: read %+v (found %v)", it.path, e.typ, ok)
		}
	}
}

// FuzzWriter writes arbitrary paths and contents and reads them back.
func FuzzWriter(f *testing.F) {
	f.Add("etc/hostname", []byte("mail\n"), "bin/sh", "x/y", uint16(0o4755))
	f.Add("a", bytes.Repeat([]byte{0}, 9000), "a/b", "../../etc", uint16(0))
	f.Fuzz(func(t *testing.T, p1 string, data []byte, p2, target string, mode uint16) {
		m := &memImage{}
		w, err := NewWriter(m, Options{BlockSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		err1 := w.WriteFile(p1, bytes.NewReader(data), int64(len(data)), Attr{Mode: fs.FileMode(mode & 0o7777), UID: uint32(mode)})
		err2 := w.Symlink(target, p2, Attr{Mode: 0o777})
		err3 := w.Mknod(p2+"-dev", fs.ModeDevice|fs.ModeCharDevice, uint32(mode)&0xfff, uint32(len(data)), Attr{})
		if err := w.Close(); err != nil {
			if err1 == nil && err2 == nil && err3 == nil {
				t.Fatalf("Close: %v", err)
			}
			return
		}
		got, err := readImage(m.b)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if err1 == nil {
			if e := got[strings.Trim(p1, "/")]; e.typ != 0 || !bytes.Equal(e.data, data) {
				t.Fatalf("%q: read back %d bytes of type %v", p1, len(e.data), e.typ)
			}
		}
		if err2 == nil {
			if e := got[strings.Trim(p2, "/")]; e.typ != fs.ModeSymlink || string(e.data) != target {
				t.Fatalf("%q: read back %q of type %v", p2, e.data, e.typ)
			}
		}
	})
}
