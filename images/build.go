// Package images builds Hearth's appliance images: one appliance binary on a minimal
// read-only system, as a flashable Raspberry Pi or arm64/amd64 board image in gokrazy's A/B
// layout, or as a microVM's kernel, initramfs and data disk.
package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearth-home/hearth/images/cpio"
	"github.com/hearth-home/hearth/images/layout"
	"github.com/hearth-home/hearth/images/squashfs"
)

// Limits of Build.
const (
	MaxArgs          = layout.MaxArgs
	MaxBinarySize    = 256 << 20 // the appliance binary
	MaxKernelSize    = 96 << 20
	MaxBootFileSize  = 64 << 20
	MaxCACertsSize   = 4 << 20
	MaxPasswordSize  = 1 << 10
	DefaultDataSize  = 256 << 20 // a microVM's data disk
	MinDataSize      = 16 << 20
	MaxDataSize      = 1 << 40
	defaultCACerts   = "/etc/ssl/certs/ca-certificates.crt"
	microVMKernel    = "vmlinuz"
	microVMInitrd    = "initrd.gz"
	microVMDisk      = "perm.img"
	microVMCmdline   = "cmdline.txt"
	microVMManifest  = "vm.json"
	initPackage      = "github.com/hearth-home/hearth/images/init"
	vmInitPackage    = "github.com/hearth-home/hearth/images/vminit"
	dhcpPackage      = "github.com/gokrazy/gokrazy/cmd/dhcp"
	bootVolumeLabel  = "HEARTHBOOT"
	rootBlockSize    = 128 << 10
	maxWalkedEntries = 1 << 16
)

// DefaultEpoch is the time every file of an image carries unless Config.Epoch says
// otherwise: fixed, so the same inputs give the same bytes.
var DefaultEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config says what to build.
type Config struct {
	// Target is a target's name: rpi, arm64, amd64, microvm-arm64 or microvm-amd64.
	Target string
	// Appliance is a Go package to compile (a path like ./appliances/store, or an import
	// path), or the path of a prebuilt static Linux binary for the target's architecture.
	Appliance string
	// Name is the appliance's name (default: the last element of Appliance).
	Name string
	// Args are the appliance's arguments; nil gives "-data /perm/hearth" plus per-appliance
	// listeners (see defaultArgs).
	Args []string
	// Env are extra environment variables of the appliance, KEY=value.
	Env []string
	// Probe is the appliance's health check after an A/B update, in
	// bootguard.ParseProbe's form (default: its HTTPS or IMAPS port when Args is nil;
	// "-": none).
	Probe string
	// Hostname is the machine's name (default: Name).
	Hostname string
	// Output is the image file of a board target, or the directory of a microVM target
	// (holding vmlinuz, initrd.gz, perm.img, cmdline.txt and vm.json). A board image is
	// written to Output+".tmp" and renamed when complete.
	Output string
	// OutputWriter, if set, receives a board image instead of Output; it must read as zeros
	// where nothing was written (a new or truncated file).
	OutputWriter io.WriterAt
	// Size is a board image's size in bytes (default layout.DefaultSize); the persistent
	// partition takes what the boot and root partitions leave.
	Size int64
	// DataSize is a microVM data disk's size in bytes (default DefaultDataSize); the file is
	// sparse.
	DataSize int64
	// Password is gokrazy's HTTP password on board images (its update endpoints); empty
	// leaves the endpoints reachable only on the device's local socket.
	Password string
	// CACerts is the CA bundle copied into the root; "" uses the build machine's
	// /etc/ssl/certs/ca-certificates.crt when it exists, "-" copies none.
	CACerts string
	// Dir is the directory the go command runs in: inside the Hearth module (default ".").
	Dir string
	// GoCmd is the go command (default "go").
	GoCmd string
	// ModCache overrides GOMODCACHE for every go command the build runs (downloads and
	// compiles); empty: the go command's own.
	ModCache string
	// Epoch is the modification time of every file (zero: DefaultEpoch).
	Epoch time.Time
	// Progress receives progress bars for downloads and image writing (nil: none).
	Progress io.Writer
	// Logger receives the build's steps (nil: slog.Default()).
	Logger *slog.Logger
}

