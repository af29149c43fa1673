//go:build linux

package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// listeningLine is the console line vminit prints when a TCP port starts listening on an
// address reachable from outside the VM; a VM runner reading the console (jitsu) knows
// from it that connections to the port will be served, without probing.
const listeningLine = "listening on tcp port %d"

// Polling of the kernel's socket tables for new listening ports: fast while the appliance
// starts, slower after, for a while.
const (
	listenPollFast   = 10 * time.Millisecond
	listenFastFor    = 15 * time.Second
	listenPollSlow   = 250 * time.Millisecond
	listenWatchFor   = 2 * time.Minute
	maxSocketLines   = 4096 // lines of /proc/net/tcp{,6} looked at
	maxListenedPorts = 64   // ports reported
)

// watchListening prints listeningLine for each TCP port that starts listening on a
// non-loopback address, from /proc/net/tcp and /proc/net/tcp6 under proc, until ctx ends
// or listenWatchFor has passed.
func watchListening(ctx context.Context, proc string) {
	seen := map[int]bool{}
	start := time.Now()
	for time.Since(start) < listenWatchFor && len(seen) < maxListenedPorts {
		for _, f := range []string{"tcp", "tcp6"} {
			b, err := os.ReadFile(proc + "/net/" + f)
			if err != nil {
				continue
			}
			for _, p := range listeningPorts(string(b)) {
				if !seen[p] {
					seen[p] = true
					logf(listeningLine, p)
				}
			}
		}
		wait := listenPollFast
		if time.Since(start) > listenFastFor {
			wait = listenPollSlow
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// listeningPorts returns the ports of the sockets in a /proc/net/tcp or tcp6 table that
// listen on an address other than loopback, sorted, without repeats.
func listeningPorts(table string) []int {
	var ports []int
	lines := strings.Split(table, "\n")
	if len(lines) > maxSocketLines {
		lines = lines[:maxSocketLines]
	}
	for i, l := range lines {
		f := strings.Fields(l)
		if i == 0 || len(f) < 4 || f[3] != "0A" { // the header; TCP_LISTEN is 0A
			continue
		}
		addr, port, ok := strings.Cut(f[1], ":")
		if !ok || isLoopbackHex(addr) {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil || p == 0 {
			continue
		}
		ports = append(ports, int(p))
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// isLoopbackHex says whether a /proc/net/tcp{,6} address (32-bit words in the host's
// little-endian order, hexadecimal) is a loopback address: 127.0.0.0/8, ::1 or an
// IPv4-mapped 127.0.0.0/8.
func isLoopbackHex(a string) bool {
	a = strings.ToUpper(a)
	switch len(a) {
	case 8:
		return strings.HasSuffix(a, "7F")
	case 32:
		return a == "00000000000000000000000001000000" ||
			strings.HasPrefix(a, "0000000000000000FFFF0000") && strings.HasSuffix(a, "7F")
	}
	return false
}
