//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hearth-home/hearth/images/disk"
	"github.com/hearth-home/hearth/images/layout"
)

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a mounted ext4 to a new
// block count.
const ext4ResizeFS = 0x40086610

// minGrowth is the least free space after the persistent partition, or between its end
// and its file system's end, worth growing into.
const minGrowth = 1 << 20

// growPartition extends the persistent partition to the end of its disk when the disk
// (an SD card bigger than the image written to it) has room after it: it rewrites and
// syncs the partition table, then tells the kernel the new size with
// BLKPG_RESIZE_PARTITION, which works while the partition is mounted. It reports what it
// found and did. Run again after a success it changes nothing.
func growPartition(sys string) (disk.Grown, error) {
	var g disk.Grown
	diskName, partName, err := permPartition(sys)
	if err != nil {
		return g, err
	}
	f, err := os.OpenFile("/dev/"+diskName, os.O_RDWR, 0)
	if err != nil {
		return g, fmt.Errorf("grow %s: %w", partName, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return g, fmt.Errorf("grow %s: size of %s: %w", partName, diskName, err)
	}
	g, err = disk.GrowPartition(f, size/disk.SectorSize*disk.SectorSize, layout.PermPartition)
	if err != nil {
		return g, fmt.Errorf("grow %s: %w", partName, err)
	}
	if !g.Changed() {
		return g, nil
	}
	if err := f.Sync(); err != nil {
		return g, fmt.Errorf("grow %s: sync the partition table: %w", partName, err)
	}
	p := unix.BlkpgPartition{Start: g.Start, Length: g.NewSize, Pno: int32(g.Partition)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return g, fmt.Errorf("grow %s: the table says %d MiB, but BLKPG_RESIZE_PARTITION failed (the kernel sees the new size at the next boot): %w",
			partName, g.NewSize>>20, errno)
	}
	return g, nil
}

// growFS grows the file system mounted on layout.Perm online (EXT4_IOC_RESIZE_FS) to fill
// its partition, and returns its size in bytes before and after; equal sizes mean there
// was nothing to do.
func growFS(sys string) (before, after int64, err error) {
	_, partName, err := permPartition(sys)
	if err != nil {
		return 0, 0, err
	}
	dev := "/dev/" + partName
	f, err := os.Open(dev)
	if err != nil {
		return 0, 0, fmt.Errorf("grow the file system on %s: %w", dev, err)
	}
	defer f.Close()
	partSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("grow the file system on %s: size: %w", dev, err)
	}
	blocks, blockSize, err := ext4Blocks(f)
	if err != nil {
		return 0, 0, fmt.Errorf("grow the file system on %s: %w", dev, err)
	}
	before = int64(blocks) * blockSize
	if partSize-before < minGrowth {
		return before, before, nil
	}
	d, err := os.Open(layout.Perm)
	if err != nil {
		return before, before, fmt.Errorf("grow the file system on %s: %w", dev, err)
	}
	defer d.Close()
	n := uint64(partSize / blockSize)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return before, before, fmt.Errorf("grow the file system on %s to %d blocks: EXT4_IOC_RESIZE_FS: %w", dev, n, errno)
	}
	blocks, _, err = ext4Blocks(f)
	if err != nil {
		return before, before, fmt.Errorf("grow the file system on %s: %w", dev, err)
	}
	return before, int64(blocks) * blockSize, nil
}

// ext4Blocks reads an ext4 superblock's block count and block size.
func ext4Blocks(r io.ReaderAt) (blocks uint64, blockSize int64, err error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return 0, 0, fmt.Errorf("read the superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xef53 {
		return 0, 0, errors.New("no ext4 superblock")
	}
	logSize := le.Uint32(sb[0x18:])
	if logSize > 6 {
		return 0, 0, fmt.Errorf("block size 1024<<%d", logSize)
	}
	blocks = uint64(le.Uint32(sb[0x04:]))
	if le.Uint32(sb[0x60:])&0x80 != 0 { // 64bit
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	return blocks, 1024 << logSize, nil
}

// growPerm grows the persistent partition to its disk's end, formats it when it is
// empty (formatPerm), and grows its mounted file system to the partition's end, logging
// what it did ("hearth: grew /perm from X to Y MiB in D"). Failures are logged: the boot
// goes on with the size there is.
func growPerm(logf func(string, ...any), format func() error, mounted func() bool) {
	start := time.Now()
	if g, err := growPartition("/sys"); err != nil {
		logf("hearth: not growing %s's partition: %v", layout.Perm, err)
	} else if g.Changed() {
		logf("hearth: grew %s's partition from %d to %d MiB", layout.Perm, g.OldSize>>20, g.NewSize>>20)
	}
	if !mounted() {
		if err := format(); err != nil {
			logf("hearth: %s is not mounted and could not be formatted (%v); the appliance's data will not persist", layout.Perm, err)
			return
		}
		logf("hearth: formatted the empty persistent partition and mounted it on %s", layout.Perm)
	}
	before, after, err := growFS("/sys")
	if err != nil {
		logf("hearth: not growing the file system on %s: %v", layout.Perm, err)
		return
	}
	if after > before {
		logf("hearth: grew %s from %d to %d MiB in %v", layout.Perm, before>>20, after>>20, time.Since(start).Round(time.Millisecond))
	}
}

// permPartition returns the names (in /dev) of the disk the root file system was
// mounted from and of its partition layout.PermPartition.
func permPartition(sys string) (diskName, partName string, err error) {
	dev, err := permDevice(sys)
	if err != nil {
		return "", "", err
	}
	partName = filepath.Base(dev)
	disk, err := filepath.EvalSymlinks(filepath.Join(sys, "class", "block", partName))
	if err != nil {
		return "", "", fmt.Errorf("disk of %s: %w", partName, err)
	}
	return filepath.Base(filepath.Dir(disk)), partName, nil
}
