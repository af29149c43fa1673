package images

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hearth-home/hearth/images/layout"
)

// Target is a kind of machine an image is built for.
type Target struct {
	// Name is what -target names: rpi, arm64, amd64, microvm-arm64, microvm-amd64.
	Name string
	// GOARCH is the architecture the appliance and the init are compiled for.
	GOARCH string
	// Board says the image is a partitioned disk booted by gokrazy's init (layout's A/B
	// scheme); otherwise it is a microVM: kernel, initramfs and a data disk.
	Board bool
	// Table is the partition table of a board image.
	Table layout.Kind
	// Kernel is the module the kernel comes from.
	Kernel Module
	// KernelPath is where the kernel lies on a board image's boot partition (vmlinuz on
	// every board: the Pi's firmware and Hearth's UEFI loader both read it from there).
	KernelPath string
	// LoaderPath is where a UEFI board image's boot loader (package efiboot) lies on its
	// boot partition, the firmware's removable-media path; empty for the Pi.
	LoaderPath string
	// Console is the console= part of the kernel command line; the last console named is
	// /dev/console, where the init and the appliance write.
	Console string
	// QEMU is the QEMU system emulator that runs the target's images.
	QEMU string
}

var targets = []Target{
	{Name: "rpi", GOARCH: "arm64", Board: true, Table: layout.MBR, Kernel: KernelRPi,
		KernelPath: "vmlinuz", Console: "console=tty1 console=serial0,115200", QEMU: "qemu-system-aarch64"},
	{Name: "arm64", GOARCH: "arm64", Board: true, Table: layout.GPT, Kernel: KernelARM64,
		KernelPath: "vmlinuz", LoaderPath: "EFI/BOOT/BOOTAA64.EFI", Console: "console=tty0 console=ttyAMA0,115200", QEMU: "qemu-system-aarch64"},
	{Name: "amd64", GOARCH: "amd64", Board: true, Table: layout.GPT, Kernel: KernelAMD64,
		KernelPath: "vmlinuz", LoaderPath: "EFI/BOOT/BOOTX64.EFI", Console: "console=tty0 console=ttyS0,115200", QEMU: "qemu-system-x86_64"},
	{Name: "microvm-arm64", GOARCH: "arm64", Kernel: KernelARM64, Console: "console=ttyAMA0", QEMU: "qemu-system-aarch64"},
	{Name: "microvm-amd64", GOARCH: "amd64", Kernel: KernelAMD64, Console: "console=ttyS0", QEMU: "qemu-system-x86_64"},
}

// Targets returns every target, sorted by name.
func Targets() []Target {
	out := append([]Target(nil), targets...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupTarget returns the target called name.
func LookupTarget(name string) (Target, error) {
	for _, t := range targets {
		if t.Name == name {
			return t, nil
		}
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	return Target{}, fmt.Errorf("images: unknown target %q (want one of %s)", name, strings.Join(names, ", "))
}

// defaultProbe is the health check (bootguard.ParseProbe's form) of an appliance started
// with defaultArgs: an answer on its HTTPS port, or a connection to its IMAPS port.
func defaultProbe(name string) string {
	switch name {
	case "store":
		return "https://127.0.0.1:8443/api/repos"
	case "mail":
		return "tcp://127.0.0.1:9993"
	case "contacts":
		return "https://127.0.0.1:8444/"
	case "calendar":
		return "https://127.0.0.1:8445/"
	}
	return ""
}

// defaultArgs are the arguments an appliance gets when Config.Args is nil: its data on
// /perm and, where its defaults listen on loopback only, listeners on every interface.
func defaultArgs(name string) []string {
	args := []string{"-data", layout.DataDir}
	switch name {
	case "store":
		args = append(args, "-https", ":8443", "-listen", "")
	}
	return args
}
