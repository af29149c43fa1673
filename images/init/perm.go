//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hearth-home/hearth/images/internal/permfmt"
	"github.com/hearth-home/hearth/images/layout"
)

// permDevice returns the device node of the persistent partition: partition
// layout.PermPartition of the disk the root file system was mounted from.
func permDevice(sys string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		return "", err
	}
	dev := uint64(st.Dev)
	part, err := filepath.EvalSymlinks(filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))))
	if err != nil {
		return "", fmt.Errorf("root device: %w", err)
	}
	disk := filepath.Dir(part)
	ents, err := os.ReadDir(disk)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(disk, e.Name(), "partition"))
		if err != nil {
			continue
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n == layout.PermPartition {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("no partition %d on %s", layout.PermPartition, filepath.Base(disk))
}

// formatPerm formats the persistent partition at first boot when it is empty (all zeros
// at its start) and mounts it on /perm; a partition that holds anything is left alone.
func formatPerm() error {
	dev, err := permDevice("/sys")
	if err != nil {
		return err
	}
	if err := permfmt.FormatIfEmpty(dev); err != nil {
		return err
	}
	if err := unix.Mount(dev, layout.Perm, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s after formatting: %w", dev, err)
	}
	return nil
}