// Result describes a built image.
type Result struct {
	// Target is the target built.
	Target Target
	// Files are the files written: the image, or the microVM's files.
	Files []string
	// Size is the image's size, or the sum of the microVM files' sizes (the data disk's
	// apparent size included).
	Size int64
	// RootSize is the size of the root file system: the SquashFS, or the compressed
	// initramfs.
	RootSize int64
	// KernelSize is the kernel's size.
	KernelSize int64
	// ApplianceSize is the appliance binary's size.
	ApplianceSize int64
	// Cmdline is the kernel command line (cmdline.txt).
	Cmdline string
	// PARTUUIDs are a board image's partitions' PARTUUIDs, partition 1 first.
	PARTUUIDs []string
	// Partitions are a board image's partitions' byte offsets and sizes, partition 1 first.
	Partitions [][2]int64
}

// builder holds one Build's state.
type builder struct {
	cfg      Config
	target   Target
	logger   *slog.Logger
	modCache string
	epoch    time.Time
	tmp      string
}

// Build builds the image cfg describes. The same Config, sources, modules and Go toolchain
// give the same bytes.
func Build(ctx context.Context, cfg Config) (*Result, error) {
	t, err := LookupTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	if cfg.Appliance == "" {
		return nil, errors.New("images: build: no appliance")
	}
	if cfg.Output == "" && (cfg.OutputWriter == nil || !t.Board) {
		return nil, fmt.Errorf("images: build %s: no output", t.Name)
	}
	if cfg.Name == "" {
		cfg.Name = strings.ToLower(filepath.Base(strings.TrimSuffix(filepath.ToSlash(cfg.Appliance), "/")))
	}
	if err := layout.ValidName(cfg.Name); err != nil {
		return nil, fmt.Errorf("images: build: appliance name: %w", err)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	if err := layout.ValidName(cfg.Hostname); err != nil {
		return nil, fmt.Errorf("images: build: hostname: %w", err)
	}
	switch {
	case cfg.Probe == "-":
		cfg.Probe = ""
	case cfg.Probe == "" && cfg.Args == nil:
		cfg.Probe = defaultProbe(cfg.Name)
	}
	if cfg.Args == nil {
		cfg.Args = defaultArgs(cfg.Name)
	}
	app := layout.Appliance{Name: cfg.Name, Args: cfg.Args, Env: cfg.Env, Probe: cfg.Probe}
	if err := app.Validate(); err != nil {
		return nil, fmt.Errorf("images: build: %w", err)
	}
	if cfg.Size == 0 {
		cfg.Size = layout.DefaultSize
	}
	if t.Board && (cfg.Size < layout.MinImageSize || cfg.Size > layout.MaxImageSize || cfg.Size%layout.MiB != 0) {
		return nil, fmt.Errorf("images: build: image size %d: want a multiple of 1 MiB from %d to %d", cfg.Size, int64(layout.MinImageSize), int64(layout.MaxImageSize))
	}
	if cfg.DataSize == 0 {
		cfg.DataSize = DefaultDataSize
	}
	if !t.Board && (cfg.DataSize < MinDataSize || cfg.DataSize > MaxDataSize || cfg.DataSize%layout.MiB != 0) {
		return nil, fmt.Errorf("images: build: data disk size %d: want a multiple of 1 MiB from %d to %d", cfg.DataSize, int64(MinDataSize), int64(MaxDataSize))
	}
	if len(cfg.Password) > MaxPasswordSize || strings.ContainsAny(cfg.Password, "\n\x00") {
		return nil, fmt.Errorf("images: build: password: at most %d bytes, one line", MaxPasswordSize)
	}
	if cfg.Dir == "" {
		cfg.Dir = "."
	}
	b := &builder{cfg: cfg, target: t, logger: cfg.Logger, epoch: cfg.Epoch}
	if b.logger == nil {
		b.logger = slog.Default()
	}
	if b.epoch.IsZero() {
		b.epoch = DefaultEpoch
	}
	b.epoch = b.epoch.UTC().Truncate(2 * time.Second) // FAT keeps even seconds
	if b.modCache, err = b.goModCache(ctx); err != nil {
		return nil, err
	}
	if b.tmp, err = os.MkdirTemp("", "hearth-image-"); err != nil {
		return nil, fmt.Errorf("images: build: %w", err)
	}
	defer os.RemoveAll(b.tmp)
	if t.Board {
		return b.buildBoard(ctx, app)
	}
	return b.buildMicroVM(ctx, app)
}

func (b *builder) goCmd() string {
	if b.cfg.GoCmd != "" {
		return b.cfg.GoCmd
	}
	return "go"
}

// goEnv is the go command's environment: the caller's, with GOMODCACHE overridden.
func (b *builder) goEnv() []string {
	env := os.Environ()
	if b.cfg.ModCache != "" {
		env = append(env, "GOMODCACHE="+b.cfg.ModCache)
	}
	return env
}

// compile cross-compiles pkg for the target, reproducibly, and returns the binary.
func (b *builder) compile(ctx context.Context, pkg, ldflags string) ([]byte, error) {
	out := filepath.Join(b.tmp, fmt.Sprintf("bin-%x", sha256.Sum256([]byte(pkg))))
	// -s -w: no symbol table and DWARF (a third smaller; panics keep their stack traces).
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid= " + ldflags, "-o", out, pkg}
	cmd := exec.CommandContext(ctx, b.goCmd(), args...)
	cmd.Dir = b.cfg.Dir
	cmd.Env = append(b.goEnv(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+b.target.GOARCH, "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b.logger.Debug("compiling", "package", pkg, "goarch", b.target.GOARCH)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("images: compile %s for linux/%s: %w\n%s", pkg, b.target.GOARCH, err, strings.TrimSpace(stderr.String()))
	}
	return readLimited(out, MaxBinarySize)
}

// appliance compiles or reads the appliance binary and checks its architecture.
func (b *builder) appliance(ctx context.Context) ([]byte, error) {
	var bin []byte
	fi, err := os.Stat(b.cfg.Appliance)
	if err == nil && fi.Mode().IsRegular() {
		if bin, err = readLimited(b.cfg.Appliance, MaxBinarySize); err != nil {
			return nil, err
		}
	} else {
		if bin, err = b.compile(ctx, b.cfg.Appliance, ""); err != nil {
			return nil, err
		}
	}
	if err := checkELF(bin, b.target.GOARCH); err != nil {
		return nil, fmt.Errorf("images: appliance %s: %w", b.cfg.Appliance, err)
	}
	return bin, nil
}

// checkELF checks that bin is a Linux executable for goarch.
func checkELF(bin []byte, goarch string) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	want := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}[goarch]
	if f.Machine != want {
		return fmt.Errorf("built for %v, the target needs %v", f.Machine, want)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (build it with CGO_ENABLED=0)")
		}
	}
	return nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer f.Close()
	bs, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("images: read %s: %w", path, err)
	}
	if int64(len(bs)) > max {
		return nil, fmt.Errorf("images: %s: larger than %d bytes", path, max)
	}
	return bs, nil
}

