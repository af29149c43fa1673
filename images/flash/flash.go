// Package flash writes a disk image to a block device or a file and reads it back to verify
// it, after refusing any disk that is mounted, held or runs the system.
package flash

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Errors the refusal checks return (wrapped); check them with errors.Is.
var (
	// ErrInUse: the disk or one of its partitions is mounted, used as swap or held by
	// another device (LVM, RAID, encryption).
	ErrInUse = errors.New("flash: disk in use")
	// ErrSystemDisk: the disk holds the running system's root file system.
	ErrSystemDisk = errors.New("flash: disk holds the running system")
	// ErrPartition: the target is a partition; images go onto whole disks.
	ErrPartition = errors.New("flash: target is a partition")
	// ErrTooSmall: the image does not fit on the target.
	ErrTooSmall = errors.New("flash: image larger than the target")
	// ErrVerify: what was read back differs from the image.
	ErrVerify = errors.New("flash: verification failed")
)

// maxScan bounds the lines and entries read from /proc and /sys.
const maxScan = 100000

// Options configures Inspect and Write.
type Options struct {
	// ProcRoot and SysRoot are where proc and sysfs are mounted (default /proc and /sys);
	// tests point them at fake trees.
	ProcRoot, SysRoot string
	// DeviceNumber returns the major and minor number of a block device node, ok false for
	// anything else (default: stat(2)); tests fake it.
	DeviceNumber func(path string) (major, minor uint32, ok bool, err error)
	// Progress, if set, is called as the work goes: phase "write" or "verify", bytes done
	// of total.
	Progress func(phase string, done, total int64)
	// Logger receives what is done (nil: slog.Default()).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.DeviceNumber == nil {
		o.DeviceNumber = deviceNumber
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Target is what Inspect learned about a target.
type Target struct {
	// Path is the target as given.
	Path string
	// Block is true for a block device, false for a file.
	Block bool
	// Exists is false for a file that Write will create.
	Exists bool
	// Name is the kernel's name of the disk ("sdb", "mmcblk0"), for block devices.
	Name string
	// Size is the device's size in bytes (0 for files).
	Size int64
	// Model and Removable describe the device, as sysfs does.
	Model     string
	Removable bool
}

// Describe is a one-line description for a confirmation prompt.
func (t Target) Describe() string {
	if !t.Block {
		if t.Exists {
			return fmt.Sprintf("the file %s (it will be overwritten)", t.Path)
		}
		return fmt.Sprintf("the new file %s", t.Path)
	}
	var parts []string
	if t.Model != "" {
		parts = append(parts, t.Model)
	}
	parts = append(parts, HumanBytes(t.Size))
	if t.Removable {
		parts = append(parts, "removable")
	}
	return fmt.Sprintf("%s (%s; everything on it will be erased)", t.Path, strings.Join(parts, ", "))
}

// HumanBytes formats n as "1.5 GiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Inspect looks at target and refuses what must not be written: a partition, a disk that
// is mounted (any of its partitions), used as swap, held by another block device, or that
// holds the running system; a directory or character device.
func Inspect(target string, opts Options) (Target, error) {
	opts.defaults()
	t := Target{Path: target}
	fi, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		if abs, _ := filepath.Abs(target); strings.HasPrefix(abs, "/dev/") {
			return t, fmt.Errorf("flash: %s: no such device", target)
		}
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("flash: %w", err)
	}
	t.Exists = true
	switch {
	case fi.Mode().IsRegular():
		return t, nil
	case fi.IsDir():
		return t, fmt.Errorf("flash: %s is a directory", target)
	}
	major, minor, ok, err := opts.DeviceNumber(target)
	if err != nil {
		return t, fmt.Errorf("flash: %w", err)
	}
	if !ok {
		return t, fmt.Errorf("flash: %s is neither a block device nor a regular file", target)
	}
	t.Block = true
	sys := sysfs{root: opts.SysRoot}
	devs, err := sys.devices()
	if err != nil {
		return t, err
	}
	num := fmt.Sprintf("%d:%d", major, minor)
	name, ok := devs[num]
	if !ok {
		return t, fmt.Errorf("flash: %s (%s) is not a block device the kernel lists", target, num)
	}
	if sys.isPartition(name) {
		return t, fmt.Errorf("%w: %s is partition %s of %s; flash the whole disk", ErrPartition, target, name, sys.parent(name))
	}
	t.Name = name
	t.Size = sys.readInt(name, "size") * 512
	t.Removable = sys.readInt(name, "removable") == 1
	t.Model = strings.TrimSpace(sys.read(name, "device/model"))

	members := append([]string{name}, sys.partitions(name)...)
	mounts, err := readMountinfo(filepath.Join(opts.ProcRoot, "self", "mountinfo"))
	if err != nil {
		return t, err
	}
	rootName := ""
	for _, mnt := range mounts {
		nm, ok := devs[mnt.dev]
		if !ok && strings.HasPrefix(mnt.source, "/dev/") {
			nm = filepath.Base(mnt.source) // e.g. btrfs, whose st_dev is not the device's
		}
		if mnt.point == "/" {
			rootName = nm
		}
		if nm == "" || !slices.Contains(members, nm) {
			continue
		}
		if mnt.point == "/" {
			return t, fmt.Errorf("%w: %s is mounted on /", ErrSystemDisk, nm)
		}
		return t, fmt.Errorf("%w: %s is mounted on %s", ErrInUse, nm, mnt.point)
	}
	if rootName != "" && slices.Contains(sys.underlyingDisks(rootName, 0), name) {
		return t, fmt.Errorf("%w: / lives on %s (through %s)", ErrSystemDisk, name, rootName)
	}
	for _, m := range members {
		if holders := sys.list(m, "holders"); len(holders) > 0 {
			return t, fmt.Errorf("%w: %s is held by %s (LVM, RAID or encryption)", ErrInUse, m, strings.Join(holders, ", "))
		}
	}
	if swaps, err := readLines(filepath.Join(opts.ProcRoot, "swaps")); err == nil {
		for i, l := range swaps {
			f := strings.Fields(l)
			if i == 0 || len(f) == 0 {
				continue
			}
			if slices.Contains(members, filepath.Base(f[0])) {
				return t, fmt.Errorf("%w: %s is used as swap", ErrInUse, filepath.Base(f[0]))
			}
		}
	}
	return t, nil
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	dev, point, source string
}

