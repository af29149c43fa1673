// Package bootguard gives an A/B root update automatic rollback: at boot it puts a new root
// on trial, commits it once the appliance answers, and switches back to the last healthy root
// when it does not.
//
// The device has two root partitions (2 and 3, gokrazy's layout); the kernel command line
// (/proc/cmdline, root=...) says which one runs. The guard keeps a small state file on the
// persistent partition (/perm) recording the root last known to be healthy. A boot from any
// other root is a trial:
//
//   - Check, called by the init early at every boot, counts the trial's boots (durably,
//     before the appliance starts); when the trial has already used MaxAttempts boots without
//     becoming healthy — the appliance crashed, hung, or the machine lost power or panicked
//     during the trial — it switches back to the healthy root and reboots.
//   - Watch probes the appliance's service; when it answers, MarkHealthy makes the trial root
//     the healthy one. When it does not answer within HealthTimeout, Fail switches back to the
//     healthy root and reboots at once.
//   - Status (also served as JSON by the Guard's ServeHTTP) tells the host what happened:
//     "hearth update" polls it to report success or rollback.
//
// The switch itself is the platform's job (Options.Switch): CmdlineSwitcher rewrites root= in
// cmdline.txt on the FAT boot partition, as gokrazy's /update/switch does — which cannot be
// used on Hearth's images, because gokrazy reads only FAT16 boot partitions and Hearth's are
// FAT32. The host therefore switches through the guard: POST SwitchPath.
package bootguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Phase is what the guard knows about the running root.
type Phase string

// The phases a boot goes through.
const (
	// PhaseHealthy: the running root is the one last known healthy (or has just been marked so).
	PhaseHealthy Phase = "healthy"
	// PhaseTrial: the running root is new and has not answered yet.
	PhaseTrial Phase = "trial"
	// PhaseRollingBack: the trial failed; the guard has switched back and is rebooting.
	PhaseRollingBack Phase = "rolling-back"
	// PhaseRollbackFailed: switching back did not take effect after several reboots; the
	// guard gave up and lets the trial root run.
	PhaseRollbackFailed Phase = "rollback-failed"
)

// State is what the guard keeps on the persistent partition.
type State struct {
	// Good is the root partition last known healthy (2 or 3).
	Good int `json:"good"`
	// Trial is the root partition on trial, 0 when none.
	Trial int `json:"trial,omitempty"`
	// Attempts counts the boots of the trial root so far.
	Attempts int `json:"attempts,omitempty"`
	// RollingBack is set from the moment the guard decides to roll back until the healthy
	// root has booted again.
	RollingBack bool `json:"rolling_back,omitempty"`
	// RolledBack is the root partition the last rollback left, 0 when none happened.
	RolledBack int `json:"rolled_back,omitempty"`
	// Reason says why the last rollback happened.
	Reason string `json:"reason,omitempty"`
	// Rollbacks counts the rollbacks completed on this device: a host compares it before
	// and after an update.
	Rollbacks int `json:"rollbacks,omitempty"`
	// Changed is when the state last changed (UTC).
	Changed time.Time `json:"changed"`
}

// Status is the guard's view of the running boot, served to the host.
type Status struct {
	// BootID identifies this boot (the kernel's random boot_id): it changes at every boot.
	BootID string `json:"boot_id"`
	// Root is the root partition this boot runs from.
	Root int `json:"root"`
	// Phase is where this boot stands.
	Phase Phase `json:"phase"`
	// State is the persistent state.
	State State `json:"state"`
}

// Defaults for Options.
const (
	DefaultMaxAttempts   = 2
	DefaultHealthTimeout = 3 * time.Minute
	DefaultProbeInterval = time.Second
	// maxRollbackTries is how many boots a rollback may take before the guard gives up.
	maxRollbackTries = 3
	// maxStateSize bounds the state file the guard reads.
	maxStateSize = 64 << 10
)

// ErrRollingBack is returned by Check and Fail once they have switched back to the healthy
// root and asked for a reboot: the caller should not start the appliance.
var ErrRollingBack = errors.New("bootguard: rolling back to the healthy root")

