package flash

import (
	"os"

	"golang.org/x/sys/unix"
)

// deviceNumber stats path and returns its device number when it is a block device.
func deviceNumber(path string) (major, minor uint32, ok bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, false, nil
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), true, nil
}

// dropCache asks the kernel to forget f's cached pages, so reading it goes to the device.
func dropCache(f *os.File) {
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// rereadPartitions asks the kernel to read a block device's new partition table.
func rereadPartitions(f *os.File) {
	unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
}
