package images

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/jitsu"
)

const bootTimeout = 60 * time.Second

// microVMARM64 boots a microVM directory with disk as its data disk, forwarding a loopback
// port to the guest's 8443.
func microVMARM64(t testing.TB, dir string, res *Result, disk string) (*vm, int) {
	return microVMARM64Accel(t, dir, res, disk, "tcg,thread=single")
}

// microVMARM64Accel is microVMARM64 with QEMU's -accel argument.
func microVMARM64Accel(t testing.TB, dir string, res *Result, disk, accel string) (*vm, int) {
	port := freePort(t)
	v := startQEMU(t, "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-accel", accel,
		"-m", "128", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initrd.gz"),
		"-append", "console=ttyAMA0 quiet "+res.Cmdline,
		"-drive", "file="+disk+",if=none,format=raw,id=d0", "-device", "virtio-blk-device,drive=d0",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8443", port), "-device", "virtio-net-device,netdev=n0")
	return v, port
}

// TestBootMicroVMARM64 boots the store appliance's microVM under TCG, reaches its HTTPS
// service through user networking, finds its data on the data disk, boots it again (the
// service's first answer with its data in place), and boots it with an empty data disk,
// which the init formats.
func TestBootMicroVMARM64(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	debugfs := testtool.Path(t, "debugfs", "e2fsprogs")
	dir, res := storeImage(t, "microvm-arm64")
	disk := sparseCopy(t, filepath.Join(dir, "perm.img"))
	v, port := microVMARM64(t, dir, res, disk)
	took := v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	t.Logf("microvm-arm64, first boot (creates its CA): QEMU start to HTTP 401 in %v, QEMU RSS %d MiB", took, v.rss()>>20)
	v.stop() // a power cut: QEMU is killed
	fsckAfterPowerCut(t, disk)
	out, err := exec.Command(debugfs, "-R", "ls -l /hearth", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "repos") || !strings.Contains(string(out), "ca") {
		t.Fatalf("the appliance's data is not on the data disk: %v\n%s", err, out)
	}

	v, port = microVMARM64(t, dir, res, disk)
	took = v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	t.Logf("microvm-arm64, second boot: QEMU start to HTTP 401 in %v, QEMU RSS %d MiB", took, v.rss()>>20)
	v.stop()

	// A smaller translation cache (QEMU's default under TCG is 1 GiB) keeps QEMU's memory
	// down.
	v, port = microVMARM64Accel(t, dir, res, disk, "tcg,thread=single,tb-size=32")
	took = v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	t.Logf("microvm-arm64, third boot, tb-size=32: QEMU start to HTTP 401 in %v, QEMU RSS %d MiB", took, v.rss()>>20)
	v.stop()

	empty := filepath.Join(t.TempDir(), "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(empty, 64<<20); err != nil {
		t.Fatal(err)
	}
	v, port = microVMARM64(t, dir, res, empty)
	v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	if !strings.Contains(v.output(), "formatted and mounted on /perm") {
		t.Error("the init did not say it formatted the empty data disk")
	}
	v.stop()
	fsckAfterPowerCut(t, empty)
	out, err = exec.Command(debugfs, "-R", "ls -l /hearth", empty).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "repos") {
		t.Fatalf("the appliance's data is not on the formatted data disk: %v\n%s", err, out)
	}
}

// fsckAfterPowerCut replays the journal of an ext4 data disk whose VM was killed, as the
// next mount would (e2fsck -fy; exit status 1 means it fixed something, such as replaying
// the journal), then requires a clean check (e2fsck -fn).
func fsckAfterPowerCut(t testing.TB, disk string) {
	t.Helper()
	e2fsck := testtool.Path(t, "e2fsck", "e2fsprogs")
	out, err := exec.Command(e2fsck, "-fy", disk).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("e2fsck -fy after a power cut: %v\n%s", err, out)
	}
	run(t, e2fsck, "-fn", disk)
}

