package efiboot

import (
	"bufio"
	"bytes"
	"context"
	"debug/pe"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

// TestLoaderPE parses the committed loaders as PE files: the right machine, an EFI
// application, relocatable (firmware loads it anywhere), no imports, its entry point in
// code, and small.
func TestLoaderPE(t *testing.T) {
	tests := []struct {
		goarch  string
		machine uint16
		path    string
	}{
		{"amd64", pe.IMAGE_FILE_MACHINE_AMD64, "EFI/BOOT/BOOTX64.EFI"},
		{"arm64", pe.IMAGE_FILE_MACHINE_ARM64, "EFI/BOOT/BOOTAA64.EFI"},
	}
	for _, tc := range tests {
		t.Run(tc.goarch, func(t *testing.T) {
			b, err := Loader(tc.goarch)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := Path(tc.goarch); err != nil || p != tc.path {
				t.Errorf("Path(%q) = %q, %v; want %q", tc.goarch, p, err, tc.path)
			}
			if len(b) == 0 || len(b) > 64<<10 {
				t.Fatalf("loader is %d bytes, want 1 B to 64 KiB", len(b))
			}
			f, err := pe.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != tc.machine {
				t.Errorf("machine %#x, want %#x", f.Machine, tc.machine)
			}
			oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
			if !ok {
				t.Fatalf("optional header %T, want PE32+", f.OptionalHeader)
			}
			if oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
				t.Errorf("subsystem %d, want %d (EFI application)", oh.Subsystem, pe.IMAGE_SUBSYSTEM_EFI_APPLICATION)
			}
			if f.Characteristics&pe.IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
				t.Error("not marked executable")
			}
			if reloc := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_BASERELOC]; reloc.Size == 0 {
				t.Error("no base relocations: firmware could not load it at another address")
			}
			if imp := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_IMPORT]; imp.Size != 0 {
				t.Errorf("import directory of %d bytes: a UEFI application imports nothing", imp.Size)
			}
			if oh.SectionAlignment != 4096 {
				t.Errorf("section alignment %d, want 4096 (firmware maps sections with page permissions)", oh.SectionAlignment)
			}
			text := f.Section(".text")
			if text == nil {
				t.Fatal("no .text section")
			}
			if oh.AddressOfEntryPoint < text.VirtualAddress || oh.AddressOfEntryPoint >= text.VirtualAddress+text.VirtualSize {
				t.Errorf("entry point %#x outside .text [%#x, +%#x)", oh.AddressOfEntryPoint, text.VirtualAddress, text.VirtualSize)
			}
			if text.Characteristics&pe.IMAGE_SCN_MEM_EXECUTE == 0 || text.Characteristics&pe.IMAGE_SCN_MEM_WRITE != 0 {
				t.Errorf(".text characteristics %#x, want executable and not writable", text.Characteristics)
			}
			// The messages the loader prints are in it as ASCII.
			for _, s := range []string{"hearth-boot: starting \\vmlinuz", "cannot read \\cmdline.txt"} {
				if !bytes.Contains(b, []byte(s)) {
					t.Errorf("no %q in the loader", s)
				}
			}
			b[0] ^= 0xff
			if again, _ := Loader(tc.goarch); again[0] == b[0] {
				t.Error("Loader returns the embedded bytes, not a copy")
			}
		})
	}
	for _, bad := range []string{"", "386", "riscv64", "arm"} {
		if _, err := Loader(bad); err == nil {
			t.Errorf("Loader(%q) succeeded", bad)
		}
		if _, err := Path(bad); err == nil {
			t.Errorf("Path(%q) succeeded", bad)
		}
	}
}