// file is one entry of a file system being assembled.
type file struct {
	path         string      // slash-separated, relative
	mode         fs.FileMode // type bits and permissions
	data         []byte      // a regular file's content
	target       string      // a symlink's target
	major, minor uint32      // a device's numbers
}

func dir(p string) file                          { return file{path: p, mode: fs.ModeDir | 0o755} }
func reg(p string, m fs.FileMode, d []byte) file { return file{path: p, mode: m, data: d} }
func symlink(p, target string) file {
	return file{path: p, mode: fs.ModeSymlink | 0o777, target: target}
}
func chardev(p string, m fs.FileMode, major, minor uint32) file {
	return file{path: p, mode: fs.ModeDevice | fs.ModeCharDevice | m, major: major, minor: minor}
}

// commonRoot returns the files every root holds: device nodes a Go PID 1 needs before
// /dev is mounted, mount points, the appliance and its configuration, hostname, CA bundle.
func (b *builder) commonRoot(app layout.Appliance, bin []byte) ([]file, error) {
	conf, err := app.Marshal()
	if err != nil {
		return nil, err
	}
	files := []file{
		dir("dev"),
		chardev("dev/console", 0o600, 5, 1),
		chardev("dev/null", 0o666, 1, 3),
		dir("proc"), dir("sys"), dir("tmp"), dir("run"), dir("perm"),
		dir("etc"), dir("etc/hearth"), dir("etc/ssl"), dir("etc/ssl/certs"),
		dir("hearth"), dir("hearth/bin"),
		reg(strings.TrimPrefix(app.Binary(), "/"), 0o755, bin),
		reg(strings.TrimPrefix(layout.ConfigPath, "/"), 0o644, conf),
		reg("etc/hostname", 0o644, []byte(b.cfg.Hostname)),
		reg("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 "+b.cfg.Hostname+"\n")),
	}
	certs, err := b.caCerts()
	if err != nil {
		return nil, err
	}
	if certs != nil {
		files = append(files, reg(strings.TrimPrefix(layout.CACertsPath, "/"), 0o644, certs))
	}
	return files, nil
}