// readMountinfo parses mountinfo: "ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS] - TYPE SOURCE SUPER".
func readMountinfo(path string) ([]mount, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, fmt.Errorf("flash: read mounts: %w", err)
	}
	var ms []mount
	for _, l := range lines {
		f := strings.Fields(l)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 6 {
			continue
		}
		m := mount{dev: f[2], point: unescapeOctal(f[4])}
		if sep+2 < len(f) {
			m.source = unescapeOctal(f[sep+2])
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// unescapeOctal undoes mountinfo's \040-style escapes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(lines) >= maxScan {
			return nil, fmt.Errorf("%s: more than %d lines", path, maxScan)
		}
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

// sysfs reads the block device tree below root: class/block/NAME links to the device's
// directory (a disk's directory holds its partitions' directories).
type sysfs struct{ root string }

func (s sysfs) dir(name string) string {
	p := filepath.Join(s.root, "class", "block", name)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

func (s sysfs) read(name, file string) string {
	f, err := os.Open(filepath.Join(s.dir(name), file))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	return string(b)
}

func (s sysfs) readInt(name, file string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(s.read(name, file)), 10, 64)
	return n
}

func (s sysfs) list(name, sub string) []string {
	es, err := os.ReadDir(filepath.Join(s.dir(name), sub))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range es[:min(len(es), maxScan)] {
		names = append(names, e.Name())
	}
	return names
}

// devices maps "MAJ:MIN" to the kernel name of every block device and partition.
func (s sysfs) devices() (map[string]string, error) {
	es, err := os.ReadDir(filepath.Join(s.root, "class", "block"))
	if err != nil {
		return nil, fmt.Errorf("flash: list block devices: %w", err)
	}
	devs := map[string]string{}
	for _, e := range es[:min(len(es), maxScan)] {
		if n := strings.TrimSpace(s.read(e.Name(), "dev")); n != "" {
			devs[n] = e.Name()
		}
	}
	return devs, nil
}

func (s sysfs) isPartition(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir(name), "partition"))
	return err == nil
}

func (s sysfs) parent(name string) string { return filepath.Base(filepath.Dir(s.dir(name))) }

func (s sysfs) partitions(disk string) []string {
	var parts []string
	for _, e := range s.list(disk, "") {
		if _, err := os.Stat(filepath.Join(s.dir(disk), e, "partition")); err == nil {
			parts = append(parts, e)
		}
	}
	return parts
}

