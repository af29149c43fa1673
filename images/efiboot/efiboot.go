// Package efiboot holds Hearth's own UEFI boot loader, which starts the kernel of an arm64 or
// amd64 board image with the command line from the boot partition's cmdline.txt.
//
// UEFI firmware runs the loader as EFI/BOOT/BOOTAA64.EFI or EFI/BOOT/BOOTX64.EFI from the
// FAT boot partition (the removable-media path, so no boot entry needs to be registered).
// The loader (loader/loader.c, freestanding C built by build.sh with clang and lld-link) reads
// \cmdline.txt (at most MaxCmdline bytes of ASCII, trailing white space trimmed) and
// \vmlinuz (an EFI-stub kernel, at most MaxKernel bytes) from that same partition, loads the
// kernel with the firmware's LoadImage, hands it the command line as its UCS-2 load options
// and starts it. It prints "hearth-boot: starting \vmlinuz" on the firmware console first.
// On a failure it prints "hearth-boot: <what>: <EFI status>", waits five seconds and
// returns the error, so that the firmware tries its next boot option.
//
// The C source lies in the loader directory because the go command refuses C files in a
// package that does not use cgo.
//
// Because the loader reads cmdline.txt at every boot, the A/B update guard switches roots
// on UEFI boards exactly as on the Raspberry Pi: by rewriting root= in cmdline.txt.
package efiboot

import (
	_ "embed"
	"fmt"
)

//go:generate sh build.sh

// Limits the loader enforces on what it reads from the boot partition.
const (
	MaxCmdline = 4 << 10   // bytes of cmdline.txt
	MaxKernel  = 128 << 20 // bytes of vmlinuz
)

// Paths the loader uses on the FAT boot partition, relative to its root.
const (
	// CmdlinePath is the kernel command line file the loader reads.
	CmdlinePath = "cmdline.txt"
	// KernelPath is the EFI-stub kernel the loader starts.
	KernelPath = "vmlinuz"
)

var (
	//go:embed bootx64.efi
	bootX64 []byte
	//go:embed bootaa64.efi
	bootAA64 []byte
)

// Loader returns the loader for goarch ("amd64" or "arm64") as a PE32+ EFI application,
// the bytes to store at Path(goarch) on a boot partition. The slice is a copy.
func Loader(goarch string) ([]byte, error) {
	switch goarch {
	case "amd64":
		return append([]byte(nil), bootX64...), nil
	case "arm64":
		return append([]byte(nil), bootAA64...), nil
	}
	return nil, fmt.Errorf("efiboot: no UEFI loader for GOARCH %q (want amd64 or arm64)", goarch)
}

// Path returns where UEFI firmware looks for goarch's loader on removable media, relative
// to the root of the boot partition: EFI/BOOT/BOOTX64.EFI or EFI/BOOT/BOOTAA64.EFI.
func Path(goarch string) (string, error) {
	switch goarch {
	case "amd64":
		return "EFI/BOOT/BOOTX64.EFI", nil
	case "arm64":
		return "EFI/BOOT/BOOTAA64.EFI", nil
	}
	return "", fmt.Errorf("efiboot: no UEFI loader path for GOARCH %q (want amd64 or arm64)", goarch)
}
