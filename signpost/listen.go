package signpost

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// MaxListenFDs is the largest LISTEN_FDS accepted.
const MaxListenFDs = 64

// Listeners returns the listening sockets systemd passed to this process by socket
// activation: descriptors 3, 4, … as many as LISTEN_FDS says, provided LISTEN_PID is unset
// or names this process. It returns nil, nil when the process was not socket-activated.
// getenv is os.Getenv in a main. Call it once: the listeners take over the descriptors.
func Listeners(getenv func(string) string) ([]net.Listener, error) {
	ls, _, err := activated(getenv)
	return ls, err
}

// ListenersByName is Listeners keyed by the names in LISTEN_FDNAMES (systemd's
// FileDescriptorName=; "unknown" when unset). Names must be distinct.
func ListenersByName(getenv func(string) string) (map[string]net.Listener, error) {
	ls, names, err := activated(getenv)
	if err != nil || ls == nil {
		return nil, err
	}
	m := make(map[string]net.Listener, len(ls))
	for i, l := range ls {
		if _, dup := m[names[i]]; dup {
			closeAll(ls)
			return nil, fmt.Errorf("signpost: LISTEN_FDNAMES: name %q twice", names[i])
		}
		m[names[i]] = l
	}
	return m, nil
}

// activated checks the environment completely before it touches any descriptor, then turns
// each passed descriptor into a net.Listener.
func activated(getenv func(string) string) ([]net.Listener, []string, error) {
	fds := getenv("LISTEN_FDS")
	if fds == "" {
		return nil, nil, nil
	}
	if pid := getenv("LISTEN_PID"); pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return nil, nil, fmt.Errorf("signpost: LISTEN_PID %q: not a process id", truncate(pid))
		}
		if p != os.Getpid() {
			return nil, nil, nil // meant for another process (our parent, say)
		}
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > MaxListenFDs {
		return nil, nil, fmt.Errorf("signpost: LISTEN_FDS %q: want a count from 0 to %d", truncate(fds), MaxListenFDs)
	}
	if n == 0 {
		return nil, nil, nil
	}
	names := make([]string, n)
	if s := getenv("LISTEN_FDNAMES"); s != "" {
		names = strings.Split(s, ":")
		if len(names) != n {
			return nil, nil, fmt.Errorf("signpost: LISTEN_FDNAMES has %d names for %d descriptors", len(names), n)
		}
	} else {
		for i := range names {
			names[i] = "unknown"
		}
	}
	// A stale LISTEN_FDS must not make us close descriptors we do not own, so every one
	// must be a socket before any is taken over.
	for i := range n {
		if err := isSocket(listenFDsStart + i); err != nil {
			return nil, nil, fmt.Errorf("signpost: descriptor %d (%s): %w", listenFDsStart+i, names[i], err)
		}
	}
	files := make([]*os.File, n)
	for i := range files {
		files[i] = os.NewFile(uintptr(listenFDsStart+i), names[i])
	}
	ls := make([]net.Listener, 0, n)
	var errs []error
	for i, f := range files {
		l, err := net.FileListener(f) // duplicates the descriptor, close-on-exec
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("signpost: descriptor %d (%s): %w", listenFDsStart+i, names[i], err))
			continue
		}
		ls = append(ls, l)
	}
	if len(errs) > 0 {
		closeAll(ls)
		return nil, nil, errors.Join(errs...)
	}
	return ls, names, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}
