//go:build linux

// Command vminit is the init (PID 1) of a Hearth microVM: it mounts /dev, /proc, /sys and
// the data disk on /perm, configures the network QEMU's user networking expects, runs the
// one appliance named in /etc/hearth/appliance.json and powers the VM off when it exits or
// when the VM's power button is pressed (after stopping the appliance and unmounting /perm).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-home/hearth/images/internal/netconf"
	"github.com/hearth-home/hearth/images/layout"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("vminit: ")
	code := run()
	unix.Sync()
	if err := unmountPerm(); err != nil {
		logf("%v", err)
	}
	if os.Getpid() != 1 {
		os.Exit(code)
	}
	logf("powering off (appliance exit status %d)", code)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// unmountPerm unmounts the data disk, or when something still holds it, remounts it
// read-only and detaches it, so no write is left half-done when the VM powers off.
func unmountPerm() error {
	err := unix.Unmount(layout.Perm, 0)
	switch {
	case err == nil:
		logf("%s unmounted", layout.Perm)
		return nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
		return nil // not mounted
	}
	if rerr := unix.Mount("", layout.Perm, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
		return fmt.Errorf("unmount %s: %w; remount read-only: %w", layout.Perm, err, rerr)
	}
	unix.Unmount(layout.Perm, unix.MNT_DETACH)
	logf("%s busy (%v): remounted read-only and detached", layout.Perm, err)
	return nil
}

// logf logs with the time since the kernel started (from /proc/uptime, once mounted), so
// the console shows where a boot's time goes.
func logf(format string, a ...any) {
	up := ""
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			up = "[" + f[0] + "s] "
		}
	}
	log.Printf(up+format, a...)
}

// run prepares the system and runs the appliance, returning its exit status.
func run() int {
	if err := mountBase(); err != nil {
		logf("%v", err)
		return 1
	}
	power := watchPowerButton(context.Background(), "/sys/class/input", "/dev/input")
	b, err := os.ReadFile(layout.ConfigPath)
	if err != nil {
		logf("%v", err)
		return 1
	}
	app, err := layout.ParseAppliance(b)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if h, err := os.ReadFile("/etc/hostname"); err == nil {
		if err := unix.Sethostname([]byte(strings.TrimSpace(string(h)))); err != nil {
			logf("sethostname: %v", err)
		}
	}
	if err := mountPerm(layout.VMDataDisk); err != nil {
		logf("%v", err)
		return 1
	}
	if err := netconf.Configure("eth0", netip.MustParsePrefix(layout.VMAddress), netip.MustParseAddr(layout.VMGateway)); err != nil {
		logf("%v", err)
	}
	if err := os.WriteFile("/etc/resolv.conf", []byte("nameserver "+layout.VMDNS+"\n"), 0o644); err != nil {
		logf("%v", err)
	}
	return runAppliance(app, power)
}

// mountBase mounts the kernel's file systems.
func mountBase() error {
	for _, m := range []struct{ src, dir, fstype, data string }{
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=755"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// permFlags mount the data disk. Its ext4 has a journal, so a power cut (a VM runner that
// ends QEMU without pressing the power button) leaves metadata that the next mount replays;
// what the appliance acknowledged it has fsynced, which reaches the disk through QEMU's
// flushes. Writes need not be synchronous, which would cost every write a disk round trip.
const permFlags = unix.MS_NOATIME

// diskWait bounds the wait for the data disk: virtio disks are probed before the init
// runs, so it is there at once or not at all.
const diskWait = time.Second

// mountPerm waits for the data disk and mounts it on /perm. Without a data disk (a VM
// runner that attaches none) /perm is a tmpfs and the appliance's data dies with the VM.
func mountPerm(dev string) error {
	if err := os.MkdirAll(layout.Perm, 0o755); err != nil {
		return err
	}
	deadline := time.Now().Add(diskWait)
	for {
		if _, err := os.Stat(dev); err == nil {
			break
		} else if time.Now().After(deadline) {
			logf("WARNING: no data disk %s: %s is a tmpfs, the appliance's data will not persist", dev, layout.Perm)
			return unix.Mount("tmpfs", layout.Perm, "tmpfs", unix.MS_NOSUID, "mode=755")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var errs []error
	for _, fstype := range []string{"ext4", "vfat"} {
		err := unix.Mount(dev, layout.Perm, fstype, permFlags, "")
		if err == nil {
			logf("%s (%s) mounted on %s", dev, fstype, layout.Perm)
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", fstype, err))
	}
	if err := formatPerm(dev); err != nil {
		return fmt.Errorf("data disk %s: cannot mount (%w) and cannot format: %w", dev, errors.Join(errs...), err)
	}
	if err := unix.Mount(dev, layout.Perm, "ext4", permFlags, ""); err != nil {
		return fmt.Errorf("data disk %s: mount after formatting: %w", dev, err)
	}
	logf("%s formatted and mounted on %s", dev, layout.Perm)
	return nil
}

// applianceStopTimeout is how long the appliance has to exit after SIGTERM when the power
// button is pressed, before SIGKILL; shorter than a VM runner's wait for the power-off
// (jitsu's is 10 s), so the data disk is still unmounted cleanly.
const applianceStopTimeout = 7 * time.Second

// runAppliance runs app with its output on the console, forwarding SIGTERM and SIGINT;
// when power closes it stops app (SIGTERM, SIGKILL after applianceStopTimeout).
func runAppliance(app layout.Appliance, power <-chan struct{}) int {
	home := filepath.Join(layout.Perm, "home", app.Name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		logf("%v", err)
	}
	select {
	case <-power:
		logf("power button pressed before %s started", app.Name)
		return 0
	default:
	}
	cmd := exec.Command(app.Binary(), app.Args...)
	cmd.Env = append([]string{"PATH=" + layout.ApplianceDir, "HOME=" + home}, app.Env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Dir = layout.Perm
	if err := cmd.Start(); err != nil {
		logf("%v", err)
		return 1
	}
	logf("started %s (pid %d)", app.Name, cmd.Process.Pid)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchListening(ctx, "/proc")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	exited := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-power:
				logf("power button pressed: stopping %s (SIGTERM)", app.Name)
				if !stopProcess(cmd.Process.Signal, exited, applianceStopTimeout) {
					logf("%s did not exit within %v: killed it", app.Name, applianceStopTimeout)
				}
				return
			case <-exited:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(exited)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		logf("%s exited: %v", app.Name, err)
		return ee.ExitCode()
	} else if err != nil {
		logf("%v", err)
		return 1
	}
	logf("%s exited", app.Name)
	return 0
}

// stopProcess sends SIGTERM and waits up to timeout for exited to close, then sends
// SIGKILL; it says whether the process exited before the timeout.
func stopProcess(signal func(os.Signal) error, exited <-chan struct{}, timeout time.Duration) bool {
	signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C:
	}
	signal(syscall.SIGKILL)
	return false
}
