//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// powerButtonWait bounds the search for the power button: its driver (gpio-keys on arm64
// -M virt, the ACPI button on x86) is probed before the init runs, rarely just after.
const powerButtonWait = 2 * time.Second

// maxInputDevices bounds the input devices looked at.
const maxInputDevices = 64

// watchPowerButton returns a channel that closes when the VM's power button is pressed
// (QEMU's system_powerdown: KEY_POWER from a gpio-keys device on arm64 -M virt, from the
// ACPI power button on x86). It reads every /dev/input/event* device whose key
// capabilities include KEY_POWER, found under sysfs.
func watchPowerButton(ctx context.Context, sysfs, dev string) <-chan struct{} {
	pressed := make(chan struct{})
	go func() {
		deadline := time.Now().Add(powerButtonWait)
		var devs []string
		for {
			devs = findPowerButtons(sysfs)
			if len(devs) > 0 || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if len(devs) == 0 {
			logf("WARNING: no power button input device: a VM runner's clean shutdown cannot reach the appliance")
			return
		}
		once := make(chan struct{}, 1)
		for _, d := range devs {
			name := d
			if b, err := os.ReadFile(filepath.Join(sysfs, d, "device", "name")); err == nil {
				name = strings.TrimSpace(string(b))
			}
			f, err := os.Open(filepath.Join(dev, d))
			if err != nil {
				logf("power button %s: %v", name, err)
				continue
			}
			logf("watching the power button %q (%s)", name, filepath.Join(dev, d))
			go func() {
				defer f.Close()
				if readPowerPress(f) == nil {
					select {
					case once <- struct{}{}:
						close(pressed)
					default:
					}
				}
			}()
		}
	}()
	return pressed
}

// findPowerButtons returns the names (event0, …) of the input event devices under sysfs
// (/sys/class/input) that have KEY_POWER.
func findPowerButtons(sysfs string) []string {
	matches, _ := filepath.Glob(filepath.Join(sysfs, "event*"))
	if len(matches) > maxInputDevices {
		matches = matches[:maxInputDevices]
	}
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(filepath.Join(m, "device", "capabilities", "key"))
		if err != nil {
			continue
		}
		if ok, err := hasKey(string(b), keyPower, 64); err == nil && ok {
			out = append(out, filepath.Base(m))
		}
	}
	return out
}

// readPowerPress reads input events from r until the power button goes down (nil) or r
// fails.
func readPowerPress(r io.Reader) error {
	buf := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("read input events: %w", err)
		}
		e, err := parseInputEvent(buf)
		if err != nil {
			return err
		}
		if isPowerPress(e) {
			return nil
		}
	}
}
