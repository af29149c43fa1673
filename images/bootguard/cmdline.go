package bootguard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SetRoot returns cmdline with its root= pointing at root partition n (2 or 3), in the
// same form and length: root=/dev/mmcblk0p2 → p3, root=PARTUUID=SSSSSSSS-02 → -03,
// root=PARTUUID=GUID/PARTNROFF=1 → PARTNROFF=2.
func SetRoot(cmdline string, n int) (string, error) {
	if n != 2 && n != 3 {
		return "", fmt.Errorf("bootguard: root partition %d: want 2 or 3", n)
	}
	if _, err := RootPartition(cmdline); err != nil {
		return "", err
	}
	locs := rootFlagRe.FindAllStringSubmatchIndex(cmdline, -1)
	loc := locs[len(locs)-1]
	start, end := loc[2], loc[3]
	root := cmdline[start:end]
	var repl string
	switch {
	case devRootRe.MatchString(root):
		m := devRootRe.FindStringSubmatchIndex(root)
		repl = root[:m[2]] + strconv.Itoa(n)
	case mbrUUIDRe.MatchString(root):
		repl = root[:len(root)-2] + fmt.Sprintf("%02d", n)
	case gptUUIDRe.MatchString(root):
		repl = root[:len(root)-1] + strconv.Itoa(n-1)
	}
	return cmdline[:start] + repl + cmdline[end:], nil
}

// CmdlineFile is the kernel command line file on the boot partition (gokrazy's name; the
// Raspberry Pi firmware reads it).
const CmdlineFile = "cmdline.txt"

// CmdlineSwitcher returns an Options.Switch that rewrites root= in cmdline.txt on the FAT
// boot partition at bootDevice (e.g. /dev/mmcblk0p1; see FindBootDevice), in place and
// synced. It handles FAT32 (what Hearth's builder writes) and FAT16 (gokrazy's); gokrazy's
// own /update/switch reads only FAT16.
func CmdlineSwitcher(bootDevice string) func(ctx context.Context, root int) error {
	return func(ctx context.Context, root int) error {
		f, err := os.OpenFile(bootDevice, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("bootguard: open boot partition: %w", err)
		}
		defer f.Close()
		if err := RewriteCmdline(f, root); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("bootguard: sync boot partition: %w", err)
		}
		return f.Close()
	}
}

// ReadCmdline returns the content of cmdline.txt in the FAT file system fs.
func ReadCmdline(fs io.ReaderAt) (string, error) {
	v, err := openFAT(fs)
	if err != nil {
		return "", err
	}
	ext, size, err := v.find(CmdlineFile)
	if err != nil {
		return "", err
	}
	b := make([]byte, 0, size)
	for _, e := range ext {
		chunk := make([]byte, e[1])
		if _, err := fs.ReadAt(chunk, e[0]); err != nil {
			return "", fmt.Errorf("bootguard: read %s: %w", CmdlineFile, err)
		}
		b = append(b, chunk...)
	}
	return string(b), nil
}

// RewriteCmdline points root= in cmdline.txt of the FAT file system fs at root partition
// n. The file keeps its length (its directory entry is not touched): the rewrite only ever
// changes a digit.
func RewriteCmdline(fs interface {
	io.ReaderAt
	io.WriterAt
}, n int) error {
	old, err := ReadCmdline(fs)
	if err != nil {
		return err
	}
	updated, err := SetRoot(old, n)
	if err != nil {
		return err
	}
	if len(updated) != len(old) {
		return fmt.Errorf("bootguard: rewriting %s would change its length", CmdlineFile)
	}
	if updated == old {
		return nil
	}
	v, err := openFAT(fs)
	if err != nil {
		return err
	}
	ext, _, err := v.find(CmdlineFile)
	if err != nil {
		return err
	}
	b := []byte(updated)
	for _, e := range ext {
		if _, err := fs.WriteAt(b[:e[1]], e[0]); err != nil {
			return fmt.Errorf("bootguard: write %s: %w", CmdlineFile, err)
		}
		b = b[e[1]:]
	}
	return nil
}

