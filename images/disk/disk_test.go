package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
)

// sfdiskJSON is what sfdisk --json prints.
type sfdiskJSON struct {
	Table struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Unit       string `json:"unit"`
		FirstLBA   int64  `json:"firstlba"`
		LastLBA    int64  `json:"lastlba"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func piTable() *Table {
	return &Table{Kind: MBR, DiskSize: 1 << 30, Partitions: []Partition{
		{Size: 100 << 20, MBRType: MBRFAT32LBA, Bootable: true},
		{Size: 300 << 20, MBRType: MBRLinux},
		{Size: 300 << 20, MBRType: MBRLinux},
		{MBRType: MBRLinux},
	}}
}

func gptTable() *Table {
	return &Table{Kind: GPT, DiskSize: 2<<30 + 512*7, DiskGUID: MustParseGUID("60D5A1E2-8D3F-4B1F-9A6C-1B2C3D4E5F60"), Partitions: []Partition{
		{Size: 100 << 20, Type: TypeEFISystem, Name: "EFI system"},
		{Size: 500 << 20, Type: TypeLinuxFilesystem, Name: "root A"},
		{Size: 500 << 20, Type: TypeLinuxFilesystem, Name: "root B"},
		{Type: TypeLinuxFilesystem, Name: "perm ünïcode"},
	}}
}

func TestSfdisk(t *testing.T) {
	sfdisk := testtool.Path(t, "sfdisk", "fdisk")
	fdisk := testtool.Path(t, "fdisk", "fdisk")
	for _, tc := range []struct {
		name  string
		table *Table
		label string
		types []string
	}{
		{"mbr pi", piTable(), "dos", []string{"c", "83", "83", "83"}},
		{"gpt", gptTable(), "gpt", []string{"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tc.table.DiskSize); err != nil {
				t.Fatal(err)
			}
			if err := Write(f, tc.table); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sfdisk, "-V", img).CombinedOutput(); err != nil || bytes.Contains(out, []byte("arning")) {
				t.Fatalf("sfdisk -V: %v\n%s", err, out)
			}
			if out, err := exec.Command(fdisk, "-l", img).CombinedOutput(); err != nil || bytes.Contains(out, []byte("arning")) || bytes.Contains(out, []byte("corrupt")) {
				t.Fatalf("fdisk -l: %v\n%s", err, out)
			}
			out, err := exec.Command(sfdisk, "--json", img).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var got sfdiskJSON
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("sfdisk --json: %v\n%s", err, out)
			}
			pt := got.Table
			if pt.Label != tc.label || len(pt.Partitions) != len(tc.table.Partitions) {
				t.Fatalf("sfdisk sees a %s table with %d partitions:\n%s", pt.Label, len(pt.Partitions), out)
			}
			if tc.table.Kind == GPT {
				if !strings.EqualFold(pt.ID, tc.table.DiskGUID.String()) {
					t.Errorf("disk GUID %s, want %s", pt.ID, tc.table.DiskGUID)
				}
				first, last := tc.table.usable()
				if pt.FirstLBA != first/SectorSize || pt.LastLBA != last/SectorSize {
					t.Errorf("usable LBAs %d..%d, want %d..%d", pt.FirstLBA, pt.LastLBA, first/SectorSize, last/SectorSize)
				}
			} else if pt.ID != "0x"+tc.table.PARTUUID(1)[:8] {
				t.Errorf("disk id %s, want 0x%s", pt.ID, tc.table.PARTUUID(1)[:8])
			}
			for i, p := range pt.Partitions {
				want := tc.table.Partitions[i]
				if p.Start*SectorSize != want.Start || p.Size*SectorSize != want.Size || !strings.EqualFold(p.Type, tc.types[i]) {
					t.Errorf("partition %d: start %d size %d type %s; want %d %d %s", i+1, p.Start*SectorSize, p.Size*SectorSize, p.Type, want.Start, want.Size, tc.types[i])
				}
				if want.Start%Align != 0 {
					t.Errorf("partition %d starts at %d, not aligned to 1 MiB", i+1, want.Start)
				}
				if tc.table.Kind == GPT && (!strings.EqualFold(p.UUID, tc.table.PARTUUID(i+1)) || p.Name != want.Name) {
					t.Errorf("partition %d: uuid %s name %q; want %s %q", i+1, p.UUID, p.Name, tc.table.PARTUUID(i+1), want.Name)
				}
				if tc.table.Kind == MBR && p.Bootable != want.Bootable {
					t.Errorf("partition %d: bootable %v", i+1, p.Bootable)
				}
			}
			last := pt.Partitions[len(pt.Partitions)-1]
			if end := (last.Start + last.Size) * SectorSize; tc.table.Kind == MBR && end != tc.table.DiskSize {
				t.Errorf("last partition ends at %d, want the disk's end %d", end, tc.table.DiskSize)
			}
		})
	}
}

func TestPARTUUID(t *testing.T) {
	m := &Table{Kind: MBR, DiskSize: 64 << 20, DiskID: 0x0a0b0c0d, Partitions: []Partition{{MBRType: MBRLinux}}}
	if err := m.Layout(); err != nil {
		t.Fatal(err)
	}
	if got := m.PARTUUID(1); got != "0a0b0c0d-01" {
		t.Errorf("MBR PARTUUID %q", got)
	}
	if got := m.PARTUUID(2); got != "" {
		t.Errorf("PARTUUID of a missing partition %q", got)
	}
	g1, g2 := gptTable(), gptTable()
	if err := g1.Layout(); err != nil {
		t.Fatal(err)
	}
	if err := g2.Layout(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range g1.Partitions {
		u := g1.PARTUUID(i + 1)
		if u != g2.PARTUUID(i+1) || seen[u] || len(u) != 36 || u[14] != '4' {
			t.Errorf("partition %d: PARTUUID %q (other build %q) not stable, unique and version 4", i+1, u, g2.PARTUUID(i+1))
		}
		seen[u] = true
	}
	if got := TypeEFISystem.String(); got != "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" {
		t.Errorf("TypeEFISystem = %s", got)
	}
}

func TestLayoutErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		table Table
	}{
		{"no kind", Table{DiskSize: 1 << 20}},
		{"odd disk size", Table{Kind: MBR, DiskSize: 1000}},
		{"five MBR partitions", Table{Kind: MBR, DiskSize: 1 << 30, Partitions: make([]Partition, 5)}},
		{"MBR type zero", Table{Kind: MBR, DiskSize: 1 << 30, Partitions: []Partition{{Size: 1 << 20}}}},
		{"GPT type zero", Table{Kind: GPT, DiskSize: 1 << 30, Partitions: []Partition{{Size: 1 << 20}}}},
		{"overlap", Table{Kind: MBR, DiskSize: 1 << 30, Partitions: []Partition{{Start: 1 << 20, Size: 2 << 20, MBRType: MBRLinux}, {Start: 2 << 20, Size: 1 << 20, MBRType: MBRLinux}}}},
		{"past the end", Table{Kind: MBR, DiskSize: 8 << 20, Partitions: []Partition{{Size: 8 << 20, MBRType: MBRLinux}}}},
		{"into GPT backup", Table{Kind: GPT, DiskSize: 8 << 20, Partitions: []Partition{{Start: 1 << 20, Size: 7 << 20, Type: TypeLinuxFilesystem}}}},
		{"unaligned size", Table{Kind: MBR, DiskSize: 8 << 20, Partitions: []Partition{{Size: 1000, MBRType: MBRLinux}}}},
		{"zero size not last", Table{Kind: MBR, DiskSize: 8 << 20, Partitions: []Partition{{MBRType: MBRLinux}, {MBRType: MBRLinux}}}},
		{"long name", Table{Kind: GPT, DiskSize: 8 << 20, Partitions: []Partition{{Type: TypeLinuxFilesystem, Name: strings.Repeat("n", 37)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.table.Layout(); !errors.Is(err, ErrLayout) {
				t.Fatalf("Layout() = %v, want ErrLayout", err)
			}
			if err := Write(nil, &tc.table); !errors.Is(err, ErrLayout) {
				t.Fatalf("Write() = %v, want ErrLayout", err)
			}
		})
	}
}

func TestParseGUID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", true},
		{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", true},
		{"C12A7328F81F11D2BA4B00A0C93EC93B", false},
		{"C12A7328-F81F-11D2-BA4B-00A0C93EC93G", false},
		{"", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			g, err := ParseGUID(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseGUID(%q) error %v", tc.in, err)
			}
			if tc.ok && !strings.EqualFold(g.String(), tc.in) {
				t.Fatalf("round trip %q → %q", tc.in, g)
			}
		})
	}
}

func FuzzParseGUID(f *testing.F) {
	f.Add("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	f.Add("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGUID(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(g.String(), s) {
			t.Fatalf("round trip %q → %q", s, g)
		}
	})
}

func TestReproducible(t *testing.T) {
	var imgs [2]*writeLog
	for i := range imgs {
		tb := gptTable()
		tb.DiskGUID = GUID{}
		imgs[i] = &writeLog{}
		if err := Write(imgs[i], tb); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(imgs[0].Bytes(), imgs[1].Bytes()) || imgs[0].Len() == 0 {
		t.Fatal("two tables from the same input differ")
	}
}

// writeLog is an io.WriterAt that records every write with its offset.
type writeLog struct{ bytes.Buffer }

func (w *writeLog) WriteAt(p []byte, off int64) (int, error) {
	fmt.Fprintf(&w.Buffer, "@%d:", off)
	return w.Write(p)
}
