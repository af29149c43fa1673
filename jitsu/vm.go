package jitsu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the microVM backend.
const (
	DefaultVMMemoryMiB = 128
	DefaultBootTimeout = 60 * time.Second
	// DefaultPowerdownTimeout is VMOptions.PowerdownTimeout's default.
	DefaultPowerdownTimeout = 10 * time.Second
	guestIPConfig           = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off" // the guest on QEMU's user network
	probeWait               = 100 * time.Millisecond                           // a probe without an answer for this long is held by QEMU
	probeHeld               = time.Second                                      // held this long after the guest refused one: accepted
	// tcgCmdline is added to the kernel command line of guests emulated by TCG: without
	// KASLR the arm64 kernel does not force page-table isolation (KPTI), whose extra
	// page-table switch on every system call and interrupt is costly to emulate (~0.15 s of
	// a store microVM's boot). Speculative-execution attacks, which KPTI defends against,
	// do not exist under emulation; KASLR's randomization is given up.
	tcgCmdline = "nokaslr"
)

// VMOptions tune a VMBackend. The zero value is usable.
type VMOptions struct {
	// Logger receives boots, stops and the guests' console lines; nil: slog.Default().
	Logger *slog.Logger
	// QEMUDir is the directory of qemu-system-aarch64 and qemu-system-x86_64 ("": PATH).
	QEMUDir string
	// Accel is "kvm", "tcg", or "" to choose: KVM when the guest's architecture is the
	// host's and a short probe boot under KVM works (a /dev/kvm that exists but cannot
	// run guests is common in nested VMs), else TCG. The probe's verdict is cached.
	Accel string
	// BootTimeout bounds a boot: connections are held this long for the guest to answer
	// before the VM is given up (<= 0: DefaultBootTimeout).
	BootTimeout time.Duration
	// PowerdownTimeout is how long a stop waits for the guest to power off after its
	// power button was pressed (through QEMU's QMP socket) before ending QEMU with SIGTERM
	// (<= 0: DefaultPowerdownTimeout).
	PowerdownTimeout time.Duration
	// StopGrace is how long a stop waits after SIGTERM to QEMU before SIGKILL (<= 0: 5s).
	StopGrace time.Duration
	// RuntimeDir is where each running VM gets a directory for its QMP socket, and the
	// backend one for its decompressed initramfs copies ("": os.TempDir()). Its path
	// must be short: a Unix socket's path has at most 107 bytes.
	RuntimeDir string
	// OnSummon, if set, is told of every boot that reached its guest and its latency.
	OnSummon func(appliance string, latency time.Duration)
	// CrashBackoffMin, CrashBackoffMax and CrashBackoffReset shape how a VM that exits by
	// itself (its kernel panicked, its appliance died) is booted again: connections are
	// refused for CrashBackoffMin (<= 0: 1s) after the first crash, twice as long after
	// each further one up to CrashBackoffMax (<= 0: 1m), and a VM that ran for
	// CrashBackoffReset (<= 0: 1m) before it died starts over at CrashBackoffMin. Without
	// this, every connection to a broken appliance would boot it again.
	CrashBackoffMin, CrashBackoffMax, CrashBackoffReset time.Duration
}

// ErrBackoff is returned (wrapped) for a boot refused because the appliance's VM crashed
// recently (see VMOptions.CrashBackoffMin).
var ErrBackoff = errors.New("jitsu: the appliance crashed; waiting before the next boot")

// VMBackend runs appliances as microVMs under QEMU (the microVM backend). It listens on
// every socket of an appliance itself; a connection, or a Summon, boots the appliance's
// VM with QEMU user networking forwarding a free loopback port to each socket's guest
// port. Connections are held while the guest boots and spliced to it once it answers.
// The first socket is probed: a greeting, or a connection that stays open for a second
// after the guest refused one, means up (QEMU holds connections while the guest's
// network is down, and a guest refuses between its kernel configuring eth0 and its init
// listening). The VM is stopped when it has had no connection for the manifest's
// IdleTimeout (0: it runs until Stop or Close). A VM that dies is booted again by the
// next connection. A guest whose init is Hearth's vminit says on its console when a port
// listens, which marks it up at once, before any probe would. A manifest's Disk is the
// guest's data disk. A stop (idle, Stop, Close) of a guest whose init watches the power
// button (vminit says so on the console) presses it through QEMU's QMP socket, so the init
// stops the appliance and unmounts the disk before powering off; QEMU is ended by signals
// only when the guest does not power off within PowerdownTimeout, or has no such init. A VM
// that exits by itself is booted again only after a backoff (VMOptions.CrashBackoffMin).
// Gzip initramfs images are booted from decompressed copies (the guest kernel decompresses
// slowly under TCG). The accelerator
// is KVM when a probe boot shows it works, else TCG; a guest that KVM fails later is
// booted again under TCG.
type VMBackend struct {
	opts    VMOptions
	logger  *slog.Logger
	closing chan struct{}
	wg      sync.WaitGroup // accept loops, connection handlers, probes and watchers

	accelMu sync.Mutex
	accel   map[string]string // QEMU binary → "kvm" or "tcg", once probed

	initrds initrdCache

	mu     sync.Mutex
	apps   map[string]*vmApp
	order  []string
	closed bool
}

