package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/images/layout"
	"github.com/hearth-home/hearth/internal/testtool"
)

// extract copies length bytes at off of the image at path into a new file and returns it.
func extract(t testing.TB, path string, off, length int64) string {
	t.Helper()
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, length)); err != nil {
		t.Fatal(err)
	}
	return out
}

// run runs a checking tool and returns its output, failing the test when it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBoardImagesCheck builds every board target and has sfdisk, fsck.vfat, mtools,
// unsquashfs and e2fsck check each part.
func TestBoardImagesCheck(t *testing.T) {
	sfdisk := testtool.Path(t, "sfdisk", "fdisk")
	fsckVfat := testtool.Path(t, "fsck.vfat", "dosfstools")
	mcopy := testtool.Path(t, "mcopy", "mtools")
	unsquashfs := testtool.Path(t, "unsquashfs", "squashfs-tools")
	e2fsck := testtool.Path(t, "e2fsck", "e2fsprogs")
	for _, target := range []string{"rpi", "arm64", "amd64"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			img, res := storeImage(t, target)
			tg, _ := LookupTarget(target)
			var dump struct {
				PartitionTable struct {
					Label      string `json:"label"`
					Partitions []struct {
						Node  string `json:"node"`
						Start int64  `json:"start"`
						Size  int64  `json:"size"`
						Type  string `json:"type"`
						UUID  string `json:"uuid"`
					} `json:"partitions"`
				} `json:"partitiontable"`
			}
			if err := json.Unmarshal([]byte(run(t, sfdisk, "--json", img)), &dump); err != nil {
				t.Fatal(err)
			}
			run(t, sfdisk, "-V", img)
			wantLabel := map[layout.Kind]string{layout.MBR: "dos", layout.GPT: "gpt"}[tg.Table]
			if got := dump.PartitionTable.Label; got != wantLabel {
				t.Errorf("table %q, want %q", got, wantLabel)
			}
			parts := dump.PartitionTable.Partitions
			if len(parts) != 4 {
				t.Fatalf("%d partitions, want 4", len(parts))
			}
			for i, p := range parts {
				if p.Start*512 != res.Partitions[i][0] || p.Size*512 != res.Partitions[i][1] {
					t.Errorf("partition %d at %d+%d sectors, Result says %v", i+1, p.Start, p.Size, res.Partitions[i])
				}
				if tg.Table == layout.GPT && !strings.EqualFold(p.UUID, res.PARTUUIDs[i]) {
					t.Errorf("partition %d PARTUUID %s, Result says %s", i+1, p.UUID, res.PARTUUIDs[i])
				}
			}
			if !strings.Contains(res.Cmdline, "root=PARTUUID=") || !strings.Contains(res.Cmdline, "init=/gokrazy/init") {
				t.Errorf("cmdline %q", res.Cmdline)
			}

			boot := extract(t, img, res.Partitions[0][0], res.Partitions[0][1])
			run(t, fsckVfat, "-n", boot)
			kernel := filepath.Join(t.TempDir(), "kernel")
			run(t, mcopy, "-n", "-i", boot, "::"+tg.KernelPath, kernel)
			if fi, err := os.Stat(kernel); err != nil || fi.Size() != res.KernelSize {
				t.Errorf("kernel on the boot partition: %v, %d bytes, want %d", err, fi.Size(), res.KernelSize)
			}
			cmdline := filepath.Join(t.TempDir(), "cmdline.txt")
			run(t, mcopy, "-n", "-i", boot, "::cmdline.txt", cmdline)
			if b, _ := os.ReadFile(cmdline); strings.TrimSpace(string(b)) != res.Cmdline {
				t.Errorf("cmdline.txt %q, want %q", b, res.Cmdline)
			}
			if target == "rpi" {
				for _, f := range []string{"bootcode.bin", "start4.elf", "fixup.dat", "config.txt", "bcm2710-rpi-3-b.dtb",
					"bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "bcm2710-rpi-zero-2-w.dtb", "overlays/disable-bt.dtbo", "pieeprom.upd", "pieeprom.sig", "recovery.bin"} {
					run(t, mcopy, "-n", "-i", boot, "::"+f, filepath.Join(t.TempDir(), "f"))
				}
			}

			root := extract(t, img, res.Partitions[1][0], res.RootSize)
			list := run(t, unsquashfs, "-lls", root)
			for _, want := range []string{"squashfs-root/gokrazy/init", "squashfs-root/gokrazy/dhcp", "squashfs-root/hearth/bin/store",
				"squashfs-root/user/store -> /gokrazy/init", "squashfs-root/etc/hostname", "squashfs-root/etc/hearth/appliance.json",
				"squashfs-root/etc/resolv.conf -> /tmp/resolv.conf", "squashfs-root/dev/console", "squashfs-root/lib/modules",
				"squashfs-root/etc/gokr-pw.txt", "squashfs-root/perm"} {
				if !strings.Contains(list, want) {
					t.Errorf("root lacks %s", want)
				}
			}
			if l := grepLines(list, "dev/console"); !strings.HasPrefix(l, "crw-------") || !strings.Contains(l, " 5,  1 ") {
				t.Errorf("root's /dev/console is not character device 5,1:\n%s", grepLines(list, "dev/"))
			}
			t.Logf("%s: image %d MiB, root SquashFS %.1f MiB, kernel %.1f MiB, appliance %.1f MiB",
				target, res.Size>>20, float64(res.RootSize)/(1<<20), float64(res.KernelSize)/(1<<20), float64(res.ApplianceSize)/(1<<20))
			if res.RootSize > 20<<20 {
				t.Errorf("root SquashFS is %d bytes, want at most 20 MiB", res.RootSize)
			}
			perm := extract(t, img, res.Partitions[3][0], res.Partitions[3][1])
			run(t, e2fsck, "-fn", perm)
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMicroVMCheck lists a microVM's initramfs with cpio and checks its data disk.
func TestMicroVMCheck(t *testing.T) {
	cpioTool := testtool.Path(t, "cpio", "cpio")
	e2fsck := testtool.Path(t, "e2fsck", "e2fsprogs")
	dir, res := storeImage(t, "microvm-amd64")
	gz, err := os.ReadFile(filepath.Join(dir, "initrd.gz"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "gzip -dc | "+cpioTool+" -itv")
	cmd.Stdin = bytes.NewReader(gz)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	for _, want := range []string{" init\n", " hearth/bin/store\n", " etc/hearth/appliance.json\n", " dev/console\n", " dev/null\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("initramfs lacks%s", strings.TrimSuffix(want, "\n"))
		}
	}
	run(t, e2fsck, "-fn", filepath.Join(dir, "perm.img"))
	var m VMManifest
	b, _ := os.ReadFile(filepath.Join(dir, "vm.json"))
	if err := json.Unmarshal(b, &m); err != nil || m.Arch != "amd64" || m.Kernel != "vmlinuz" || m.Disk != "perm.img" {
		t.Errorf("vm.json: %v %+v", err, m)
	}
	t.Logf("microvm-amd64: kernel %.1f MiB, initramfs %.1f MiB, data disk %d MiB (sparse), total %.1f MiB",
		float64(res.KernelSize)/(1<<20), float64(res.RootSize)/(1<<20), DefaultDataSize>>20, float64(res.Size)/(1<<20))
}

// firstDifference returns the offset of the first byte where two files differ, or -1.
func firstDifference(t testing.TB, a, b string) int64 {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, _ := io.ReadFull(fa, ba)
		nb, _ := io.ReadFull(fb, bb)
		if na != nb {
			return off + int64(min(na, nb))
		}
		if i := bytes.Compare(ba[:na], bb[:nb]); i != 0 {
			for j := range na {
				if ba[j] != bb[j] {
					return off + int64(j)
				}
			}
		}
		if na < len(ba) {
			return -1
		}
	}
}

// TestReproducible builds the same images again and compares every byte.
func TestReproducible(t *testing.T) {
	for _, target := range []string{"rpi", "microvm-arm64"} {
		t.Run(target, func(t *testing.T) {
			path, res := storeImage(t, target)
			again := filepath.Join(t.TempDir(), "again")
			res2, err := Build(context.Background(), Config{Target: target, Appliance: "./appliances/store",
				Dir: "..", Output: again, Password: "test-password"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Files) != len(res2.Files) {
				t.Fatalf("files %v and %v", res.Files, res2.Files)
			}
			for i := range res.Files {
				if off := firstDifference(t, res.Files[i], res2.Files[i]); off >= 0 {
					t.Errorf("%s: two builds differ first at byte %d (partitions: %v)", res.Files[i], off, res.Partitions)
				}
			}
			_ = path
		})
	}
}

// TestBuildBadConfig checks that bad configurations get clear errors.
func TestBuildBadConfig(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "notelf")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	out := filepath.Join(t.TempDir(), "x.img")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown target", Config{Target: "vax", Appliance: "./x", Output: out}, "unknown target"},
		{"no appliance", Config{Target: "rpi", Output: out}, "no appliance"},
		{"no output", Config{Target: "rpi", Appliance: "./x"}, "no output"},
		{"bad name", Config{Target: "rpi", Appliance: "./x", Name: "Bad Name", Output: out}, "bad name"},
		{"bad hostname", Config{Target: "rpi", Appliance: "./x", Hostname: "-x", Output: out}, "bad name"},
		{"image too small", Config{Target: "arm64", Appliance: "./x", Size: 100 << 20, Output: out}, "image size"},
		{"data disk too small", Config{Target: "microvm-arm64", Appliance: "./x", DataSize: 1 << 20, Output: out}, "data disk size"},
		{"password with newline", Config{Target: "rpi", Appliance: "./x", Password: "a\nb", Output: out}, "password"},
		{"too many args", Config{Target: "rpi", Appliance: "./x", Args: make([]string, 300), Output: out}, "arguments"},
		{"not an ELF binary", Config{Target: "microvm-arm64", Appliance: bin, Output: t.TempDir(), Dir: ".."}, "not an ELF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one mentioning %q", err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed build left %s", out)
			}
		})
	}
}

// TestPrebuiltWrongArch refuses an amd64 binary for an arm64 target.
func TestPrebuiltWrongArch(t *testing.T) {
	exe, err := os.Executable() // this test binary: the host's architecture
	if err != nil {
		t.Fatal(err)
	}
	target := "microvm-arm64"
	if strings.Contains(exe, "arm64") || isARM64Host() {
		target = "microvm-amd64"
	}
	_, err = Build(context.Background(), Config{Target: target, Appliance: exe, Name: "x", Output: t.TempDir(), Dir: ".."})
	if err == nil || !strings.Contains(err.Error(), "the target needs") {
		t.Fatalf("err %v, want an architecture mismatch", err)
	}
}
