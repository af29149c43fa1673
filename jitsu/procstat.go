package jitsu

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Bounds of what one status reads from /proc.
const (
	maxFDs         = 20000   // descriptors of one process looked at
	maxNetTCPBytes = 8 << 20 // bytes of /proc/PID/net/tcp{,6} read
)

// processRSS returns a process's resident memory from PROC/PID/status (VmRSS).
func processRSS(proc string, pid int) (int64, error) {
	f, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("jitsu: no VmRSS for pid %d", pid)
}

// processConns counts a process's established TCP connections: its socket descriptors
// (PROC/PID/fd) matched by inode with the ESTABLISHED lines of PROC/PID/net/tcp{,6}.
func processConns(proc string, pid int) (int, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return 0, err
	}
	if len(fds) > maxFDs {
		fds = fds[:maxFDs]
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	n := 0
	for _, file := range []string{"tcp", "tcp6"} {
		b, err := readLimited(filepath.Join(dir, "net", file), maxNetTCPBytes)
		if err != nil {
			continue
		}
		n += countEstablished(b, inodes)
	}
	return n, nil
}

// countEstablished counts the lines of a /proc/net/tcp table in state 01 (ESTABLISHED)
// whose inode (the tenth field) is in inodes.
func countEstablished(table []byte, inodes map[string]bool) int {
	n := 0
	for i, line := range bytes.Split(table, []byte{'\n'}) {
		if i == 0 {
			continue // header
		}
		f := strings.Fields(string(line))
		if len(f) < 10 || f[3] != "01" {
			continue
		}
		if inodes[f[9]] {
			n++
		}
	}
	return n
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
