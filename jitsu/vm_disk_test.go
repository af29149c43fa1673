package jitsu

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// vmDir writes a microVM directory like hearth image build's, with vm.json's content.
func vmDir(t *testing.T, vmJSON string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vmlinuz"), []byte("kernel"))
	writeFile(t, filepath.Join(dir, "initrd.gz"), []byte("initrd"))
	writeFile(t, filepath.Join(dir, "perm.img"), make([]byte, 4096))
	writeFile(t, filepath.Join(dir, VMManifestFile), []byte(vmJSON))
	return dir
}

const goodVMJSON = `{"arch": "arm64", "kernel": "vmlinuz", "initrd": "initrd.gz", "cmdline": "rdinit=/init panic=-1",
 "disk": "perm.img", "memory_mib": 128, "appliance": "store", "hostname": "store", "future": 1}`

func TestLoadVMDir(t *testing.T) {
	dir := vmDir(t, goodVMJSON)
	m, err := LoadVMDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Manifest{Name: "store", Image: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.gz"),
		Disk: filepath.Join(dir, "perm.img"), Arch: "arm64", Cmdline: "rdinit=/init panic=-1", MemoryMiB: 128}
	if !slices.Equal([]string{m.Name, m.Image, m.Initrd, m.Disk, m.Arch, m.Cmdline}, []string{want.Name, want.Image, want.Initrd, want.Disk, want.Arch, want.Cmdline}) || m.MemoryMiB != 128 {
		t.Fatalf("LoadVMDir: %+v, want %+v", m, want)
	}

	for _, tc := range []struct{ name, json, errHas string }{
		{"no kernel", `{"appliance": "a"}`, "no kernel"},
		{"kernel outside", `{"appliance": "a", "kernel": "../vmlinuz"}`, "not a file in the directory"},
		{"absolute disk", `{"appliance": "a", "kernel": "k", "disk": "/etc/passwd"}`, "not a file in the directory"},
		{"bad name", `{"appliance": "A b", "kernel": "k"}`, "name"},
		{"bad arch", `{"appliance": "a", "kernel": "k", "arch": "mips"}`, "arch"},
		{"not JSON", `kernel=k`, "invalid"},
		{"trailing data", `{"appliance": "a", "kernel": "k"} {}`, "after the JSON"},
		{"too big", `{"appliance": "a", "kernel": "k", "cmdline": "` + strings.Repeat("x", maxVMManifestSize) + `"}`, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadVMDir(vmDir(t, tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("LoadVMDir: %v, want an error saying %q", err, tc.errHas)
			}
		})
	}
	if _, err := LoadVMDir(t.TempDir()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a directory without vm.json: %v", err)
	}
}