// vmApp is one appliance of the backend; fields below lns are guarded by VMBackend.mu.
type vmApp struct {
	m   Manifest
	lns []net.Listener

	run         *vmRun // the booting or running VM, nil when stopped
	stopping    *vmRun // the last VM stopped, which may still be shutting down
	conns       int    // connections held or spliced
	idle        *time.Timer
	state       string
	since       time.Time
	summons     int
	lastLatency time.Duration
	lastExit    string
	accel       string        // "kvm" or "tcg": chosen by Add, TCG after KVM failed
	backoff     time.Duration // the wait after the last crash (0: no crash since a long run)
	notBefore   time.Time     // no boot before this, after a crash
}

// vmRun is one boot of an appliance's VM.
type vmRun struct {
	cmd     *exec.Cmd
	dir     string       // its runtime directory, removed when QEMU has exited
	qmp     string       // QEMU's QMP socket ("": none)
	exitErr error        // what cmd.Wait returned, set before exited closes
	button  atomic.Bool  // the guest's init said it watches the power button
	panic   atomic.Value // string: the guest kernel's panic line, if it panicked
	ports   []int        // loopback ports QEMU forwards to the sockets' guest ports
	trigger time.Time    // what started it
	started time.Time    // when QEMU was started
	ready   chan struct{}
	exited  chan struct{} // closed when QEMU has exited
	stopped bool          // a stop was asked for (guarded by VMBackend.mu)
	retry   bool          // stopped to boot again differently: waiting connections retry
}

// NewVMBackend returns a microVM backend with no appliances.
func NewVMBackend(opts VMOptions) *VMBackend {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = DefaultBootTimeout
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 5 * time.Second
	}
	if opts.PowerdownTimeout <= 0 {
		opts.PowerdownTimeout = DefaultPowerdownTimeout
	}
	if opts.RuntimeDir == "" {
		opts.RuntimeDir = os.TempDir()
	}
	if opts.CrashBackoffMin <= 0 {
		opts.CrashBackoffMin = time.Second
	}
	if opts.CrashBackoffMax <= 0 {
		opts.CrashBackoffMax = time.Minute
	}
	if opts.CrashBackoffReset <= 0 {
		opts.CrashBackoffReset = time.Minute
	}
	return &VMBackend{opts: opts, logger: opts.Logger, closing: make(chan struct{}),
		accel: make(map[string]string), apps: make(map[string]*vmApp)}
}