// fatVolume is what reading a file in a FAT16 or FAT32 root directory needs.
type fatVolume struct {
	r            io.ReaderAt
	fat32        bool
	bps, spc     int64 // bytes per sector, sectors per cluster
	fatStart     int64 // byte offset of the first FAT
	rootStart    int64 // FAT16: byte offset of the fixed root directory
	rootEntries  int64 // FAT16: its entries
	rootCluster  uint32
	dataStart    int64 // byte offset of cluster 2
	clusterCount uint32
}

// maxFile bounds the size of the file read from the boot partition.
const maxFile = 64 << 10

var errNotFAT = errors.New("bootguard: boot partition is not a FAT16 or FAT32 file system")

func openFAT(r io.ReaderAt) (*fatVolume, error) {
	bpb := make([]byte, 512)
	if _, err := r.ReadAt(bpb, 0); err != nil {
		return nil, fmt.Errorf("bootguard: read boot sector: %w", err)
	}
	if bpb[510] != 0x55 || bpb[511] != 0xaa {
		return nil, errNotFAT
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bpb[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bpb[o:])) }
	v := &fatVolume{r: r, bps: le16(11), spc: int64(bpb[13])}
	if v.bps < 512 || v.bps > 4096 || v.bps&(v.bps-1) != 0 || v.spc == 0 || v.spc&(v.spc-1) != 0 {
		return nil, errNotFAT
	}
	reserved, numFATs, rootEnt := le16(14), int64(bpb[16]), le16(17)
	totSec := le16(19)
	if totSec == 0 {
		totSec = le32(32)
	}
	fatSz := le16(22)
	if fatSz == 0 {
		fatSz = le32(36)
	}
	if reserved == 0 || numFATs == 0 || fatSz == 0 {
		return nil, errNotFAT
	}
	rootDirSectors := (rootEnt*32 + v.bps - 1) / v.bps
	firstData := reserved + numFATs*fatSz + rootDirSectors
	if firstData >= totSec {
		return nil, errNotFAT
	}
	clusters := (totSec - firstData) / v.spc
	switch {
	case clusters < 4085:
		return nil, errors.New("bootguard: FAT12 boot partitions are not supported")
	case clusters >= 65525:
		v.fat32 = true
		v.rootCluster = uint32(le32(44))
		if rootEnt != 0 {
			return nil, errNotFAT
		}
	default:
		v.rootStart = (reserved + numFATs*fatSz) * v.bps
		v.rootEntries = rootEnt
	}
	v.fatStart = reserved * v.bps
	v.dataStart = firstData * v.bps
	v.clusterCount = uint32(clusters)
	return v, nil
}

// next returns the cluster after c in its chain, 0 at the end.
func (v *fatVolume) next(c uint32) (uint32, error) {
	if v.fat32 {
		b := make([]byte, 4)
		if _, err := v.r.ReadAt(b, v.fatStart+int64(c)*4); err != nil {
			return 0, fmt.Errorf("bootguard: read FAT: %w", err)
		}
		n := binary.LittleEndian.Uint32(b) & 0x0fffffff
		if n >= 0x0ffffff8 {
			return 0, nil
		}
		return n, nil
	}
	b := make([]byte, 2)
	if _, err := v.r.ReadAt(b, v.fatStart+int64(c)*2); err != nil {
		return 0, fmt.Errorf("bootguard: read FAT: %w", err)
	}
	n := uint32(binary.LittleEndian.Uint16(b))
	if n >= 0xfff8 {
		return 0, nil
	}
	return n, nil
}