func (b *builder) caCerts() ([]byte, error) {
	switch b.cfg.CACerts {
	case "-":
		return nil, nil
	case "":
		if _, err := os.Stat(defaultCACerts); err != nil {
			return nil, nil
		}
		return readLimited(defaultCACerts, MaxCACertsSize)
	}
	return readLimited(b.cfg.CACerts, MaxCACertsSize)
}

// moduleTree returns the files below dir/sub of a downloaded module as entries below
// prefix, in lexical order.
func moduleTree(modDir, sub, prefix string) ([]file, error) {
	var files []file
	root := filepath.Join(modDir, filepath.FromSlash(sub))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(prefix+"/"+filepath.ToSlash(rel), "/.")
		if len(files) >= maxWalkedEntries {
			return fmt.Errorf("more than %d entries", maxWalkedEntries)
		}
		switch {
		case d.IsDir():
			files = append(files, dir(name))
		case d.Type().IsRegular():
			data, err := readLimited(p, MaxBootFileSize)
			if err != nil {
				return err
			}
			files = append(files, reg(name, 0o644, data))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", root, err)
	}
	return files, nil
}

// rootFS is what the SquashFS and cpio writers have in common.
type rootFS interface {
	Mkdir(name string, a attr) error
	WriteFile(name string, r io.Reader, size int64, a attr) error
	Symlink(target, name string, a attr) error
	Mknod(name string, typ fs.FileMode, major, minor uint32, a attr) error
	Close() error
}

// attr is the metadata both writers take.
type attr struct{ mode fs.FileMode }

type squashAdapter struct{ w *squashfs.Writer }

func (s squashAdapter) Mkdir(n string, a attr) error {
	return s.w.Mkdir(n, squashfs.Attr{Mode: a.mode})
}
func (s squashAdapter) WriteFile(n string, r io.Reader, size int64, a attr) error {
	return s.w.WriteFile(n, r, size, squashfs.Attr{Mode: a.mode})
}
func (s squashAdapter) Symlink(t, n string, a attr) error {
	return s.w.Symlink(t, n, squashfs.Attr{Mode: a.mode})
}
func (s squashAdapter) Mknod(n string, typ fs.FileMode, ma, mi uint32, a attr) error {
	return s.w.Mknod(n, typ, ma, mi, squashfs.Attr{Mode: a.mode})
}
func (s squashAdapter) Close() error { return s.w.Close() }

type cpioAdapter struct{ w *cpio.Writer }

func (c cpioAdapter) Mkdir(n string, a attr) error { return c.w.Mkdir(n, cpio.Attr{Mode: a.mode}) }
func (c cpioAdapter) WriteFile(n string, r io.Reader, size int64, a attr) error {
	return c.w.WriteFile(n, r, size, cpio.Attr{Mode: a.mode})
}
func (c cpioAdapter) Symlink(t, n string, a attr) error {
	return c.w.Symlink(t, n, cpio.Attr{Mode: a.mode})
}
func (c cpioAdapter) Mknod(n string, typ fs.FileMode, ma, mi uint32, a attr) error {
	return c.w.Mknod(n, typ, ma, mi, cpio.Attr{Mode: a.mode})
}
func (c cpioAdapter) Close() error { return c.w.Close() }

// writeTree adds files to w in order, advancing p by the bytes of regular files.
func writeTree(w rootFS, files []file, p *bar) error {
	for _, f := range files {
		a := attr{mode: f.mode.Perm()}
		var err error
		switch f.mode.Type() {
		case fs.ModeDir:
			err = w.Mkdir(f.path, a)
		case 0:
			err = w.WriteFile(f.path, countingReader{bytes.NewReader(f.data), p}, int64(len(f.data)), a)
		case fs.ModeSymlink:
			err = w.Symlink(f.target, f.path, a)
		default:
			err = w.Mknod(f.path, f.mode.Type(), f.major, f.minor, a)
		}
		if err != nil {
			return fmt.Errorf("images: %s: %w", f.path, err)
		}
	}
	return nil
}

func treeBytes(files []file) (n int64) {
	for _, f := range files {
		n += int64(len(f.data))
	}
	return n
}

// seed derives a 32-bit number (volume ids, disk signatures) from the image's identity, so
// two appliances' images differ but the same inputs agree.
func (b *builder) seed(what string) uint32 {
	h := sha256.Sum256([]byte("hearth " + what + " " + b.target.Name + " " + b.cfg.Hostname))
	v := binary.LittleEndian.Uint32(h[:4])
	if v == 0 {
		v = 1
	}
	return v
}

