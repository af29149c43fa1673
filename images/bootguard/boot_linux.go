package bootguard

import (
	"context"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// FindBootDevice returns the device node of the boot partition (partition 1) of the disk
// the running root file system ("/") was mounted from.
func FindBootDevice() (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		return "", fmt.Errorf("bootguard: stat /: %w", err)
	}
	dev := uint64(st.Dev)
	return BootDevice("/sys", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)))
}

// KernelReboot flushes the file systems and restarts the machine at once, without
// stopping services: for a rollback decided before any service started.
func KernelReboot(context.Context) error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("bootguard: reboot: %w", err)
	}
	return nil
}