// Add opens m's sockets (m must have an Image) and serves them: the first connection
// boots the VM. ctx bounds only the opening of the sockets.
func (b *VMBackend) Add(ctx context.Context, m Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Image == "" {
		return fmt.Errorf("jitsu: add %q: the microVM backend needs an image: %w", m.Name, ErrInvalidManifest)
	}
	if len(m.Sockets) == 0 { // the first socket tells when the guest is up
		return fmt.Errorf("jitsu: add %q: the microVM backend needs a socket: %w", m.Name, ErrInvalidManifest)
	}
	if m.Disk != "" {
		if err := checkDisk(m.Disk); err != nil {
			return fmt.Errorf("jitsu: add %q: %w", m.Name, err)
		}
	}
	a := &vmApp{m: m, state: StateStopped, since: time.Now(), accel: b.accelFor(m)}
	var lc net.ListenConfig
	for _, s := range m.Sockets {
		ln, err := lc.Listen(ctx, s.Proto, s.Addr)
		if err != nil {
			for _, l := range a.lns {
				l.Close()
			}
			return fmt.Errorf("jitsu: add %q: socket %q: %w", m.Name, s.Name, err)
		}
		a.lns = append(a.lns, ln)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	switch {
	case b.closed:
		err = fmt.Errorf("jitsu: add %q: %w", m.Name, ErrClosed)
	case b.apps[m.Name] != nil:
		err = fmt.Errorf("jitsu: add %q: %w", m.Name, ErrDuplicate)
	case len(b.apps) >= MaxManifests:
		err = fmt.Errorf("jitsu: add %q: already %d appliances: %w", m.Name, MaxManifests, ErrInvalidManifest)
	}
	if err != nil {
		for _, l := range a.lns {
			l.Close()
		}
		return err
	}
	b.apps[m.Name] = a
	b.order = append(b.order, m.Name)
	for i, ln := range a.lns {
		b.wg.Go(func() { b.acceptLoop(a, i, ln) })
	}
	if m.Initrd != "" {
		// Decompressed without the lock; a boot before it is done uses the original.
		b.wg.Go(func() { b.initrds.prepare(b.opts.RuntimeDir, m.Initrd, b.logger) })
	}
	return nil
}

// Has says whether appliance name belongs to this backend.
func (b *VMBackend) Has(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.apps[name] != nil
}

func (b *VMBackend) app(name string) (*vmApp, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a := b.apps[name]; a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("jitsu: %q: %w", name, ErrUnknownAppliance)
}

// Addr returns the address of socket of appliance name.
func (b *VMBackend) Addr(name, socket string) (net.Addr, error) {
	a, err := b.app(name)
	if err != nil {
		return nil, err
	}
	for i, s := range a.m.Sockets {
		if s.Name == socket {
			return a.lns[i].Addr(), nil
		}
	}
	return nil, fmt.Errorf("jitsu: addr %q: no socket %q: %w", name, socket, ErrUnknownAppliance)
}

// Summon boots appliance name unless it runs and waits until its guest answers (or the
// boot failed, or ctx ended). Without connections it then idles out as usual.
func (b *VMBackend) Summon(ctx context.Context, name string) error {
	a, err := b.app(name)
	if err != nil {
		return err
	}
	run, err := b.acquire(a, time.Now(), false)
	if err != nil {
		return err
	}
	select {
	case <-run.ready:
		return nil
	case <-run.exited:
		return fmt.Errorf("jitsu: summon %q: the VM exited while booting", name)
	case <-ctx.Done():
		return fmt.Errorf("jitsu: summon %q: %w", name, ctx.Err())
	}
}

// SummonAsync starts booting appliance name unless it runs, without waiting (when its
// previous VM is still shutting down, the boot starts once it is gone).
func (b *VMBackend) SummonAsync(name string) error {
	a, err := b.app(name)
	if err != nil {
		return err
	}
	if prev := b.shuttingDown(a); prev != nil {
		trigger := time.Now()
		b.wg.Go(func() {
			if _, err := b.acquire(a, trigger, false); err != nil {
				b.logger.Warn("appliance VM: summon failed", "appliance", a.m.Name, "err", err)
			}
		})
		return nil
	}
	_, err = b.acquire(a, time.Now(), false)
	return err
}

// shuttingDown returns a's previous VM if a has none running and the previous one, which
// holds a's data disk, has not exited yet; else nil.
func (b *VMBackend) shuttingDown(a *vmApp) *vmRun {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.run == nil && a.stopping != nil && !isClosed(a.stopping.exited) {
		return a.stopping
	}
	return nil
}

// acquire returns a's VM, booting it if none runs; conn says a connection will use it
// (and must release it). A VM with a data disk is booted only once the previous one has
// exited (its shutdown takes a moment, and QEMU locks the disk).
func (b *VMBackend) acquire(a *vmApp, trigger time.Time, conn bool) (*vmRun, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, fmt.Errorf("jitsu: summon %q: %w", a.m.Name, ErrClosed)
		}
		if a.run != nil || a.stopping == nil || isClosed(a.stopping.exited) {
			run, err := b.acquireLocked(a, trigger, conn)
			b.mu.Unlock()
			return run, err
		}
		prev := a.stopping
		b.mu.Unlock()
		select {
		case <-prev.exited:
		case <-b.closing:
		}
	}
}

