//go:build linux

// Command init is the init of a Hearth board image: as PID 1 it boots the system with
// gokrazy (mounts, hostname, /perm, update endpoints) and supervises gokrazy's DHCP client
// and the one appliance; started by gokrazy as /user/NAME it runs the appliance
// /hearth/bin/NAME with the arguments of /etc/hearth/appliance.json, its output copied to
// the console.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gokrazy/gokrazy"
	"golang.org/x/sys/unix"

	"github.com/hearth-home/hearth/images/bootguard"
	"github.com/hearth-home/hearth/images/layout"
)

// buildTimestamp is set by the image builder (-ldflags -X) and shown by gokrazy's status
// pages.
var buildTimestamp = "unknown"

func main() {
	log.SetFlags(0)
	if os.Getpid() != 1 {
		os.Exit(runAppliance())
	}
	log.SetPrefix("hearth init: ")
	if err := boot(); err != nil {
		log.Print(err)
	}
	select {} // PID 1 never exits
}

// boot brings the system up and starts supervising.
func boot() error {
	ctx := context.Background()
	if err := gokrazy.Boot(buildTimestamp); err != nil {
		return fmt.Errorf("gokrazy boot: %w", err)
	}
	app, err := readConfig()
	if err != nil {
		return err
	}
	// On a card bigger than the image, /perm's partition and file system grow to fill it;
	// an empty partition is formatted.
	growPerm(log.New(log.Writer(), "", 0).Printf, formatPerm, permMounted)
	// The persistent partition's ext4 has a journal: a power cut leaves its metadata
	// consistent (the kernel replays the journal at the next mount), and the store fsyncs
	// what it acknowledges, so /perm is mounted asynchronously (no MS_SYNCHRONOUS or
	// MS_DIRSYNC, which made every write wait for the card), without access times.
	if err := unix.Mount("", layout.Perm, "", unix.MS_REMOUNT|unix.MS_NOATIME, ""); err != nil {
		log.Printf("remounting %s with noatime: %v", layout.Perm, err)
	}
	if err := os.MkdirAll(layout.DataDir, 0o700); err != nil {
		log.Printf("creating %s: %v", layout.DataDir, err)
	}
	guard, err := bootguard.Setup(ctx, http.DefaultServeMux, bootguard.Options{})
	switch {
	case errors.Is(err, bootguard.ErrRollingBack):
		return fmt.Errorf("not starting %s: %w", app.Name, err)
	case err != nil:
		log.Printf("A/B update guard off: %v", err)
		guard = nil
	}
	services := []*gokrazy.Service{
		gokrazy.NewService(exec.Command(layout.DHCPPath)),
		gokrazy.NewService(exec.Command(filepath.Join(layout.UserDir, app.Name))),
	}
	if err := gokrazy.SuperviseServices(services); err != nil {
		return err
	}
	if guard != nil {
		probe := func(context.Context) error { return nil }
		if app.Probe != "" {
			// The appliance's certificate comes from the home CA it makes on first start,
			// which this root does not know: the probe of its own loopback port skips
			// verification.
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			if probe, err = bootguard.ParseProbe(app.ProbeURL(), client); err != nil {
				// An image with a broken health check never becomes healthy: a trial of it
				// is rolled back.
				log.Printf("bootguard: %v", err)
				probe = func(context.Context) error { return err }
			}
		}
		go func() {
			if err := guard.Watch(ctx, probe); err != nil {
				log.Printf("bootguard: %v", err)
			}
		}()
	}
	return nil
}

// readConfig reads the appliance configuration.
func readConfig() (layout.Appliance, error) {
	b, err := os.ReadFile(layout.ConfigPath)
	if err != nil {
		return layout.Appliance{}, err
	}
	return layout.ParseAppliance(b)
}

// permMounted says whether /perm is a mount point of its own.
func permMounted() bool {
	var root, perm syscall.Stat_t
	if syscall.Stat("/", &root) != nil || syscall.Stat(layout.Perm, &perm) != nil {
		return false
	}
	return root.Dev != perm.Dev
}

// networkWait bounds how long the appliance's start waits for DHCP: appliances put their
// addresses into their TLS certificates when they start.
const networkWait = 15 * time.Second

// waitForNetwork waits until an interface has a global unicast address, or timeout.
func waitForNetwork(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runAppliance runs the configured appliance as a child, its output going both to this
// process's output (gokrazy's log of the service) and to the console, and returns its exit
// status.
func runAppliance() int {
	log.SetPrefix("hearth: ")
	app, err := readConfig()
	if err != nil {
		log.Print(err)
		return 1
	}
	var out io.Writer = os.Stdout
	if console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		defer console.Close()
		out = io.MultiWriter(os.Stdout, console)
	}
	fmt.Fprintf(out, "hearth: waiting up to %v for a network address\n", networkWait)
	if !waitForNetwork(networkWait) {
		fmt.Fprintf(out, "hearth: no network address after %v; starting %s anyway\n", networkWait, app.Name)
	}
	fmt.Fprintf(out, "hearth: starting %s %q\n", app.Name, app.Args)
	cmd := exec.Command(app.Binary(), app.Args...)
	cmd.Env = append(os.Environ(), app.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = layout.Perm
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "hearth: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	fmt.Fprintf(out, "hearth: %s exited: %v\n", app.Name, err)
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode()
	} else if err != nil {
		return 1
	}
	return 0
}
