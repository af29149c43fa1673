package squashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

var epoch = time.Date(2026, 11, 1, 12, 30, 44, 0, time.UTC)

// item is one entry of a test tree.
type item struct {
	path  string
	typ   fs.FileMode
	perm  fs.FileMode
	data  []byte // file contents or symlink target
	uid   uint32
	major uint32
	minor uint32
	mtime time.Time
}

func random(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func testTree(blockSize int) []item {
	rng := rand.New(rand.NewPCG(3, 4))
	sparse := make([]byte, 3*blockSize+100)
	copy(sparse[2*blockSize:], "not zero")
	items := []item{
		{path: "etc", typ: fs.ModeDir, perm: 0o755},
		{path: "etc/hostname", perm: 0o644, data: []byte("mail\n")},
		{path: "etc/ssl/certs/ca-certificates.crt", perm: 0o444, data: bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), 3000)},
		{path: "user/mail", perm: 0o755, data: random(rng, 5*blockSize+123)},
		{path: "gokrazy/init", perm: 0o4755, data: random(rng, 1000), uid: 0},
		{path: "home/alice/notes", perm: 0o600, data: []byte("hi"), uid: 1000, mtime: epoch.Add(time.Hour)},
		{path: "empty", perm: 0o644},
		{path: "sparse", perm: 0o644, data: sparse},
		{path: "exact-block", perm: 0o644, data: random(rng, blockSize)},
		{path: "tmp", typ: fs.ModeDir, perm: 0o1777},
		{path: "bin/sh", typ: fs.ModeSymlink, perm: 0o777, data: []byte("/gokrazy/init")},
		{path: "etc/localtime", typ: fs.ModeSymlink, perm: 0o777, data: []byte("../usr/share/zoneinfo/UTC")},
		{path: "dev/console", typ: fs.ModeDevice | fs.ModeCharDevice, perm: 0o600, major: 5, minor: 1},
		{path: "dev/null", typ: fs.ModeDevice | fs.ModeCharDevice, perm: 0o666, major: 1, minor: 3},
		{path: "dev/mmcblk0p2", typ: fs.ModeDevice, perm: 0o660, major: 179, minor: 2},
		{path: "dev/big-minor", typ: fs.ModeDevice | fs.ModeCharDevice, perm: 0o600, major: 240, minor: 70000},
		{path: "dev/initctl", typ: fs.ModeNamedPipe, perm: 0o600},
		{path: "usr/share/zoneinfo/UTC", perm: 0o644, data: []byte("TZif2")},
	}
	// A directory with more than 256 entries and several metadata blocks of inodes.
	for i := range 600 {
		items = append(items, item{path: fmt.Sprintf("many/file-%04d-%s", i, strings.Repeat("x", i%50)), perm: 0o644, data: random(rng, i%300)})
	}
	return items
}

func writeTree(t testing.TB, w *Writer, items []item) {
	t.Helper()
	for _, it := range items {
		a := Attr{Mode: it.perm, UID: it.uid, GID: it.uid, ModTime: it.mtime}
		var err error
		switch it.typ {
		case fs.ModeDir:
			err = w.Mkdir(it.path, a)
		case 0:
			err = w.WriteFile(it.path, bytes.NewReader(it.data), int64(len(it.data)), a)
		case fs.ModeSymlink:
			err = w.Symlink(string(it.data), it.path, a)
		default:
			err = w.Mknod(it.path, it.typ, it.major, it.minor, a)
		}
		if err != nil {
			t.Fatalf("add %s: %v", it.path, err)
		}
	}
}

func build(t testing.TB, path string, opts Options, items []item) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, w, items)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != w.Size() || w.Size()%4096 != 0 {
		t.Fatalf("file size %v (%v), Size() %d", st.Size(), err, w.Size())
	}
	return w.Size()
}

