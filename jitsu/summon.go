package jitsu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Appliance states in ApplianceStatus.State.
const (
	StateStopped  = "stopped"  // not running; jitsu watches its sockets
	StateStarting = "starting" // being started
	StateRunning  = "running"  // its process runs and serves the sockets
	StateBackoff  = "backoff"  // it crashed; jitsu waits before restarting it
)

// Errors of the Summoner; test with errors.Is.
var (
	ErrUnknownAppliance = errors.New("jitsu: unknown appliance")
	ErrDuplicate        = errors.New("jitsu: appliance already added")
	ErrClosed           = errors.New("jitsu: summoner closed")
)

// SummonOptions tune a Summoner. The zero value is usable.
type SummonOptions struct {
	// Logger receives starts, exits, crashes and every line appliances write to their
	// standard output and error. nil: slog.Default().
	Logger *slog.Logger
	// BaseEnv is the environment every appliance starts with, before its manifest's Env
	// and the LISTEN_* variables (a main may pass os.Environ()). nil: empty.
	BaseEnv []string
	// StopGrace is how long Stop and Close wait after SIGTERM before SIGKILL (<= 0: 5s).
	StopGrace time.Duration
	// BackoffMin, BackoffMax and BackoffReset shape crash restarts: the first restart waits
	// BackoffMin (<= 0: 100ms), each further one twice as long up to BackoffMax
	// (<= 0: 30s), and a process that ran BackoffReset (<= 0: 1m) starts over at BackoffMin.
	BackoffMin, BackoffMax, BackoffReset time.Duration
	// OnSummon, if set, is told of every successful summon and its latency (as in
	// ApplianceStatus.LastSummonLatency), for metrics. It runs on a goroutine of its own.
	OnSummon func(appliance string, latency time.Duration)
}

// ApplianceStatus is what Status reports about one appliance.
type ApplianceStatus struct {
	Name  string
	State string // StateStopped, StateStarting, StateRunning or StateBackoff
	// PID is the running process's id (0 unless running).
	PID int
	// Since is when the appliance entered State.
	Since time.Time
	// Summons counts the starts triggered by a connection or a Summon call.
	Summons int
	// LastSummonLatency is the time of the last summon from its trigger (jitsu seeing a
	// pending connection on a socket, or the Summon call) to the child process having
	// started, i.e. to exec having succeeded. The appliance's own start-up comes on top.
	LastSummonLatency time.Duration
	// Restarts counts the restarts after crashes.
	Restarts int
	// Backoff is the delay before the current (state backoff) or the last crash restart.
	Backoff time.Duration
	// LastExit describes how the process last ended ("" before the first exit).
	LastExit string
	// RSS is the running process's resident memory in bytes, and Conns its open TCP
	// connections (read from /proc; 0 when not running or not known).
	RSS   int64
	Conns int
}

// Summoner runs appliances as local processes on demand (the process backend). It holds
// every appliance's listening sockets for the appliance's whole life; while an appliance is
// stopped it watches them without accepting, and starts the appliance with systemd socket
// activation when a connection arrives or Summon is called, so the connection waits in the
// kernel's accept queue for the child. Appliances that exit with status 0 (idle) are
// summoned again by the next connection; crashed ones are restarted with exponential backoff.
type Summoner struct {
	logger *slog.Logger
	opts   SummonOptions
	start  func(a *appliance) (child, error) // starts a's process; tests replace it

	closing chan struct{} // closed by Close
	killNow chan struct{} // closed when Close's ctx ends: SIGKILL at once

	mu     sync.Mutex
	apps   map[string]*appliance
	order  []string
	closed bool
}

// NewSummoner returns a Summoner with no appliances.
func NewSummoner(opts SummonOptions) *Summoner {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 5 * time.Second
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 100 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.BackoffReset <= 0 {
		opts.BackoffReset = time.Minute
	}
	s := &Summoner{
		logger:  opts.Logger,
		opts:    opts,
		closing: make(chan struct{}),
		killNow: make(chan struct{}),
		apps:    make(map[string]*appliance),
	}
	s.start = s.startProcess
	return s
}

