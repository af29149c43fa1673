package jitsu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// VMManifestFile is the name of the manifest in a microVM directory made by
// `hearth image build -target microvm-*` (next to vmlinuz, initrd.gz and perm.img).
const VMManifestFile = "vm.json"

// maxVMManifestSize bounds vm.json.
const maxVMManifestSize = 64 << 10

// vmJSON is vm.json: file names are relative to its directory.
type vmJSON struct {
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel"`
	Initrd    string `json:"initrd"`
	Cmdline   string `json:"cmdline"`
	Disk      string `json:"disk"`
	MemoryMiB int    `json:"memory_mib"`
	Appliance string `json:"appliance"`
	Hostname  string `json:"hostname"`
}

// LoadVMDir reads the vm.json of the microVM directory dir (as written by
// `hearth image build -target microvm-arm64|microvm-amd64`) and returns a manifest that
// boots it: Name is the appliance's, Image, Initrd and Disk are the directory's files
// (absolute when dir is), Arch, Cmdline and MemoryMiB are vm.json's. It has no sockets:
// the caller adds those it wants jitsu to hold, with the guest ports the appliance
// serves, and sets IdleTimeout. File names in vm.json must stay inside dir.
func LoadVMDir(dir string) (Manifest, error) {
	f, err := os.Open(filepath.Join(dir, VMManifestFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("jitsu: microVM directory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxVMManifestSize+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("jitsu: microVM directory %s: %w", dir, err)
	}
	m, err := parseVMManifest(data, dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("jitsu: microVM directory %s: %w", dir, err)
	}
	return m, nil
}

// parseVMManifest parses vm.json, resolving its file names against dir.
func parseVMManifest(data []byte, dir string) (Manifest, error) {
	if len(data) > maxVMManifestSize {
		return Manifest{}, fmt.Errorf("%s: more than %d bytes: %w", VMManifestFile, maxVMManifestSize, ErrInvalidManifest)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var v vmJSON // unknown fields are allowed: newer builders may add some
	if err := dec.Decode(&v); err != nil {
		return Manifest{}, fmt.Errorf("%s: %v: %w", VMManifestFile, err, ErrInvalidManifest)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("%s: data after the JSON object: %w", VMManifestFile, ErrInvalidManifest)
	}
	file := func(what, name string, need bool) (string, error) {
		switch {
		case name == "" && need:
			return "", fmt.Errorf("%s: no %s: %w", VMManifestFile, what, ErrInvalidManifest)
		case name == "":
			return "", nil
		case !filepath.IsLocal(name):
			return "", fmt.Errorf("%s: %s %q is not a file in the directory: %w", VMManifestFile, what, clip(name), ErrInvalidManifest)
		}
		return filepath.Join(dir, name), nil
	}
	m := Manifest{Name: v.Appliance, Arch: v.Arch, Cmdline: v.Cmdline, MemoryMiB: v.MemoryMiB}
	var err error
	if m.Image, err = file("kernel", v.Kernel, true); err != nil {
		return Manifest{}, err
	}
	if m.Initrd, err = file("initrd", v.Initrd, false); err != nil {
		return Manifest{}, err
	}
	if m.Disk, err = file("disk", v.Disk, false); err != nil {
		return Manifest{}, err
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", VMManifestFile, err)
	}
	return m, nil
}

// fillFromVM fills the VM fields m leaves empty from vm (LoadVMDir's manifest).
func fillFromVM(m, vm Manifest) Manifest {
	if m.Name == "" {
		m.Name = vm.Name
	}
	if m.Image == "" {
		m.Image = vm.Image
	}
	if m.Initrd == "" {
		m.Initrd = vm.Initrd
	}
	if m.Disk == "" {
		m.Disk = vm.Disk
	}
	if m.Arch == "" {
		m.Arch = vm.Arch
	}
	if m.Cmdline == "" {
		m.Cmdline = vm.Cmdline
	}
	if m.MemoryMiB == 0 {
		m.MemoryMiB = vm.MemoryMiB
	}
	return m
}

// checkDisk says why path cannot be a data disk: it must be a non-empty regular file
// this process can open for reading and writing.
func checkDisk(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("data disk %s does not exist (build the microVM with hearth image build, or create a raw image): %w", path, err)
		}
		return fmt.Errorf("data disk: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("data disk %s is not a regular file", path)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("data disk %s is empty (it needs a size: e.g. truncate -s 256M)", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("data disk %s cannot be opened for writing: %w", path, err)
	}
	return f.Close()
}
