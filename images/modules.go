package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Module is a Go module holding kernels, firmware or EEPROM files, pinned to a version.
type Module struct {
	Path    string
	Version string
}

func (m Module) String() string { return m.Path + "@" + m.Version }

// The pinned modules every image is built from: change a version here, nowhere else.
var (
	KernelRPi   = Module{"github.com/gokrazy/kernel.rpi", "v0.0.0-20251127164438-9778ec0261de"}
	KernelARM64 = Module{"github.com/gokrazy/kernel.arm64", "v0.0.0-20260705071517-37841c4d6ff1"}
	KernelAMD64 = Module{"github.com/gokrazy/kernel.amd64", "v0.0.0-20260705070735-de680abf072b"}
	FirmwareRPi = Module{"github.com/gokrazy/firmware", "v0.0.0-20260522070551-527ce0ed43cf"}
	EEPROMRPi   = Module{"github.com/gokrazy/rpi-eeprom", "v0.0.0-20260518070910-95f7328a8228"}
)

// downloadInfo is the part of `go mod download -json` output used here.
type downloadInfo struct {
	Path, Version, Dir, Zip, Error string
}

// download makes sure m is in the module cache and returns its directory, showing the
// download's progress (bytes so far) on progress while `go mod download` runs.
func (b *builder) download(ctx context.Context, m Module) (string, error) {
	cmd := exec.CommandContext(ctx, b.goCmd(), "mod", "download", "-json", m.String())
	cmd.Env = b.goEnv()
	cmd.Dir = b.cfg.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("images: download %s: %w", m, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	bar := b.bar("download "+shortModule(m), 0)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			bar.set(b.partialDownload(m))
		}
	}
	var info downloadInfo
	if jerr := json.Unmarshal(stdout.Bytes(), &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		err = fmt.Errorf("%s", info.Error)
	}
	if err != nil {
		bar.done("failed")
		return "", fmt.Errorf("images: download %s: %w: %s", m, err, strings.TrimSpace(stderr.String()))
	}
	if st, serr := os.Stat(info.Zip); serr == nil {
		bar.set(st.Size())
	}
	bar.done("")
	if info.Dir == "" {
		return "", fmt.Errorf("images: download %s: no directory in the module cache", m)
	}
	return info.Dir, nil
}

// partialDownload returns the bytes of m's zip downloaded so far (a temporary file in the
// module cache's download directory), or 0.
func (b *builder) partialDownload(m Module) int64 {
	if b.modCache == "" {
		return 0
	}
	dir := filepath.Join(b.modCache, "cache", "download", escapeModulePath(m.Path), "@v")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), m.Version+".zip") {
			if fi, err := e.Info(); err == nil && fi.Size() > n {
				n = fi.Size()
			}
		}
	}
	return n
}

// escapeModulePath escapes upper-case letters the way the module cache does.
func escapeModulePath(p string) string {
	var sb strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			sb.WriteByte('!')
			r += 'a' - 'A'
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

func shortModule(m Module) string { return m.Path[strings.LastIndex(m.Path, "/")+1:] }

// goModCache asks the go command for GOMODCACHE.
func (b *builder) goModCache(ctx context.Context) (string, error) {
	if b.cfg.ModCache != "" {
		return b.cfg.ModCache, nil
	}
	cmd := exec.CommandContext(ctx, b.goCmd(), "env", "GOMODCACHE")
	cmd.Env = b.goEnv()
	cmd.Dir = b.cfg.Dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("images: go env GOMODCACHE: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// readModuleFile reads a file of a downloaded module, refusing anything larger than max.
func readModuleFile(dir, name string, max int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("images: read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("images: %s: larger than %d bytes", name, max)
	}
	return b, nil
}
