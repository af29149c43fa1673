package jitsu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

// ErrInvalidManifest: a manifest or a manifests file breaks a rule; test with errors.Is.
var ErrInvalidManifest = errors.New("jitsu: invalid manifest")

// Limits a Manifest and a manifests file must keep.
const (
	MaxManifests        = 64      // manifests in one file or one Summoner
	MaxSockets          = 16      // listening sockets of one appliance
	MaxExecArgs         = 64      // binary and arguments
	MaxEnv              = 64      // extra environment variables
	MaxManifestString   = 4096    // bytes of one argument, env entry, address or image
	MaxManifestFileSize = 1 << 20 // bytes of a manifests file
	MaxMemoryMiB        = 1 << 20 // MemoryMiB
)

// Manifest says what an appliance is and how to start it: its name (the DNS label it is
// summoned by), the binary to run, and the sockets jitsu holds for it.
type Manifest struct {
	// Name is the appliance's DNS label, e.g. "store".
	Name string
	// Exec is the binary and its arguments, for the process backend. When IdleTimeout is
	// positive, the summoner appends "-idle-exit" and the timeout, so the binary must
	// accept that flag.
	Exec []string
	// Image is the appliance's boot image for the microVM backend: a Linux kernel (arm64
	// Image or x86-64 bzImage) booted by QEMU, together with Initrd and Disk. An appliance
	// has Exec or Image, not both. The initramfs's init serves the sockets' GuestPorts on
	// eth0 (10.0.2.15/24, QEMU user networking; the kernel also configures it from the
	// command line). `hearth image build -target microvm-*` makes such a microVM, and
	// LoadVMDir (or "vm_dir" in a manifests file) turns its vm.json into a Manifest.
	Image string
	// Initrd is the initramfs (newc cpio, gzip) booted with Image ("": none).
	Initrd string
	// Arch is the guest's architecture, "arm64" (QEMU -M virt, the default) or "amd64"
	// (-M q35: its ACPI power button is how jitsu asks the guest to shut down).
	Arch string
	// Cmdline is appended to the kernel command line jitsu makes (console and ip=).
	Cmdline string
	// Sockets are the listening sockets jitsu opens and passes to the appliance, in order
	// (descriptor 3, 4, …), named in LISTEN_FDNAMES.
	Sockets []Socket
	// Env are extra "KEY=value" environment variables for the appliance.
	Env []string
	// IdleTimeout is how long the appliance may stay without connections before it exits
	// (0: it never exits on its own).
	IdleTimeout time.Duration
	// MemoryMiB is the memory the appliance may use (for the microVM backend; 0: default).
	MemoryMiB int
	// Disk is the microVM's data disk: a raw image attached read-write as a virtio block
	// device (/dev/vda in the guest, mounted on /perm by the image's init), cached
	// write-back with the guest's flushes honoured and locked, so two VMs cannot use it at
	// once ("": none, and the guest's /perm is a tmpfs). It must exist when the appliance
	// is added. Only for manifests with an Image.
	Disk string
}

// Socket is one listening socket of an appliance.
type Socket struct {
	// Name is the socket's name in LISTEN_FDNAMES, e.g. "http"; no ':'.
	Name string
	// Proto is "tcp" (the only one supported so far).
	Proto string
	// Addr is the host:port to listen on; an empty host means every address.
	Addr string
	// GuestPort is the port the microVM serves this socket on (0: Addr's port); only
	// for manifests with an Image.
	GuestPort int
}

