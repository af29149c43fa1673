package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
)

// memDisk is a disk in memory.
type memDisk []byte

func (m memDisk) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > int64(len(m)) {
		return 0, errors.New("read past the end")
	}
	return copy(b, m[off:]), nil
}

func (m memDisk) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > int64(len(m)) {
		return 0, errors.New("write past the end")
	}
	return copy(m[off:], b), nil
}

// boardTable is a board image's layout (as images/layout has it) on a disk of size bytes.
func boardTable(kind Kind, size int64) *Table {
	return &Table{Kind: kind, DiskSize: size, Partitions: []Partition{
		{Start: 4 << 20, Size: 128 << 20, MBRType: MBRFAT32LBA, Bootable: true, Type: TypeEFISystem, Name: "boot"},
		{Size: 128 << 20, MBRType: MBRLinux, Type: TypeLinuxFilesystem, Name: "root-a"},
		{Size: 128 << 20, MBRType: MBRLinux, Type: TypeLinuxFilesystem, Name: "root-b"},
		{MBRType: MBRLinux, Type: TypeLinuxFilesystem, Name: "perm"},
	}}
}

// TestGrowLast writes a board image's table, extends the file as an SD card bigger than
// the image would be, grows the last partition and has sfdisk check the result.
func TestGrowLast(t *testing.T) {
	sfdisk := testtool.Path(t, "sfdisk", "fdisk")
	const image, card = 512 << 20, 512<<20 + 300<<20 + 7*512
	for _, kind := range []Kind{MBR, GPT} {
		t.Run(kind.String(), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(image); err != nil {
				t.Fatal(err)
			}
			tab := boardTable(kind, image)
			if err := Write(f, tab); err != nil {
				t.Fatal(err)
			}
			oldSize := tab.Partitions[3].Size
			// A GPT table at the image's end must not move while the disk has not grown.
			if g, err := GrowLast(f, image); err != nil || g.Changed() || g.Partition != 4 || g.OldSize != oldSize {
				t.Fatalf("GrowLast on the image itself: %+v, %v; want partition 4 unchanged at %d bytes", g, err, oldSize)
			}
			if err := f.Truncate(card); err != nil {
				t.Fatal(err)
			}
			g, err := GrowLast(f, card)
			if err != nil {
				t.Fatal(err)
			}
			wantSize := int64(card) - tab.Partitions[3].Start
			if kind == GPT {
				wantSize -= 33 * SectorSize // backup entries and header
			}
			wantSize = wantSize / SectorSize * SectorSize
			if g.Kind != kind || g.Partition != 4 || g.Start != tab.Partitions[3].Start || g.OldSize != oldSize || g.NewSize != wantSize || !g.Changed() {
				t.Fatalf("GrowLast: %+v, want partition 4 from %d to %d bytes", g, oldSize, wantSize)
			}
			if out, err := exec.Command(sfdisk, "-V", img).CombinedOutput(); err != nil || bytes.Contains(out, []byte("arning")) {
				t.Fatalf("sfdisk -V: %v\n%s", err, out)
			}
			out, err := exec.Command(sfdisk, "--json", img).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var got sfdiskJSON
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			pt := got.Table
			if len(pt.Partitions) != 4 {
				t.Fatalf("sfdisk sees %d partitions:\n%s", len(pt.Partitions), out)
			}
			for i, p := range pt.Partitions[:3] {
				if p.Start*SectorSize != tab.Partitions[i].Start || p.Size*SectorSize != tab.Partitions[i].Size {
					t.Errorf("partition %d moved: %+v", i+1, p)
				}
			}
			last := pt.Partitions[3]
			if last.Start*SectorSize != g.Start || last.Size*SectorSize != wantSize {
				t.Errorf("sfdisk: partition 4 at %d, %d sectors; want %d, %d", last.Start, last.Size, g.Start/SectorSize, wantSize/SectorSize)
			}
			if kind == GPT {
				if pt.LastLBA != last.Start+last.Size-1 || pt.LastLBA != card/SectorSize-34 {
					t.Errorf("sfdisk: last usable LBA %d, partition ends at %d; want both %d", pt.LastLBA, last.Start+last.Size-1, card/SectorSize-34)
				}
				if !strings.EqualFold(last.UUID, tab.PARTUUID(4)) || last.Name != "perm" {
					t.Errorf("partition 4 lost its GUID or name: %+v", last)
				}
				// The old backup header, now inside partition 4, is blanked.
				old := make([]byte, 8)
				f.ReadAt(old, image-SectorSize)
				if string(old) == "EFI PART" {
					t.Error("the old backup GPT header is still there")
				}
			} else if pt.ID != "0x"+tab.PARTUUID(1)[:8] {
				t.Errorf("disk id changed: %s", pt.ID)
			}
			// Idempotent: a second call changes nothing.
			tables := func() []byte { // where either table kind lives: the first and last 64 KiB
				b := make([]byte, 128<<10)
				f.ReadAt(b[:64<<10], 0)
				f.ReadAt(b[64<<10:], card-64<<10)
				return b
			}
			before := tables()
			if g2, err := GrowLast(f, card); err != nil || g2.Changed() || g2.NewSize != wantSize {
				t.Fatalf("second GrowLast: %+v, %v", g2, err)
			}
			if !bytes.Equal(before, tables()) {
				t.Error("the second GrowLast wrote to the disk")
			}
		})
	}
}

