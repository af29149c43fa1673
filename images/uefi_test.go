package images

import (
	"bytes"
	"debug/pe"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images/bootguard"
	"github.com/hearth-home/hearth/images/efiboot"
	"github.com/hearth-home/hearth/images/layout"
	"github.com/hearth-home/hearth/internal/testtool"
)

// uefiTimeout bounds a boot through UEFI firmware under TCG: the firmware itself, then the
// loader reading a 20–60 MiB kernel through the firmware's FAT driver, take far longer than
// QEMU's -kernel.
const uefiTimeout = 5 * time.Minute

// uefiMachine says how QEMU boots a board image through UEFI firmware.
type uefiMachine struct {
	qemu, qemuPkg string
	// firmware returns the arguments that attach the firmware (a test may need a copy of a
	// variable store).
	firmware func(t *testing.T) []string
	machine  []string
}

var uefiMachines = map[string]uefiMachine{
	"arm64": {
		qemu: "qemu-system-aarch64", qemuPkg: "qemu-system-arm",
		firmware: func(t *testing.T) []string {
			return []string{"-bios", testtool.File(t, "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "qemu-efi-aarch64")}
		},
		machine: []string{"-M", "virt", "-cpu", "cortex-a53"},
	},
	"amd64": {
		qemu: "qemu-system-x86_64", qemuPkg: "qemu-system-x86",
		firmware: func(t *testing.T) []string {
			code, vars := "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
			if _, err := os.Stat(code); err != nil {
				code, vars = "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
			}
			testtool.File(t, code, "ovmf")
			// The firmware writes its variables (boot entries it finds): a copy per VM.
			b, err := os.ReadFile(testtool.File(t, vars, "ovmf"))
			if err != nil {
				t.Fatal(err)
			}
			varsCopy := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
			if err := os.WriteFile(varsCopy, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
				"-drive", "if=pflash,format=raw,unit=1,file=" + varsCopy}
		},
		machine: []string{"-M", "q35"},
	},
}

// bootUEFI boots the board image img through target's UEFI firmware, with no -kernel: the
// firmware finds Hearth's loader on the boot partition by its removable-media path. It
// forwards loopback ports to the guest's 8443 and 80.
func bootUEFI(t *testing.T, target, img string) (*vm, int) {
	t.Helper()
	m := uefiMachines[target]
	testtool.Path(t, m.qemu, m.qemuPkg)
	port, port80 := freePort(t), freePort(t)
	args := append([]string{}, m.machine...)
	args = append(args, "-accel", "tcg,thread=single", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot")
	args = append(args, m.firmware(t)...)
	args = append(args,
		"-drive", "file="+img+",if=none,format=raw,id=d0,snapshot=on",
		"-device", "virtio-blk-pci,drive=d0,bootindex=0",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8443,hostfwd=tcp:127.0.0.1:%d-:80", port, port80),
		// No option ROM: the firmware has no reason to try booting from the network.
		"-device", "virtio-net-pci,netdev=n0,romfile=")
	v := startQEMU(t, m.qemu, args...)
	v.port80 = port80
	return v, port
}

// TestUEFIBoot boots the arm64 and amd64 board images of the store appliance the way a
// real board does: UEFI firmware (QEMU_EFI on -M virt, OVMF on q35) starts Hearth's loader
// from EFI/BOOT, the loader starts /vmlinuz with cmdline.txt, and gokrazy's init finds its
// root by PARTUUID. The appliance must answer HTTPS through user networking.
func TestUEFIBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM through UEFI firmware")
	}
	for _, target := range []string{"arm64", "amd64"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			img, res := storeImage(t, target)
			v, port := bootUEFI(t, target, img)
			loaderAt := v.waitLine(t, "hearth-boot: starting \\vmlinuz", uefiTimeout)
			took := v.waitHTTPS(t, port, "/api/repos", 401, uefiTimeout)
			t.Logf("%s board through UEFI: QEMU start to the loader starting the kernel in %v, to HTTP 401 in %v, QEMU RSS %d MiB",
				target, loaderAt.Round(time.Millisecond), took.Round(time.Millisecond), v.rss()>>20)
			out := v.output()
			if !strings.Contains(out, res.Cmdline) {
				t.Errorf("the kernel did not get cmdline.txt's command line %q", res.Cmdline)
			}
			if !strings.Contains(out, "hearth: starting store") {
				t.Error("no start line of the appliance on the console")
			}
		})
	}
}