// Validate reports the first rule m breaks, wrapping ErrInvalidManifest.
func (m Manifest) Validate() error {
	if err := checkLabel(m.Name); err != nil {
		return fmt.Errorf("jitsu: manifest: name: %w", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("jitsu: manifest %q: %s: %w", m.Name, fmt.Sprintf(format, args...), ErrInvalidManifest)
	}
	if len(m.Exec) == 0 && m.Image == "" {
		return bad("neither exec nor image is set")
	}
	if len(m.Exec) > 0 && m.Image != "" {
		return bad("both exec and image are set")
	}
	if m.Image == "" && (m.Initrd != "" || m.Arch != "" || m.Cmdline != "" || m.Disk != "") {
		return bad("initrd, arch, cmdline and disk need an image")
	}
	for what, v := range map[string]string{"initrd": m.Initrd, "cmdline": m.Cmdline, "disk": m.Disk} {
		if err := checkString(v); err != nil {
			return bad("%s: %v", what, err)
		}
	}
	switch m.Arch {
	case "", "arm64", "amd64":
	default:
		return bad("arch %q: want arm64 or amd64", clip(m.Arch))
	}
	if len(m.Exec) > MaxExecArgs {
		return bad("%d exec arguments, at most %d", len(m.Exec), MaxExecArgs)
	}
	for i, a := range m.Exec {
		if err := checkString(a); err != nil {
			return bad("exec argument %d: %v", i, err)
		}
	}
	if len(m.Exec) > 0 && m.Exec[0] == "" {
		return bad("exec: empty binary")
	}
	if err := checkString(m.Image); err != nil {
		return bad("image: %v", err)
	}
	if len(m.Sockets) > MaxSockets {
		return bad("%d sockets, at most %d", len(m.Sockets), MaxSockets)
	}
	seen := make(map[string]bool, len(m.Sockets))
	for i, s := range m.Sockets {
		if err := s.validate(); err != nil {
			return bad("socket %d: %v", i, err)
		}
		if seen[s.Name] {
			return bad("socket %q twice", s.Name)
		}
		if s.GuestPort != 0 && m.Image == "" {
			return bad("socket %q: guest port without an image", s.Name)
		}
		if m.Image != "" && guestPort(s) == 0 {
			return bad("socket %q: guest port must be 1..65535 (or the address's port)", s.Name)
		}
		seen[s.Name] = true
	}
	if len(m.Env) > MaxEnv {
		return bad("%d env entries, at most %d", len(m.Env), MaxEnv)
	}
	for i, e := range m.Env {
		if err := checkString(e); err != nil {
			return bad("env entry %d: %v", i, err)
		}
		k, _, ok := strings.Cut(e, "=")
		switch {
		case !ok || k == "":
			return bad("env entry %d %q: want KEY=value", i, clip(e))
		case strings.HasPrefix(k, "LISTEN_"):
			return bad("env entry %d: %s is set by jitsu", i, clip(k))
		}
	}
	if m.IdleTimeout < 0 {
		return bad("negative idle timeout %s", m.IdleTimeout)
	}
	if m.MemoryMiB < 0 || m.MemoryMiB > MaxMemoryMiB {
		return bad("memory %d MiB outside 0..%d", m.MemoryMiB, MaxMemoryMiB)
	}
	return nil
}

func (s Socket) validate() error {
	switch {
	case s.Name == "" || len(s.Name) > 255:
		return errors.New("name must be 1..255 bytes")
	case strings.ContainsAny(s.Name, ":\x00") || strings.ContainsFunc(s.Name, isControl):
		return fmt.Errorf("name %q: no ':' or control characters", clip(s.Name))
	case s.Proto != "tcp":
		return fmt.Errorf("%q: proto %q is not tcp", s.Name, clip(s.Proto))
	}
	if err := checkString(s.Addr); err != nil {
		return fmt.Errorf("%q: address: %v", s.Name, err)
	}
	_, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("%q: address %q: want host:port", s.Name, clip(s.Addr))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: address %q: port must be 0..65535", s.Name, clip(s.Addr))
	}
	return nil
}