// TestLoaderReproducible rebuilds the loaders from loader/loader.c with build.sh (clang and
// lld-link) and checks that the committed binaries are exactly what the source gives.
func TestLoaderReproducible(t *testing.T) {
	clang := testtool.Path(t, "clang", "clang")
	testtool.Path(t, "lld-link", "lld")
	version, _ := exec.Command(clang, "--version").Output()
	version, _, _ = bytes.Cut(version, []byte("\n"))
	testtool.Path(t, "sh", "dash")
	out := t.TempDir()
	cmd := exec.Command("sh", "build.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	for _, tc := range []struct{ goarch, file string }{{"amd64", "bootx64.efi"}, {"arm64", "bootaa64.efi"}} {
		built, err := os.ReadFile(filepath.Join(out, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := Loader(tc.goarch)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(built, committed) {
			t.Errorf("%s: rebuilt loader (%d bytes) differs from the committed one (%d bytes), with %s: run go generate ./images/efiboot (the committed ones are from Debian 12's clang and lld 14.0.6)",
				tc.file, len(built), len(committed), version)
		}
	}
}

// firmware says how QEMU runs a UEFI machine whose boot disk is a directory (QEMU's
// virtual FAT disk).
type firmware struct {
	goarch, qemu, qemuPkg string
	args                  func(t *testing.T) []string
}

var firmwares = map[string]firmware{
	"amd64": {"amd64", "qemu-system-x86_64", "qemu-system-x86", func(t *testing.T) []string {
		code := testtool.File(t, "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf")
		vars, err := os.ReadFile(testtool.File(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"))
		if err != nil {
			t.Fatal(err)
		}
		varsCopy := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		if err := os.WriteFile(varsCopy, vars, 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"-M", "q35", "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
			"-drive", "if=pflash,format=raw,unit=1,file=" + varsCopy}
	}},
	"arm64": {"arm64", "qemu-system-aarch64", "qemu-system-arm", func(t *testing.T) []string {
		return []string{"-M", "virt", "-cpu", "cortex-a53",
			"-bios", testtool.File(t, "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "qemu-efi-aarch64")}
	}},
}

// bootDir boots fw with the loader at its removable-media path in a virtual FAT disk made
// of the directory dir, and waits for console lines containing each of want in turn.
func bootDir(t *testing.T, fw firmware, dir string, want ...string) {
	t.Helper()
	qemu := testtool.Path(t, fw.qemu, fw.qemuPkg)
	loader, err := Loader(fw.goarch)
	if err != nil {
		t.Fatal(err)
	}
	path, err := Path(fw.goarch)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, path), loader, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(fw.args(t), "-accel", "tcg,thread=single", "-m", "256", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-no-reboot",
		"-drive", "file=fat:"+dir+",format=raw,if=none,id=d0,snapshot=on",
		"-device", "virtio-blk-pci,drive=d0,bootindex=0")
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		pw.Close()
	}()
	defer func() {
		cmd.Process.Kill()
		io.Copy(io.Discard, pr)
	}()
	var console strings.Builder
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		console.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), want[0]) {
			if want = want[1:]; len(want) == 0 {
				return
			}
		}
	}
	t.Fatalf("no %q on the console (%v); console:\n%s", want[0], ctx.Err(), console.String())
}

// TestLoaderFailures boots the loader through real UEFI firmware with a broken boot
// partition: each failure is named on the console.
func TestLoaderFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("boots UEFI firmware under QEMU")
	}
	tests := []struct {
		name   string
		goarch string
		files  map[string]string // a name ending in / is a directory
		want   []string
	}{
		{"no cmdline.txt", "amd64", nil, []string{`hearth-boot: cannot read \cmdline.txt: EFI_NOT_FOUND`}},
		{"blank cmdline.txt", "amd64", map[string]string{"cmdline.txt": " \r\n\t\n"},
			[]string{`hearth-boot: \cmdline.txt is empty or not printable ASCII: EFI_NOT_FOUND`}},
		{"non-ASCII cmdline.txt", "amd64", map[string]string{"cmdline.txt": "root=/dev/sd\xc3\xa9 quiet\n"},
			[]string{`hearth-boot: \cmdline.txt is empty or not printable ASCII: EFI_INVALID_PARAMETER`}},
		{"cmdline.txt over the limit", "amd64", map[string]string{"cmdline.txt": strings.Repeat("a", MaxCmdline+1)},
			[]string{`hearth-boot: cannot read \cmdline.txt: EFI_BUFFER_TOO_SMALL`}},
		// After the message and its pause the loader returns the error to the firmware,
		// which (OVMF) says so and goes on to its next boot option.
		{"no vmlinuz", "amd64", map[string]string{"cmdline.txt": "console=ttyS0\n"},
			[]string{`hearth-boot: cannot read \vmlinuz: EFI_NOT_FOUND`, "BdsDxe: failed to start Boot", "BdsDxe: starting Boot"}},
		{"vmlinuz is a directory", "amd64", map[string]string{"cmdline.txt": "console=ttyS0\n", "vmlinuz/": ""},
			[]string{`hearth-boot: cannot read \vmlinuz: EFI_NOT_FOUND`}},
		{"vmlinuz is not a PE image", "amd64", map[string]string{"cmdline.txt": "console=ttyS0\n", "vmlinuz": strings.Repeat("not a kernel ", 1000)},
			[]string{`hearth-boot: cannot load \vmlinuz: EFI_UNSUPPORTED`}},
		{"arm64: no vmlinuz", "arm64", map[string]string{"cmdline.txt": "console=ttyAMA0\n"},
			[]string{`hearth-boot: cannot read \vmlinuz: EFI_NOT_FOUND`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				var err error
				if strings.HasSuffix(name, "/") {
					err = os.Mkdir(filepath.Join(dir, name), 0o755)
				} else {
					err = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			bootDir(t, firmwares[tc.goarch], dir, tc.want...)
		})
	}
}
