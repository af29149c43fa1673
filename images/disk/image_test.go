package disk

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images/fat32"
	"github.com/hearth-home/hearth/images/squashfs"
	"github.com/hearth-home/hearth/internal/testtool"
)

// TestAssembledImage writes a partition table, a FAT32 boot partition and a SquashFS root
// into one image file through io.NewOffsetWriter, then reads each part with the real tools.
func TestAssembledImage(t *testing.T) {
	sfdisk := testtool.Path(t, "sfdisk", "fdisk")
	fsck := testtool.Path(t, "fsck.vfat", "dosfstools")
	mcopy := testtool.Path(t, "mcopy", "mtools")
	unsquashfs := testtool.Path(t, "unsquashfs", "squashfs-tools")
	for _, kind := range []Kind{MBR, GPT} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "disk.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tab := &Table{Kind: kind, DiskSize: 256 << 20, Partitions: []Partition{
				{Size: 64 << 20, MBRType: MBRFAT32LBA, Bootable: true, Type: TypeEFISystem, Name: "boot"},
				{Size: 64 << 20, MBRType: MBRLinux, Type: TypeLinuxFilesystem, Name: "root-a"},
				{MBRType: MBRLinux, Type: TypeLinuxFilesystem, Name: "perm"},
			}}
			if err := f.Truncate(tab.DiskSize); err != nil {
				t.Fatal(err)
			}
			if err := Write(f, tab); err != nil {
				t.Fatal(err)
			}
			boot, root := tab.Partitions[0], tab.Partitions[1]
			cmdline := "console=ttyS0 root=PARTUUID=" + tab.PARTUUID(2) + " rootfstype=squashfs\n"
			fs, err := fat32.Format(io.NewOffsetWriter(f, boot.Start), boot.Size, fat32.Options{Label: "BOOT", HiddenSectors: uint32(boot.Start / SectorSize)})
			if err != nil {
				t.Fatal(err)
			}
			if err := fs.WriteFile("cmdline.txt", strings.NewReader(cmdline), time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := fs.Close(); err != nil {
				t.Fatal(err)
			}
			sq, err := squashfs.NewWriter(io.NewOffsetWriter(f, root.Start), squashfs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := sq.WriteFile("etc/hostname", strings.NewReader("mail\n"), 5, squashfs.Attr{Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			if err := sq.Close(); err != nil {
				t.Fatal(err)
			}
			if sq.Size() > root.Size {
				t.Fatalf("root of %d bytes overflows its partition of %d", sq.Size(), root.Size)
			}

			if out, err := exec.Command(sfdisk, "-V", img).CombinedOutput(); err != nil {
				t.Fatalf("sfdisk -V: %v\n%s", err, out)
			}
			// fsck.vfat reads a file system from offset 0: give it the partition alone.
			part := filepath.Join(dir, "boot.img")
			pf, err := os.Create(part)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(pf, io.NewSectionReader(f, boot.Start, boot.Size)); err != nil {
				t.Fatal(err)
			}
			pf.Close()
			if out, err := exec.Command(fsck, "-n", part).CombinedOutput(); err != nil {
				t.Fatalf("fsck.vfat: %v\n%s", err, out)
			}
			cmd := exec.Command(mcopy, "-n", "-i", fmt.Sprintf("%s@@%d", img, boot.Start), "::/cmdline.txt", filepath.Join(dir, "cmdline.txt"))
			cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mcopy: %v\n%s", err, out)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "cmdline.txt")); string(b) != cmdline {
				t.Fatalf("cmdline.txt read back %q, want %q", b, cmdline)
			}
			out, err := exec.Command(unsquashfs, "-o", fmt.Sprint(root.Start), "-cat", img, "etc/hostname").CombinedOutput()
			if err != nil || !bytes.Equal(out, []byte("mail\n")) {
				t.Fatalf("unsquashfs -cat: %v\n%s", err, out)
			}
		})
	}
}