// Options configures a Guard.
type Options struct {
	// StatePath is the state file on the persistent partition (required), e.g.
	// /perm/hearth/bootguard.json.
	StatePath string
	// CmdlinePath is the kernel command line (default /proc/cmdline).
	CmdlinePath string
	// BootIDPath holds the boot's id (default /proc/sys/kernel/random/boot_id).
	BootIDPath string
	// MaxAttempts is how many boots a trial root gets before it is rolled back (default 2).
	MaxAttempts int
	// HealthTimeout is how long Watch waits for the first healthy probe. Zero takes it from
	// the kernel command line, bootguard.health_timeout=DURATION (e.g. 20s, between 5s and
	// 1h), else DefaultHealthTimeout.
	HealthTimeout time.Duration
	// ProbeInterval is the pause between probes in Watch (default 1 s).
	ProbeInterval time.Duration
	// Switch makes root partition n (2 or 3) the one that boots next (required); see
	// CmdlineSwitcher.
	Switch func(ctx context.Context, n int) error
	// Reboot restarts the machine (required); it may return before the machine goes down.
	Reboot func(ctx context.Context) error
	// Logger receives the guard's decisions (nil: slog.Default()).
	Logger *slog.Logger
}

// Guard decides about one boot. Its methods are safe for concurrent use.
type Guard struct {
	opts   Options
	log    *slog.Logger
	root   int
	bootID string

	mu    sync.Mutex
	state State
	phase Phase
}