func TestUnsquashfs(t *testing.T) {
	unsquashfs := testtool.Path(t, "unsquashfs", "squashfs-tools")
	root := os.Geteuid() == 0
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{ModTime: epoch}},
		{"4KiB blocks", Options{BlockSize: 4096, ModTime: epoch}},
		{"1MiB blocks level 9", Options{BlockSize: 1 << 20, Level: 9, ModTime: epoch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := tc.opts.BlockSize
			if bs == 0 {
				bs = DefaultBlock
			}
			items := testTree(bs)
			dir := t.TempDir()
			img := filepath.Join(dir, "root.sqfs")
			build(t, img, tc.opts, items)

			out, err := exec.Command(unsquashfs, "-s", img).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("gzip")) || !bytes.Contains(out, []byte(fmt.Sprintf("Block size %d", bs))) {
				t.Fatalf("unsquashfs -s: %v\n%s", err, out)
			}
			out, err = exec.Command(unsquashfs, "-lln", "-UTC", img).CombinedOutput()
			if err != nil {
				t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
			}
			listing := strings.Join(strings.Fields(strings.ReplaceAll(string(out), "\n", " NL ")), " ")
			listing = strings.ReplaceAll(listing, " NL ", "\n")
			for _, want := range []string{
				"crw------- 0/0 5, 1 2026-11-01 12:30 squashfs-root/dev/console",
				"brw-rw---- 0/0 179, 2 2026-11-01 12:30 squashfs-root/dev/mmcblk0p2",
				"lrwxrwxrwx 0/0                   13 2026-11-01 12:30 squashfs-root/bin/sh -> /gokrazy/init",
				"-rwsr-xr-x 0/0                 1000 2026-11-01 12:30 squashfs-root/gokrazy/init",
				"-rw------- 1000/1000              2 2026-11-01 13:30 squashfs-root/home/alice/notes",
				"drwxrwxrwt 0/0                    3 2026-11-01 12:30 squashfs-root/tmp",
				"prw------- 0/0                    0 2026-11-01 12:30 squashfs-root/dev/initctl",
			} {
				want = strings.Join(strings.Fields(want), " ")
				if !strings.Contains(listing, want+"\n") {
					t.Errorf("unsquashfs -lln lacks %q:\n%.3000s", want, listing)
				}
			}
			if lines := strings.Split(strings.TrimSpace(listing), "\n"); len(lines) != countEntries(items)+1 {
				t.Errorf("unsquashfs lists %d entries, want %d (the root and every entry)", len(lines), countEntries(items)+1)
			}

			outDir := filepath.Join(dir, "out")
			args := []string{"-d", outDir, "-no-xattrs"}
			cmd := exec.Command(unsquashfs, append(args, img)...)
			out, err = cmd.CombinedOutput()
			if err != nil && root {
				t.Fatalf("unsquashfs -d: %v\n%s", err, out)
			}
			for _, it := range items {
				p := filepath.Join(outDir, it.path)
				st, err := os.Lstat(p)
				if it.typ&(fs.ModeDevice|fs.ModeNamedPipe) != 0 && !root {
					continue
				}
				if err != nil {
					t.Fatalf("extracted %s: %v", it.path, err)
				}
				if st.Mode().Type() != it.typ {
					t.Errorf("%s: type %v, want %v", it.path, st.Mode().Type(), it.typ)
				}
				wantPerm := it.perm.Perm()
				if it.perm&0o4000 != 0 {
					wantPerm |= fs.ModeSetuid
				}
				if it.perm&0o1000 != 0 {
					wantPerm |= fs.ModeSticky
				}
				if it.typ != fs.ModeSymlink && st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSticky) != wantPerm&(fs.ModePerm|fs.ModeSetuid|fs.ModeSticky) && (root || wantPerm&fs.ModeSetuid == 0) {
					t.Errorf("%s: mode %v, want %v", it.path, st.Mode(), wantPerm)
				}
				switch it.typ {
				case 0:
					b, err := os.ReadFile(p)
					if err != nil || !bytes.Equal(b, it.data) {
						t.Errorf("%s: read back %d bytes (%v), differ from the %d written", it.path, len(b), err, len(it.data))
					}
				case fs.ModeSymlink:
					if target, err := os.Readlink(p); err != nil || target != string(it.data) {
						t.Errorf("%s: symlink to %q (%v), want %q", it.path, target, err, it.data)
					}
				case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
					rdev := uint64(st.Sys().(*syscall.Stat_t).Rdev)
					major := uint32((rdev>>8)&0xfff | (rdev>>32)&^0xfff)
					minor := uint32(rdev&0xff | (rdev>>12)&^0xff)
					if major != it.major || minor != it.minor {
						t.Errorf("%s: device %d:%d, want %d:%d", it.path, major, minor, it.major, it.minor)
					}
				}
				if it.typ != fs.ModeSymlink && it.typ != fs.ModeDir {
					want := it.mtime
					if want.IsZero() {
						want = epoch
					}
					if !st.ModTime().Equal(want) {
						t.Errorf("%s: mtime %v, want %v", it.path, st.ModTime(), want)
					}
				}
			}
		})
	}
}