// underlyingDisks returns the whole disks name lives on: itself, a partition's disk, or
// for device-mapper and RAID devices the disks below their slaves.
func (s sysfs) underlyingDisks(name string, depth int) []string {
	if depth > 8 {
		return nil
	}
	if s.isPartition(name) {
		return []string{s.parent(name)}
	}
	slaves := s.list(name, "slaves")
	if len(slaves) == 0 {
		return []string{name}
	}
	var disks []string
	for _, sl := range slaves {
		disks = append(disks, s.underlyingDisks(sl, depth+1)...)
	}
	return disks
}

// Result says what Write did.
type Result struct {
	// Bytes is the image's size, all of which was written and read back.
	Bytes int64
	// SHA256 is the image's hash, equal to what was read back.
	SHA256 string
}

const chunk = 4 << 20

// Write copies the image file to target (see Inspect, which must have accepted it), syncs
// it to stable storage and reads it back to compare hashes.
func Write(ctx context.Context, image string, target Target, opts Options) (Result, error) {
	opts.defaults()
	var res Result
	in, err := os.Open(image)
	if err != nil {
		return res, fmt.Errorf("flash: %w", err)
	}
	defer in.Close()
	ifi, err := in.Stat()
	if err != nil {
		return res, fmt.Errorf("flash: %w", err)
	}
	if !ifi.Mode().IsRegular() {
		return res, fmt.Errorf("flash: image %s is not a regular file", image)
	}
	size := ifi.Size()
	if target.Block && size > target.Size {
		return res, fmt.Errorf("%w: %s is %s, %s is %s", ErrTooSmall, image, HumanBytes(size), target.Path, HumanBytes(target.Size))
	}
	if !target.Block && target.Exists {
		if tfi, err := os.Stat(target.Path); err == nil && os.SameFile(ifi, tfi) {
			return res, fmt.Errorf("flash: %s and %s are the same file", image, target.Path)
		}
	}
	flags := os.O_WRONLY
	if target.Block {
		flags |= os.O_EXCL // the kernel refuses a block device that is mounted or held
	} else {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	out, err := os.OpenFile(target.Path, flags, 0o644)
	if err != nil {
		return res, fmt.Errorf("flash: open %s: %w", target.Path, err)
	}
	defer out.Close()
	opts.Logger.Info("flash: writing", "image", image, "target", target.Path, "bytes", size)

	h := sha256.New()
	buf := make([]byte, chunk)
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("flash: write %s: %w", target.Path, err)
		}
		n, err := io.ReadFull(in, buf[:min(int64(len(buf)), size-done)])
		if err != nil {
			return res, fmt.Errorf("flash: read %s: %w", image, err)
		}
		h.Write(buf[:n])
		if _, err := out.Write(buf[:n]); err != nil {
			return res, fmt.Errorf("flash: write %s: %w", target.Path, err)
		}
		done += int64(n)
		if opts.Progress != nil {
			opts.Progress("write", done, size)
		}
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("flash: sync %s: %w", target.Path, err)
	}
	if target.Block {
		rereadPartitions(out) // best effort: let the kernel see the new partitions
	}
	if err := out.Close(); err != nil {
		return res, fmt.Errorf("flash: close %s: %w", target.Path, err)
	}
	res.Bytes, res.SHA256 = size, hex.EncodeToString(h.Sum(nil))

	got, err := readBack(ctx, target.Path, size, opts.Progress)
	if err != nil {
		return res, err
	}
	if got != res.SHA256 {
		return res, fmt.Errorf("%w: %s reads back as sha256 %s, the image is %s", ErrVerify, target.Path, got, res.SHA256)
	}
	opts.Logger.Info("flash: verified", "target", target.Path, "sha256", res.SHA256)
	return res, nil
}

// readBack hashes the first size bytes of path, bypassing the page cache where the
// system allows, so that what is compared comes from the device.
func readBack(ctx context.Context, path string, size int64, progress func(string, int64, int64)) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("flash: verify %s: %w", path, err)
	}
	defer f.Close()
	dropCache(f)
	h := sha256.New()
	buf := make([]byte, chunk)
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("flash: verify %s: %w", path, err)
		}
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), size-done)])
		if err != nil {
			return "", fmt.Errorf("flash: verify %s: %w", path, err)
		}
		h.Write(buf[:n])
		done += int64(n)
		if progress != nil {
			progress("verify", done, size)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
