package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

var uuid = [16]byte{0x6c, 0x1e, 0x2a, 0x9b, 0x33, 0x41, 0x4c, 0x5d, 0x8e, 0x0f, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65}

func format(t *testing.T, path string, size int64, zero bool) {
	t.Helper()
	formatOpts(t, path, size, Options{UUID: uuid, Label: "perm", ModTime: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Zero: zero})
}

func formatOpts(t *testing.T, path string, size int64, opts Options) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := Format(f, size, opts); err != nil {
		t.Fatal(err)
	}
}

func TestFsck(t *testing.T) {
	fsck := testtool.Path(t, "fsck.ext4", "e2fsprogs")
	dumpe2fs := testtool.Path(t, "dumpe2fs", "e2fsprogs")
	debugfs := testtool.Path(t, "debugfs", "e2fsprogs")
	for _, tc := range []struct {
		name    string
		size    int64
		zero    bool
		journal int    // Options.JournalBlocks
		want    string // dumpe2fs's "Journal size:" line, "" for no journal
	}{
		{"1MiB", 1 << 20, false, 0, ""},
		{"8MiB", 8 << 20, true, 0, "4096k"},
		{"8MiB without journal", 8 << 20, false, -1, ""},
		{"129MiB", 129 << 20, false, 0, "16M"},
		{"129MiB, 64 MiB journal", 129 << 20, true, 16384, "64M"},
		{"1GiB", 1 << 30, false, 0, "32M"},
		{"1GiB and a sliver", 1<<30 + 40*BlockSize, false, 0, "32M"},
		{"3GiB", 3 << 30, false, 0, "64M"},
		{"3GiB, journal over three groups", 3 << 30, false, MaxJournalBlocks, "256M"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "perm.img")
			formatOpts(t, img, tc.size, Options{UUID: uuid, Label: "perm", ModTime: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
				Zero: tc.zero, JournalBlocks: tc.journal})
			if out, err := exec.Command(fsck, "-fn", img).CombinedOutput(); err != nil {
				t.Fatalf("fsck.ext4 -fn: %v\n%s", err, out)
			}
			out, err := exec.Command(dumpe2fs, "-h", img).CombinedOutput()
			if err != nil {
				t.Fatalf("dumpe2fs: %v\n%s", err, out)
			}
			for _, want := range []string{"Filesystem volume name:   perm", "extent", "metadata_csum", "Filesystem UUID:          6c1e2a9b-3341-4c5d-8e0f-102132435465", "Filesystem state:         clean"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("dumpe2fs lacks %q:\n%s", want, out)
				}
			}
			if tc.want == "" {
				if strings.Contains(string(out), "has_journal") {
					t.Errorf("a journal where none was asked for:\n%s", out)
				}
			} else {
				for _, want := range []string{"has_journal", "Journal inode:            8", "Total journal size:       " + tc.want, "Journal start:            0"} {
					if !strings.Contains(string(out), want) {
						t.Errorf("dumpe2fs lacks %q:\n%s", want, out)
					}
				}
				log, err := exec.Command(debugfs, "-R", "logdump", img).CombinedOutput()
				if err != nil || !strings.Contains(string(log), "Journal starts at block 0, transaction 1") {
					t.Errorf("debugfs logdump: %v\n%s", err, log)
				}
			}
			// The file system takes writes: a file and a directory, then fsck again.
			src := filepath.Join(t.TempDir(), "src")
			data := bytes.Repeat([]byte("hearth "), 30000)
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(debugfs, "-w", "-R", "mkdir home", img).CombinedOutput(); err != nil {
				t.Fatalf("debugfs mkdir: %v\n%s", err, out)
			}
			if out, err := exec.Command(debugfs, "-w", "-R", "write "+src+" home/data", img).CombinedOutput(); err != nil || bytes.Contains(out, []byte("rror")) {
				t.Fatalf("debugfs write: %v\n%s", err, out)
			}
			if out, err := exec.Command(fsck, "-fn", img).CombinedOutput(); err != nil {
				t.Fatalf("fsck.ext4 -fn after writing: %v\n%s", err, out)
			}
			back := filepath.Join(t.TempDir(), "back")
			if out, err := exec.Command(debugfs, "-R", "dump home/data "+back, img).CombinedOutput(); err != nil {
				t.Fatalf("debugfs dump: %v\n%s", err, out)
			}
			if b, err := os.ReadFile(back); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("read back %d bytes (%v), want %d", len(b), err, len(data))
			}
		})
	}
}

// TestZeroOverGarbage formats over a file full of old data: with Zero the journal and the
// inode tables read as zeros, so nothing old is replayed or taken for an inode.
func TestZeroOverGarbage(t *testing.T) {
	fsck := testtool.Path(t, "fsck.ext4", "e2fsprogs")
	debugfs := testtool.Path(t, "debugfs", "e2fsprogs")
	const size = 16 << 20
	img := filepath.Join(t.TempDir(), "perm.img")
	if err := os.WriteFile(img, bytes.Repeat([]byte{0xa5}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Format(f, size, Options{UUID: uuid, Zero: true}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fsck, "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.ext4 -fn: %v\n%s", err, out)
	}
	out, err := exec.Command(debugfs, "-R", "stat <8>", img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs stat <8>: %v\n%s", err, out)
	}
	var first, last int64
	if i := strings.Index(string(out), "(0-1023):"); i < 0 {
		t.Fatalf("the journal is not one extent of 1024 blocks:\n%s", out)
	} else if _, err := fmt.Sscanf(string(out[i+len("(0-1023):"):]), "%d-%d", &first, &last); err != nil || last-first != 1023 {
		t.Fatalf("journal extent %d-%d (%v):\n%s", first, last, err, out)
	}
	b := make([]byte, (last-first)*BlockSize)
	if _, err := f.ReadAt(b, (first+1)*BlockSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatal("the journal's log blocks still hold old data")
	}
}

func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	format(t, filepath.Join(dir, "a"), 64<<20, false)
	format(t, filepath.Join(dir, "b"), 64<<20, true)
	a, _ := os.ReadFile(filepath.Join(dir, "a"))
	b, _ := os.ReadFile(filepath.Join(dir, "b"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("the same options gave different bytes")
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		opts Options
	}{
		{"too small", 1<<20 - 1, Options{}},
		{"too big", MaxSize + 1, Options{}},
		{"long label", 8 << 20, Options{Label: strings.Repeat("l", 17)}},
		{"journal too small", 64 << 20, Options{JournalBlocks: MinJournalBlocks - 1}},
		{"journal too big", 1 << 30, Options{JournalBlocks: MaxJournalBlocks + 1}},
		{"journal over half the size", 4 << 20, Options{JournalBlocks: MinJournalBlocks}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Format(nil, tc.size, tc.opts); err == nil {
				t.Fatal("Format succeeded")
			} else if tc.name != "long label" && !errors.Is(err, ErrSize) {
				t.Fatalf("Format: %v, want ErrSize", err)
			}
		})
	}
}

func BenchmarkFormat4GiB(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "perm.img"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for b.Loop() {
		if err := Format(f, 4<<30, Options{UUID: uuid, Label: "perm"}); err != nil {
			b.Fatal(err)
		}
	}
}