// TestManifestsDiskAndVMDir: the disk field round-trips through a manifests file, needs an
// image, and an entry naming a microVM directory takes what it leaves out from vm.json.
func TestManifestsDiskAndVMDir(t *testing.T) {
	m := Manifest{Name: "notes", Image: "/vm/vmlinuz", Disk: "/vm/perm.img",
		Sockets: []Socket{{Name: "http", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	data, err := EncodeManifests([]Manifest{m})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeManifests(data)
	if err != nil || len(got) != 1 || got[0].Disk != m.Disk {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	bad := Manifest{Name: "p", Exec: []string{"/bin/p"}, Disk: "perm.img"}
	if err := bad.Validate(); err == nil || !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), "need an image") {
		t.Fatalf("disk without an image: %v", err)
	}
	bad = m
	bad.Disk = "a\x00b"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "disk") {
		t.Fatalf("disk with a NUL: %v", err)
	}

	dir := vmDir(t, goodVMJSON)
	file, _ := json.Marshal(map[string]any{"appliances": []any{map[string]any{
		"vm_dir": dir, "memory_mib": 96, "idle_timeout": "5m",
		"sockets": []any{map[string]any{"name": "https", "proto": "tcp", "addr": "127.0.0.1:0", "guest_port": 8443}},
	}}})
	got, err = DecodeManifests(file)
	if err != nil {
		t.Fatal(err)
	}
	g := got[0]
	if g.Name != "store" || g.Image != filepath.Join(dir, "vmlinuz") || g.Disk != filepath.Join(dir, "perm.img") ||
		g.MemoryMiB != 96 || g.Arch != "arm64" || g.IdleTimeout != 5*time.Minute || len(g.Sockets) != 1 {
		t.Fatalf("manifest from vm_dir: %+v", g)
	}
	file, _ = json.Marshal(map[string]any{"appliances": []any{map[string]any{"name": "x", "vm_dir": t.TempDir()}}})
	if _, err := DecodeManifests(file); err == nil || !strings.Contains(err.Error(), "vm.json") {
		t.Fatalf("vm_dir without vm.json: %v", err)
	}
}

// TestVMAddDisk: Add refuses a data disk that is missing, empty or not a file, with an
// error saying so, and accepts one that exists.
func TestVMAddDisk(t *testing.T) {
	b := NewVMBackend(VMOptions{Logger: testLogger(t), Accel: "tcg"})
	defer b.Close(context.Background())
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	writeFile(t, empty, nil)
	good := filepath.Join(dir, "perm.img")
	writeFile(t, good, make([]byte, 4096))
	for _, tc := range []struct{ name, disk, errHas string }{
		{"missing", filepath.Join(dir, "nope.img"), "does not exist"},
		{"empty", empty, "is empty"},
		{"directory", dir, "not a regular file"},
		{"good", good, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Manifest{Name: tc.name, Image: "/nonexistent/kernel", Disk: tc.disk,
				Sockets: []Socket{{Name: "s", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
			err := b.Add(t.Context(), m)
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatal(err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("Add: %v, want an error saying %q", err, tc.errHas)
			}
		})
	}
}

// TestVMQEMUArgs: the data disk is a write-back, locked virtio disk (commas in its path
// escaped), on the MMIO bus on arm64 and PCI on x86-64; a probe boot gets no disk.
func TestVMQEMUArgs(t *testing.T) {
	b := NewVMBackend(VMOptions{Logger: testLogger(t), Accel: "tcg"})
	defer b.Close(context.Background())
	m := Manifest{Name: "a", Image: "/vm/vmlinuz", Disk: "/vm/a,b.img",
		Sockets: []Socket{{Name: "s", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	for _, tc := range []struct{ arch, dev string }{{"arm64", "virtio-blk-device,drive=d0"}, {"amd64", "virtio-blk-pci,drive=d0"}} {
		m.Arch = tc.arch
		_, args := b.qemuArgs(m, []int{1234}, "tcg")
		all := strings.Join(args, " ")
		if !strings.Contains(all, "-drive file=/vm/a,,b.img,if=none,id=d0,format=raw,cache=writeback,file.locking=on -device "+tc.dev) {
			t.Errorf("%s: %s", tc.arch, all)
		}
		_, args = b.qemuArgs(m, nil, "kvm")
		if slices.Contains(args, "-drive") {
			t.Errorf("%s: a probe boot has the disk: %v", tc.arch, args)
		}
	}
}

// fakeQMP serves one QMP session on a Unix socket: it greets (unless greeting is empty),
// then answers each command with answer(cmd), and records the commands.
func fakeQMP(t *testing.T, greeting string, answer func(cmd string) string) (string, func() []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var cmds []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if greeting == "" {
			c.Read(make([]byte, 1)) // silent until the client gives up
			return
		}
		c.Write([]byte(greeting + "\r\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var cmd struct{ Execute string }
			json.Unmarshal(sc.Bytes(), &cmd)
			mu.Lock()
			cmds = append(cmds, cmd.Execute)
			mu.Unlock()
			c.Write([]byte(answer(cmd.Execute) + "\r\n"))
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return path, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(cmds)
	}
}

const qmpGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`

func TestQMPPowerdown(t *testing.T) {
	ok := func(string) string { return `{"return": {}}` }
	for _, tc := range []struct {
		name, greeting string
		answer         func(string) string
		errHas         string
		cmds           []string
	}{
		{"powers down", qmpGreeting, ok, "", []string{"qmp_capabilities", "system_powerdown"}},
		{"events before the answer", qmpGreeting, func(cmd string) string {
			return `{"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 2}}` + "\r\n" + `{"return": {}}`
		}, "", []string{"qmp_capabilities", "system_powerdown"}},
		{"error answer", qmpGreeting, func(cmd string) string {
			if cmd == "system_powerdown" {
				return `{"error": {"class": "GenericError", "desc": "no power button"}}`
			}
			return `{"return": {}}`
		}, "no power button", []string{"qmp_capabilities", "system_powerdown"}},
		{"not QMP", `{"hello": 1}`, ok, "not QMP", nil},
		{"garbage", `+OK`, ok, "not JSON", nil},
		{"silent", "", ok, "greeting", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, cmds := fakeQMP(t, tc.greeting, tc.answer)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			err := qmpPowerdown(ctx, path)
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatal(err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("qmpPowerdown: %v, want an error saying %q", err, tc.errHas)
			}
			if got := cmds(); !slices.Equal(got, tc.cmds) {
				t.Fatalf("commands %v, want %v", got, tc.cmds)
			}
		})
	}
	if err := qmpPowerdown(t.Context(), filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("no socket: no error")
	}
}

// TestStopPlan runs the stop sequence against a fake QEMU in a synctest bubble: the
// power button first, SIGTERM after the power-down timeout, SIGKILL after the grace.
func TestStopPlan(t *testing.T) {
	for _, tc := range []struct {
		name         string
		pressErr     error         // what pressing the power button returns
		offAfter     time.Duration // the guest powers off this long after the press (0: never)
		exitOn       syscall.Signal
		noPowerdown  bool
		killAtOnce   bool
		want         string
		wantSignals  []syscall.Signal
		wantDuration time.Duration
	}{
		{name: "guest powers off", offAfter: 3 * time.Second, want: stopPoweredOff, wantDuration: 3 * time.Second},
		{name: "guest ignores the button", exitOn: syscall.SIGTERM, want: stopTerminated,
			wantSignals: []syscall.Signal{syscall.SIGTERM}, wantDuration: 10 * time.Second},
		{name: "QEMU ignores SIGTERM", exitOn: syscall.SIGKILL, want: stopKilled,
			wantSignals: []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, wantDuration: 15 * time.Second},
		{name: "press fails", pressErr: errors.New("no socket"), exitOn: syscall.SIGTERM, want: stopTerminated,
			wantSignals: []syscall.Signal{syscall.SIGTERM}},
		{name: "no power button", noPowerdown: true, exitOn: syscall.SIGTERM, want: stopTerminated,
			wantSignals: []syscall.Signal{syscall.SIGTERM}},
		{name: "killed at once", killAtOnce: true, exitOn: syscall.SIGKILL, want: stopKilled,
			wantSignals: []syscall.Signal{syscall.SIGKILL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				exited := make(chan struct{})
				var once sync.Once
				exit := func() { once.Do(func() { close(exited) }) }
				var signals []syscall.Signal
				kill := make(chan struct{})
				if tc.killAtOnce {
					close(kill)
				}
				p := stopPlan{
					signal: func(s syscall.Signal) {
						signals = append(signals, s)
						if s == tc.exitOn || s == syscall.SIGKILL {
							exit()
						}
					},
					exited: exited, kill: kill, powerdownTimeout: 10 * time.Second, grace: 5 * time.Second,
				}
				if !tc.noPowerdown {
					p.powerdown = func(ctx context.Context) error {
						if tc.pressErr != nil {
							return tc.pressErr
						}
						if tc.offAfter > 0 {
							time.AfterFunc(tc.offAfter, exit)
						}
						return nil
					}
				}
				start := time.Now()
				how, err := p.run()
				if how != tc.want || !slices.Equal(signals, tc.wantSignals) {
					t.Fatalf("stop: %q (%v) with signals %v, want %q with %v", how, err, signals, tc.want, tc.wantSignals)
				}
				if (err != nil) != (tc.pressErr != nil) {
					t.Fatalf("error %v, want %v", err, tc.pressErr)
				}
				if took := time.Since(start); took != tc.wantDuration {
					t.Fatalf("the stop took %v, want %v", took, tc.wantDuration)
				}
				if how, _ := p.run(); how != stopExited {
					t.Fatalf("a second stop: %q", how)
				}
			})
		})
	}
}

// TestInitrdCache: a gzip initramfs boots from a decompressed copy while it is unchanged;
// other initramfs images boot as they are; remove deletes the copies.
func TestInitrdCache(t *testing.T) {
	dir := t.TempDir()
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write([]byte("070701 a cpio archive"))
	zw.Close()
	gz := filepath.Join(dir, "initrd.gz")
	writeFile(t, gz, zbuf.Bytes())
	raw := filepath.Join(dir, "initrd.cpio")
	writeFile(t, raw, []byte("070701 not compressed"))
	broken := filepath.Join(dir, "broken.gz")
	writeFile(t, broken, append([]byte{0x1f, 0x8b}, "nope"...))

	var c initrdCache
	logger := testLogger(t)
	for _, p := range []string{gz, raw, broken, filepath.Join(dir, "missing")} {
		c.prepare(dir, p, logger)
	}
	cp := c.lookup(gz)
	if cp == gz {
		t.Fatal("no decompressed copy of the gzip initramfs")
	}
	if b, err := os.ReadFile(cp); err != nil || string(b) != "070701 a cpio archive" {
		t.Fatalf("copy: %q, %v", b, err)
	}
	for _, p := range []string{raw, broken} {
		if got := c.lookup(p); got != p {
			t.Errorf("lookup(%s) = %s, want it as it is", p, got)
		}
	}
	// A rebuilt initramfs: the stale copy is not used.
	writeFile(t, gz, append(zbuf.Bytes(), zbuf.Bytes()...))
	if got := c.lookup(gz); got != gz {
		t.Fatalf("after a change: %s", got)
	}
	c.prepare(dir, gz, logger)
	if b, err := os.ReadFile(c.lookup(gz)); err != nil || string(b) != strings.Repeat("070701 a cpio archive", 2) {
		t.Fatalf("copy after the change: %q, %v", b, err)
	}
	c.remove()
	if _, err := os.Stat(cp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("copy left after remove: %v", err)
	}
	c.prepare(dir, gz, logger)
	if got := c.lookup(gz); got != gz {
		t.Fatalf("after remove: %s", got)
	}
}

func TestListeningPort(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int
	}{
		{"vminit: [1.53s] listening on tcp port 8443", 8443},
		{"vminit: listening on tcp port 80", 80},
		{"[    1.2] vminit: [1.53s] listening on tcp port 993 ", 993},
		{"store: listening on tcp port 8443", 0}, // not the init
		{"vminit: [1.53s] listening on tcp port 0", 0},
		{"vminit: [1.53s] listening on tcp port 70000", 0},
		{"vminit: [1.53s] listening on tcp port 84x", 0},
		{"vminit: started store", 0},
	} {
		if got := listeningPort(tc.line); got != tc.want {
			t.Errorf("listeningPort(%q) = %d, want %d", tc.line, got, tc.want)
		}
	}
}