// New reads the running root from the kernel command line and the state file; it changes
// nothing on disk (Check does).
func New(opts Options) (*Guard, error) {
	if opts.StatePath == "" {
		return nil, errors.New("bootguard: no state path")
	}
	if opts.Switch == nil || opts.Reboot == nil {
		return nil, errors.New("bootguard: Switch and Reboot are required")
	}
	if opts.CmdlinePath == "" {
		opts.CmdlinePath = "/proc/cmdline"
	}
	if opts.BootIDPath == "" {
		opts.BootIDPath = "/proc/sys/kernel/random/boot_id"
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	g := &Guard{opts: opts, log: opts.Logger}
	if g.log == nil {
		g.log = slog.Default()
	}
	cmdline, err := readLimited(opts.CmdlinePath, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("bootguard: read kernel command line: %w", err)
	}
	g.root, err = RootPartition(string(cmdline))
	if err != nil {
		return nil, err
	}
	if g.opts.HealthTimeout <= 0 {
		g.opts.HealthTimeout = cmdlineTimeout(string(cmdline))
	}
	if id, err := readLimited(opts.BootIDPath, 256); err == nil {
		g.bootID = strings.TrimSpace(string(id))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bootguard: read boot id: %w", err)
	}
	g.state, err = readState(opts.StatePath)
	if err != nil {
		return nil, err
	}
	g.phase = PhaseTrial
	if g.state.Good == g.root || g.state.Good == 0 {
		g.phase = PhaseHealthy
	}
	return g, nil
}

var timeoutRe = regexp.MustCompile(`(?:^|\s)bootguard\.health_timeout=(\S+)`)

// cmdlineTimeout returns the health timeout the kernel command line sets, or the default.
func cmdlineTimeout(cmdline string) time.Duration {
	m := timeoutRe.FindAllStringSubmatch(cmdline, -1)
	if len(m) == 0 {
		return DefaultHealthTimeout
	}
	d, err := time.ParseDuration(m[len(m)-1][1])
	if err != nil || d < 5*time.Second || d > time.Hour {
		return DefaultHealthTimeout
	}
	return d
}

var (
	devRootRe  = regexp.MustCompile(`^/dev/(?:mmcblk[0-9]+p|sd[a-z]|vd[a-z]|loop[0-9]+p|nvme[0-9]+n[0-9]+p)([1-9][0-9]*)$`)
	mbrUUIDRe  = regexp.MustCompile(`^PARTUUID=[0-9a-fA-F]{8}-([0-9]{2})$`)
	gptUUIDRe  = regexp.MustCompile(`^PARTUUID=[0-9a-fA-F-]{36}/PARTNROFF=([0-9])$`)
	rootFlagRe = regexp.MustCompile(`(?:^|\s)root=(\S+)`)
)

// RootPartition returns the root partition number (2 or 3) a kernel command line boots:
// root=/dev/mmcblk0p3, root=PARTUUID=1234abcd-03 (MBR) or root=PARTUUID=UUID/PARTNROFF=2
// (GPT, an offset from the boot partition 1), the forms gokrazy writes.
func RootPartition(cmdline string) (int, error) {
	m := rootFlagRe.FindAllStringSubmatch(cmdline, -1)
	if len(m) == 0 {
		return 0, errors.New("bootguard: kernel command line has no root=")
	}
	root := m[len(m)-1][1] // the kernel uses the last one
	var n int
	switch {
	case devRootRe.MatchString(root):
		n, _ = strconv.Atoi(devRootRe.FindStringSubmatch(root)[1])
	case mbrUUIDRe.MatchString(root):
		n, _ = strconv.Atoi(mbrUUIDRe.FindStringSubmatch(root)[1])
	case gptUUIDRe.MatchString(root):
		off, _ := strconv.Atoi(gptUUIDRe.FindStringSubmatch(root)[1])
		n = 1 + off
	default:
		return 0, fmt.Errorf("bootguard: root=%q is not a root partition form the guard knows", root)
	}
	if n != 2 && n != 3 {
		return 0, fmt.Errorf("bootguard: root=%q is partition %d, not an A/B root (2 or 3)", root, n)
	}
	return n, nil
}

// Check is called once per boot, after the persistent partition is mounted and before the
// appliance starts. On the healthy root it settles a finished rollback; on a trial root it
// counts the boot, or, when the trial has used up its boots, switches back and reboots and
// returns ErrRollingBack.
func (g *Guard) Check(ctx context.Context) (Status, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state
	switch {
	case s.Good == 0:
		// First boot after flashing: whatever runs is what the person installed.
		s = State{Good: g.root}
		g.phase = PhaseHealthy
		g.log.Info("bootguard: first boot, root is healthy", "root", g.root)
	case s.Good == g.root:
		g.phase = PhaseHealthy
		if s.Trial != 0 {
			if s.RollingBack {
				s.RolledBack, s.RollingBack = s.Trial, false
				s.Rollbacks++
				g.log.Warn("bootguard: rolled back", "from", s.Trial, "to", g.root, "reason", s.Reason)
			} else {
				g.log.Warn("bootguard: trial root was abandoned", "trial", s.Trial)
			}
			s.Trial, s.Attempts = 0, 0
		} else {
			return g.statusLocked(), nil
		}
	default:
		if s.Trial != g.root {
			s.Trial, s.Attempts, s.RollingBack, s.Reason = g.root, 0, false, ""
		}
		switch {
		case s.Attempts >= g.opts.MaxAttempts+maxRollbackTries:
			g.phase = PhaseRollbackFailed
			g.log.Error("bootguard: switching back did not take effect; running the trial root", "root", g.root, "boots", s.Attempts)
		case s.Attempts >= g.opts.MaxAttempts:
			if s.Reason == "" {
				s.Reason = fmt.Sprintf("not healthy after %d boots", s.Attempts)
			}
			s.Attempts++
			s.RollingBack = true
			if err := g.saveLocked(s); err != nil {
				return g.statusLocked(), err
			}
			g.phase = PhaseRollingBack
			return g.statusLocked(), g.rollbackLocked(ctx)
		default:
			s.Attempts++
			g.phase = PhaseTrial
			g.log.Info("bootguard: trial boot", "root", g.root, "healthy_root", s.Good, "boot", s.Attempts, "of", g.opts.MaxAttempts)
		}
	}
	if err := g.saveLocked(s); err != nil {
		return g.statusLocked(), err
	}
	return g.statusLocked(), nil
}

// MarkHealthy makes the running root the healthy one (a no-op when it already is).
func (g *Guard) MarkHealthy(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase == PhaseRollingBack {
		return ErrRollingBack
	}
	s := g.state
	if s.Good == g.root && s.Trial == 0 {
		g.phase = PhaseHealthy
		return nil
	}
	s.Good, s.Trial, s.Attempts, s.RollingBack = g.root, 0, 0, false
	if err := g.saveLocked(s); err != nil {
		return err
	}
	g.phase = PhaseHealthy
	g.log.Info("bootguard: root is healthy", "root", g.root)
	return nil
}

// Fail ends a trial that did not become healthy: it switches back to the healthy root and
// reboots, and returns ErrRollingBack. On the healthy root there is nothing to go back to:
// Fail logs the reason and returns nil.
func (g *Guard) Fail(ctx context.Context, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase == PhaseRollingBack {
		return ErrRollingBack
	}
	if g.phase != PhaseTrial {
		g.log.Error("bootguard: appliance unhealthy on the healthy root; nothing to roll back to", "root", g.root, "reason", reason)
		return nil
	}
	s := g.state
	s.RollingBack, s.Reason = true, reason
	if err := g.saveLocked(s); err != nil {
		return err
	}
	g.phase = PhaseRollingBack
	return g.rollbackLocked(ctx)
}

// rollbackLocked switches to the other root and reboots; the state says RollingBack already.
func (g *Guard) rollbackLocked(ctx context.Context) error {
	g.log.Warn("bootguard: rolling back", "from", g.root, "to", g.state.Good, "reason", g.state.Reason)
	if err := g.opts.Switch(ctx, g.state.Good); err != nil {
		return fmt.Errorf("bootguard: switch back to root %d: %w", g.state.Good, err)
	}
	if err := g.opts.Reboot(ctx); err != nil {
		return fmt.Errorf("bootguard: reboot: %w", err)
	}
	return ErrRollingBack
}

// Watch probes the appliance every ProbeInterval until a probe succeeds (then MarkHealthy)
// or HealthTimeout passes (then, on a trial, Fail, which returns ErrRollingBack). It returns
// ctx's error when ctx ends first. Call it after the appliance has been started.
func (g *Guard) Watch(ctx context.Context, probe func(ctx context.Context) error) error {
	if g.Phase() == PhaseRollingBack {
		return ErrRollingBack
	}
	deadline := time.NewTimer(g.opts.HealthTimeout)
	defer deadline.Stop()
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, g.opts.ProbeInterval+5*time.Second)
		last = probe(pctx)
		cancel()
		if last == nil {
			return g.MarkHealthy(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return g.Fail(ctx, fmt.Sprintf("no healthy answer within %s: %v", g.opts.HealthTimeout, last))
		case <-time.After(g.opts.ProbeInterval):
		}
	}
}