// appliance is one added manifest and its supervisor's state; the fields below mu are
// guarded by Summoner.mu.
type appliance struct {
	m   Manifest
	lns []*net.TCPListener
	// files are duplicates of the listeners' descriptors, non-blocking and in the poller:
	// jitsu watches them and passes them to children (fd 3, 4, …).
	files []*os.File

	summon chan time.Time     // summon triggers, buffered 1
	stop   chan chan struct{} // Stop requests; the supervisor closes the reply when stopped
	done   chan struct{}      // closed when the supervisor has ended

	state       string
	pid         int
	since       time.Time
	summons     int
	lastLatency time.Duration
	restarts    int
	backoff     time.Duration
	lastExit    string
	attempt     *attempt // completed by the next start attempt
}

// attempt is one start attempt that Summon calls wait for.
type attempt struct {
	done chan struct{}
	err  error
}

// Add opens m's sockets and starts supervising it (stopped until summoned). The sockets
// stay open until Close. ctx bounds only the opening of the sockets.
func (s *Summoner) Add(ctx context.Context, m Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if len(m.Exec) == 0 {
		return fmt.Errorf("jitsu: add %q: the process backend needs exec: %w", m.Name, ErrInvalidManifest)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return fmt.Errorf("jitsu: add %q: %w", m.Name, ErrClosed)
	case s.apps[m.Name] != nil:
		s.mu.Unlock()
		return fmt.Errorf("jitsu: add %q: %w", m.Name, ErrDuplicate)
	case len(s.apps) >= MaxManifests:
		s.mu.Unlock()
		return fmt.Errorf("jitsu: add %q: already %d appliances: %w", m.Name, MaxManifests, ErrInvalidManifest)
	}
	s.mu.Unlock()

	a := &appliance{
		m:       m,
		summon:  make(chan time.Time, 1),
		stop:    make(chan chan struct{}),
		done:    make(chan struct{}),
		state:   StateStopped,
		since:   time.Now(),
		attempt: &attempt{done: make(chan struct{})},
	}
	var lc net.ListenConfig
	for _, sock := range m.Sockets {
		l, err := lc.Listen(ctx, sock.Proto, sock.Addr)
		if err == nil {
			tl := l.(*net.TCPListener)
			a.lns = append(a.lns, tl)
			var f *os.File
			if f, err = dupFile(tl); err == nil {
				a.files = append(a.files, f)
			}
		}
		if err != nil {
			a.closeSockets()
			return fmt.Errorf("jitsu: add %q: socket %q: %w", m.Name, sock.Name, err)
		}
	}
	s.mu.Lock()
	if s.closed || s.apps[m.Name] != nil {
		closed := s.closed
		s.mu.Unlock()
		a.closeSockets()
		if closed {
			return fmt.Errorf("jitsu: add %q: %w", m.Name, ErrClosed)
		}
		return fmt.Errorf("jitsu: add %q: %w", m.Name, ErrDuplicate)
	}
	s.apps[m.Name] = a
	s.order = append(s.order, m.Name)
	s.mu.Unlock()
	go s.supervise(a)
	return nil
}

func (a *appliance) closeSockets() {
	for _, l := range a.lns {
		l.Close()
	}
	for _, f := range a.files {
		f.Close()
	}
}

// Addr returns the address of socket of appliance name, which tells the port when the
// manifest asked for port 0.
func (s *Summoner) Addr(name, socket string) (net.Addr, error) {
	s.mu.Lock()
	a := s.apps[name]
	s.mu.Unlock()
	if a == nil {
		return nil, fmt.Errorf("jitsu: addr %q: %w", name, ErrUnknownAppliance)
	}
	for i, sock := range a.m.Sockets {
		if sock.Name == socket {
			return a.lns[i].Addr(), nil
		}
	}
	return nil, fmt.Errorf("jitsu: addr %q: no socket %q: %w", name, socket, ErrUnknownAppliance)
}

// trigger asks name's supervisor to start it unless it runs; it returns the start attempt
// to wait for, or nil when it runs already.
func (s *Summoner) trigger(name string) (*appliance, *attempt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[name]
	switch {
	case a == nil:
		return nil, nil, fmt.Errorf("jitsu: summon %q: %w", name, ErrUnknownAppliance)
	case s.closed:
		return nil, nil, fmt.Errorf("jitsu: summon %q: %w", name, ErrClosed)
	case a.state == StateRunning:
		return a, nil, nil
	}
	select {
	case a.summon <- time.Now():
	default: // a summon is pending already
	}
	return a, a.attempt, nil
}

