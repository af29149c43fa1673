//go:build linux

package flash

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/images/disk"
	"github.com/hearth-home/hearth/internal/testtool"
)

// loopDevice attaches a fresh 32 MiB file as a loop device with partition scanning, or
// skips the test where loop devices cannot be made (not root, no loop driver).
func loopDevice(t *testing.T) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, 32<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", "-P", backing).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device here: %v %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, backing
}

func TestLoopDevice(t *testing.T) {
	dev, backing := loopDevice(t)
	quiet := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	tgt, err := Inspect(dev, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if !tgt.Block || tgt.Size != 32<<20 || tgt.Name != filepath.Base(dev) {
		t.Fatalf("%+v", tgt)
	}

	// An image with a partition table and a FAT partition, as a board image has.
	tab := &disk.Table{Kind: disk.MBR, DiskSize: 16 << 20, Partitions: []disk.Partition{{MBRType: disk.MBRFAT32LBA}}}
	img := make([]byte, tab.DiskSize)
	if err := disk.Write(&memWriter{img}, tab); err != nil {
		t.Fatal(err)
	}
	for i := tab.Partitions[0].Start + 4096; i < tab.DiskSize; i += 4096 {
		img[i] = byte(i >> 12)
	}
	imgPath := filepath.Join(t.TempDir(), "board.img")
	os.WriteFile(imgPath, img, 0o644)
	if _, err := Write(t.Context(), imgPath, tgt, quiet); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(backing)
	if !bytes.Equal(got[:len(img)], img) {
		t.Fatal("the device does not hold the image")
	}

	// Where the kernel scans loop partitions, partition 1 exists now and is refused.
	part := dev + "p1"
	if _, err := os.Stat(filepath.Join("/sys/class/block", filepath.Base(part))); err == nil {
		if _, err := Inspect(part, quiet); !errors.Is(err, ErrPartition) {
			t.Fatalf("Inspect(partition) = %v", err)
		}
	} else {
		t.Logf("no partition scanning on loop devices here; %s not checked", part)
	}

	// A mounted file system on the device: refused by Inspect, and by the kernel too.
	mkfs := testtool.Path(t, "mkfs.ext4", "e2fsprogs")
	if out, err := exec.Command(mkfs, "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	_, err = Inspect(dev, quiet)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), filepath.Base(dev)+" is mounted on "+mnt) {
		t.Fatalf("Inspect(mounted disk) = %v", err)
	}
	if _, err := Write(t.Context(), imgPath, tgt, quiet); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("Write over a mounted disk = %v", err)
	}
}

type memWriter struct{ b []byte }

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("out of range")
	}
	return copy(m.b[off:], p), nil
}
