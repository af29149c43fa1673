package cpio

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

var epoch = time.Date(2026, 11, 1, 12, 30, 44, 0, time.UTC)

// rec is one parsed archive entry.
type rec struct {
	name                string
	ino, mode, uid, gid uint32
	nlink, mtime        uint32
	rmajor, rminor      uint32
	data                []byte
}

// parse reads a newc archive; it is the test's independent reader.
func parse(b []byte) ([]rec, error) {
	var out []rec
	for {
		if len(b) < 110 {
			return nil, errors.New("short header")
		}
		if string(b[:6]) != "070701" {
			return nil, fmt.Errorf("magic %q", b[:6])
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(b[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, err
			}
			f[i] = uint32(v)
		}
		nameLen, size := int(f[11]), int(f[6])
		namePad := (110 + nameLen + 3) &^ 3
		dataEnd := namePad + size
		if nameLen == 0 || len(b) < dataEnd || b[110+nameLen-1] != 0 {
			return nil, errors.New("truncated entry")
		}
		r := rec{name: string(b[110 : 110+nameLen-1]), ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5], rmajor: f[9], rminor: f[10], data: b[namePad:dataEnd]}
		for _, pad := range b[110+nameLen : namePad] {
			if pad != 0 {
				return nil, errors.New("nonzero padding")
			}
		}
		b = b[min(len(b), (dataEnd+3)&^3):]
		if r.name == trailerName {
			if len(b) != 0 {
				return nil, fmt.Errorf("%d bytes after the trailer", len(b))
			}
			return out, nil
		}
		out = append(out, r)
	}
}

func buildArchive(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, Options{ModTime: epoch})
	steps := []error{
		w.WriteFile("init", strings.NewReader("#!init\x00binary"), 13, Attr{Mode: 0o755}),
		w.Mknod("dev/console", fs.ModeDevice|fs.ModeCharDevice, 5, 1, Attr{Mode: 0o600}),
		w.Mknod("dev/null", fs.ModeDevice|fs.ModeCharDevice, 1, 3, Attr{Mode: 0o666}),
		w.Mknod("dev/sda", fs.ModeDevice, 8, 0, Attr{Mode: 0o660, GID: 6}),
		w.Mkdir("etc", Attr{Mode: 0o755}),
		w.WriteFile("etc/hostname", strings.NewReader("mail\n"), 5, Attr{Mode: 0o644, ModTime: epoch.Add(time.Hour)}),
		w.Symlink("/init", "sbin/init", Attr{Mode: 0o777}),
		w.Mkdir("tmp", Attr{Mode: 0o777 | fs.ModeSticky}),
		w.WriteFile("empty", strings.NewReader(""), 0, Attr{Mode: 0o600, UID: 1000, GID: 1000}),
		w.Add(&tar.Header{Typeflag: tar.TypeReg, Name: "/usr/bin/tool", Mode: 0o4755, Size: 3}, strings.NewReader("abc")),
		w.Add(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}, nil),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	recs, err := parse(buildArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name         string
		mode         uint32
		data         string
		major, minor uint32
		mtime        time.Time
		uid          uint32
	}{
		{"init", 0o100755, "#!init\x00binary", 0, 0, epoch, 0},
		{"dev", 0o040755, "", 0, 0, time.Unix(0, 0), 0},
		{"dev/console", 0o020600, "", 5, 1, epoch, 0},
		{"dev/null", 0o020666, "", 1, 3, epoch, 0},
		{"dev/sda", 0o060660, "", 8, 0, epoch, 0},
		{"etc", 0o040755, "", 0, 0, epoch, 0},
		{"etc/hostname", 0o100644, "mail\n", 0, 0, epoch.Add(time.Hour), 0},
		{"sbin", 0o040755, "", 0, 0, time.Unix(0, 0), 0},
		{"sbin/init", 0o120777, "/init", 0, 0, epoch, 0},
		{"tmp", 0o041777, "", 0, 0, epoch, 0},
		{"empty", 0o100600, "", 0, 0, epoch, 1000},
		{"usr", 0o040755, "", 0, 0, time.Unix(0, 0), 0},
		{"usr/bin", 0o040755, "", 0, 0, time.Unix(0, 0), 0},
		{"usr/bin/tool", 0o104755, "abc", 0, 0, time.Unix(0, 0), 0},
		{"run", 0o040755, "", 0, 0, time.Unix(0, 0), 0},
		{"run/fifo", 0o010600, "", 0, 0, time.Unix(0, 0), 0},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if w.mtime.Equal(time.Unix(0, 0)) && (r.name == "dev" || r.name == "sbin" || r.name == "usr" || r.name == "usr/bin" || r.name == "run") {
			w.mtime = epoch // implicit directories take Options.ModTime
		}
		if w.name == "usr/bin/tool" || w.name == "run/fifo" {
			w.mtime = epoch // zero tar ModTime → Options.ModTime
		}
		if r.name != w.name || r.mode != w.mode || string(r.data) != w.data || r.rmajor != w.major || r.rminor != w.minor || int64(r.mtime) != w.mtime.Unix() || r.uid != w.uid || r.ino != uint32(i+1) {
			t.Errorf("entry %d: %+v, want %+v", i, r, w)
		}
	}
}