func TestGrowLastErrors(t *testing.T) {
	const size = 512 << 20
	gpt := func() memDisk {
		m := make(memDisk, size)
		if err := Write(m, boardTable(GPT, size)); err != nil {
			t.Fatal(err)
		}
		return m
	}
	mbr := func() memDisk {
		m := make(memDisk, size)
		if err := Write(m, boardTable(MBR, size)); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name string
		disk func() memDisk
		size int64
	}{
		{"no signature", func() memDisk { return make(memDisk, size) }, size},
		{"odd size", mbr, size - 1},
		{"MBR partition past the disk's end", mbr, size - 64<<20},
		{"MBR without partitions", func() memDisk { m := mbr(); clear(m[446:510]); return m }, size},
		{"GPT header CRC", func() memDisk { m := gpt(); m[SectorSize+40]++; return m }, size},
		{"GPT entries CRC", func() memDisk { m := gpt(); m[2*SectorSize+60]++; return m }, size},
		{"GPT header missing", func() memDisk { m := gpt(); clear(m[SectorSize : 2*SectorSize]); return m }, size},
		{"GPT on a smaller disk", gpt, size - 64<<20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := GrowLast(tc.disk(), tc.size); err == nil {
				t.Fatal("GrowLast succeeded")
			}
		})
	}
	if _, err := GrowLast(make(memDisk, size), size); !errors.Is(err, ErrTable) {
		t.Fatalf("GrowLast on a blank disk: %v, want ErrTable", err)
	}
	for _, m := range []memDisk{mbr(), gpt()} {
		if _, err := GrowPartition(m, size, 3); !errors.Is(err, ErrNotLast) {
			t.Fatalf("GrowPartition of partition 3: %v, want ErrNotLast", err)
		}
		if g, err := GrowPartition(m, size, 4); err != nil || g.Partition != 4 {
			t.Fatalf("GrowPartition of partition 4: %+v, %v", g, err)
		}
	}
}

// FuzzGrowLast feeds GrowLast arbitrary first sectors (MBR, GPT header and entries) of a
// small disk: it must return an error or a table inside the disk, never panic.
func FuzzGrowLast(f *testing.F) {
	const size = 4 << 20
	for _, kind := range []Kind{MBR, GPT} {
		m := make(memDisk, size)
		tab := &Table{Kind: kind, DiskSize: 3 << 20, Partitions: []Partition{
			{MBRType: MBRLinux, Type: TypeLinuxFilesystem, Size: 1 << 20}, {MBRType: MBRLinux, Type: TypeLinuxFilesystem}}}
		if err := Write(m, tab); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(m[:34*SectorSize]))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		m := make(memDisk, size)
		copy(m, head)
		g, err := GrowLast(m, size)
		if err != nil {
			return
		}
		if g.NewSize < g.OldSize || g.Start < 0 || g.Start+g.NewSize > size {
			t.Fatalf("GrowLast: %+v on a %d-byte disk", g, size)
		}
	})
}
