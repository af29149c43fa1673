package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-home/hearth/images/cpio"
	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
)

// Limits of "hearth bench summon".
const maxBenchSummonRuns = 10000

func cmdBenchSummon(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "bench summon", "[-runs N] [-appliance PATH] [-jitsu PATH] [-vm N]")
	runs := fs.Int("runs", 100, "summons timed, cold and warm each")
	appliance := fs.String("appliance", "", "a socket-activated appliance that greets first (default: go build ./jitsu/testdata/testappliance)")
	jitsuBin := fs.String("jitsu", "", "jitsu binary whose idle memory is measured (default: go build ./appliances/jitsu)")
	vmRuns := fs.Int("vm", 0, "also time this many summons of a microVM appliance under QEMU (arm64 guest built from the source, kernel "+vmKernelModule+")")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if *runs < 1 || *runs > maxBenchSummonRuns || *vmRuns < 0 || *vmRuns > maxBenchSummonRuns {
		fmt.Fprintf(s.err, "hearth bench summon: -runs must be 1..%d and -vm 0..%d\n", maxBenchSummonRuns, maxBenchSummonRuns)
		return 2
	}
	if err := benchSummon(ctx, s, *runs, *vmRuns, *appliance, *jitsuBin); err != nil {
		fmt.Fprintln(s.err, "hearth bench summon:", err)
		return 1
	}
	return 0
}

