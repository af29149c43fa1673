package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-home/hearth/images"
)

// imageCommands are the commands that build appliance images.
func imageCommands() []command {
	return []command{
		{"image build", "-target T -o OUTPUT [-name N] [-hostname H] [-size S] [-data-size S] [-password-file F] [-ca-certs F] APPLIANCE [-- ARGS...]",
			"build a flashable board image or a microVM of one appliance (a Go package or a static binary)", cmdImageBuild},
		{"image targets", "", "list the image targets", cmdImageTargets},
	}
}

// cmdImageTargets lists the targets.
func cmdImageTargets(_ context.Context, s stdio, args []string) int {
	fs := flagSet(s, "image targets", "")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	for _, t := range images.Targets() {
		kind := "microVM: kernel, initramfs, data disk (a directory)"
		if t.Board {
			kind = "board image: boot, root A/B, perm partitions"
		}
		fmt.Fprintf(s.out, "%-14s %-6s %s\n", t.Name, t.GOARCH, kind)
	}
	return 0
}

// cmdImageBuild builds an image.
func cmdImageBuild(ctx context.Context, s stdio, args []string) int {
	const synopsis = "-target T -o OUTPUT [flags] APPLIANCE [-- ARGS...]"
	fs := flagSet(s, "image build", synopsis)
	target := fs.String("target", "", "rpi, arm64, amd64, microvm-arm64 or microvm-amd64 (see hearth image targets)")
	output := fs.String("o", "", "the image file (board targets) or directory (microVM targets)")
	name := fs.String("name", "", "the appliance's name (default: the last element of APPLIANCE)")
	hostname := fs.String("hostname", "", "the machine's host name (default: the appliance's name)")
	size := fs.String("size", "512M", "a board image's size (K, M, G suffixes)")
	dataSize := fs.String("data-size", "256M", "a microVM data disk's size")
	passwordFile := fs.String("password-file", "", "file whose first line is the password of the device's update endpoints")
	caCerts := fs.String("ca-certs", "", "CA bundle for the image (default: this machine's; - for none)")
	dir := fs.String("C", ".", "directory inside the Hearth module to build in")
	quiet := fs.Bool("q", false, "no progress bars")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if *target == "" || *output == "" || len(rest) == 0 {
		fmt.Fprintln(s.err, "hearth image build: -target, -o and APPLIANCE are required")
		fs.Usage()
		return 2
	}
	var appArgs []string
	if len(rest) > 1 {
		appArgs = rest[1:]
		if appArgs[0] == "--" {
			appArgs = appArgs[1:]
		}
		if appArgs == nil {
			appArgs = []string{}
		}
	}
	imgSize, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(s.err, "hearth image build: -size:", err)
		return 2
	}
	diskSize, err := parseSize(*dataSize)
	if err != nil {
		fmt.Fprintln(s.err, "hearth image build: -data-size:", err)
		return 2
	}
	var password string
	if *passwordFile != "" {
		if password, err = readFirstLine(*passwordFile); err != nil {
			fmt.Fprintln(s.err, "hearth image build:", err)
			return 1
		}
	}
	cfg := images.Config{Target: *target, Appliance: rest[0], Name: *name, Hostname: *hostname, Args: appArgs,
		Output: *output, Size: imgSize, DataSize: diskSize, Password: password, CACerts: *caCerts, Dir: *dir,
		Logger: slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if !*quiet {
		cfg.Progress = s.err
	}
	start := time.Now()
	res, err := images.Build(ctx, cfg)
	if err != nil {
		fmt.Fprintln(s.err, "hearth image build:", err)
		return 1
	}
	fmt.Fprintf(s.out, "built %s image of %s in %.1fs\n", res.Target.Name, rest[0], time.Since(start).Seconds())
	for _, f := range res.Files {
		fmt.Fprintf(s.out, "  %s\n", f)
	}
	fmt.Fprintf(s.out, "size %s, root %s, kernel %s, appliance %s\n", mib(res.Size), mib(res.RootSize), mib(res.KernelSize), mib(res.ApplianceSize))
	fmt.Fprintf(s.out, "cmdline: %s\n", res.Cmdline)
	for i, u := range res.PARTUUIDs {
		fmt.Fprintf(s.out, "partition %d: PARTUUID %s at %d, %s\n", i+1, u, res.Partitions[i][0], mib(res.Partitions[i][1]))
	}
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// parseSize parses a byte count with an optional K, M or G suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<44)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M or G suffix, at most 16T", s)
	}
	return n * mult, nil
}

// readFirstLine returns the first line of a file (at most 4 KiB are read).
func readFirstLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 4096)
	if !sc.Scan() {
		if sc.Err() != nil {
			return "", fmt.Errorf("%s: %w", path, sc.Err())
		}
		return "", fmt.Errorf("%s: empty", path)
	}
	return strings.TrimSpace(sc.Text()), nil
}