// acquireLocked is acquire once no previous VM holds the disk; the caller holds b.mu.
func (b *VMBackend) acquireLocked(a *vmApp, trigger time.Time, conn bool) (*vmRun, error) {
	if a.idle != nil {
		a.idle.Stop()
		a.idle = nil
	}
	if a.run == nil {
		if wait := time.Until(a.notBefore); wait > 0 {
			return nil, fmt.Errorf("jitsu: boot %q: %w (next boot in %v)", a.m.Name, ErrBackoff, wait.Round(time.Millisecond))
		}
		run, err := b.boot(a, trigger)
		if err != nil {
			a.lastExit = err.Error()
			return nil, err
		}
		a.run = run
		a.summons++
		a.state, a.since = StateStarting, time.Now()
	}
	if conn {
		a.conns++
	} else if a.conns == 0 {
		b.armIdle(a, a.run)
	}
	return a.run, nil
}

// release ends a connection's use of run.
func (b *VMBackend) release(a *vmApp, run *vmRun) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a.conns--
	if a.conns == 0 && a.run == run {
		b.armIdle(a, run)
	}
}

// armIdle starts a's idle timer for run; the caller holds b.mu.
func (b *VMBackend) armIdle(a *vmApp, run *vmRun) {
	if a.m.IdleTimeout <= 0 {
		return
	}
	if a.idle != nil {
		a.idle.Stop()
	}
	a.idle = time.AfterFunc(a.m.IdleTimeout, func() {
		b.mu.Lock()
		if a.run != run || a.conns > 0 {
			b.mu.Unlock()
			return
		}
		b.detach(a, run)
		b.mu.Unlock()
		b.logger.Info("appliance VM idle; stopping", "appliance", a.m.Name)
		b.terminate(a, run, nil)
	})
}

// detach marks run stopping and a stopped, so the next connection boots a new VM; the
// caller holds b.mu.
func (b *VMBackend) detach(a *vmApp, run *vmRun) {
	run.stopped = true
	if a.run == run {
		a.run = nil
		a.state, a.since = StateStopped, time.Now()
		if a.m.Disk != "" {
			a.stopping = run
		}
	}
}

// qemuArgs returns the QEMU binary and arguments that boot m with the sockets' guest
// ports forwarded from the loopback ports ports (nil: no network, for a probe boot).
func (b *VMBackend) qemuArgs(m Manifest, ports []int, accel string) (string, []string) {
	mem := m.MemoryMiB
	if mem == 0 {
		mem = DefaultVMMemoryMiB
	}
	var bin, console string
	var args []string
	switch m.Arch {
	case "amd64":
		bin, console = "qemu-system-x86_64", "ttyS0"
		args = []string{"-M", "q35"}
	default:
		bin, console = "qemu-system-aarch64", "ttyAMA0"
		cpu := "cortex-a53"
		if accel == "kvm" {
			cpu = "host"
		}
		args = []string{"-M", "virt", "-cpu", cpu}
	}
	if b.opts.QEMUDir != "" {
		bin = filepath.Join(b.opts.QEMUDir, bin)
	}
	tcg := accel == "tcg"
	if tcg {
		accel = "tcg,thread=single" // multi-threaded TCG on few cores boots far slower
	}
	args = append(args, "-accel", accel, "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", m.Image)
	if m.Initrd != "" {
		args = append(args, "-initrd", m.Initrd)
	}
	cmdline := "console=" + console + " panic=-1 " + guestIPConfig
	if ports != nil {
		cmdline += " quiet" // a probe boot reads the kernel's messages
		if tcg {
			cmdline += " " + tcgCmdline
		}
	}
	if m.Cmdline != "" {
		cmdline += " " + m.Cmdline
	}
	args = append(args, "-append", cmdline)
	if ports == nil { // a probe boot
		return bin, args
	}
	netdev := "user,id=n0"
	for i, s := range m.Sockets {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", ports[i], guestPort(s))
	}
	nic, blk := "virtio-net-device", "virtio-blk-device"
	if m.Arch == "amd64" {
		nic, blk = "virtio-net-pci", "virtio-blk-pci"
	}
	if m.Disk != "" {
		// Write-back caching with the guest's flushes honoured (virtio-blk announces a
		// volatile cache, so the guest's fsync reaches the host file); the lock keeps a
		// second QEMU off the disk.
		args = append(args, "-drive", "file="+qemuEscape(m.Disk)+",if=none,id=d0,format=raw,cache=writeback,file.locking=on",
			"-device", blk+",drive=d0")
	}
	return bin, append(args, "-netdev", netdev, "-device", nic+",netdev=n0")
}

