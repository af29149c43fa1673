package images

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
)

// rpiModel is what one Raspberry Pi model's boot chain reads from the SD card's first FAT
// partition, as the Raspberry Pi boot documentation describes it: the boot ROM (Pi 3, Zero
// 2 W) or the EEPROM bootloader (Pi 4, 5) loads the GPU firmware (none on the Pi 5), which
// reads config.txt (with its [model] filters), the device tree for the board, the kernel
// named by kernel= and cmdline.txt.
type rpiModel struct {
	name   string
	filter string   // the config.txt section that applies to the model
	stage  []string // files the ROM or the EEPROM loads before config.txt
	dtbs   []string // device trees the firmware picks for the model's revisions
	eeprom bool     // the model applies pieeprom.upd through recovery.bin at boot
	soc    string
}

var rpiModels = []rpiModel{
	{name: "Pi 3 B", filter: "pi3", stage: []string{"bootcode.bin", "start.elf", "fixup.dat"},
		dtbs: []string{"bcm2710-rpi-3-b.dtb"}, soc: "bcm2837"},
	{name: "Pi 3 B+", filter: "pi3+", stage: []string{"bootcode.bin", "start.elf", "fixup.dat"},
		dtbs: []string{"bcm2710-rpi-3-b-plus.dtb"}, soc: "bcm2837"},
	{name: "Pi Zero 2 W", filter: "pi02", stage: []string{"bootcode.bin", "start.elf", "fixup.dat"},
		dtbs: []string{"bcm2710-rpi-zero-2-w.dtb"}, soc: "bcm2837"},
	{name: "Pi 4 B", filter: "pi4", stage: []string{"start4.elf", "fixup4.dat"},
		dtbs: []string{"bcm2711-rpi-4-b.dtb"}, eeprom: true, soc: "bcm2711"},
	// The Pi 5 keeps its bootloader and GPU firmware in its EEPROM: no stage files.
	{name: "Pi 5", filter: "pi5", dtbs: []string{"bcm2712-rpi-5-b.dtb", "bcm2712d0-rpi-5-b.dtb"}, soc: "bcm2712"},
}

// parseRPiConfig returns the settings of config.txt that apply to the model whose filter
// is filter: lines before any section and lines in [all] or [filter] sections.
func parseRPiConfig(t *testing.T, data []byte, filter string) map[string]string {
	t.Helper()
	out := map[string]string{}
	applies := true
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			sec := strings.Trim(line, "[]")
			applies = sec == "all" || sec == filter
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("config.txt: line %q is not key=value", line)
			continue
		}
		if applies {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestRPiFirmwareBootFiles follows each supported Pi model's boot chain through the built
// image's boot partition: the stage files its ROM or EEPROM loads, config.txt's settings
// for the model, the kernel and device tree the firmware then loads, the EEPROM update the
// Pi 4 applies, and cmdline.txt's root= naming partition 2 of this disk's MBR. QEMU loads
// the kernel itself and never runs the Pi firmware, so this is what can be checked short of
// a real board.
func TestRPiFirmwareBootFiles(t *testing.T) {
	mcopy := testtool.Path(t, "mcopy", "mtools")
	img, res := storeImage(t, "rpi")
	boot := extract(t, img, res.Partitions[0][0], res.Partitions[0][1])
	dir := t.TempDir()
	// Copy the whole boot partition out once, then read it as files.
	run(t, mcopy, "-s", "-n", "-i", boot, "::*", dir)
	read := func(name string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return b, err == nil
	}

	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if raw[510] != 0x55 || raw[511] != 0xaa {
		t.Fatal("no MBR boot signature")
	}
	// The ROM reads the first partition, which must be FAT (type 0x0b or 0x0c).
	if typ := raw[446+4]; typ != 0x0b && typ != 0x0c {
		t.Errorf("partition 1 type %#x, want FAT32 (0x0b/0x0c)", typ)
	}
	sig := binary.LittleEndian.Uint32(raw[440:])
	wantRoot := fmt.Sprintf("root=PARTUUID=%08x-02", sig)

	config, ok := read("config.txt")
	if !ok {
		t.Fatal("no config.txt")
	}
	cmdline, ok := read("cmdline.txt")
	if !ok {
		t.Fatal("no cmdline.txt")
	}
	if strings.Count(string(cmdline), "\n") > 1 || !strings.Contains(string(cmdline), wantRoot+" ") {
		t.Errorf("cmdline.txt %q: want one line with %s", cmdline, wantRoot)
	}

	for _, m := range rpiModels {
		t.Run(m.name, func(t *testing.T) {
			for _, f := range m.stage {
				if _, ok := read(f); !ok {
					t.Errorf("%s's boot loads %s: missing", m.name, f)
				}
			}
			cfg := parseRPiConfig(t, config, m.filter)
			if cfg["arm_64bit"] != "1" {
				t.Errorf("arm_64bit=%q: the arm64 kernel needs 64-bit mode", cfg["arm_64bit"])
			}
			kernel := cfg["kernel"]
			if kernel == "" {
				t.Fatal("config.txt names no kernel")
			}
			k, ok := read(kernel)
			if !ok {
				t.Fatalf("kernel=%s: missing", kernel)
			}
			// An arm64 Image has "ARM\x64" at byte 56.
			if len(k) < 64 || string(k[56:60]) != "ARM\x64" {
				t.Errorf("%s is not an arm64 kernel Image", kernel)
			}
			for _, d := range m.dtbs {
				b, ok := read(d)
				if !ok {
					t.Errorf("device tree %s: missing", d)
					continue
				}
				if binary.BigEndian.Uint32(b) != 0xd00dfeed || !strings.Contains(string(b), m.soc) {
					t.Errorf("%s is not a flattened device tree for %s", d, m.soc)
				}
			}
			if cfg["enable_uart"] != "1" || !strings.Contains(string(cmdline), "console=serial0") {
				t.Errorf("the serial console is off: enable_uart=%q", cfg["enable_uart"])
			}
			if ov := cfg["dtoverlay"]; ov != "" {
				if _, ok := read("overlays/" + strings.Split(ov, ",")[0] + ".dtbo"); !ok {
					t.Errorf("dtoverlay=%s: no overlay file", ov)
				}
			}
			if m.eeprom {
				for _, f := range []string{"recovery.bin", "pieeprom.upd", "pieeprom.sig", "vl805.bin", "vl805.sig"} {
					if _, ok := read(f); !ok {
						t.Errorf("EEPROM update: %s missing", f)
					}
				}
				for _, pair := range [][2]string{{"pieeprom.upd", "pieeprom.sig"}, {"vl805.bin", "vl805.sig"}} {
					data, _ := read(pair[0])
					sigFile, _ := read(pair[1])
					sum := sha256.Sum256(data)
					if first, _, _ := strings.Cut(string(sigFile), "\n"); first != hex.EncodeToString(sum[:]) {
						t.Errorf("%s does not hold %s's SHA-256", pair[1], pair[0])
					}
				}
			}
		})
	}
}