// countEntries counts the entries of a tree, implicit parent directories included.
func countEntries(items []item) int {
	seen := map[string]bool{}
	for _, it := range items {
		p := it.path
		for p != "." && !seen[p] {
			seen[p] = true
			p = filepath.Dir(p)
		}
	}
	return len(seen)
}

func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	items := testTree(DefaultBlock)
	build(t, filepath.Join(dir, "a"), Options{ModTime: epoch}, items)
	build(t, filepath.Join(dir, "b"), Options{ModTime: epoch}, items)
	a, _ := os.ReadFile(filepath.Join(dir, "a"))
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("two builds from the same input differ")
	}
}

func TestErrors(t *testing.T) {
	if _, err := NewWriter(nil, Options{BlockSize: 3000}); err == nil {
		t.Error("NewWriter with block size 3000 succeeded")
	}
	if _, err := NewWriter(nil, Options{Level: 11}); err == nil {
		t.Error("NewWriter with level 11 succeeded")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("a/file", strings.NewReader("x"), 1, Attr{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"duplicate", w.Symlink("x", "a/file", Attr{}), ErrExist},
		{"under a file", w.Mkdir("a/file/b", Attr{}), nil},
		{"dot-dot", w.Mkdir("../x", Attr{}), nil},
		{"unclean", w.Mkdir("a//b", Attr{}), nil},
		{"long name", w.Mkdir(strings.Repeat("n", 257), Attr{}), nil},
		{"empty symlink", w.Symlink("", "l", Attr{}), nil},
		{"bad device", w.Mknod("d", fs.ModeDir, 1, 1, Attr{}), nil},
		{"big major", w.Mknod("d", fs.ModeDevice, 5000, 1, Attr{}), nil},
		{"negative size", w.WriteFile("neg", strings.NewReader(""), -1, Attr{}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || tc.want != nil && !errors.Is(tc.err, tc.want) {
				t.Fatalf("got %v, want an error (%v)", tc.err, tc.want)
			}
		})
	}
	if err := w.WriteFile("short", strings.NewReader("abc"), 10, Attr{}); err == nil {
		t.Fatal("WriteFile with a short reader succeeded")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write succeeded")
	}
}

func BenchmarkWrite(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	// Half random, half text: roughly a Go binary's compressibility.
	data := append(random(rng, 8<<20), bytes.Repeat([]byte("func main() { fmt.Println(\"hello\") }\n"), 8<<20/38)...)
	f, err := os.Create(filepath.Join(b.TempDir(), "img"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		w, err := NewWriter(f, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.WriteFile("user/mail", bytes.NewReader(data), int64(len(data)), Attr{Mode: 0o755}); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(w.Size()), "image-bytes")
	}
}