// TestUEFIBootSwitchRoot switches an arm64 board image to root B the way the A/B update
// guard does (rewriting root= in cmdline.txt on the boot partition) after copying root A's
// file system to root B and erasing root A: it boots through the firmware and the loader
// only if the loader passes the rewritten command line on.
func TestUEFIBootSwitchRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM through UEFI firmware")
	}
	t.Parallel()
	src, res := storeImage(t, "arm64")
	img := sparseCopy(t, src)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rootA, rootB := res.Partitions[layout.RootA-1], res.Partitions[layout.RootB-1]
	if _, err := io.Copy(io.NewOffsetWriter(f, rootB[0]), io.NewSectionReader(f, rootA[0], res.RootSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), rootA[0]); err != nil {
		t.Fatal(err)
	}
	boot := res.Partitions[layout.BootPartition-1]
	if err := bootguard.RewriteCmdline(offsetFile{f, boot[0]}, layout.RootB); err != nil {
		t.Fatal(err)
	}
	cmdline, err := bootguard.ReadCmdline(io.NewSectionReader(f, boot[0], boot[1]))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cmdline = strings.TrimSpace(cmdline)
	if !strings.Contains(cmdline, fmt.Sprintf("/PARTNROFF=%d", layout.RootB-layout.BootPartition)) {
		t.Fatalf("rewritten cmdline.txt %q does not name root B", cmdline)
	}

	v, port := bootUEFI(t, "arm64", img)
	took := v.waitHTTPS(t, port, "/api/repos", 401, uefiTimeout)
	t.Logf("arm64 board through UEFI on root B: QEMU start to HTTP 401 in %v", took.Round(time.Millisecond))
	if !strings.Contains(v.output(), cmdline) {
		t.Errorf("the kernel did not get the rewritten command line %q", cmdline)
	}
	st, err := v.bootguardStatus()
	if err != nil || st.Root != layout.RootB {
		t.Errorf("bootguard status: %v, root %d, want %d", err, st.Root, layout.RootB)
	}
}

// offsetFile reads and writes a file from an offset on: a partition of a disk image.
type offsetFile struct {
	f   *os.File
	off int64
}

func (o offsetFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, o.off+off) }
func (o offsetFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, o.off+off) }

// TestUEFIBootPartition checks what a UEFI board image's boot partition holds for the
// firmware: Hearth's loader at the removable-media path, byte for byte, and at /vmlinuz a
// kernel the firmware can load (a PE EFI application for the target's machine).
func TestUEFIBootPartition(t *testing.T) {
	for _, tc := range []struct {
		target  string
		machine uint16
	}{{"arm64", pe.IMAGE_FILE_MACHINE_ARM64}, {"amd64", pe.IMAGE_FILE_MACHINE_AMD64}} {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			img, res := storeImage(t, tc.target)
			tg, err := LookupTarget(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			want, err := efiboot.Loader(tg.GOARCH)
			if err != nil {
				t.Fatal(err)
			}
			loader, err := os.ReadFile(bootFile(t, img, res, tg.LoaderPath))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(loader, want) {
				t.Errorf("%s on the boot partition (%d bytes) is not efiboot's loader (%d bytes)", tg.LoaderPath, len(loader), len(want))
			}
			kernel, err := os.ReadFile(bootFile(t, img, res, "vmlinuz"))
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(kernel)) != res.KernelSize || len(kernel) > efiboot.MaxKernel {
				t.Errorf("vmlinuz is %d bytes, Result says %d, the loader reads at most %d", len(kernel), res.KernelSize, efiboot.MaxKernel)
			}
			f, err := pe.NewFile(bytes.NewReader(kernel))
			if err != nil {
				t.Fatalf("vmlinuz is not a PE file (no EFI stub): %v", err)
			}
			if f.Machine != tc.machine {
				t.Errorf("vmlinuz machine %#x, want %#x", f.Machine, tc.machine)
			}
			if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
				t.Errorf("vmlinuz optional header %T is not an EFI application's", f.OptionalHeader)
			}
			t.Logf("%s: loader %d bytes, kernel %.1f MiB", tc.target, len(loader), float64(len(kernel))/(1<<20))
		})
	}
}