func TestCpioExtract(t *testing.T) {
	cpio := testtool.Path(t, "cpio", "cpio")
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(buildArchive(t))
	out, err := cmd.CombinedOutput()
	root := os.Geteuid() == 0
	if err != nil && root {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		data string
		dev  [2]uint32
	}{
		{"init", 0o755, "#!init\x00binary", [2]uint32{}},
		{"etc/hostname", 0o644, "mail\n", [2]uint32{}},
		{"sbin/init", fs.ModeSymlink | 0o777, "/init", [2]uint32{}},
		{"tmp", fs.ModeDir | fs.ModeSticky | 0o777, "", [2]uint32{}},
		{"dev/console", fs.ModeDevice | fs.ModeCharDevice | 0o600, "", [2]uint32{5, 1}},
		{"dev/sda", fs.ModeDevice | 0o660, "", [2]uint32{8, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode&fs.ModeDevice != 0 && !root {
				t.Skip("device nodes need root")
			}
			p := filepath.Join(dir, tc.name)
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != tc.mode {
				t.Errorf("mode %v, want %v", st.Mode(), tc.mode)
			}
			switch {
			case tc.mode.Type() == 0:
				b, err := os.ReadFile(p)
				if err != nil || string(b) != tc.data {
					t.Errorf("content %q (%v), want %q", b, err, tc.data)
				}
				want := epoch
				if tc.name == "etc/hostname" {
					want = epoch.Add(time.Hour)
				}
				if !st.ModTime().Equal(want) {
					t.Errorf("mtime %v, want %v", st.ModTime(), want)
				}
			case tc.mode&fs.ModeSymlink != 0:
				if l, err := os.Readlink(p); err != nil || l != tc.data {
					t.Errorf("link %q (%v), want %q", l, err, tc.data)
				}
			case tc.mode&fs.ModeDevice != 0:
				rdev := uint64(st.Sys().(*syscall.Stat_t).Rdev)
				if maj, mnr := uint32(rdev>>8&0xfff), uint32(rdev&0xff|rdev>>12&^0xff); maj != tc.dev[0] || mnr != tc.dev[1] {
					t.Errorf("device %d:%d, want %v", maj, mnr, tc.dev)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	w := NewWriter(io.Discard, Options{})
	if err := w.WriteFile("f", strings.NewReader("x"), 1, Attr{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"duplicate", w.Mkdir("f", Attr{}), ErrExist},
		{"under a file", w.WriteFile("f/g", strings.NewReader(""), 0, Attr{}), nil},
		{"dot-dot", w.Mkdir("a/../../b", Attr{}), nil},
		{"trailer name", w.Mkdir("TRAILER!!!", Attr{}), nil},
		{"empty", w.Mkdir("/", Attr{}), nil},
		{"long", w.Mkdir(strings.Repeat("a", MaxPathLen+1), Attr{}), nil},
		{"negative size", w.WriteFile("n", strings.NewReader(""), -1, Attr{}), nil},
		{"empty symlink", w.Symlink("", "l", Attr{}), nil},
		{"not a device", w.Mknod("d", fs.ModeDir, 1, 1, Attr{}), nil},
		{"tar hard link", w.Add(&tar.Header{Typeflag: tar.TypeLink, Name: "h"}, nil), nil},
		{"nil header", w.Add(nil, nil), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || tc.want != nil && !errors.Is(tc.err, tc.want) {
				t.Fatalf("got %v, want an error (%v)", tc.err, tc.want)
			}
		})
	}
	if err := w.WriteFile("short", strings.NewReader("ab"), 5, Attr{}); err == nil {
		t.Fatal("WriteFile with a short reader succeeded")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write succeeded")
	}
}

func TestReproducible(t *testing.T) {
	if a, b := buildArchive(t), buildArchive(t); !bytes.Equal(a, b) {
		t.Fatal("two archives from the same input differ")
	}
}

// FuzzWriter adds arbitrary names and contents and checks the archive parses back.
func FuzzWriter(f *testing.F) {
	f.Add("init", []byte("data"), "dir/sub/file", uint16(0o644))
	f.Add("a", []byte{}, "a/b", uint16(0o7777))
	f.Fuzz(func(t *testing.T, name1 string, data []byte, name2 string, mode uint16) {
		var buf bytes.Buffer
		w := NewWriter(&buf, Options{})
		err1 := w.WriteFile(name1, bytes.NewReader(data), int64(len(data)), Attr{Mode: fs.FileMode(mode & 0o777)})
		err2 := w.Symlink(name1, name2, Attr{Mode: 0o777})
		if err := w.Close(); err != nil && err1 == nil && err2 == nil {
			t.Fatalf("Close: %v", err)
		}
		if err1 != nil || err2 != nil {
			return
		}
		recs, err := parse(buf.Bytes())
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		var gotData []byte
		for _, r := range recs {
			if r.name == strings.Trim(name1, "/") {
				gotData = r.data
			}
		}
		if !bytes.Equal(gotData, data) {
			t.Fatalf("data of %q: %q, want %q", name1, gotData, data)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	data := bytes.Repeat([]byte("initramfs"), 16<<20/9)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		w := NewWriter(io.Discard, Options{})
		if err := w.WriteFile("init", bytes.NewReader(data), int64(len(data)), Attr{Mode: 0o755}); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
