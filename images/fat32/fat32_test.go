package fat32

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

var epoch = time.Date(2026, 11, 1, 12, 30, 44, 0, time.UTC)

type file struct {
	name string
	data []byte
}

func testFiles() []file {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := []file{
		{"config.txt", []byte("arm_64bit=1\nenable_uart=1\n")},
		{"CMDLINE.TXT", []byte("console=tty1 root=PARTUUID=0a0b0c0d-02 rootfstype=squashfs\n")},
		{"bcm2710-rpi-3-b.dtb", random(31 << 10)},
		{"vmlinuz", random(3<<20 + 17)},
		{"empty", nil},
		{"overlays/dwc2.dtbo", random(1500)},
		{"overlays/README", []byte("overlays\n")},
		{"overlays/vc4-kms-v3d-pi4.dtbo", random(4096)},
		{"a/b/c/deep file with spaces.bin", random(513)},
		{"Mixed.Case.Name.tar.gz", random(100)},
	}
	for i := range 70 { // a directory spanning several clusters of long-name entries
		files = append(files, file{fmt.Sprintf("many/a-rather-long-file-name-number-%03d.dtbo", i), random(i * 7)})
	}
	return files
}

func build(t testing.TB, f *os.File, size int64, files []file) *FS {
	t.Helper()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fs, err := Format(f, size, Options{Label: "hearthboot", VolumeID: 0x1234abcd, ModTime: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Mkdir("empty-dir", epoch); err != nil {
		t.Fatal(err)
	}
	for _, fl := range files {
		if err := fs.WriteFile(fl.name, bytes.NewReader(fl.data), epoch); err != nil {
			t.Fatalf("WriteFile %s: %v", fl.name, err)
		}
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestFsckAndMtools(t *testing.T) {
	fsck := testtool.Path(t, "fsck.vfat", "dosfstools")
	mcopy := testtool.Path(t, "mcopy", "mtools")
	mdir := testtool.Path(t, "mdir", "mtools")
	fatlabel := testtool.Path(t, "fatlabel", "dosfstools")
	files := testFiles()
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"33MiB", 33 << 20},
		{"64MiB", 64 << 20},
		{"100MiB", 100 << 20},
		{"256MiB", 256 << 20},
		{"261MiB", 261 << 20},
		{"1GiB", 1 << 30},
		{"odd-size", 77<<20 + 3*512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fat.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs := build(t, f, tc.size, files)
			n, cs := fs.Clusters()
			if n < MinClusters {
				t.Fatalf("%d clusters", n)
			}
			out, err := exec.Command(fsck, "-n", "-v", img).CombinedOutput()
			if err != nil || bytes.Contains(out, []byte("arning")) || bytes.Contains(out, []byte("differ")) {
				t.Fatalf("fsck.vfat (%d clusters of %d): %v\n%s", n, cs, err, out)
			}
			if out, err := exec.Command(fatlabel, img).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "HEARTHBOOT" {
				t.Errorf("fatlabel: %v, %q; want HEARTHBOOT", err, out)
			}
			if out, err := exec.Command(fatlabel, "-i", img).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1234abcd" {
				t.Errorf("fatlabel -i: %v, %q; want 1234abcd", err, out)
			}
			env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
			cmd := exec.Command(mdir, "-i", img, "-/", "-b", "::")
			cmd.Env = env
			list, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("mdir: %v\n%s", err, list)
			}
			for _, fl := range files {
				if !bytes.Contains(list, []byte("::/"+fl.name+"\n")) {
					t.Errorf("mdir lacks %s:\n%.2000s", fl.name, list)
				}
				got := filepath.Join(dir, "out")
				cmd := exec.Command(mcopy, "-n", "-o", "-i", img, "::/"+fl.name, got)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("mcopy %s: %v\n%s", fl.name, err, out)
				}
				b, err := os.ReadFile(got)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, fl.data) {
					t.Fatalf("%s: read back %d bytes, differ from the %d written", fl.name, len(b), len(fl.data))
				}
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	var imgs [2][]byte
	for i := range imgs {
		f, err := os.Create(filepath.Join(t.TempDir(), "fat.img"))
		if err != nil {
			t.Fatal(err)
		}
		build(t, f, 40<<20, testFiles())
		if imgs[i], err = os.ReadFile(f.Name()); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Fatal("two builds from the same input differ")
	}
}

func TestErrors(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "fat.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Format(f, 32<<20, Options{}); !errors.Is(err, ErrTooSmall) {
		t.Errorf("Format 32 MiB: %v, want ErrTooSmall", err)
	}
	if _, err := Format(f, -1, Options{}); err == nil {
		t.Error("Format of -1 bytes succeeded")
	}
	if _, err := Format(f, 64<<20, Options{Label: "much too long label"}); err == nil {
		t.Error("Format with a 19-character label succeeded")
	}
	if _, err := Format(f, 64<<20, Options{ClusterSize: 3000}); err == nil {
		t.Error("Format with cluster size 3000 succeeded")
	}
	fs, err := Format(f, 34<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"duplicate", "config.txt", ErrExist},
		{"duplicate other case", "CONFIG.TXT", ErrExist},
		{"file as directory", "config.txt/x", nil},
		{"dot-dot", "../x", nil},
		{"colon", "a:b", nil},
		{"trailing dot", "name.", nil},
		{"empty", "", nil},
		{"long", strings.Repeat("x", 256), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "duplicate" {
				if err := fs.WriteFile("config.txt", strings.NewReader("x"), time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			err := fs.WriteFile(tc.path, strings.NewReader("y"), time.Time{})
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("WriteFile(%q) = %v, want an error (%v)", tc.path, err, tc.want)
			}
		})
	}
	// A full file system reports ErrNoSpace.
	big := bytes.NewReader(make([]byte, 40<<20))
	if err := fs.WriteFile("big", big, time.Time{}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("WriteFile of 40 MiB into 34 MiB: %v, want ErrNoSpace", err)
	}
	if err := fs.Close(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Close after a failed write: %v", err)
	}
}

func TestShortNames(t *testing.T) {
	used := map[[11]byte]bool{}
	for _, tc := range []struct {
		name, short string
		lfn         bool
	}{
		{"CONFIG.TXT", "CONFIG  TXT", false},
		{"config.txt", "CONFIG~1TXT", true}, // CONFIG.TXT is taken
		{"cmdline.txt", "CMDLINE TXT", true},
		{"bcm2710-rpi-3-b.dtb", "BCM271~1DTB", true},
		{"bcm2710-rpi-3-b-plus.dtb", "BCM271~2DTB", true},
		{".hidden", "HIDDEN~1   ", true},
		{"a+b.c", "A_B~1   C  ", true},
		{"noext", "NOEXT      ", true},
		{"bcm2710-rpi-cm3.dtb", "BCM271~3DTB", true},
		{"bcm2710-rpi-zero-2.dtb", "BCM271~4DTB", true},
		{"bcm2710-rpi-zero-2-w.dtb", "BC2B23~1DTB", true}, // after ~4: a hash of the long name
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, lfn := shortName(tc.name, used)
			used[s] = true
			if string(s[:]) != tc.short || lfn != tc.lfn {
				t.Fatalf("shortName(%q) = %q, %v; want %q, %v", tc.name, s[:], lfn, tc.short, tc.lfn)
			}
		})
	}
}

func BenchmarkWrite64MiB(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	f, err := os.Create(filepath.Join(b.TempDir(), "fat.img"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		fs, err := Format(f, 64<<20, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := fs.WriteFile("kernel.img", bytes.NewReader(data), time.Time{}); err != nil {
			b.Fatal(err)
		}
		if err := fs.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