// sparseCopy copies a mostly empty file, skipping zero blocks, and returns the copy.
func sparseCopy(t testing.TB, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(fi.Size()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < fi.Size(); off += int64(len(buf)) {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
		if err != nil {
			break
		}
	}
	return dst
}

// bootFile copies a file from a board image's boot partition.
func bootFile(t testing.TB, img string, res *Result, name string) string {
	t.Helper()
	mcopy := testtool.Path(t, "mcopy", "mtools")
	out := filepath.Join(t.TempDir(), filepath.Base(name))
	run(t, mcopy, "-n", "-i", fmt.Sprintf("%s@@%d", img, res.Partitions[0][0]), "::"+name, out)
	return out
}

// TestBootARM64Board boots the arm64 board image under -M virt: the kernel from its boot
// partition, the image as a virtio disk, gokrazy's init finding its root by PARTUUID; the
// store appliance must answer through user networking.
func TestBootARM64Board(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	img, res := storeImage(t, "arm64")
	kernel := bootFile(t, img, res, "vmlinuz")
	v, port := armBoard(t, img, res, kernel)
	took := v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	t.Logf("arm64 board: QEMU start to HTTP 401 in %v", took)
	if !strings.Contains(v.output(), "hearth: starting store") {
		t.Error("no start line on the console")
	}
	// The A/B update guard answers behind gokrazy's password on port 80.
	st, err := v.bootguardStatus()
	if err != nil || st.Phase != "healthy" || st.Root != 2 {
		t.Errorf("bootguard status: %v %+v, want healthy on root 2", err, st)
	}
	v.stop()

	// An image whose persistent partition is empty (all zeros): the init formats it.
	blank := sparseCopy(t, img)
	f, err := os.OpenFile(blank, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), res.Partitions[3][0]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	v, port = armBoard(t, blank, res, kernel)
	v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
	if !strings.Contains(v.output(), "formatted the empty persistent partition") {
		t.Error("the init did not format the empty persistent partition")
	}
}

// armBoard boots an arm64 board image under -M virt with kernel; the guest's writes go to
// a throwaway overlay (snapshot=on).
func armBoard(t *testing.T, img string, res *Result, kernel string) (*vm, int) {
	return armBoardDisk(t, img, res, kernel, true)
}

// armBoardDisk is armBoard that, without snapshot, writes to img itself, so that what the
// guest wrote is there for the next boot and the checks.
func armBoardDisk(t *testing.T, img string, res *Result, kernel string, snapshot bool) (*vm, int) {
	drive := "file=" + img + ",if=none,format=raw,id=d0"
	if snapshot {
		drive += ",snapshot=on"
	}
	port, port80 := freePort(t), freePort(t)
	v := startQEMU(t, "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-accel", "tcg,thread=single",
		"-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-append", res.Cmdline,
		"-drive", drive, "-device", "virtio-blk-device,drive=d0",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8443,hostfwd=tcp:127.0.0.1:%d-:80", port, port80),
		"-device", "virtio-net-device,netdev=n0")
	v.port80 = port80
	return v, port
}

// TestBootAMD64 boots the amd64 board image and the amd64 microVM under
// qemu-system-x86_64 (the bzImage with -kernel: the kernel has no PVH entry).
func TestBootAMD64(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Run("board", func(t *testing.T) {
		t.Parallel()
		img, res := storeImage(t, "amd64")
		kernel := bootFile(t, img, res, "vmlinuz")
		port := freePort(t)
		v := startQEMU(t, "qemu-system-x86_64", "-M", "q35", "-accel", "tcg,thread=single",
			"-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
			"-kernel", kernel, "-append", res.Cmdline,
			"-drive", "file="+img+",if=virtio,format=raw,snapshot=on",
			"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8443", port), "-device", "virtio-net-pci,netdev=n0")
		took := v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
		t.Logf("amd64 board: QEMU start to HTTP 401 in %v", took)
	})
	t.Run("microvm", func(t *testing.T) {
		t.Parallel()
		dir, res := storeImage(t, "microvm-amd64")
		port := freePort(t)
		v := startQEMU(t, "qemu-system-x86_64", "-M", "q35", "-accel", "tcg,thread=single",
			"-m", "128", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
			"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initrd.gz"),
			"-append", "console=ttyS0 "+res.Cmdline,
			"-drive", "file="+filepath.Join(dir, "perm.img")+",if=virtio,format=raw,snapshot=on",
			"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8443", port), "-device", "virtio-net-pci,netdev=n0")
		took := v.waitHTTPS(t, port, "/api/repos", 401, bootTimeout)
		t.Logf("microvm-amd64: QEMU start to HTTP 401 in %v", took)
	})
}

