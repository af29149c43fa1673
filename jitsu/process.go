package jitsu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxLogLine is the longest appliance output line logged whole; longer ones are split.
const maxLogLine = 4096

// child is a started appliance process.
type child interface {
	// PID is its process id.
	PID() int
	// Wait blocks until it has exited; nil means exit status 0. Called once.
	Wait() error
	// Signal sends sig to its process group.
	Signal(sig syscall.Signal) error
}

// procChild is a child run by os/exec.
type procChild struct{ cmd *exec.Cmd }

func (p procChild) PID() int                        { return p.cmd.Process.Pid }
func (p procChild) Wait() error                     { return p.cmd.Wait() }
func (p procChild) Signal(sig syscall.Signal) error { return signalGroup(p.cmd.Process.Pid, sig) }

// startProcess starts a's binary in a process group of its own with a's sockets as
// descriptors 3, 4, …, and logs its output lines.
func (s *Summoner) startProcess(a *appliance) (child, error) {
	args := append([]string(nil), a.m.Exec[1:]...)
	if a.m.IdleTimeout > 0 {
		args = append(args, "-idle-exit", a.m.IdleTimeout.String())
	}
	cmd := exec.Command(a.m.Exec[0], args...)
	cmd.Env = s.env(a)
	cmd.ExtraFiles = a.files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var parentEnds []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(parentEnds)
			return nil, fmt.Errorf("jitsu: start %q: %w", a.m.Name, err)
		}
		if stream == "stdout" {
			cmd.Stdout = w
		} else {
			cmd.Stderr = w
		}
		parentEnds = append(parentEnds, w)
		go s.logLines(a.m.Name, stream, r)
	}
	err := cmd.Start()
	closeFiles(parentEnds) // the child has its copies; the readers end at its EOF
	if err != nil {
		return nil, fmt.Errorf("jitsu: start %q: %w", a.m.Name, err)
	}
	return procChild{cmd}, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// logLines logs every line read from r as output of appliance name until EOF.
func (s *Summoner) logLines(name, stream string, r io.ReadCloser) {
	logOutput(s.logger, name, stream, r, nil)
}

// logOutput logs every line read from r as output of appliance name until EOF, splitting
// lines longer than maxLogLine, tells onLine (if set) of each, and closes r.
func logOutput(logger *slog.Logger, name, stream string, r io.ReadCloser, onLine func(string)) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if n := len(line); line[n-1] == '\n' {
				line = line[:n-1]
				if n > 1 && line[n-2] == '\r' {
					line = line[:n-2]
				}
			}
			logger.Info("appliance output", "appliance", name, "stream", stream, "line", string(line))
			if onLine != nil {
				onLine(string(line))
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// supervise runs a's life: watch its sockets while stopped, start it when summoned, wait
// for its exit, restart it after a crash with backoff, stop it on request, until Close.
func (s *Summoner) supervise(a *appliance) {
	defer close(a.done)
	var (
		trig    time.Time // what started this run: a trigger time, zero for a restart
		backoff time.Duration
	)
	restart := false
	for {
		if !restart {
			s.mu.Lock()
			a.setState(StateStopped, 0)
			s.mu.Unlock()
			var ok bool
			if trig, ok = s.waitTrigger(a); !ok {
				return
			}
		}
		s.mu.Lock()
		a.setState(StateStarting, 0)
		s.mu.Unlock()
		c, err := s.start(a)
		started := time.Now()
		s.mu.Lock()
		at := a.attempt
		a.attempt = &attempt{done: make(chan struct{})}
		at.err = err
		if restart {
			a.restarts++
		} else {
			a.summons++
			a.lastLatency = started.Sub(trig)
			if s.opts.OnSummon != nil && err == nil {
				go s.opts.OnSummon(a.m.Name, a.lastLatency) // never under the lock
			}
		}
		if err == nil {
			a.setState(StateRunning, c.PID())
			select { // summons that came while starting are answered by this start
			case <-a.summon:
			default:
			}
		} else {
			a.lastExit = err.Error()
		}
		s.mu.Unlock()
		close(at.done)

		var exitErr error
		if err == nil {
			s.logger.Info("appliance started", "appliance", a.m.Name, "pid", c.PID(), "restart", restart)
			exited := make(chan error, 1)
			go func() { exited <- c.Wait() }()
			select {
			case exitErr = <-exited:
			case reply := <-a.stop:
				s.terminate(a, c, exited)
				s.mu.Lock()
				a.setState(StateStopped, 0)
				s.mu.Unlock()
				close(reply)
				restart, backoff = false, 0
				continue
			case <-s.closing:
				s.terminate(a, c, exited)
				return
			}
			s.mu.Lock()
			a.lastExit = exitString(exitErr)
			s.mu.Unlock()
			if exitErr == nil {
				s.logger.Info("appliance exited (idle)", "appliance", a.m.Name, "pid", c.PID(), "ran", time.Since(started))
				restart = false
				if time.Since(started) >= s.opts.BackoffReset {
					backoff = 0
				}
				continue
			}
		} else {
			exitErr = err
		}
		backoff = s.nextBackoff(backoff, time.Since(started))
		s.logger.Warn("appliance crashed; restarting after backoff", "appliance", a.m.Name, "err", exitErr, "backoff", backoff)
		s.mu.Lock()
		a.setState(StateBackoff, 0)
		a.backoff = backoff
		s.mu.Unlock()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
			restart = true
		case reply := <-a.stop:
			t.Stop()
			s.mu.Lock()
			a.setState(StateStopped, 0)
			s.mu.Unlock()
			close(reply)
			restart, backoff = false, 0
		case <-s.closing:
			t.Stop()
			return
		}
	}
}

