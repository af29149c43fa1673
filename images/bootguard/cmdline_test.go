package bootguard

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/images/fat32"
	"github.com/hearth-home/hearth/internal/testtool"
)

func TestSetRoot(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
		wantErr  bool
	}{
		{"mbr", "console=serial0 root=PARTUUID=2a3b4c5d-02 rootwait\n", 3, "console=serial0 root=PARTUUID=2a3b4c5d-03 rootwait\n", false},
		{"mbr back", "root=PARTUUID=2a3b4c5d-03 ro", 2, "root=PARTUUID=2a3b4c5d-02 ro", false},
		{"gpt", "root=PARTUUID=60c24cc1-f3f9-427a-8199-76baa2d60001/PARTNROFF=1 init=/gokrazy/init", 3,
			"root=PARTUUID=60c24cc1-f3f9-427a-8199-76baa2d60001/PARTNROFF=2 init=/gokrazy/init", false},
		{"device", "root=/dev/mmcblk0p2 rootwait", 3, "root=/dev/mmcblk0p3 rootwait", false},
		{"same", "root=/dev/sda3", 3, "root=/dev/sda3", false},
		{"last root", "root=/dev/sda2 quiet root=/dev/sda2", 3, "root=/dev/sda2 quiet root=/dev/sda3", false},
		{"bad n", "root=/dev/sda2", 4, "", true},
		{"no root", "quiet", 3, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SetRoot(tt.in, tt.n)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("SetRoot = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func FuzzSetRoot(f *testing.F) {
	f.Add("root=PARTUUID=2a3b4c5d-02", 3)
	f.Add("root=PARTUUID=60c24cc1-f3f9-427a-8199-76baa2d60001/PARTNROFF=1", 2)
	f.Add("root=/dev/nvme0n1p3 root=x", 2)
	f.Fuzz(func(t *testing.T, s string, n int) {
		got, err := SetRoot(s, n)
		if err != nil {
			return
		}
		if len(got) != len(s) {
			t.Fatalf("SetRoot(%q, %d) changed the length: %q", s, n, got)
		}
		if r, err := RootPartition(got); err != nil || r != n {
			t.Fatalf("SetRoot(%q, %d) = %q, which boots %d (%v)", s, n, got, r, err)
		}
	})
}

// memDisk is a growable in-memory partition.
type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		return 0, errors.New("beyond the partition")
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, errors.New("beyond the partition")
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

const testCmdline = "console=ttyAMA0 root=PARTUUID=60c24cc1-f3f9-427a-8199-76baa2d60001/PARTNROFF=1 rootfstype=squashfs ro rootwait init=/gokrazy/init panic=10\n"

// hearthBoot makes a boot partition with the project's FAT32 writer, as the image builder does.
func hearthBoot(t *testing.T) *memDisk {
	t.Helper()
	d := &memDisk{b: make([]byte, 64<<20)}
	fs, err := fat32.Format(d, int64(len(d.b)), fat32.Options{Label: "HEARTHBOOT", VolumeID: 0x1234abcd, ModTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	files := []struct{ name, content string }{
		{"vmlinuz", strings.Repeat("kernel", 100000)},
		{"config.txt", "arm_64bit=1\n"},
		{"cmdline.txt", testCmdline},
		{"bcm2710-rpi-3-b.dtb", strings.Repeat("dtb", 5000)},
	}
	for _, f := range files {
		if err := fs.WriteFile(f.name, strings.NewReader(f.content), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRewriteCmdlineHearthFAT32(t *testing.T) {
	d := hearthBoot(t)
	got, err := ReadCmdline(d)
	if err != nil || got != testCmdline {
		t.Fatalf("ReadCmdline = %q, %v", got, err)
	}
	before := bytes.Clone(d.b)
	if err := RewriteCmdline(d, 3); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(testCmdline, "PARTNROFF=1", "PARTNROFF=2", 1)
	if got, _ := ReadCmdline(d); got != want {
		t.Fatalf("after switch: %q", got)
	}
	// Exactly one byte changed on the whole partition.
	diff := 0
	for i := range d.b {
		if d.b[i] != before[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("%d bytes changed", diff)
	}
	// The standard tools agree.
	img := filepath.Join(t.TempDir(), "boot.img")
	os.WriteFile(img, d.b, 0o644)
	out, err := exec.Command(testtool.Path(t, "mtype", "mtools"), "-i", img, "::cmdline.txt").CombinedOutput()
	if err != nil || string(out) != want {
		t.Fatalf("mtype: %q, %v", out, err)
	}
	if out, err := exec.Command(testtool.Path(t, "fsck.vfat", "dosfstools"), "-n", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.vfat: %v\n%s", err, out)
	}
	// And back.
	if err := RewriteCmdline(d, 2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.b, before) {
		t.Fatal("switching back did not restore the partition")
	}
}

func TestRewriteCmdlineMkfsFAT(t *testing.T) {
	mkfs := testtool.Path(t, "mkfs.vfat", "dosfstools")
	mcopy := testtool.Path(t, "mcopy", "mtools")
	mtype := testtool.Path(t, "mtype", "mtools")
	for _, tt := range []struct {
		name string
		args []string
		size int64
	}{
		{"fat16", []string{"-F", "16"}, 32 << 20},
		{"fat32", []string{"-F", "32"}, 100 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "boot.img")
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Truncate(img, tt.size)
			if out, err := exec.Command(mkfs, append(tt.args, img)...).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.vfat: %v\n%s", err, out)
			}
			// Other files first, so cmdline.txt is not the first entry; a long name too.
			for name, content := range map[string]string{"a-long-file-name.txt": "x", "config.txt": "arm_64bit=1\n"} {
				p := filepath.Join(dir, name)
				os.WriteFile(p, []byte(content), 0o644)
				exec.Command(mcopy, "-i", img, p, "::"+name).Run()
			}
			cl := filepath.Join(dir, "cmdline.txt")
			os.WriteFile(cl, []byte("console=ttyS0 root=PARTUUID=0badcafe-02 rootwait\n"), 0o644)
			if out, err := exec.Command(mcopy, "-i", img, cl, "::cmdline.txt").CombinedOutput(); err != nil {
				t.Fatalf("mcopy: %v\n%s", err, out)
			}
			if err := CmdlineSwitcher(img)(t.Context(), 3); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(mtype, "-i", img, "::cmdline.txt").CombinedOutput()
			if err != nil || string(out) != "console=ttyS0 root=PARTUUID=0badcafe-03 rootwait\n" {
				t.Fatalf("mtype after switch: %q, %v", out, err)
			}
		})
	}
}

func TestReadCmdlineRejects(t *testing.T) {
	noCmdline := &memDisk{b: make([]byte, 64<<20)}
	fs, _ := fat32.Format(noCmdline, int64(len(noCmdline.b)), fat32.Options{})
	fs.WriteFile("config.txt", strings.NewReader("x"), time.Time{})
	fs.Close()
	corrupt := hearthBoot(t)
	corrupt.b[13] = 3 // sectors per cluster: not a power of two
	tests := []struct {
		name string
		d    *memDisk
		want string
	}{
		{"zeros", &memDisk{b: make([]byte, 1<<20)}, "not a FAT16 or FAT32"},
		{"short", &memDisk{b: make([]byte, 100)}, "read boot sector"},
		{"no cmdline.txt", noCmdline, "cmdline.txt not found"},
		{"corrupt boot sector", corrupt, "not a FAT16 or FAT32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCmdline(tt.d)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadCmdline = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzReadCmdline(f *testing.F) {
	d := &memDisk{b: make([]byte, 64<<20)}
	fs, _ := fat32.Format(d, int64(len(d.b)), fat32.Options{})
	fs.WriteFile("cmdline.txt", strings.NewReader(testCmdline), time.Time{})
	fs.Close()
	// The seed: the boot sector, the start of the FAT and of the data area.
	f.Add(d.b[:64<<10])
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadCmdline(&memDisk{b: b})
	})
}

func TestBootDevice(t *testing.T) {
	sys := t.TempDir()
	mk := func(p, content string) {
		os.MkdirAll(filepath.Join(sys, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(sys, p), []byte(content), 0o644)
	}
	for i, part := range []string{"vda1", "vda2", "vda3", "vda4"} {
		mk("devices/virtio/block/vda/"+part+"/partition", string(rune('1'+i))+"\n")
	}
	mk("devices/virtio/block/vda/dev", "254:0\n")
	os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755)
	os.Symlink("../../devices/virtio/block/vda/vda3", filepath.Join(sys, "dev/block/254:3"))
	os.Symlink("../../devices/virtio/block/vda", filepath.Join(sys, "dev/block/254:0"))
	if got, err := BootDevice(sys, "254:3"); err != nil || got != "/dev/vda1" {
		t.Fatalf("BootDevice = %q, %v", got, err)
	}
	if _, err := BootDevice(sys, "254:0"); err == nil || !strings.Contains(err.Error(), "not a partition") {
		t.Fatalf("whole disk: %v", err)
	}
	if _, err := BootDevice(sys, "7:0"); err == nil {
		t.Fatal("unknown device accepted")
	}
}

func TestServeHTTPSwitch(t *testing.T) {
	d := newDevice(t)
	g := d.boot(2, time.Minute)
	g.Check(t.Context())
	for _, tt := range []struct{ method, path, want string }{
		{"POST", SwitchPath, "root 3 boots next"},
		{"PUT", StatusPath, "GET the status"},
	} {
		rec := &recorder{header: map[string][]string{}, code: 200}
		req, _ := newRequest(tt.method, tt.path)
		g.ServeHTTP(rec, req)
		if !strings.Contains(rec.body.String(), tt.want) {
			t.Fatalf("%s %s: %d %q", tt.method, tt.path, rec.code, rec.body.String())
		}
	}
	if !strings.Contains(d.read("cmdline.txt"), "-03 ") {
		t.Fatalf("cmdline.txt %q", d.read("cmdline.txt"))
	}
}

func newRequest(method, path string) (*http.Request, error) {
	return http.NewRequest(method, "http://device"+path, nil)
}
