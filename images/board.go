package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hearth-home/hearth/images/disk"
	"github.com/hearth-home/hearth/images/efiboot"
	"github.com/hearth-home/hearth/images/fat32"
	"github.com/hearth-home/hearth/images/layout"
	"github.com/hearth-home/hearth/images/squashfs"
)

// table returns a board image's partition table in layout's A/B scheme.
func (b *builder) table(size int64) *disk.Table {
	t := &disk.Table{DiskSize: size, Partitions: []disk.Partition{
		{Start: layout.BootStart, Size: layout.BootSize, MBRType: disk.MBRFAT32LBA, Bootable: true, Type: disk.TypeEFISystem, Name: "boot"},
		{Start: layout.RootAStart, Size: layout.RootSize, MBRType: disk.MBRLinux, Type: disk.TypeLinuxFilesystem, Name: "root-a"},
		{Start: layout.RootBStart, Size: layout.RootSize, MBRType: disk.MBRLinux, Type: disk.TypeLinuxFilesystem, Name: "root-b"},
		{Start: layout.PermStart, MBRType: disk.MBRLinux, Type: disk.TypeLinuxFilesystem, Name: "perm"},
	}}
	if b.target.Table == layout.MBR {
		t.Kind = disk.MBR
		t.DiskID = b.seed("disk")
	} else {
		t.Kind = disk.GPT
	}
	return t
}

// buildBoard writes a board image: partition table, boot FAT32, root A SquashFS, empty
// root B, formatted perm.
func (b *builder) buildBoard(ctx context.Context, app layout.Appliance) (*Result, error) {
	t := b.target
	kdir, err := b.download(ctx, t.Kernel)
	if err != nil {
		return nil, err
	}
	boot, err := b.bootFiles(ctx, kdir)
	if err != nil {
		return nil, err
	}
	bin, err := b.appliance(ctx)
	if err != nil {
		return nil, err
	}
	initBin, err := b.compile(ctx, initPackage, "-X main.buildTimestamp="+b.epoch.Format("2006-01-02T15:04:05Z"))
	if err != nil {
		return nil, err
	}
	dhcp, err := b.compile(ctx, dhcpPackage, "")
	if err != nil {
		return nil, err
	}
	root, err := b.commonRoot(app, bin)
	if err != nil {
		return nil, err
	}
	root = append(root,
		dir("gokrazy"),
		reg(strings.TrimPrefix(layout.InitPath, "/"), 0o755, initBin),
		reg(strings.TrimPrefix(layout.DHCPPath, "/"), 0o755, dhcp),
		dir("user"),
		symlink(strings.TrimPrefix(layout.UserDir, "/")+"/"+app.Name, layout.InitPath),
		symlink("etc/resolv.conf", "/tmp/resolv.conf"),
		symlink("var", "/perm/var"),
	)
	if b.cfg.Password != "" {
		root = append(root, reg(strings.TrimPrefix(layout.PasswordPath, "/"), 0o600, []byte(b.cfg.Password+"\n")))
	}
	mods, err := moduleTree(kdir, "lib", "lib")
	if err != nil {
		return nil, err
	}
	root = append(root, mods...)

	tab := b.table(b.cfg.Size)
	if err := tab.Layout(); err != nil {
		return nil, fmt.Errorf("images: partition table: %w", err)
	}
	res := &Result{Target: t, Size: b.cfg.Size, ApplianceSize: int64(len(bin))}
	for i, p := range tab.Partitions {
		res.PARTUUIDs = append(res.PARTUUIDs, tab.PARTUUID(i+1))
		res.Partitions = append(res.Partitions, [2]int64{p.Start, p.Size})
	}
	diskID := fmt.Sprintf("%08x", tab.DiskID)
	if tab.Kind == disk.GPT {
		diskID = tab.PARTUUID(layout.BootPartition)
	}
	if res.Cmdline, err = layout.Cmdline(t.Table, diskID, layout.RootA, t.Console); err != nil {
		return nil, err
	}
	boot = append(boot, reg("cmdline.txt", 0o644, []byte(res.Cmdline+"\n")))
	for _, f := range boot {
		if f.path == t.KernelPath {
			res.KernelSize = int64(len(f.data))
		}
	}

	out, finish, err := b.openOutput()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			finish(false)
		}
	}()
	p := b.bar("write "+t.Name+" image", treeBytes(boot)+treeBytes(root))
	if err := disk.Write(out, tab); err != nil {
		return nil, fmt.Errorf("images: partition table: %w", err)
	}
	bp := tab.Partitions[layout.BootPartition-1]
	fsys, err := fat32.Format(io.NewOffsetWriter(out, bp.Start), bp.Size, fat32.Options{
		Label: bootVolumeLabel, VolumeID: b.seed("boot"), HiddenSectors: uint32(bp.Start / disk.SectorSize), ModTime: b.epoch})
	if err != nil {
		return nil, fmt.Errorf("images: boot partition: %w", err)
	}
	for _, f := range boot {
		if f.mode.IsDir() {
			err = fsys.Mkdir(f.path, b.epoch)
		} else {
			err = fsys.WriteFile(f.path, countingReader{bytes.NewReader(f.data), p}, b.epoch)
		}
		if err != nil {
			return nil, fmt.Errorf("images: boot partition: %s: %w", f.path, err)
		}
	}
	if err := fsys.Close(); err != nil {
		return nil, fmt.Errorf("images: boot partition: %w", err)
	}
	rp := tab.Partitions[layout.RootA-1]
	sq, err := squashfs.NewWriter(io.NewOffsetWriter(out, rp.Start), squashfs.Options{BlockSize: rootBlockSize, ModTime: b.epoch})
	if err != nil {
		return nil, err
	}
	if err := writeTree(squashAdapter{sq}, root, p); err != nil {
		return nil, err
	}
	if err := sq.Close(); err != nil {
		return nil, fmt.Errorf("images: root: %w", err)
	}
	res.RootSize = sq.Size()
	if res.RootSize > rp.Size {
		return nil, fmt.Errorf("images: root file system is %d bytes, the partition %d", res.RootSize, rp.Size)
	}
	pp := tab.Partitions[layout.PermPartition-1]
	if err := formatPerm(io.NewOffsetWriter(out, pp.Start), pp.Size, b.seed("perm")); err != nil {
		return nil, fmt.Errorf("images: perm partition: %w", err)
	}
	p.done("")
	if err := finish(true); err != nil {
		return nil, err
	}
	ok = true
	if b.cfg.Output != "" && b.cfg.OutputWriter == nil {
		res.Files = []string{b.cfg.Output}
	}
	return res, nil
}