// guestPort is the port the microVM serves socket s on, 0 if none is valid.
func guestPort(s Socket) int {
	if s.GuestPort != 0 {
		if s.GuestPort < 1 || s.GuestPort > 65535 {
			return 0
		}
		return s.GuestPort
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	return p
}

func checkLabel(l string) error {
	if l == "" || len(l) > 63 {
		return fmt.Errorf("%q must be 1..63 bytes: %w", clip(l), ErrInvalidManifest)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%q: byte %q is not a-z, 0-9 or '-': %w", clip(l), c, ErrInvalidManifest)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("%q: starts or ends with '-': %w", l, ErrInvalidManifest)
	}
	return nil
}

func checkString(s string) error {
	if len(s) > MaxManifestString {
		return fmt.Errorf("%d bytes, at most %d", len(s), MaxManifestString)
	}
	if strings.ContainsRune(s, 0) {
		return errors.New("contains a NUL byte")
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// builtinAppliances are Hearth's own appliances, in the order BuiltinManifests returns
// them. Each is a binary of that name taking -data DIR, -idle-exit D and its sockets from
// LISTEN_FDS/LISTEN_FDNAMES, named after its ports in signpost.Names.
var builtinAppliances = [...]string{"store", "mail", "contacts", "calendar", "dashboard"}

// BuiltinIdleTimeout is how long a built-in appliance stays up without connections.
const BuiltinIdleTimeout = 5 * time.Minute

// BuiltinManifests returns the manifests of Hearth's own appliances (store, mail, contacts,
// calendar, dashboard) that are in names and whose binary exists in binDir: binDir/NAME
// -data dataDir, one socket per TCP port in names named after it ("https", "imaps", …),
// loopback-only ports on 127.0.0.1 and the others on every address, idle after
// BuiltinIdleTimeout. An appliance whose binary is missing is left out with a note to
// logger (nil: slog.Default()).
func BuiltinManifests(binDir, dataDir string, names signpost.Names, logger *slog.Logger) []Manifest {
	if logger == nil {
		logger = slog.Default()
	}
	var out []Manifest
	for _, name := range builtinAppliances {
		a, ok := names.Appliance(name)
		if !ok {
			continue
		}
		bin := filepath.Join(binDir, name)
		if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			logger.Info("jitsu: appliance left out: no binary", "appliance", name, "binary", bin)
			continue
		}
		m := Manifest{
			Name:        name,
			Exec:        []string{bin, "-data", dataDir},
			IdleTimeout: BuiltinIdleTimeout,
		}
		for _, p := range a.Ports {
			if p.Proto != "tcp" || len(m.Sockets) == MaxSockets {
				continue
			}
			host := ""
			if p.Loopback {
				host = "127.0.0.1"
			}
			m.Sockets = append(m.Sockets, Socket{Name: p.Name, Proto: "tcp", Addr: net.JoinHostPort(host, strconv.Itoa(p.Port))})
		}
		out = append(out, m)
	}
	return out
}

// manifestsFile is the JSON form of a manifests file.
type manifestsFile struct {
	Appliances []manifestJSON `json:"appliances"`
}

type manifestJSON struct {
	Name        string       `json:"name"`
	Exec        []string     `json:"exec,omitempty"`
	Image       string       `json:"image,omitempty"`
	Initrd      string       `json:"initrd,omitempty"`
	Arch        string       `json:"arch,omitempty"`
	Cmdline     string       `json:"cmdline,omitempty"`
	Sockets     []socketJSON `json:"sockets,omitempty"`
	Env         []string     `json:"env,omitempty"`
	IdleTimeout string       `json:"idle_timeout,omitempty"` // time.ParseDuration form, e.g. "5m"
	MemoryMiB   int          `json:"memory_mib,omitempty"`
	Disk        string       `json:"disk,omitempty"`
	// VMDir is a microVM directory made by hearth image build: its vm.json fills in
	// image, initrd, disk, arch, cmdline and memory_mib where the entry leaves them out
	// (name too: the entry's, else vm.json's appliance).
	VMDir string `json:"vm_dir,omitempty"`
}

type socketJSON struct {
	Name      string `json:"name"`
	Proto     string `json:"proto"`
	Addr      string `json:"addr"`
	GuestPort int    `json:"guest_port,omitempty"`
}

// EncodeManifests returns ms as JSON ({"appliances": [...]}, durations like "5m") after
// validating every one.
func EncodeManifests(ms []Manifest) ([]byte, error) {
	if err := validateAll(ms); err != nil {
		return nil, err
	}
	f := manifestsFile{Appliances: make([]manifestJSON, len(ms))}
	for i, m := range ms {
		j := manifestJSON{Name: m.Name, Exec: m.Exec, Image: m.Image, Initrd: m.Initrd, Arch: m.Arch, Cmdline: m.Cmdline, Env: m.Env, MemoryMiB: m.MemoryMiB, Disk: m.Disk}
		if m.IdleTimeout != 0 {
			j.IdleTimeout = m.IdleTimeout.String()
		}
		for _, s := range m.Sockets {
			j.Sockets = append(j.Sockets, socketJSON(s))
		}
		f.Appliances[i] = j
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("jitsu: encode manifests: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeManifests parses a manifests file (see EncodeManifests) and validates it:
// unknown fields, trailing data, more than MaxManifests manifests or a name twice are errors.
// An entry may name a microVM directory ("vm_dir", see LoadVMDir) whose vm.json fills in
// the fields the entry leaves out. Paths (image, initrd, disk, vm_dir) are used as they
// are: relative ones are relative to the working directory.
func DecodeManifests(data []byte) ([]Manifest, error) {
	if len(data) > MaxManifestFileSize {
		return nil, fmt.Errorf("jitsu: manifests: %d bytes, at most %d: %w", len(data), MaxManifestFileSize, ErrInvalidManifest)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f manifestsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("jitsu: manifests: %v: %w", err, ErrInvalidManifest)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("jitsu: manifests: data after the JSON object: %w", ErrInvalidManifest)
	}
	if len(f.Appliances) > MaxManifests {
		return nil, fmt.Errorf("jitsu: manifests: %d appliances, at most %d: %w", len(f.Appliances), MaxManifests, ErrInvalidManifest)
	}
	ms := make([]Manifest, len(f.Appliances))
	for i, j := range f.Appliances {
		m := Manifest{Name: j.Name, Exec: j.Exec, Image: j.Image, Initrd: j.Initrd, Arch: j.Arch, Cmdline: j.Cmdline,
			Env: j.Env, MemoryMiB: j.MemoryMiB, Disk: j.Disk}
		if j.VMDir != "" {
			if err := checkString(j.VMDir); err != nil {
				return nil, fmt.Errorf("jitsu: manifest %q: vm_dir: %v: %w", clip(j.Name), err, ErrInvalidManifest)
			}
			vm, err := LoadVMDir(j.VMDir)
			if err != nil {
				return nil, fmt.Errorf("jitsu: manifest %q: %w", clip(j.Name), err)
			}
			m = fillFromVM(m, vm)
		}
		if j.IdleTimeout != "" {
			d, err := time.ParseDuration(j.IdleTimeout)
			if err != nil {
				return nil, fmt.Errorf("jitsu: manifest %q: idle_timeout %q: not a duration: %w", clip(j.Name), clip(j.IdleTimeout), ErrInvalidManifest)
			}
			m.IdleTimeout = d
		}
		for _, s := range j.Sockets {
			m.Sockets = append(m.Sockets, Socket(s))
		}
		ms[i] = m
	}
	if err := validateAll(ms); err != nil {
		return nil, err
	}
	return ms, nil
}

func validateAll(ms []Manifest) error {
	if len(ms) > MaxManifests {
		return fmt.Errorf("jitsu: %d manifests, at most %d: %w", len(ms), MaxManifests, ErrInvalidManifest)
	}
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			return err
		}
		if seen[m.Name] {
			return fmt.Errorf("jitsu: manifest %q twice: %w", m.Name, ErrInvalidManifest)
		}
		seen[m.Name] = true
	}
	return nil
}

// LoadManifests reads and validates the manifests file at path.
func LoadManifests(path string) ([]Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jitsu: load manifests: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("jitsu: load manifests %s: %w", path, err)
	}
	ms, err := DecodeManifests(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ms, nil
}

// SaveManifests writes ms to path durably: a temporary file in the same directory is
// written, synced and renamed over path, and the directory is synced.
func SaveManifests(path string, ms []Manifest) error {
	data, err := EncodeManifests(ms)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("jitsu: save manifests: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("jitsu: save manifests %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