// TestBootRPi boots the Raspberry Pi image from QEMU's emulated SD card (raspi3b) until
// the appliance's start line appears on the serial console (the mini UART).
func TestBootRPi(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	img, res := storeImage(t, "rpi")
	v := rpiBoot(t, img, res, true)
	took := v.waitLine(t, "hearth: waiting", bootTimeout)
	t.Logf("rpi (raspi3b): QEMU start to the init's supervisor starting the appliance in %v", took)
	// The emulated Pi has no network, so the appliance starts after the init's wait for an
	// address.
	took = v.waitLine(t, "hearth: starting store", bootTimeout)
	t.Logf("rpi (raspi3b): QEMU start to the appliance's start line in %v", took)
}

// rpiBoot boots a Raspberry Pi image from QEMU's emulated SD card (raspi3b), with its
// kernel and the Pi 3 B device tree from the image's boot partition; without snapshot the
// guest writes to img itself.
func rpiBoot(t *testing.T, img string, res *Result, snapshot bool) *vm {
	kernel := bootFile(t, img, res, "vmlinuz")
	dtb := bootFile(t, img, res, "bcm2710-rpi-3-b.dtb")
	// QEMU does not run the Pi firmware, which would turn console=serial0 into the UART.
	// QEMU's raspi3b resets the machine as soon as the init opens the BCM2835 watchdog
	// (gokrazy does at boot), so the test leaves the watchdog driver out.
	cmdline := strings.Replace(res.Cmdline, "console=serial0,115200", "console=ttyS0,115200", 1) +
		" initcall_blacklist=bcm2835_wdt_driver_init"
	drive := "file=" + img + ",if=sd,format=raw"
	if snapshot {
		drive += ",snapshot=on"
	}
	return startQEMU(t, "qemu-system-aarch64", "-M", "raspi3b", "-accel", "tcg,thread=single",
		"-display", "none", "-serial", "null", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-dtb", dtb, "-append", cmdline, "-drive", drive)
}

// TestJitsuBootsMicroVM has jitsu's microVM backend boot the store's microVM as the
// builder's vm.json describes it (kernel, initramfs and its data disk, a copy of perm.img)
// and splice an HTTPS connection to it.
func TestJitsuBootsMicroVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	t.Parallel()
	testtool.Path(t, "qemu-system-aarch64", "qemu-system-arm")
	dir, _ := storeImage(t, "microvm-arm64")
	b := jitsu.NewVMBackend(jitsu.VMOptions{Accel: "tcg", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer b.Close(context.Background())
	m, err := jitsu.LoadVMDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Disk != filepath.Join(dir, "perm.img") {
		t.Fatalf("vm.json's disk is %q", m.Disk)
	}
	m.Disk = sparseCopy(t, m.Disk) // the built image is shared by the tests
	m.Sockets = []jitsu.Socket{{Name: "https", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 8443}}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := b.Add(ctx, m); err != nil {
		t.Fatal(err)
	}
	addr, err := b.Addr("store", "https")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := &http.Client{Timeout: bootTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr.String() + "/api/repos")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %s, want 401", resp.Status)
	}
	t.Logf("jitsu: connection to the summoned microVM's 401 in %v", time.Since(start))

	// jitsu stops the VM with the power button: the guest unmounts its data disk, which
	// then checks clean without a journal replay and holds the appliance's data.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e2fsck := testtool.Path(t, "e2fsck", "e2fsprogs")
	run(t, e2fsck, "-fn", m.Disk)
	out := run(t, testtool.Path(t, "debugfs", "e2fsprogs"), "-R", "ls -l /hearth", m.Disk)
	if !strings.Contains(out, "repos") {
		t.Fatalf("the appliance's data is not on the data disk:\n%s", out)
	}
}