// openOutput returns where a board image goes and a function that completes (sync,
// rename) or abandons it.
func (b *builder) openOutput() (io.WriterAt, func(ok bool) error, error) {
	if b.cfg.OutputWriter != nil {
		return b.cfg.OutputWriter, func(bool) error { return nil }, nil
	}
	tmp := b.cfg.Output + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("images: %w", err)
	}
	if err := f.Truncate(b.cfg.Size); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("images: %w", err)
	}
	return f, func(ok bool) error {
		if !ok {
			f.Close()
			os.Remove(tmp)
			return nil
		}
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, b.cfg.Output)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("images: write %s: %w", b.cfg.Output, err)
		}
		return nil
	}, nil
}

// bootFiles returns the boot partition's files except cmdline.txt.
func (b *builder) bootFiles(ctx context.Context, kdir string) ([]file, error) {
	t := b.target
	kernel, err := readModuleFile(kdir, "vmlinuz", MaxKernelSize)
	if err != nil {
		return nil, err
	}
	if t.LoaderPath != "" {
		// UEFI boards: the firmware starts Hearth's loader, which starts the kernel with
		// cmdline.txt as its command line.
		loader, err := efiboot.Loader(t.GOARCH)
		if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		if want, err := efiboot.Path(t.GOARCH); err != nil || want != t.LoaderPath || t.KernelPath != efiboot.KernelPath {
			return nil, fmt.Errorf("images: target %s: loader at %s and kernel at %s, the loader wants %s and %s",
				t.Name, t.LoaderPath, t.KernelPath, want, efiboot.KernelPath)
		}
		return []file{dir("EFI"), dir("EFI/BOOT"), reg(t.LoaderPath, 0o644, loader), reg(t.KernelPath, 0o644, kernel)}, nil
	}
	files := []file{reg("vmlinuz", 0o644, kernel),
		reg("config.txt", 0o644, []byte(rpiConfig))}
	dtbs, err := filepath.Glob(filepath.Join(kdir, "*.dtb"))
	if err != nil {
		return nil, err
	}
	sort.Strings(dtbs)
	for _, p := range dtbs {
		data, err := readLimited(p, MaxBootFileSize)
		if err != nil {
			return nil, err
		}
		files = append(files, reg(filepath.Base(p), 0o644, data))
	}
	overlays, err := moduleTree(kdir, "overlays", "overlays")
	if err != nil {
		return nil, err
	}
	files = append(files, overlays...)
	fw, err := b.download(ctx, FirmwareRPi)
	if err != nil {
		return nil, err
	}
	for _, pat := range []string{"bootcode.bin", "fixup*.dat", "start*.elf"} {
		matches, err := filepath.Glob(filepath.Join(fw, pat))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		for _, p := range matches {
			data, err := readLimited(p, MaxBootFileSize)
			if err != nil {
				return nil, err
			}
			files = append(files, reg(filepath.Base(p), 0o644, data))
		}
	}
	ee, err := b.download(ctx, EEPROMRPi)
	if err != nil {
		return nil, err
	}
	eeprom, err := eepromFiles(ee)
	if err != nil {
		return nil, err
	}
	return append(files, eeprom...), nil
}

// rpiConfig is the Pi firmware's config.txt: 64-bit mode, gokrazy's kernel name, the
// serial console on.
const rpiConfig = `# Hearth appliance (gokrazy layout)
arm_64bit=1
arm_control=0x200
kernel=vmlinuz
enable_uart=1
`

// eepromFiles returns the Raspberry Pi 4/5 bootloader update the firmware applies at boot:
// recovery.bin, the newest pieeprom image as pieeprom.upd with its signature file, and
// the newest VL805 USB firmware with its signature.
func eepromFiles(dir string) ([]file, error) {
	latest := func(pat string) (string, error) {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil || len(m) == 0 {
			return "", fmt.Errorf("images: rpi-eeprom: no %s", pat)
		}
		sort.Strings(m) // names carry the date or version: the last is the newest
		return m[len(m)-1], nil
	}
	var files []file
	rec, err := readLimited(filepath.Join(dir, "recovery.bin"), MaxBootFileSize)
	if err != nil {
		return nil, err
	}
	files = append(files, reg("recovery.bin", 0o644, rec))
	for _, e := range []struct{ pat, name string }{{"pieeprom-*.bin", "pieeprom"}, {"vl805-*.bin", "vl805"}} {
		p, err := latest(e.pat)
		if err != nil {
			return nil, err
		}
		data, err := readLimited(p, MaxBootFileSize)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		ext := ".upd"
		if e.name == "vl805" {
			ext = ".bin"
		}
		files = append(files, reg(e.name+ext, 0o644, data),
			reg(e.name+".sig", 0o644, []byte(hex.EncodeToString(sum[:])+"\n")))
	}
	return files, nil
}
