package jitsu

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images/cpio"
	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/signpost"
)

// The modules whose vmlinuz the microVM tests boot: a raw arm64 Image and an x86-64 bzImage.
const (
	gokrazyKernel      = "github.com/gokrazy/kernel.arm64@v0.0.0-20260705071517-37841c4d6ff1"
	gokrazyKernelAMD64 = "github.com/gokrazy/kernel.amd64@v0.0.0-20260705070735-de680abf072b"
)

// vmImage returns the kernel and an initramfs whose init is testdata/vmguest built for
// arm64, serving port 80 with a greeting.
func vmImage(t *testing.T) (kernel, initrd string) {
	return vmImageFor(t, "arm64", gokrazyKernel)
}

// vmImages caches vmImageFor's results by GOARCH for the whole test binary.
var vmImages struct {
	sync.Mutex
	m map[string][2]string
}

// vmImageFor is vmImage for a GOARCH and a kernel module.
func vmImageFor(t *testing.T, goarch, kernelModule string) (kernel, initrd string) {
	t.Helper()
	vmImages.Lock()
	defer vmImages.Unlock()
	if img, ok := vmImages.m[goarch]; ok {
		return img[0], img[1]
	}
	dl := exec.Command("go", "mod", "download", "-json", kernelModule)
	dl.Dir = t.TempDir() // outside the module: go.mod and go.sum stay as they are
	out, err := dl.Output()
	if err != nil {
		testtool.Missing(t, "go mod download %s: %v %s", kernelModule, err, out)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s", err, out)
	}
	kernel = filepath.Join(mod.Dir, "vmlinuz")

	dir := filepath.Join(testDir, "vm-"+goarch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	guest := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", guest, "./testdata/vmguest")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(guest)
	if err != nil {
		t.Fatal(err)
	}
	initrd = filepath.Join(dir, "initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	err = cpio.WriteInit(f, bin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if vmImages.m == nil {
		vmImages.m = map[string][2]string{}
	}
	vmImages.m[goarch] = [2]string{kernel, initrd}
	return kernel, initrd
}

func readVMGreeting(t *testing.T, addr string) (net.Conn, time.Duration) {
	t.Helper()
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(90 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(t0)
	if err != nil || line != "* OK vm appliance\r\n" {
		c.Close()
		t.Fatalf("greeting %q, %v", line, err)
	}
	return c, took
}

func vmStatus(t *testing.T, b *VMBackend) ApplianceStatus {
	t.Helper()
	st := b.Status()
	if len(st) != 1 {
		t.Fatalf("status %+v", st)
	}
	return st[0]
}

// TestVMBackend boots the test appliance's microVM under QEMU (TCG) when a connection
// arrives, holds the connection while it boots and splices it to the guest, serves a
// second connection from the running VM, stops the VM when idle, boots it again for the
// next connection, and leaves no QEMU behind after Close.
func TestVMBackend(t *testing.T) {
	testtool.Path(t, "qemu-system-aarch64", "qemu-system-arm")
	kernel, initrd := vmImage(t)
	b := NewVMBackend(VMOptions{Logger: testLogger(t), BootTimeout: 90 * time.Second})
	t.Cleanup(func() { b.Close(context.Background()) })
	m := Manifest{Name: "vm", Image: kernel, Initrd: initrd, IdleTimeout: 2 * time.Second,
		Sockets: []Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	if err := b.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if !b.Has("vm") || b.Has("other") {
		t.Fatal("Has")
	}
	addr, err := b.Addr("vm", "greet")
	if err != nil {
		t.Fatal(err)
	}
	if st := vmStatus(t, b); st.State != StateStopped || st.PID != 0 {
		t.Fatalf("before any connection: %+v", st)
	}

	c1, cold := readVMGreeting(t, addr.String())
	st := vmStatus(t, b)
	t.Logf("cold: connect to greeting %v (summon latency %v)", cold, st.LastSummonLatency)
	if st.State != StateRunning || st.PID == 0 || st.Summons != 1 {
		t.Fatalf("after the first connection: %+v", st)
	}
	qemu := st.PID
	c2, warm := readVMGreeting(t, addr.String())
	t.Logf("warm: %v", warm)
	if st := vmStatus(t, b); st.Summons != 1 || st.PID != qemu {
		t.Fatalf("a second connection booted another VM: %+v", st)
	}
	c1.Close()
	c2.Close()

	deadline := time.Now().Add(30 * time.Second)
	for vmStatus(t, b).State != StateStopped || !processGone(qemu) {
		if time.Now().After(deadline) {
			t.Fatalf("VM not stopped after its idle timeout: %+v", vmStatus(t, b))
		}
		time.Sleep(50 * time.Millisecond)
	}

	c3, again := readVMGreeting(t, addr.String())
	t.Logf("cold again: %v", again)
	st = vmStatus(t, b)
	if st.Summons != 2 || st.PID == qemu || st.PID == 0 {
		t.Fatalf("after idling out and a new connection: %+v", st)
	}
	c3.Close()
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !processGone(st.PID) {
		t.Fatalf("QEMU %d still runs after Close", st.PID)
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Fatal("socket open after Close")
	}
}

// TestVMSummonFromDNS runs a microVM appliance under Start and times summons from the DNS
// query to the guest's greeting.
func TestVMSummonFromDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU three times")
	}
	testtool.Path(t, "qemu-system-aarch64", "qemu-system-arm")
	kernel, initrd := vmImage(t)
	j, err := Start(t.Context(), Config{
		Names: signpost.Names{Domain: "home.arpa", Appliances: []signpost.Appliance{
			{Name: "vm", Ports: []signpost.Port{{Name: "greet", Proto: "tcp", Port: 1}}},
		}},
		Manifests: []Manifest{{Name: "vm", Image: kernel, Initrd: initrd,
			Sockets: []Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}},
		DNSAddr:  "127.0.0.1:0",
		LANAddrs: func() ([]net.IP, error) { return nil, nil },
		VM:       VMOptions{BootTimeout: 90 * time.Second},
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	st, err := MeasureSummonDNS(t.Context(), j, "vm", "greet", MeasureOptions{Runs: 3, Timeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("microVM summon from the DNS query to the greeting (TCG): %v", st)
	if got := j.Status(); len(got) != 1 || got[0].Summons != 3 {
		t.Fatalf("status %+v, want 3 summons", got)
	}
}

// TestVMAMD64ChoosesAWorkingAccelerator boots an x86-64 guest with the accelerator left
// to the backend: on an x86-64 host it probes KVM with the guest's own kernel and falls
// back to TCG when KVM cannot run it (a nested /dev/kvm that exists but fails, as on the
// machines these tests were written on), so the guest answers either way.
func TestVMAMD64ChoosesAWorkingAccelerator(t *testing.T) {
	if testing.Short() {
		t.Skip("boots an x86-64 guest, ~6 s under TCG")
	}
	testtool.Path(t, "qemu-system-x86_64", "qemu-system-x86")
	kernel, initrd := vmImageFor(t, "amd64", gokrazyKernelAMD64)
	b := NewVMBackend(VMOptions{Logger: testLogger(t), BootTimeout: 120 * time.Second})
	t.Cleanup(func() { b.Close(context.Background()) })
	m := Manifest{Name: "vm", Image: kernel, Initrd: initrd, Arch: "amd64",
		Sockets: []Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	if err := b.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	addr, _ := b.Addr("vm", "greet")
	c, took := readVMGreeting(t, addr.String())
	c.Close()
	b.mu.Lock()
	accel := b.apps["vm"].accel
	b.mu.Unlock()
	t.Logf("x86-64 guest under %s: connect to greeting %v", accel, took)
}

func TestVMAddErrors(t *testing.T) {
	b := NewVMBackend(VMOptions{Logger: testLogger(t), Accel: "tcg"})
	defer b.Close(context.Background())
	for _, tc := range []struct {
		name string
		m    Manifest
	}{
		{"no image", Manifest{Name: "a", Exec: []string{"x"}}},
		{"bad arch", Manifest{Name: "a", Image: "k", Arch: "mips"}},
		{"exec and image", Manifest{Name: "a", Image: "k", Exec: []string{"x"}}},
		{"no guest port", Manifest{Name: "a", Image: "k", Sockets: []Socket{{Name: "s", Proto: "tcp", Addr: "127.0.0.1:0"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.Add(t.Context(), tc.m); err == nil {
				t.Fatal("added")
			}
		})
	}
	m := Manifest{Name: "a", Image: "/nonexistent/kernel", Sockets: []Socket{{Name: "s", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	if err := b.Add(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(t.Context(), m); err == nil {
		t.Fatal("added twice")
	}
	if err := b.Summon(t.Context(), "nobody"); err == nil {
		t.Fatal("summoned an unknown appliance")
	}
}

// TestProbeKVM: a QEMU that reports a KVM failure, or exits with an error, means no KVM;
// a guest kernel that reaches init (or a panic), or a QEMU that ends well, means KVM works
// when /dev/kvm can be opened.
func TestProbeKVM(t *testing.T) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	kvm := err == nil
	dir := t.TempDir()
	for _, tc := range []struct {
		name, script string
		want         bool
	}{
		{"KVM internal error", "echo 'KVM internal error. Suberror: 1' >&2\nexec sleep 10", false},
		{"failed to set MSR", "echo 'qemu: kvm: failed to set MSR 0x345 to 0x2000' >&2\nexit 1", false},
		{"exits with an error", "exit 1", false},
		{"kernel starts init", "echo '[    0.9] Run /init as init process'\nexec sleep 30", kvm},
		{"kernel panics", "echo 'Kernel panic - not syncing: VFS'\nexec sleep 30", kvm},
		{"guest powers off", "echo 'reboot: Power down'\nexit 0", kvm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(qemu, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if got := ProbeKVM(qemu, nil); got != tc.want {
				t.Fatalf("ProbeKVM %v, want %v (/dev/kvm usable: %v)", got, tc.want, kvm)
			}
		})
	}
}