// Summon starts appliance name unless it runs and waits until its process has started
// (or the start failed, or ctx ended). It is idempotent and safe for concurrent use; while
// the appliance backs off after a crash it waits for the restart.
func (s *Summoner) Summon(ctx context.Context, name string) error {
	a, at, err := s.trigger(name)
	if err != nil || at == nil {
		return err
	}
	select {
	case <-at.done:
		return at.err
	case <-a.done:
		return fmt.Errorf("jitsu: summon %q: %w", name, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("jitsu: summon %q: %w", name, ctx.Err())
	}
}

// SummonAsync is Summon without the waiting, for a DNS answer that must not wait: it
// reports only an unknown appliance or a closed Summoner.
func (s *Summoner) SummonAsync(name string) error {
	_, _, err := s.trigger(name)
	return err
}

// Stop stops appliance name if it runs (SIGTERM to its process group, SIGKILL after
// SummonOptions.StopGrace) or backs off, and waits until it has; afterwards jitsu watches
// its sockets again, so the next connection summons it anew.
func (s *Summoner) Stop(ctx context.Context, name string) error {
	s.mu.Lock()
	a := s.apps[name]
	s.mu.Unlock()
	if a == nil {
		return fmt.Errorf("jitsu: stop %q: %w", name, ErrUnknownAppliance)
	}
	reply := make(chan struct{})
	select {
	case a.stop <- reply:
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jitsu: stop %q: %w", name, ctx.Err())
	}
	select {
	case <-reply:
		return nil
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jitsu: stop %q: %w", name, ctx.Err())
	}
}

// Close stops every appliance (as Stop; when ctx ends first, at once with SIGKILL), waits
// for their processes to end and closes all sockets. The Summoner cannot be used after.
func (s *Summoner) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	apps := make([]*appliance, 0, len(s.apps))
	for _, name := range s.order {
		apps = append(apps, s.apps[name])
	}
	s.mu.Unlock()
	close(s.closing)
	var err error
	for _, a := range apps {
		select {
		case <-a.done:
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("jitsu: close: %w", ctx.Err())
				close(s.killNow)
			}
			<-a.done
		}
	}
	for _, a := range apps {
		a.closeSockets()
	}
	return err
}

// Status reports every appliance, in the order they were added.
func (s *Summoner) Status() []ApplianceStatus {
	out := s.status()
	for i := range out { // /proc is read without holding the lock
		if out[i].PID > 0 {
			out[i].RSS, _ = processRSS("/proc", out[i].PID)
			out[i].Conns, _ = processConns("/proc", out[i].PID)
		}
	}
	return out
}

func (s *Summoner) status() []ApplianceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ApplianceStatus, 0, len(s.order))
	for _, name := range s.order {
		a := s.apps[name]
		out = append(out, ApplianceStatus{
			Name: name, State: a.state, PID: a.pid, Since: a.since, Summons: a.summons,
			LastSummonLatency: a.lastLatency, Restarts: a.restarts, Backoff: a.backoff, LastExit: a.lastExit,
		})
	}
	return out
}

// setState records a's new state; the caller holds s.mu.
func (a *appliance) setState(state string, pid int) {
	a.state, a.pid, a.since = state, pid, time.Now()
}

// env is the environment of a's process: the base, the manifest's, then LISTEN_FDS and
// LISTEN_FDNAMES (no LISTEN_PID: os/exec cannot know the child's pid before exec).
func (s *Summoner) env(a *appliance) []string {
	env := make([]string, 0, len(s.opts.BaseEnv)+len(a.m.Env)+2)
	for _, e := range slices.Concat(s.opts.BaseEnv, a.m.Env) {
		if len(e) >= 7 && e[:7] == "LISTEN_" {
			continue
		}
		env = append(env, e)
	}
	if n := len(a.m.Sockets); n > 0 {
		names := make([]byte, 0, 64)
		for i, sock := range a.m.Sockets {
			if i > 0 {
				names = append(names, ':')
			}
			names = append(names, sock.Name...)
		}
		env = append(env, fmt.Sprintf("LISTEN_FDS=%d", n), "LISTEN_FDNAMES="+string(names))
	}
	return env
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	return syscall.Kill(-pid, sig)
}
