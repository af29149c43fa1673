package ext4

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tool returns the path of a checking tool: the test fails without it when CI=true and
// skips otherwise.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin/", "/sbin/"} {
			if _, err := os.Stat(dir + name); err == nil {
				return dir + name
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (Debian package %s) is missing", name, pkg)
		}
		t.Skipf("%s (Debian package %s) is missing", name, pkg)
	}
	return p
}

var uuid = [16]byte{0x6c, 0x1e, 0x2a, 0x9b, 0x33, 0x41, 0x4c, 0x5d, 0x8e, 0x0f, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65}

func format(t *testing.T, path string, size int64, zero bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := Format(f, size, Options{UUID: uuid, Label: "perm", ModTime: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Zero: zero}); err != nil {
		t.Fatal(err)
	}
}

func TestFsck(t *testing.T) {
	fsck := tool(t, "fsck.ext4", "e2fsprogs")
	dumpe2fs := tool(t, "dumpe2fs", "e2fsprogs")
	debugfs := tool(t, "debugfs", "e2fsprogs")
	for _, tc := range []struct {
		name string
		size int64
		zero bool
	}{
		{"1MiB", 1 << 20, false},
		{"8MiB", 8 << 20, true},
		{"129MiB", 129 << 20, false},
		{"1GiB", 1 << 30, false},
		{"1GiB and a sliver", 1<<30 + 40*BlockSize, false},
		{"3GiB", 3 << 30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "perm.img")
			format(t, img, tc.size, tc.zero)
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
