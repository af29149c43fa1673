//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestHasKey(t *testing.T) {
	for _, tc := range []struct {
		name, bitmap string
		code, bits   int
		want         bool
		err          bool
	}{
		// QEMU's arm64 gpio-keys: only KEY_POWER (bit 116 = bit 52 of the second word).
		{"gpio-keys", "10000000000000 0\n", keyPower, 64, true, false},
		// The ACPI power button on x86 likewise.
		{"acpi power button", "10000000000000 0", keyPower, 64, true, false},
		{"keyboard without power", "ffeffffffffffffe ffffffffffffffff", keyPower, 64, false, false},
		{"one word only", "ffffffffffffffff", keyPower, 64, false, false},
		{"low key", "0 2", 1, 64, true, false},
		{"32-bit words", "100000 0 0 0", keyPower, 32, true, false},
		{"empty", "", keyPower, 64, false, true},
		{"not hex", "zz 0", keyPower, 64, false, true},
		{"word too wide", "1ffffffffffffffff 0", keyPower, 64, false, true},
		{"odd word size", "1 0", keyPower, 16, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hasKey(tc.bitmap, tc.code, tc.bits)
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("hasKey(%q, %d) = %v, %v; want %v, error %v", tc.bitmap, tc.code, got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzHasKey(f *testing.F) {
	f.Add("10000000000000 0", 116)
	f.Add("ffff", 3)
	f.Fuzz(func(t *testing.T, bitmap string, code int) {
		hasKey(bitmap, code, 64) // must not panic
	})
}

// event encodes a struct input_event of a 64-bit little-endian kernel.
func event(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.LittleEndian.PutUint64(b[0:], 1234) // seconds
	binary.LittleEndian.PutUint64(b[8:], 5678) // microseconds
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestReadPowerPress(t *testing.T) {
	const evSyn = 0
	press := slices.Concat(event(evKey, 30, 1), event(evSyn, 0, 0), event(evKey, keyPower, 0), event(evKey, keyPower, 1), event(evSyn, 0, 0))
	if err := readPowerPress(bytes.NewReader(press)); err != nil {
		t.Fatalf("a press: %v", err)
	}
	release := slices.Concat(event(evKey, 30, 1), event(evKey, keyPower, 0))
	if err := readPowerPress(bytes.NewReader(release)); err == nil || !errors.Is(err, io.EOF) {
		t.Fatalf("no press before EOF: %v", err)
	}
	if err := readPowerPress(bytes.NewReader(event(evKey, keyPower, 1)[:20])); err == nil {
		t.Fatal("a truncated event: no error")
	}
	if _, err := parseInputEvent(make([]byte, 16)); err == nil {
		t.Fatal("a short event parsed")
	}
}

// TestFindPowerButtons reads a fake /sys/class/input: only devices whose key capabilities
// have KEY_POWER count.
func TestFindPowerButtons(t *testing.T) {
	sys := t.TempDir()
	dev := func(event, name, keys string) {
		d := filepath.Join(sys, event, "device")
		if err := os.MkdirAll(filepath.Join(d, "capabilities"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644)
		if keys != "" {
			os.WriteFile(filepath.Join(d, "capabilities", "key"), []byte(keys+"\n"), 0o644)
		}
	}
	dev("event0", "AT Translated Set 2 keyboard", "3803078f800d001 ffeffffffffffffe fffffffffffffffe")
	dev("event1", "Power Button", "10000000000000 0")
	dev("event2", "no keys", "")
	dev("event3", "gpio-keys", "10000000000000 0")
	if got := findPowerButtons(sys); !slices.Equal(got, []string{"event1", "event3"}) {
		t.Fatalf("power buttons %v", got)
	}
	if got := findPowerButtons(filepath.Join(sys, "none")); len(got) != 0 {
		t.Fatalf("no sysfs: %v", got)
	}
}

// TestStopProcess: SIGTERM, then SIGKILL when the process has not exited by the timeout.
func TestStopProcess(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exitOn  syscall.Signal
		want    bool
		signals []syscall.Signal
		took    time.Duration
	}{
		{"exits on SIGTERM", syscall.SIGTERM, true, []syscall.Signal{syscall.SIGTERM}, 2 * time.Second},
		{"ignores SIGTERM", syscall.SIGKILL, false, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				exited := make(chan struct{})
				var signals []syscall.Signal
				signal := func(s os.Signal) error {
					signals = append(signals, s.(syscall.Signal))
					if s == tc.exitOn {
						time.AfterFunc(2*time.Second, func() { close(exited) })
					}
					return nil
				}
				start := time.Now()
				got := stopProcess(signal, exited, applianceStopTimeout)
				synctest.Wait()
				if got != tc.want || !slices.Equal(signals, tc.signals) {
					t.Fatalf("stopProcess = %v with %v, want %v with %v", got, signals, tc.want, tc.signals)
				}
				if took := time.Since(start); took != min(tc.took, applianceStopTimeout) {
					t.Fatalf("took %v", took)
				}
				<-exited
			})
		})
	}
}
