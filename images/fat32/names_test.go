package fat32

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf16"
)

// decodeLFN reassembles the long name from entries written by appendLFN and checks
// their sequence numbers and checksums against the short name.
func decodeLFN(t *testing.T, b []byte, short [11]byte) string {
	t.Helper()
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	n := len(b) / 32
	var units []uint16
	for i := n - 1; i >= 0; i-- { // physical order is last part first
		e := b[32*i : 32*i+32]
		seq := int(e[0] &^ 0x40)
		if seq != n-i || (i == 0) != (e[0]&0x40 != 0) || e[11] != attrLongName || e[13] != sum {
			t.Fatalf("entry %d: seq %#x attr %#x sum %#x (want seq %d, sum %#x)", i, e[0], e[11], e[13], n-i, sum)
		}
		for _, off := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
			units = append(units, binary.LittleEndian.Uint16(e[off:]))
		}
	}
	for i, u := range units {
		if u == 0 {
			for _, pad := range units[i+1:] {
				if pad != 0xffff {
					t.Fatalf("padding %#x after the terminator", pad)
				}
			}
			units = units[:i]
			break
		}
	}
	return string(utf16.Decode(units))
}

func FuzzNames(f *testing.F) {
	for _, s := range []string{"config.txt", "bcm2710-rpi-3-b.dtb", ".hidden", "a b c.tar.gz", "grüße.txt", "日本語のファイル名", "x~1", strings.Repeat("L", 255)} {
		f.Add(s, "CONFIG.TXT")
	}
	f.Fuzz(func(t *testing.T, name, other string) {
		if checkName(name) != nil {
			return
		}
		used := map[[11]byte]bool{}
		if checkName(other) == nil {
			s, _ := shortName(other, used)
			used[s] = true
		}
		s, lfn := shortName(name, used)
		if used[s] {
			t.Fatalf("shortName(%q) = %q, already used", name, s[:])
		}
		if s[0] == ' ' || s[0] == 0xe5 || s[0] == 0 {
			t.Fatalf("shortName(%q) = %q starts with a reserved byte", name, s[:])
		}
		for _, c := range s {
			if !shortChar(c) && c != ' ' {
				t.Fatalf("shortName(%q) = %q holds %q", name, s[:], c)
			}
		}
		if !lfn {
			base, ext := strings.TrimRight(string(s[:8]), " "), strings.TrimRight(string(s[8:]), " ")
			if ext != "" {
				base += "." + ext
			}
			if base != name {
				t.Fatalf("shortName(%q) = %q without a long name", name, s[:])
			}
			return
		}
		if got := decodeLFN(t, appendLFN(nil, name, s), s); got != name {
			t.Fatalf("long name round trip %q → %q", name, got)
		}
	})
}