// qemuEscape escapes a value of a QEMU option list (a comma is written twice).
func qemuEscape(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// boot starts QEMU for a; the caller holds b.mu.
func (b *VMBackend) boot(a *vmApp, trigger time.Time) (*vmRun, error) {
	ports, err := freeLoopbackPorts(len(a.m.Sockets))
	if err != nil {
		return nil, fmt.Errorf("jitsu: boot %q: %w", a.m.Name, err)
	}
	accel := a.accel // the caller holds b.mu
	m := a.m
	if m.Initrd != "" {
		m.Initrd = b.initrds.lookup(m.Initrd)
	}
	bin, args := b.qemuArgs(m, ports, accel)
	dir, err := os.MkdirTemp(b.opts.RuntimeDir, "jitsu-vm-")
	if err != nil {
		return nil, fmt.Errorf("jitsu: boot %q: runtime directory: %w", a.m.Name, err)
	}
	qmp := filepath.Join(dir, "qmp.sock")
	if len(qmp) > maxUnixPath || strings.Contains(qmp, ",") {
		b.logger.Warn("appliance VM: runtime directory unfit for a QMP socket; it will be stopped by SIGTERM", "appliance", a.m.Name, "dir", dir)
		qmp = ""
	} else {
		args = append(args, "-qmp", "unix:"+qmp+",server=on,wait=off")
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, w, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("jitsu: boot %q: %w", a.m.Name, err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("jitsu: boot %q: %w", a.m.Name, err)
	}
	run := &vmRun{cmd: cmd, dir: dir, qmp: qmp, ports: ports, trigger: trigger, started: time.Now(),
		ready: make(chan struct{}), exited: make(chan struct{})}
	first := guestPort(a.m.Sockets[0])
	go logOutput(b.logger, a.m.Name, "console", out, func(line string) {
		if accel == "kvm" && kvmFailure(line) {
			b.kvmFailed(a, run)
		}
		if p := listeningPort(line); p != 0 && p == first {
			b.markReady(a, run, "console")
		}
		if watchesPowerButton(line) {
			run.button.Store(true)
		}
		if i := strings.Index(line, "Kernel panic"); i >= 0 {
			run.panic.CompareAndSwap(nil, clip(line[i:]))
		}
	})
	b.logger.Info("appliance VM booting", "appliance", a.m.Name, "pid", cmd.Process.Pid, "accel", accel)
	b.wg.Go(func() { b.watch(a, run) })
	b.wg.Go(func() { b.probe(a, run) })
	return run, nil
}

// kvmFailure says whether a line of QEMU's output says KVM cannot run the guest.
func kvmFailure(line string) bool {
	return strings.Contains(line, "KVM internal error") || strings.Contains(line, "failed to set MSR") ||
		strings.Contains(line, "failed to initialize kvm")
}

// kvmFailed handles a guest that KVM could not run although the probe passed: the
// verdict for its image becomes TCG, the VM is stopped, and the connections waiting for
// it boot it again under TCG.
func (b *VMBackend) kvmFailed(a *vmApp, run *vmRun) {
	bin, _ := b.qemuArgs(a.m, nil, "kvm")
	b.accelMu.Lock()
	b.accel[bin+"\x00"+a.m.Image] = "tcg"
	b.accelMu.Unlock()
	b.mu.Lock()
	if run.retry {
		b.mu.Unlock()
		return
	}
	a.accel = "tcg"
	run.retry = true
	b.detach(a, run)
	b.mu.Unlock()
	b.logger.Warn("appliance VM: KVM cannot run it; booting it under TCG", "appliance", a.m.Name)
	go b.terminate(a, run, nil)
}

// watch waits for run's QEMU to exit and marks a stopped.
func (b *VMBackend) watch(a *vmApp, run *vmRun) {
	err := run.cmd.Wait()
	os.RemoveAll(run.dir)
	run.exitErr = err
	close(run.exited)
	b.mu.Lock()
	unexpected := !run.stopped // a stop's terminate records how it ended
	if unexpected {
		a.lastExit = exitString(err)
		if p, ok := run.panic.Load().(string); ok {
			a.lastExit += " (" + p + ")"
		}
		a.backoff = nextCrashBackoff(b.opts, a.backoff, time.Since(run.started))
		a.notBefore = time.Now().Add(a.backoff)
	}
	b.detach(a, run)
	if unexpected && a.run == nil {
		a.state = StateBackoff
	}
	backoff := a.backoff
	b.mu.Unlock()
	if unexpected {
		b.logger.Warn("appliance VM exited by itself; booting it again only after a backoff",
			"appliance", a.m.Name, "exit", exitString(err), "backoff", backoff)
	}
}

// probe waits until the guest answers on the first socket's forwarded port, then marks
// run ready; a boot that does not answer within BootTimeout is stopped.
func (b *VMBackend) probe(a *vmApp, run *vmRun) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(run.ports[0]))
	readyCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-run.ready:
			cancel()
		case <-readyCtx.Done():
		}
	}()
	deadline := time.Now().Add(b.opts.BootTimeout)
	refused := false // the guest's kernel has answered a probe with a reset
	pause := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-run.exited:
		case <-b.closing:
		}
		return false
	}
	for time.Now().Before(deadline) {
		select {
		case <-run.exited:
			return
		case <-b.closing:
			return
		case <-run.ready: // the console said so
			return
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil { // QEMU is not listening yet
			if !pause(5 * time.Millisecond) {
				return
			}
			continue
		}
		// Until the guest refuses a probe its network is not up and QEMU holds every
		// connection; after that a guest that is slow to answer (TCG on a busy host) must
		// not pass for one that accepted, hence the longer wait.
		wait := probeWait
		if refused {
			wait = probeHeld
		}
		c.SetReadDeadline(time.Now().Add(wait))
		// The console may say the guest is up meanwhile: the probe's connection must not
		// linger then (an appliance's graceful shutdown would wait for it).
		stop := context.AfterFunc(readyCtx, func() { c.Close() })
		var buf [1]byte
		n, err := c.Read(buf[:])
		stop()
		c.Close()
		if isClosed(run.ready) {
			return
		}
		var nerr net.Error
		held := errors.As(err, &nerr) && nerr.Timeout()
		if n > 0 || held && refused {
			b.markReady(a, run, "probe")
			return
		}
		if !held {
			refused = true
			if !pause(10 * time.Millisecond) {
				return
			}
		}
	}
	b.logger.Warn("appliance VM did not answer; stopping it", "appliance", a.m.Name, "timeout", b.opts.BootTimeout)
	b.mu.Lock()
	b.detach(a, run)
	b.mu.Unlock()
	b.terminate(a, run, nil)
}