// nextBackoff is the delay before restarting a process that crashed after running for
// ran, when the delay before its start was prev (0: none).
func (s *Summoner) nextBackoff(prev, ran time.Duration) time.Duration {
	if prev <= 0 || ran >= s.opts.BackoffReset {
		return s.opts.BackoffMin
	}
	return min(2*prev, s.opts.BackoffMax)
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// terminate stops c: SIGTERM to its process group, SIGKILL after the grace period (or at
// once when Close's context has ended), and waits for it.
func (s *Summoner) terminate(a *appliance, c child, exited <-chan error) {
	pid := c.PID()
	if err := c.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		s.logger.Warn("appliance: SIGTERM failed", "appliance", a.m.Name, "pid", pid, "err", err)
	}
	t := time.NewTimer(s.opts.StopGrace)
	defer t.Stop()
	var err error
	select {
	case err = <-exited:
	case <-t.C:
		c.Signal(syscall.SIGKILL)
		err = <-exited
	case <-s.killNow:
		c.Signal(syscall.SIGKILL)
		err = <-exited
	}
	s.mu.Lock()
	a.lastExit = exitString(err)
	s.mu.Unlock()
	s.logger.Info("appliance stopped", "appliance", a.m.Name, "pid", pid, "exit", exitString(err))
}

// waitTrigger waits, while a is stopped, until a connection is pending on one of its
// sockets or a summon arrives, and returns when that was. It answers Stop requests (a is
// stopped already) and returns false at Close. Pending connections are not accepted: they
// stay in the kernel's queue for the child.
func (s *Summoner) waitTrigger(a *appliance) (time.Time, bool) {
	found := make(chan time.Time, len(a.lns))
	var wg sync.WaitGroup
	for _, f := range a.files {
		wg.Go(func() {
			if watchReadable(f) == nil {
				found <- time.Now()
			}
		})
	}
	defer func() {
		past := time.Unix(1, 0)
		for _, f := range a.files {
			f.SetReadDeadline(past) // ends the watches still waiting
		}
		wg.Wait()
		for _, f := range a.files {
			f.SetReadDeadline(time.Time{})
		}
	}()
	for {
		select {
		case t := <-found:
			return t, true
		case t := <-a.summon:
			return t, true
		case reply := <-a.stop:
			close(reply)
		case <-s.closing:
			return time.Time{}, false
		}
	}
}

// dupFile returns a close-on-exec duplicate of l's descriptor as a non-blocking file in
// Go's poller: a net.Listener's own RawConn cannot wait for readability (its Read fails
// with EINVAL), and the file from its File method turns blocking when passed to a child.
func dupFile(l *net.TCPListener) (*os.File, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	return os.NewFile(uintptr(nfd), l.Addr().String()), nil
}

// watchReadable waits until the listening socket f has a connection to accept, without
// accepting it, or f's read deadline passes.
func watchReadable(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			return false
		case err != nil:
			perr = err
			return true
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLERR|unix.POLLHUP) != 0
	})
	if err == nil {
		err = perr
	}
	return err
}