// Phase returns where this boot stands.
func (g *Guard) Phase() Phase {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.phase
}

// Status returns this boot's status.
func (g *Guard) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.statusLocked()
}

func (g *Guard) statusLocked() Status {
	return Status{BootID: g.bootID, Root: g.root, Phase: g.phase, State: g.state}
}

// Paths the init should serve the guard at (ServeHTTP), behind gokrazy's authentication,
// for "hearth update".
const (
	// StatusPath answers GET with the Status as JSON.
	StatusPath = "/hearth/bootguard"
	// SwitchPath answers POST by making the inactive root partition boot next (what
	// gokrazy's /update/switch does on FAT16).
	SwitchPath = "/hearth/bootguard/switch"
)

// SwitchInactive makes the root partition that is not running the one that boots next.
// It refuses while a rollback is under way.
func (g *Guard) SwitchInactive(ctx context.Context) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase == PhaseRollingBack {
		return 0, ErrRollingBack
	}
	n := 5 - g.root
	if err := g.opts.Switch(ctx, n); err != nil {
		return 0, fmt.Errorf("bootguard: switch to root %d: %w", n, err)
	}
	g.log.Info("bootguard: switched; the next boot is a trial", "root", n)
	return n, nil
}

// ServeHTTP answers GET with the Status as JSON, and POST to a path ending in /switch with
// SwitchInactive.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/switch") {
		n, err := g.SwitchInactive(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "root %d boots next\n", n)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "bootguard: GET the status or POST .../switch", http.StatusMethodNotAllowed)
		return
	}
	b, err := json.Marshal(g.Status())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// saveLocked writes s durably and makes it the guard's state.
func (g *Guard) saveLocked(s State) error {
	s.Changed = time.Now().UTC().Truncate(time.Second)
	if err := writeState(g.opts.StatePath, s); err != nil {
		return err
	}
	g.state = s
	return nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// readState reads the state file; a missing one is the zero State.
func readState(path string) (State, error) {
	var s State
	b, err := readLimited(path, maxStateSize)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("bootguard: read state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		// A torn or corrupt state must not brick the device: start over, trusting the
		// running root, which is what a first boot does.
		return State{}, nil
	}
	if s.Good != 0 && s.Good != 2 && s.Good != 3 || s.Trial != 0 && s.Trial != 2 && s.Trial != 3 || s.Attempts < 0 {
		return State{}, nil
	}
	return s, nil
}

// writeState replaces the state file atomically and durably: temporary file, fsync,
// rename, fsync of the directory.
func writeState(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("bootguard: encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bootguard: write state: %w", err)
	}
	f, err := os.CreateTemp(dir, ".bootguard-*")
	if err != nil {
		return fmt.Errorf("bootguard: write state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(append(b, '\n'))
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
		return fmt.Errorf("bootguard: write state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("bootguard: write state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("bootguard: write state: sync directory: %w", err)
	}
	return nil
}