// TestVMQEMUCmdline: guests under TCG boot without KASLR, those under KVM keep it; a
// connection-triggered boot is quiet, the manifest's command line comes last.
func TestVMQEMUCmdline(t *testing.T) {
	b := NewVMBackend(VMOptions{Logger: testLogger(t), Accel: "tcg"})
	defer b.Close(context.Background())
	m := Manifest{Name: "a", Image: "/vm/vmlinuz", Cmdline: "rdinit=/init",
		Sockets: []Socket{{Name: "s", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}
	cmdline := func(accel string) string {
		_, args := b.qemuArgs(m, []int{1}, accel)
		i := slices.Index(args, "-append")
		if i < 0 {
			t.Fatalf("no -append in %v", args)
		}
		return args[i+1]
	}
	if c := cmdline("tcg"); !strings.Contains(c, " quiet nokaslr ") || !strings.HasSuffix(c, " rdinit=/init") {
		t.Errorf("under TCG: %q", c)
	}
	if c := cmdline("kvm"); strings.Contains(c, "nokaslr") {
		t.Errorf("under KVM: %q", c)
	}
}

func TestWatchesPowerButton(t *testing.T) {
	for line, want := range map[string]bool{
		`vminit: [0.82s] watching the power button "gpio-keys" (/dev/input/event0)`: true,
		`vminit: watching the power button "Power Button" (/dev/input/event1)`:      true,
		`store: watching the power button`:                                          false,
		`vminit: [0.82s] WARNING: no power button input device`:                     false,
	} {
		if got := watchesPowerButton(line); got != want {
			t.Errorf("watchesPowerButton(%q) = %v", line, got)
		}
	}
}