// markReady marks run up (once): by the probe, or by the guest's init saying on the
// console that the first socket's guest port listens.
func (b *VMBackend) markReady(a *vmApp, run *vmRun, by string) {
	b.mu.Lock()
	if isClosed(run.ready) {
		b.mu.Unlock()
		return
	}
	latency := time.Since(run.trigger)
	if a.run == run {
		a.state, a.since = StateRunning, time.Now()
		a.lastLatency = latency
	}
	close(run.ready)
	b.mu.Unlock()
	b.logger.Info("appliance VM up", "appliance", a.m.Name, "latency", latency, "by", by)
	if b.opts.OnSummon != nil {
		go b.opts.OnSummon(a.m.Name, latency)
	}
}

// watchesPowerButton says whether a console line is the guest's init (Hearth's vminit)
// saying it watches the power button ("vminit: [0.82s] watching the power button ...").
func watchesPowerButton(line string) bool {
	i := strings.Index(line, "watching the power button")
	return i > 0 && strings.Contains(line[:i], "vminit: ")
}

// listeningPort returns the port of a console line in which the guest's init (Hearth's
// vminit) says a TCP port listens ("vminit: [1.23s] listening on tcp port 8443"), or 0.
func listeningPort(line string) int {
	const marker = "listening on tcp port "
	i := strings.Index(line, marker)
	if i < 0 || !strings.Contains(line[:i], "vminit: ") {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(line[i+len(marker):]))
	if err != nil || p < 1 || p > 65535 {
		return 0
	}
	return p
}

// acceptLoop serves connections to socket i of a until the listener closes.
func (b *VMBackend) acceptLoop(a *vmApp, i int, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-b.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.logger.Warn("appliance socket: accept failed", "appliance", a.m.Name, "err", err)
			time.Sleep(10 * time.Millisecond) // e.g. out of descriptors
			continue
		}
		b.wg.Go(func() { b.serveConn(a, i, c) })
	}
}

