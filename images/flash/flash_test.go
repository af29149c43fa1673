package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeSystem is a fake /proc and /sys with block devices, and device nodes (FIFOs) whose
// numbers DeviceNumber reports.
type fakeSystem struct {
	t     *testing.T
	root  string
	nodes map[string]string // node path -> "MAJ:MIN"
}

func newFakeSystem(t *testing.T) *fakeSystem {
	f := &fakeSystem{t: t, root: t.TempDir(), nodes: map[string]string{}}
	for _, d := range []string{"proc/self", "sys/class/block", "sys/devices/block", "dev"} {
		f.mkdir(d)
	}
	f.file("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
	f.file("proc/self/mountinfo", "")
	return f
}

func (f *fakeSystem) mkdir(p string) {
	if err := os.MkdirAll(filepath.Join(f.root, p), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSystem) file(p, content string) {
	f.mkdir(filepath.Dir(p))
	if err := os.WriteFile(filepath.Join(f.root, p), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// device adds a block device (parent "" for a disk) with its sysfs directory, its
// class/block link and a node in dev/.
func (f *fakeSystem) device(name, parent, num string) string {
	dir := "sys/devices/block/" + name
	if parent != "" {
		dir = "sys/devices/block/" + parent + "/" + name
		f.file(dir+"/partition", "1\n")
	}
	f.file(dir+"/dev", num+"\n")
	f.mkdir(dir + "/holders")
	f.mkdir(dir + "/slaves")
	if err := os.Symlink(filepath.Join(f.root, dir), filepath.Join(f.root, "sys/class/block", name)); err != nil {
		f.t.Fatal(err)
	}
	node := filepath.Join(f.root, "dev", name)
	if err := syscall.Mkfifo(node, 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.nodes[node] = num
	return node
}

func (f *fakeSystem) disk(name, num string, sectors int64, model string, removable bool) string {
	node := f.device(name, "", num)
	f.file("sys/devices/block/"+name+"/size", fmt.Sprint(sectors))
	f.file("sys/devices/block/"+name+"/removable", map[bool]string{true: "1\n", false: "0\n"}[removable])
	f.file("sys/devices/block/"+name+"/device/model", model+"   \n")
	return node
}

// link records that upper (a dm or md device) sits on lower: lower/holders/upper, upper/slaves/lower.
func (f *fakeSystem) link(lowerDir, upperDir string) {
	f.file("sys/devices/block/"+lowerDir+"/holders/"+filepath.Base(upperDir), "")
	f.file("sys/devices/block/"+upperDir+"/slaves/"+filepath.Base(lowerDir), "")
}

func (f *fakeSystem) mounts(lines ...string) {
	f.file("proc/self/mountinfo", strings.Join(lines, "\n")+"\n")
}

func (f *fakeSystem) options() Options {
	return Options{
		ProcRoot: filepath.Join(f.root, "proc"),
		SysRoot:  filepath.Join(f.root, "sys"),
		DeviceNumber: func(path string) (uint32, uint32, bool, error) {
			num, ok := f.nodes[path]
			if !ok {
				return 0, 0, false, nil
			}
			var maj, min uint32
			fmt.Sscanf(num, "%d:%d", &maj, &min)
			return maj, min, true, nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// standard is a laptop: sda (system: sda1 /boot/efi, sda2 /) and an SD card reader with
// a card, mmcblk0 with two partitions.
func standard(t *testing.T) *fakeSystem {
	f := newFakeSystem(t)
	f.disk("sda", "8:0", 1000215216, "Samsung SSD 870", false)
	f.device("sda1", "sda", "8:1")
	f.device("sda2", "sda", "8:2")
	f.disk("mmcblk0", "179:0", 62333952, "", true)
	f.device("mmcblk0p1", "mmcblk0", "179:1")
	f.device("mmcblk0p2", "mmcblk0", "179:2")
	f.mounts(
		"22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw",
		"23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw",
		"24 22 8:1 / /boot/efi rw,relatime shared:2 - vfat /dev/sda1 rw",
	)
	return f
}

func TestInspectAccepts(t *testing.T) {
	f := standard(t)
	tgt, err := Inspect(filepath.Join(f.root, "dev/mmcblk0"), f.options())
	if err != nil {
		t.Fatal(err)
	}
	if !tgt.Block || tgt.Name != "mmcblk0" || tgt.Size != 62333952*512 || !tgt.Removable || tgt.Model != "" {
		t.Fatalf("%+v", tgt)
	}
	if d := tgt.Describe(); !strings.Contains(d, "29.7 GiB, removable; everything on it will be erased") {
		t.Fatalf("Describe = %q", d)
	}
	// A fresh file and an existing one.
	fresh := filepath.Join(t.TempDir(), "out.img")
	if tgt, err := Inspect(fresh, f.options()); err != nil || tgt.Block || tgt.Exists {
		t.Fatalf("new file: %+v, %v", tgt, err)
	}
	os.WriteFile(fresh, []byte("old"), 0o644)
	if tgt, err := Inspect(fresh, f.options()); err != nil || tgt.Block || !tgt.Exists || !strings.Contains(tgt.Describe(), "overwritten") {
		t.Fatalf("existing file: %+v, %v", tgt, err)
	}
}

func TestInspectRefuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(f *fakeSystem)
		target  string
		wantErr error
		want    string
	}{
		{"system disk", nil, "dev/sda", ErrSystemDisk, "sda2 is mounted on /"},
		{"partition", nil, "dev/mmcblk0p1", ErrPartition, "partition mmcblk0p1 of mmcblk0"},
		{"partition mounted", func(f *fakeSystem) {
			f.mounts("22 1 8:2 / / rw - ext4 /dev/sda2 rw", `40 22 179:2 / /media/my\040card rw,nosuid - ext4 /dev/mmcblk0p2 rw`)
		}, "dev/mmcblk0", ErrInUse, "mmcblk0p2 is mounted on /media/my card"},
		{"whole disk mounted", func(f *fakeSystem) {
			f.mounts("22 1 8:2 / / rw - ext4 /dev/sda2 rw", "40 22 179:0 / /mnt rw - vfat /dev/mmcblk0 rw")
		}, "dev/mmcblk0", ErrInUse, "mmcblk0 is mounted on /mnt"},
		{"btrfs mounted by name", func(f *fakeSystem) {
			f.mounts("22 1 8:2 / / rw - ext4 /dev/sda2 rw", "40 22 0:45 / /srv rw - btrfs /dev/mmcblk0p1 rw")
		}, "dev/mmcblk0", ErrInUse, "mmcblk0p1 is mounted on /srv"},
		{"root on LVM", func(f *fakeSystem) {
			f.device("dm-0", "", "253:0")
			f.link("sda/sda2", "dm-0")
			f.mounts("22 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw")
		}, "dev/sda", ErrSystemDisk, "/ lives on sda (through dm-0)"},
		{"held by dm-crypt", func(f *fakeSystem) {
			f.device("dm-1", "", "253:1")
			f.link("mmcblk0/mmcblk0p2", "dm-1")
		}, "dev/mmcblk0", ErrInUse, "mmcblk0p2 is held by dm-1"},
		{"swap", func(f *fakeSystem) {
			f.file("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/mmcblk0p2 partition 1048572 0 -2\n")
		}, "dev/mmcblk0", ErrInUse, "mmcblk0p2 is used as swap"},
		{"unknown device", func(f *fakeSystem) {
			node := filepath.Join(f.root, "dev", "sdz")
			syscall.Mkfifo(node, 0o600)
			f.nodes[node] = "8:240"
		}, "dev/sdz", nil, "8:240) is not a block device the kernel lists"},
		{"not a block device", func(f *fakeSystem) {
			syscall.Mkfifo(filepath.Join(f.root, "dev", "ttyS0"), 0o600)
		}, "dev/ttyS0", nil, "neither a block device nor a regular file"},
		{"directory", nil, "dev", nil, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := standard(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			_, err := Inspect(filepath.Join(f.root, tt.target), f.options())
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Inspect = %v; want %v with %q", err, tt.wantErr, tt.want)
			}
		})
	}
}

func TestInspectRealSystem(t *testing.T) {
	// On this machine: / is refused if it is on a block device; a file is accepted.
	if _, err := Inspect(filepath.Join(t.TempDir(), "x.img"), Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect("/dev/null", Options{}); err == nil {
		t.Fatal("/dev/null accepted")
	}
	// A typo in a device name must not create a file in /dev.
	if _, err := Inspect("/dev/hearth-no-such-disk", Options{}); err == nil || !strings.Contains(err.Error(), "no such device") {
		t.Fatalf("missing device: %v", err)
	}
}

func testImage(t *testing.T, size int) (string, []byte) {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i/4096)
	}
	p := filepath.Join(t.TempDir(), "hearth.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestWriteFile(t *testing.T) {
	img, b := testImage(t, 9<<20+123) // three chunks, the last one short
	out := filepath.Join(t.TempDir(), "sd.img")
	os.WriteFile(out, bytes.Repeat([]byte{0xff}, 20<<20), 0o644) // longer: truncated
	var phases []string
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Progress: func(phase string, done, total int64) {
		if total != int64(len(b)) {
			t.Errorf("total %d", total)
		}
		if done == total {
			phases = append(phases, phase)
		}
	}}
	tgt, err := Inspect(out, opts)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Write(t.Context(), img, tgt, opts)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if res.Bytes != int64(len(b)) || res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("%+v", res)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, b) {
		t.Fatal("target differs from the image")
	}
	if strings.Join(phases, ",") != "write,verify" {
		t.Fatalf("progress phases %q", phases)
	}
}

func TestWriteRefuses(t *testing.T) {
	img, _ := testImage(t, 1<<20)
	quiet := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Run("same file", func(t *testing.T) {
		tgt, _ := Inspect(img, quiet)
		if _, err := Write(t.Context(), img, tgt, quiet); err == nil || !strings.Contains(err.Error(), "same file") {
			t.Fatalf("Write = %v", err)
		}
	})
	t.Run("too small", func(t *testing.T) {
		tgt := Target{Path: filepath.Join(t.TempDir(), "dev"), Block: true, Exists: true, Size: 512 << 10}
		if _, err := Write(t.Context(), img, tgt, quiet); !errors.Is(err, ErrTooSmall) {
			t.Fatalf("Write = %v", err)
		}
	})
	t.Run("missing image", func(t *testing.T) {
		if _, err := Write(t.Context(), img+".nope", Target{Path: filepath.Join(t.TempDir(), "o")}, quiet); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := Write(ctx, img, Target{Path: filepath.Join(t.TempDir(), "o")}, quiet); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write = %v", err)
		}
	})
}

func TestReadBackDetectsDifference(t *testing.T) {
	img, b := testImage(t, 1<<20)
	sum := sha256.Sum256(b)
	got, err := readBack(t.Context(), img, int64(len(b)), nil)
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("readBack = %s, %v", got, err)
	}
	f, _ := os.OpenFile(img, os.O_WRONLY, 0)
	f.WriteAt([]byte{0}, 12345)
	f.Close()
	if got, _ := readBack(t.Context(), img, int64(len(b)), nil); got == hex.EncodeToString(sum[:]) {
		t.Fatal("a changed byte went unnoticed")
	}
	if _, err := readBack(t.Context(), img, int64(len(b))+1, nil); err == nil {
		t.Fatal("short target accepted")
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := map[string]string{
		`/media/my\040card`: "/media/my card",
		`/plain`:            "/plain",
		`/trailing\04`:      `/trailing\04`,
		`/bad\999`:          `/bad\999`,
		`\134`:              `\`,
	}
	for in, want := range tests {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzReadMountinfo(f *testing.F) {
	f.Add("22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n")
	f.Add(`40 22 179:2 / /media/my\040card rw - ext4 /dev/mmcblk0p2 rw` + "\n- - -\n")
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(t.TempDir(), "mountinfo")
		os.WriteFile(p, []byte(s), 0o644)
		readMountinfo(p)
	})
}