// benchSummon times summons as a client sees them, starting from the DNS query (cold and
// warm), and measures jitsu's idle memory with five appliances registered.
func benchSummon(ctx context.Context, s stdio, runs, vmRuns int, appliance, jitsuBin string) error {
	tmp, err := os.MkdirTemp("", "hearth-bench-summon-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if appliance == "" {
		appliance = filepath.Join(tmp, "greeter")
		if err := goBuild(ctx, appliance, "./jitsu/testdata/testappliance"); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	j, err := jitsu.Start(ctx, jitsu.Config{
		Names: signpost.Names{Domain: signpost.DefaultDomain, Appliances: []signpost.Appliance{
			{Name: "greeter", Ports: []signpost.Port{{Name: "greet", Proto: "tcp", Port: 1}}},
		}},
		Manifests: []jitsu.Manifest{{
			Name: "greeter", Exec: []string{appliance},
			Sockets: []jitsu.Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0"}},
		}},
		DNSAddr:  "127.0.0.1:0",
		LANAddrs: func() ([]net.IP, error) { return nil, nil },
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		j.Close(cctx)
	}()
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "DNS query → answer → connect → first byte\truns\tmin\tp50\tp90\tp99\tmax\t\n")
	row := func(label string, st jitsu.LatencyStats) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", label, st.Runs, ms(st.Min), ms(st.P50), ms(st.P90), ms(st.P99), ms(st.Max))
	}
	cold, err := jitsu.MeasureSummonDNS(ctx, j, "greeter", "greet", jitsu.MeasureOptions{Runs: runs})
	if err != nil {
		return err
	}
	row("cold (appliance summoned)", cold)
	if err := j.Summoner().Summon(ctx, "greeter"); err != nil {
		return err
	}
	warm, err := jitsu.MeasureSummonDNS(ctx, j, "greeter", "greet", jitsu.MeasureOptions{Runs: runs, Warm: true})
	if err != nil {
		return err
	}
	row("warm (appliance running)", warm)
	if vmRuns > 0 {
		vm, err := benchVMSummon(ctx, tmp, vmRuns, logger)
		if err != nil {
			fmt.Fprintf(tw, "microVM cold (QEMU TCG, arm64)\terror: %v\t\t\t\t\t\t\n", err)
		} else {
			row("microVM cold (QEMU, arm64 guest)", vm)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(s.out, "targets: cold p50 ≤ 3 ms, p99 ≤ 10 ms; microVM ≤ 2 s")

	rss, n, err := jitsuIdleRSS(ctx, tmp, jitsuBin, appliance)
	if err != nil {
		fmt.Fprintf(s.out, "idle RSS of jitsu: error: %v\n", err)
		return nil
	}
	fmt.Fprintf(s.out, "idle RSS of jitsu with %d appliances registered: %.1f MiB (target ≤ 20 MiB)\n", n, float64(rss)/(1<<20))
	return nil
}

// goBuild builds pkg of the module around the working directory into out.
func goBuild(ctx context.Context, out, pkg string) error {
	dir := "."
	if root, ok := moduleRoot(); ok {
		dir = root
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (run from the source tree, or pass the binary): %v: %s", pkg, err, b)
	}
	return nil
}

// jitsuIdleRSS runs the jitsu binary (built when jitsuBin is empty) with every built-in
// appliance registered (each a copy of appliance, on free loopback ports), lets it idle
// and returns its resident memory and the number of appliances.
func jitsuIdleRSS(ctx context.Context, tmp, jitsuBin, appliance string) (int64, int, error) {
	if jitsuBin == "" {
		jitsuBin = filepath.Join(tmp, "jitsu")
		if err := goBuild(ctx, jitsuBin, "./appliances/jitsu"); err != nil {
			return 0, 0, err
		}
	}
	bin := filepath.Join(tmp, "rss-bin")
	data := filepath.Join(tmp, "rss-data")
	for _, d := range []string{bin, data} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, 0, err
		}
	}
	names := signpost.DefaultNames("")
	var held []net.Listener // free ports, held until names.json is written
	for i, a := range names.Appliances {
		if err := os.Symlink(appliance, filepath.Join(bin, a.Name)); err != nil {
			return 0, 0, err
		}
		for k := range a.Ports {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, 0, err
			}
			held = append(held, ln)
			names.Appliances[i].Ports[k].Port = ln.Addr().(*net.TCPAddr).Port
			names.Appliances[i].Ports[k].Loopback = true // listen on 127.0.0.1 only
		}
	}
	err := signpost.WriteNames(data, names)
	for _, ln := range held {
		ln.Close()
	}
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, jitsuBin, "-data", data, "-bin", bin, "-dns", "127.0.0.1:0", "-status", "")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "jitsu up") {
				ok = true
				up <- true
			}
		}
		if !ok {
			up <- false
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case ok := <-up:
		if !ok {
			return 0, 0, errors.New("jitsu did not come up")
		}
	case <-time.After(30 * time.Second):
		return 0, 0, errors.New("jitsu did not come up in 30 s")
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	select { // idle
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	rss, err := rssOf(cmd.Process.Pid)
	return rss, len(names.Appliances), err
}

// vmKernelModule is the Go module whose vmlinuz (arm64) the microVM benchmark boots.
const vmKernelModule = "github.com/gokrazy/kernel.arm64@v0.0.0-20260705071517-37841c4d6ff1"

// benchVMSummon builds jitsu's microVM test guest (a static arm64 init greeting on port
// 80) into an initramfs, fetches the kernel with "go mod download" and times cold summons
// of it from the DNS query to the greeting.
func benchVMSummon(ctx context.Context, tmp string, runs int, logger *slog.Logger) (jitsu.LatencyStats, error) {
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		return jitsu.LatencyStats{}, fmt.Errorf("qemu-system-aarch64 (Debian package qemu-system-arm): %w", err)
	}
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", vmKernelModule)
	dl.Dir = tmp // outside any module
	out, err := dl.Output()
	if err != nil {
		return jitsu.LatencyStats{}, fmt.Errorf("go mod download %s: %w", vmKernelModule, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return jitsu.LatencyStats{}, fmt.Errorf("go mod download %s: no directory in %q", vmKernelModule, out)
	}
	guest := filepath.Join(tmp, "vmguest")
	build := exec.CommandContext(ctx, "go", "build", "-o", guest, "./jitsu/testdata/vmguest")
	if root, ok := moduleRoot(); ok {
		build.Dir = root
	}
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return jitsu.LatencyStats{}, fmt.Errorf("build the arm64 guest (run from the source tree): %v: %s", err, b)
	}
	bin, err := os.ReadFile(guest)
	if err != nil {
		return jitsu.LatencyStats{}, err
	}
	initrd := filepath.Join(tmp, "vmguest.cpio.gz")
	f, err := os.Create(initrd)
	if err != nil {
		return jitsu.LatencyStats{}, err
	}
	err = cpio.WriteInit(f, bin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return jitsu.LatencyStats{}, err
	}
	j, err := jitsu.Start(ctx, jitsu.Config{
		Names: signpost.Names{Domain: signpost.DefaultDomain, Appliances: []signpost.Appliance{
			{Name: "vm", Ports: []signpost.Port{{Name: "greet", Proto: "tcp", Port: 1}}},
		}},
		Manifests: []jitsu.Manifest{{Name: "vm", Image: filepath.Join(mod.Dir, "vmlinuz"), Initrd: initrd,
			Sockets: []jitsu.Socket{{Name: "greet", Proto: "tcp", Addr: "127.0.0.1:0", GuestPort: 80}}}},
		DNSAddr:  "127.0.0.1:0",
		LANAddrs: func() ([]net.IP, error) { return nil, nil },
		VM:       jitsu.VMOptions{BootTimeout: 90 * time.Second},
		Logger:   logger,
	})
	if err != nil {
		return jitsu.LatencyStats{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		j.Close(cctx)
	}()
	return jitsu.MeasureSummonDNS(ctx, j, "vm", "greet", jitsu.MeasureOptions{Runs: runs, Timeout: 90 * time.Second})
}