// serveConn holds c until a's VM answers and splices it to socket i of the guest.
func (b *VMBackend) serveConn(a *vmApp, i int, c net.Conn) {
	defer c.Close()
	t := time.NewTimer(b.opts.BootTimeout)
	defer t.Stop()
	var run *vmRun
	for run == nil {
		r, err := b.acquire(a, time.Now(), true)
		if err != nil {
			level := slog.LevelWarn
			if errors.Is(err, ErrBackoff) {
				level = slog.LevelDebug // said once, when it crashed
			}
			b.logger.Log(context.Background(), level, "appliance VM: cannot serve a connection", "appliance", a.m.Name, "err", err)
			return
		}
		timedOut := false
		select {
		case <-r.ready:
			run = r
			continue
		case <-r.exited:
		case <-b.closing:
		case <-t.C:
			timedOut = true
		}
		b.release(a, r)
		b.mu.Lock()
		retry := r.retry
		b.mu.Unlock()
		if !retry || timedOut {
			return
		}
	}
	defer b.release(a, run)
	up, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(run.ports[i])), 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	splice(c, up, run.exited)
}

// splice copies between a and b both ways until both directions end or stop closes.
func splice(a, b net.Conn, stop <-chan struct{}) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	for n := 0; n < 2; n++ {
		select {
		case <-done:
		case <-stop:
			a.Close()
			b.Close()
			<-done
			<-done
			return
		}
	}
}

// Stop stops appliance name's VM if one runs (see terminate: the guest is asked to power
// off first) and waits until QEMU has exited.
func (b *VMBackend) Stop(ctx context.Context, name string) error {
	a, err := b.app(name)
	if err != nil {
		return err
	}
	b.mu.Lock()
	run := a.run
	if run != nil {
		b.detach(a, run)
	}
	b.mu.Unlock()
	if run != nil {
		b.terminate(a, run, ctx.Done())
	}
	return nil
}

// terminate stops run's VM and waits for QEMU to exit. A guest whose init said on the
// console that it watches the power button, and that is not being replaced, gets its
// power button pressed through QMP and PowerdownTimeout to shut down cleanly; then, or at
// once for the others, QEMU gets SIGTERM, and SIGKILL after StopGrace. A closed kill cuts
// the waits short.
func (b *VMBackend) terminate(a *vmApp, run *vmRun, kill <-chan struct{}) {
	pid := run.cmd.Process.Pid
	b.mu.Lock()
	retry := run.retry
	b.mu.Unlock()
	plan := stopPlan{signal: func(s syscall.Signal) { signalGroup(pid, s) }, exited: run.exited, kill: kill,
		powerdownTimeout: b.opts.PowerdownTimeout, grace: b.opts.StopGrace}
	if run.qmp != "" && run.button.Load() && !retry {
		plan.powerdown = func(ctx context.Context) error { return qmpPowerdown(ctx, run.qmp) }
	}
	how, err := plan.run()
	if err != nil {
		b.logger.Warn("appliance VM: pressing its power button failed", "appliance", a.m.Name, "err", err)
	}
	exit := exitString(run.exitErr) + " (" + how + ")"
	b.mu.Lock()
	a.lastExit = exit
	b.mu.Unlock()
	b.logger.Info("appliance VM stopped", "appliance", a.m.Name, "exit", exit)
}

// maxUnixPath is the longest path of a Unix socket (sun_path less its NUL).
const maxUnixPath = 107

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Close stops every VM (SIGKILL at once when ctx ends), closes the sockets and waits for
// every connection to end. The backend cannot be used after.
func (b *VMBackend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.closing)
	type stop struct {
		a   *vmApp
		run *vmRun
	}
	var stops []stop
	for _, name := range b.order {
		a := b.apps[name]
		for _, ln := range a.lns {
			ln.Close()
		}
		if a.idle != nil {
			a.idle.Stop()
		}
		if a.run != nil {
			stops = append(stops, stop{a, a.run})
			b.detach(a, a.run)
		}
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range stops {
		wg.Go(func() { b.terminate(s.a, s.run, ctx.Done()) })
	}
	wg.Wait()
	b.wg.Wait()
	b.initrds.remove()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("jitsu: close VMs: %w", err)
	}
	return nil
}

