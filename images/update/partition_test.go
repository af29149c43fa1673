package update

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/images/disk"
	"github.com/hearth-home/hearth/internal/testtool"
)

// buildImage writes a gokrazy-layout disk (boot, root A, root B, perm) with root in
// partition 2.
func buildImage(t *testing.T, kind disk.Kind, root []byte) ([]byte, *disk.Table) {
	t.Helper()
	img, tab, err := makeImage(kind, root)
	if err != nil {
		t.Fatal(err)
	}
	return img, tab
}

func makeImage(kind disk.Kind, root []byte) ([]byte, *disk.Table, error) {
	const mib = 1 << 20
	tab := &disk.Table{Kind: kind, DiskSize: 16 * mib, DiskID: 0x0badcafe, Partitions: []disk.Partition{
		{Size: 2 * mib, MBRType: disk.MBRFAT32LBA, Type: disk.TypeEFISystem, Name: "boot"},
		{Size: 4 * mib, MBRType: disk.MBRLinux, Type: disk.TypeLinuxFilesystem, Name: "root A"},
		{Size: 4 * mib, MBRType: disk.MBRLinux, Type: disk.TypeLinuxFilesystem, Name: "root B"},
		{MBRType: disk.MBRLinux, Type: disk.TypeLinuxFilesystem, Name: "perm"},
	}}
	img := make([]byte, tab.DiskSize)
	if err := disk.Write(&sliceWriter{img}, tab); err != nil {
		return nil, nil, err
	}
	copy(img[tab.Partitions[1].Start:], root)
	return img, tab, nil
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s.b)) {
		return 0, errors.New("out of range")
	}
	return copy(s.b[off:], p), nil
}

// realSquashFS makes a SquashFS with mksquashfs (a checking tool, tests only).
func realSquashFS(t *testing.T) []byte {
	t.Helper()
	mksquashfs := testtool.Path(t, "mksquashfs", "squashfs-tools")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src", "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "src", "etc", "hostname"), []byte("mail\n"), 0o644)
	out := filepath.Join(dir, "root.squashfs")
	cmd := exec.Command(mksquashfs, filepath.Join(dir, "src"), out, "-comp", "gzip", "-noappend", "-no-progress", "-quiet")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRootImage(t *testing.T) {
	sq := realSquashFS(t)
	for _, kind := range []disk.Kind{disk.MBR, disk.GPT} {
		t.Run(map[disk.Kind]string{disk.MBR: "mbr", disk.GPT: "gpt"}[kind], func(t *testing.T) {
			img, tab := buildImage(t, kind, sq)
			root, err := RootImage(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			off, size := rootExtent(root)
			if off != tab.Partitions[1].Start || size%4096 != 0 || size < int64(len(sq)) || size >= int64(len(sq))+4096 {
				t.Fatalf("root at %d, %d bytes; want at %d, %d bytes rounded to 4 KiB", off, size, tab.Partitions[1].Start, len(sq))
			}
			got, _ := io.ReadAll(root)
			if !bytes.Equal(got[:len(sq)], sq) {
				t.Fatal("root bytes differ from the SquashFS")
			}
			// The unsquashfs tool reads what would be pushed.
			if path, err := exec.LookPath("unsquashfs"); err == nil {
				f := filepath.Join(t.TempDir(), "pushed")
				os.WriteFile(f, got, 0o644)
				out, err := exec.Command(path, "-l", f).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "etc/hostname") {
					t.Fatalf("unsquashfs -l: %v\n%s", err, out)
				}
			}
		})
	}
	t.Run("bare squashfs", func(t *testing.T) {
		root, err := RootImage(bytes.NewReader(sq), int64(len(sq)))
		if err != nil {
			t.Fatal(err)
		}
		if off, size := rootExtent(root); off != 0 || size != int64(len(sq)) {
			t.Fatalf("root at %d, %d bytes", off, size)
		}
	})
}

func rootExtent(r *io.SectionReader) (int64, int64) {
	_, off, n := r.Outer()
	return off, n
}

func TestRootImageRejects(t *testing.T) {
	notSquash, _ := buildImage(t, disk.MBR, []byte("ext4 or so"))
	lying := fakeSquashFS("x")
	lying[40] = 0xff
	lying[47] = 0x7f // bytes_used far beyond the partition
	lyingImg, _ := buildImage(t, disk.MBR, lying)
	tests := []struct {
		name string
		img  []byte
		want string
	}{
		{"empty", nil, "partition table"},
		{"random bytes", bytes.Repeat([]byte{0x42}, 4096), "no MBR signature"},
		{"root not squashfs", notSquash, "not a SquashFS"},
		{"squashfs larger than partition", lyingImg, "SquashFS says"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RootImage(bytes.NewReader(tt.img), int64(len(tt.img)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RootImage = %v, want error with %q", err, tt.want)
			}
		})
	}
}

func TestPartitionNumbers(t *testing.T) {
	for _, kind := range []disk.Kind{disk.MBR, disk.GPT} {
		img, tab := buildImage(t, kind, nil)
		for n := 1; n <= 4; n++ {
			p, err := Partition(bytes.NewReader(img), int64(len(img)), n)
			if err != nil {
				t.Fatalf("kind %d partition %d: %v", kind, n, err)
			}
			if off, size := rootExtent(p); off != tab.Partitions[n-1].Start || size != tab.Partitions[n-1].Size {
				t.Fatalf("kind %d partition %d at %d+%d, table says %d+%d", kind, n, off, size, tab.Partitions[n-1].Start, tab.Partitions[n-1].Size)
			}
		}
		for _, n := range []int{0, 5, 200, 5000} {
			if _, err := Partition(bytes.NewReader(img), int64(len(img)), n); !errors.Is(err, ErrNoPartition) {
				t.Fatalf("kind %d partition %d: %v, want ErrNoPartition", kind, n, err)
			}
		}
		// A truncated image: partitions beyond its end are refused.
		if _, err := Partition(bytes.NewReader(img[:3<<20]), 3<<20, 3); err == nil {
			t.Fatalf("kind %d: partition 3 of a truncated image accepted", kind)
		}
	}
}

func FuzzPartition(f *testing.F) {
	img, _, err := makeImage(disk.GPT, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img[:64<<10], 2)
	mbr, _, err := makeImage(disk.MBR, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mbr[:4096], 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		p, err := Partition(bytes.NewReader(b), int64(len(b)), n)
		if err != nil {
			return
		}
		if off, size := rootExtent(p); off < 0 || size <= 0 || off+size > int64(len(b)) {
			t.Fatalf("partition %d at %d+%d in %d bytes", n, off, size, len(b))
		}
		RootImage(bytes.NewReader(b), int64(len(b)))
	})
}