// buildMicroVM writes a microVM's kernel, initramfs, data disk, command line and manifest.
func (b *builder) buildMicroVM(ctx context.Context, app layout.Appliance) (*Result, error) {
	kdir, err := b.download(ctx, b.target.Kernel)
	if err != nil {
		return nil, err
	}
	kernel, err := readModuleFile(kdir, "vmlinuz", MaxKernelSize)
	if err != nil {
		return nil, err
	}
	bin, err := b.appliance(ctx)
	if err != nil {
		return nil, err
	}
	initBin, err := b.compile(ctx, vmInitPackage, "")
	if err != nil {
		return nil, err
	}
	files, err := b.commonRoot(app, bin)
	if err != nil {
		return nil, err
	}
	files = append(files, reg(strings.TrimPrefix(layout.VMInitPath, "/"), 0o755, initBin))
	if err := os.MkdirAll(b.cfg.Output, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	res := &Result{Target: b.target, KernelSize: int64(len(kernel)), ApplianceSize: int64(len(bin)),
		Cmdline: layout.VMCmdline()}
	write := func(name string, data []byte) error {
		p := filepath.Join(b.cfg.Output, name)
		if err := writeFileDurable(p, data); err != nil {
			return err
		}
		res.Files = append(res.Files, p)
		res.Size += int64(len(data))
		return nil
	}
	// The initramfs: a newc cpio, gzip-compressed (Go's gzip writes no time or name, so
	// the bytes depend only on the content).
	var initrd bytes.Buffer
	zw, err := gzip.NewWriterLevel(&initrd, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	p := b.bar("write initramfs", treeBytes(files))
	// Every entry's time is 0: with a non-zero mtime the kernel (7.1) failed to exec /init
	// from the unpacked archive (ETXTBSY).
	cw := cpio.NewWriter(zw, cpio.Options{})
	if err := writeTree(cpioAdapter{cw}, files, p); err != nil {
		return nil, err
	}
	if err := cw.Close(); err != nil {
		return nil, fmt.Errorf("images: initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("images: initramfs: %w", err)
	}
	p.done("")
	res.RootSize = int64(initrd.Len())
	if err := write(microVMKernel, kernel); err != nil {
		return nil, err
	}
	if err := write(microVMInitrd, initrd.Bytes()); err != nil {
		return nil, err
	}
	if err := write(microVMCmdline, []byte(res.Cmdline+"\n")); err != nil {
		return nil, err
	}
	diskPath := filepath.Join(b.cfg.Output, microVMDisk)
	if err := b.writeDataDisk(diskPath, b.cfg.DataSize); err != nil {
		return nil, err
	}
	res.Files = append(res.Files, diskPath)
	res.Size += b.cfg.DataSize
	man, err := json.MarshalIndent(VMManifest{Arch: b.target.GOARCH, Kernel: microVMKernel, Initrd: microVMInitrd,
		Cmdline: res.Cmdline, Disk: microVMDisk, MemoryMiB: 128, Appliance: app.Name, Hostname: b.cfg.Hostname}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := write(microVMManifest, append(man, '\n')); err != nil {
		return nil, err
	}
	return res, nil
}

// VMManifest is vm.json in a microVM's directory: what a VM runner (jitsu) needs to boot
// it. File names are relative to the directory.
type VMManifest struct {
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel"`
	Initrd    string `json:"initrd"`
	Cmdline   string `json:"cmdline"`
	Disk      string `json:"disk"`
	MemoryMiB int    `json:"memory_mib"`
	Appliance string `json:"appliance"`
	Hostname  string `json:"hostname"`
}

// writeDataDisk writes a formatted, sparse data disk of size bytes, unless path already
// holds one (a rebuild keeps the appliance's data).
func (b *builder) writeDataDisk(path string, size int64) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		b.logger.Info("keeping the existing data disk", "path", path)
		return nil
	}
	f, err := os.OpenFile(path+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("images: data disk: %w", err)
	}
	defer os.Remove(path + ".tmp")
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("images: data disk: %w", err)
	}
	if err := formatPerm(f, size, b.seed("perm")); err != nil {
		return fmt.Errorf("images: data disk: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("images: data disk: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("images: data disk: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("images: data disk: %w", err)
	}
	return nil
}

// writeFileDurable writes data to path through a synced temporary file and a rename.
func writeFileDurable(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("images: write %s: %w", path, err)
	}
	return nil
}