// Status reports every appliance of the backend, in the order they were added. PID is
// QEMU's; LastSummonLatency runs from the trigger to the guest answering.
func (b *VMBackend) Status() []ApplianceStatus {
	out := b.status()
	for i := range out { // QEMU's memory, read without holding the lock
		if out[i].PID > 0 {
			out[i].RSS, _ = processRSS("/proc", out[i].PID)
		}
	}
	return out
}

func (b *VMBackend) status() []ApplianceStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ApplianceStatus, 0, len(b.order))
	for _, name := range b.order {
		a := b.apps[name]
		state := a.state
		if state == StateBackoff && !time.Now().Before(a.notBefore) {
			state = StateStopped // the next connection boots it
		}
		st := ApplianceStatus{Name: name, State: state, Since: a.since, Summons: a.summons,
			LastSummonLatency: a.lastLatency, LastExit: a.lastExit, Conns: a.conns}
		if a.run != nil && a.state == StateRunning {
			st.PID = a.run.cmd.Process.Pid
		}
		out = append(out, st)
	}
	return out
}

// accelFor returns the accelerator for m: VMOptions.Accel, or, when the guest's
// architecture is the host's, the cached verdict of ProbeKVM booting m's own kernel, else
// "tcg".
func (b *VMBackend) accelFor(m Manifest) string {
	if b.opts.Accel != "" {
		return b.opts.Accel
	}
	arch := m.Arch
	if arch == "" {
		arch = "arm64"
	}
	if arch != runtime.GOARCH {
		return "tcg"
	}
	bin, args := b.qemuArgs(m, nil, "kvm")
	key := bin + "\x00" + m.Image
	b.accelMu.Lock()
	defer b.accelMu.Unlock()
	if v, ok := b.accel[key]; ok {
		return v
	}
	v := "tcg"
	if ProbeKVM(bin, args) {
		v = "kvm"
	}
	b.logger.Info("jitsu: microVM accelerator chosen", "qemu", bin, "image", m.Image, "accel", v)
	b.accel[key] = v
	return v
}

// kvmProbeTime bounds a probe boot under KVM: a guest still running without a failure
// then counts as running.
const kvmProbeTime = 10 * time.Second

// ProbeKVM says whether QEMU binary qemu can run a guest under KVM here, by trying: it
// runs qemu with args (a boot under KVM of the appliance's own kernel, without
// networking, with kernel messages on the console) and reads the console. A /dev/kvm that
// exists but cannot run guests, as in nested VMs, shows as "KVM internal error" or
// "failed to set MSR" once the guest runs: no. The kernel starting init (or panicking,
// which it reaches only by running), a clean exit, or kvmProbeTime without a failure: yes.
// A QEMU that exits with an error, or a /dev/kvm that cannot be opened: no.
func ProbeKVM(qemu string, args []string) bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	cmd := exec.Command(qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r, w, err := os.Pipe()
	if err != nil {
		return false
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return false
	}
	verdict := make(chan bool, 1) // the console's verdict, at most one
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, maxLogLine), maxLogLine)
		decided := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case decided:
			case kvmFailure(line):
				verdict <- false
				decided = true
			case strings.Contains(line, "Run /init") || strings.Contains(line, "Kernel panic"):
				verdict <- true
				decided = true
			}
		}
	}()
	t := time.NewTimer(kvmProbeTime)
	defer t.Stop()
	var ok bool
	select {
	case ok = <-verdict:
	case <-eof: // QEMU ended (or closed its output) without a verdict on the console
		select {
		case ok = <-verdict:
		default:
			signalGroup(cmd.Process.Pid, syscall.SIGKILL)
			return cmd.Wait() == nil
		}
	case <-t.C:
		ok = true
	}
	signalGroup(cmd.Process.Pid, syscall.SIGKILL)
	<-eof
	cmd.Wait()
	return ok
}

// freeLoopbackPorts returns n ports free on 127.0.0.1 (they could be taken again before
// QEMU binds them; a boot that fails for it is retried by the next connection).
func freeLoopbackPorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// nextCrashBackoff is the wait before booting again a VM that crashed after running for
// ran, when the wait after its previous crash was prev.
func nextCrashBackoff(opts VMOptions, prev, ran time.Duration) time.Duration {
	if prev <= 0 || ran >= opts.CrashBackoffReset {
		return opts.CrashBackoffMin
	}
	return min(2*prev, opts.CrashBackoffMax)
}
