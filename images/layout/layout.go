// Package layout is the one place that fixes how a Hearth board image is laid out: its
// partitions (gokrazy's A/B scheme), their PARTUUIDs, the kernel command line, the paths
// inside the root file system, and the appliance configuration file the init reads.
//
// A board image (targets rpi, arm64, amd64) is one disk:
//
//	partition 1  boot   FAT32, BootSize  kernel, device trees, firmware, cmdline.txt, config.txt
//	partition 2  root A SquashFS (gzip), RootSize, read-only
//	partition 3  root B SquashFS (gzip), RootSize, read-only; the inactive root an update writes
//	partition 4  perm   the rest of the disk; ext4, mounted on /perm, the appliance's data
//
// The Pi gets an MBR table (the firmware reads nothing else), the others GPT. The kernel
// finds its root by PARTUUID, never by device name (gokrazy's init rejects /dev/vda):
// RootParam gives the root= value for either table kind. An update rewrites root= in
// cmdline.txt on the boot partition to the other root partition (gokrazy's /update/switch
// does exactly that); everything else on the disk stays where it is.
//
// A microVM (targets microvm-arm64, microvm-amd64) has no partition table: the kernel and an
// initramfs holding the root are passed to QEMU, and its data disk (/dev/vda, ext4 or empty)
// is mounted on /perm by the small init.
package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Partition numbers of a board image (gokrazy's layout).
const (
	BootPartition = 1
	RootA         = 2
	RootB         = 3
	PermPartition = 4
)

// Sizes and offsets of a board image, in bytes. They never change between image versions, so
// an update only ever rewrites a root partition (and cmdline.txt).
const (
	MiB           = 1 << 20
	BootStart     = 4 * MiB   // gokrazy also starts its boot partition at sector 8192
	BootSize      = 128 * MiB // the arm64 kernel alone is 57 MiB uncompressed
	RootSize      = 128 * MiB // one appliance's root is about 20 MiB
	RootAStart    = BootStart + BootSize
	RootBStart    = RootAStart + RootSize
	PermStart     = RootBStart + RootSize
	MinPermSize   = 32 * MiB
	MinImageSize  = PermStart + MinPermSize + MiB // room for GPT's backup table
	DefaultSize   = 512 * MiB                     // a power of two, as QEMU's SD card wants
	MaxImageSize  = 1 << 40
	GPTBackupSize = 33 * 512 // the backup GPT entries and header at the end of the disk
)

// Paths inside an image's root file system.
const (
	// InitPath is the init of a board image (gokrazy's path, named by init= on the
	// command line).
	InitPath = "/gokrazy/init"
	// DHCPPath is gokrazy's DHCP client, supervised next to the appliance on boards.
	DHCPPath = "/gokrazy/dhcp"
	// ApplianceDir holds the appliance's binary: ApplianceDir/NAME.
	ApplianceDir = "/hearth/bin"
	// UserDir holds what gokrazy supervises: UserDir/NAME is a symlink to the init, which,
	// started under that name, runs ApplianceDir/NAME with its output copied to the console.
	UserDir = "/user"
	// ConfigPath is the appliance configuration (JSON, an Appliance) the init reads.
	ConfigPath = "/etc/hearth/appliance.json"
	// CACertsPath is the CA bundle in the root (the host's, at build time).
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// PasswordPath is gokrazy's HTTP password file (update endpoints), if any.
	PasswordPath = "/etc/gokr-pw.txt"
	// Perm is where the persistent data partition or data disk is mounted.
	Perm = "/perm"
	// DataDir is the appliance's data directory on /perm (the -data flag by default).
	DataDir = "/perm/hearth"
	// VMInitPath is the init of a microVM's initramfs.
	VMInitPath = "/init"
	// VMDataDisk is the microVM's data disk.
	VMDataDisk = "/dev/vda"
)

// The microVM guest's network on QEMU's user networking.
const (
	VMAddress = "10.0.2.15/24"
	VMGateway = "10.0.2.2"
	VMDNS     = "10.0.2.3"
)

// Kind is a partition table kind.
type Kind int

// Partition table kinds of board images.
const (
	MBR Kind = iota + 1 // the Raspberry Pi
	GPT                 // generic arm64 and amd64 boards
)

// RootParam returns the root= value that names root partition part (RootA or RootB).
// For MBR, diskPARTUUID is the disk signature as 8 hex digits and the result is
// "PARTUUID=SSSSSSSS-0N". For GPT, diskPARTUUID is the PARTUUID of the boot partition
// (partition 1) and the result is "PARTUUID=GUID/PARTNROFF=N-1": gokrazy's root-device code
// only looks at the first partition's GUID, and the kernel resolves the offset itself.
func RootParam(kind Kind, diskPARTUUID string, part int) (string, error) {
	if part != RootA && part != RootB {
		return "", fmt.Errorf("layout: root partition %d: want %d or %d", part, RootA, RootB)
	}
	switch kind {
	case MBR:
		if len(diskPARTUUID) != 8 || strings.Trim(strings.ToLower(diskPARTUUID), "0123456789abcdef") != "" {
			return "", fmt.Errorf("layout: MBR disk signature %q: want 8 hex digits", diskPARTUUID)
		}
		return fmt.Sprintf("PARTUUID=%s-%02d", strings.ToLower(diskPARTUUID), part), nil
	case GPT:
		if len(diskPARTUUID) != 36 || strings.Count(diskPARTUUID, "-") != 4 {
			return "", fmt.Errorf("layout: GPT partition GUID %q: want 8-4-4-4-12 hex digits", diskPARTUUID)
		}
		return fmt.Sprintf("PARTUUID=%s/PARTNROFF=%d", strings.ToLower(diskPARTUUID), part-BootPartition), nil
	}
	return "", fmt.Errorf("layout: unknown table kind %d", kind)
}

// Cmdline returns a board image's kernel command line (cmdline.txt) booting root
// partition part from a table of kind, with console the console devices (e.g.
// "console=ttyAMA0").
func Cmdline(kind Kind, diskPARTUUID string, part int, console string) (string, error) {
	root, err := RootParam(kind, diskPARTUUID, part)
	if err != nil {
		return "", err
	}
	s := "root=" + root + " rootfstype=squashfs ro rootwait init=" + InitPath + " panic=10 oops=panic"
	if console != "" {
		s = console + " " + s
	}
	return s, nil
}

// VMCmdline returns a microVM's kernel command line after the console (the VM runner adds
// console= and ip=). cma=0: the kernels reserve 32 MiB for contiguous DMA allocations by
// default, which leaves a 128 MiB guest too little memory to unpack an appliance's
// initramfs ("Initramfs unpacking failed: write error").
func VMCmdline() string { return "rdinit=" + VMInitPath + " panic=-1 cma=0" }

// Limits of an Appliance configuration.
const (
	MaxArgs       = 256
	MaxArgLen     = 4096
	MaxConfigSize = 1 << 20
)

// Appliance is the configuration the init reads from ConfigPath: which binary to run, with
// which arguments.
type Appliance struct {
	// Name is the appliance's name: its binary is ApplianceDir/Name.
	Name string `json:"name"`
	// Args are its arguments after the program name.
	Args []string `json:"args"`
	// Env are extra environment variables, KEY=value.
	Env []string `json:"env,omitempty"`
	// Probe is the appliance's health check on the device, in bootguard.ParseProbe's
	// form ("https://127.0.0.1:8443/", "tcp://127.0.0.1:9993"; a bare "host:port" is
	// tcp, see ProbeURL): once it passes, a board's
	// init commits an A/B update (images/bootguard). Empty: healthy once started.
	Probe string `json:"probe,omitempty"`
}

// ProbeURL returns Probe with a bare "host:port" read as "tcp://host:port".
func (a Appliance) ProbeURL() string {
	if a.Probe != "" && !strings.Contains(a.Probe, "://") {
		return "tcp://" + a.Probe
	}
	return a.Probe
}

// Binary returns the path of the appliance's binary in the root.
func (a Appliance) Binary() string { return ApplianceDir + "/" + a.Name }

// Validate checks a's name and the counts and sizes of its arguments.
func (a Appliance) Validate() error {
	if err := ValidName(a.Name); err != nil {
		return err
	}
	if len(a.Args)+len(a.Env) > MaxArgs {
		return fmt.Errorf("layout: appliance %q: %d arguments, at most %d", a.Name, len(a.Args)+len(a.Env), MaxArgs)
	}
	for _, s := range append(append([]string(nil), a.Args...), a.Env...) {
		if len(s) > MaxArgLen || strings.ContainsRune(s, 0) {
			return fmt.Errorf("layout: appliance %q: an argument is longer than %d bytes or holds NUL", a.Name, MaxArgLen)
		}
	}
	if len(a.Probe) > 255 || strings.ContainsAny(a.Probe, "\r\n\x00") {
		return fmt.Errorf("layout: appliance %q: probe address %q", a.Name, a.Probe)
	}
	for _, e := range a.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("layout: appliance %q: environment entry %q is not KEY=value", a.Name, e)
		}
	}
	return nil
}

// ErrName is returned (wrapped) for a bad appliance or host name.
var ErrName = errors.New("layout: bad name")

// ValidName checks an appliance or host name: 1 to 63 of a-z, 0-9 and '-', not starting
// or ending with '-'.
func ValidName(name string) error {
	if len(name) == 0 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' ||
		strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("%w: %q: want 1..63 of a-z, 0-9, '-'", ErrName, name)
	}
	return nil
}

// Marshal encodes a as the configuration file's content.
func (a Appliance) Marshal() ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("layout: appliance %q: %w", a.Name, err)
	}
	return append(b, '\n'), nil
}

// ParseAppliance decodes and validates a configuration file's content.
func ParseAppliance(b []byte) (Appliance, error) {
	var a Appliance
	if len(b) > MaxConfigSize {
		return a, fmt.Errorf("layout: appliance configuration: %d bytes, at most %d", len(b), MaxConfigSize)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("layout: appliance configuration: %w", err)
	}
	if err := a.Validate(); err != nil {
		return a, err
	}
	return a, nil
}