// chain returns the byte extents of the clusters of the chain starting at first, at most
// limit bytes.
func (v *fatVolume) chain(first uint32, limit int64) ([][2]int64, error) {
	csize := v.bps * v.spc
	var ext [][2]int64
	var total int64
	for c, steps := first, uint32(0); c != 0 && total < limit; steps++ {
		if c < 2 || c-2 >= v.clusterCount || steps > v.clusterCount {
			return nil, errors.New("bootguard: broken FAT cluster chain")
		}
		n := min(csize, limit-total)
		ext = append(ext, [2]int64{v.dataStart + int64(c-2)*csize, n})
		total += n
		var err error
		if c, err = v.next(c); err != nil {
			return nil, err
		}
	}
	if total < limit && limit != maxDir {
		return nil, errors.New("bootguard: FAT cluster chain shorter than the file")
	}
	return ext, nil
}

// maxDir bounds the root directory read (16 384 entries).
const maxDir = 512 << 10

// find returns the extents and size of a file in the root directory, by its 8.3 name.
func (v *fatVolume) find(name string) ([][2]int64, int64, error) {
	short, err := shortName(name)
	if err != nil {
		return nil, 0, err
	}
	var dir [][2]int64
	if v.fat32 {
		if dir, err = v.chain(v.rootCluster, maxDir); err != nil {
			return nil, 0, err
		}
	} else {
		dir = [][2]int64{{v.rootStart, v.rootEntries * 32}}
	}
	for _, e := range dir {
		b := make([]byte, e[1])
		if _, err := v.r.ReadAt(b, e[0]); err != nil {
			return nil, 0, fmt.Errorf("bootguard: read root directory: %w", err)
		}
		for i := 0; i+32 <= len(b); i += 32 {
			ent := b[i : i+32]
			switch {
			case ent[0] == 0:
				return nil, 0, fmt.Errorf("bootguard: %s not found on the boot partition", name)
			case ent[0] == 0xe5, ent[11] == 0x0f, ent[11]&0x18 != 0:
				continue // deleted, long name part, volume label or directory
			}
			if !bytes.Equal(ent[:11], short[:]) {
				continue
			}
			cluster := uint32(binary.LittleEndian.Uint16(ent[26:]))
			if v.fat32 {
				cluster |= uint32(binary.LittleEndian.Uint16(ent[20:])) << 16
			}
			size := int64(binary.LittleEndian.Uint32(ent[28:]))
			if size == 0 || size > maxFile {
				return nil, 0, fmt.Errorf("bootguard: %s is %d bytes", name, size)
			}
			ext, err := v.chain(cluster, size)
			return ext, size, err
		}
	}
	return nil, 0, fmt.Errorf("bootguard: %s not found on the boot partition", name)
}

// shortName is name's 8.3 directory form ("cmdline.txt" → "CMDLINE TXT").
func shortName(name string) ([11]byte, error) {
	var s [11]byte
	base, ext, _ := strings.Cut(strings.ToUpper(name), ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 {
		return s, fmt.Errorf("bootguard: %q is not an 8.3 name", name)
	}
	copy(s[:], base+strings.Repeat(" ", 8-len(base))+ext+strings.Repeat(" ", 3-len(ext)))
	return s, nil
}

// BootDevice returns the device node of partition 1 on the disk that holds partition
// rootDev ("MAJ:MIN", the running root's device number), looking in sysfs below sysRoot
// (normally /sys): e.g. 254:3 (vda3) → /dev/vda1, 179:2 (mmcblk0p2) → /dev/mmcblk0p1.
func BootDevice(sysRoot, rootDev string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "dev", "block", rootDev))
	if err != nil {
		return "", fmt.Errorf("bootguard: root device %s: %w", rootDev, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
		return "", fmt.Errorf("bootguard: root device %s (%s) is not a partition", rootDev, filepath.Base(dir))
	}
	disk := filepath.Dir(dir)
	es, err := os.ReadDir(disk)
	if err != nil {
		return "", fmt.Errorf("bootguard: list partitions: %w", err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(disk, e.Name(), "partition"))
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("bootguard: disk %s has no partition 1", filepath.Base(disk))
}
