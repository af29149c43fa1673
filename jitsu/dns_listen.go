package jitsu

import (
	"context"
	"fmt"
	"net"
)

// MaxUDPSockets bounds ListenUDP's n.
const MaxUDPSockets = 64

// ListenUDP opens n UDP sockets on the same address with SO_REUSEPORT, so the kernel
// spreads queries over them and each gets its own ServeUDP. Where SO_REUSEPORT does not
// exist, n must be 1. An address with port 0 gets a port chosen by the first socket.
func ListenUDP(ctx context.Context, addr string, n int) ([]net.PacketConn, error) {
	if n < 1 || n > MaxUDPSockets {
		return nil, fmt.Errorf("jitsu: listen UDP %s: %d sockets, want 1..%d", addr, n, MaxUDPSockets)
	}
	if n > 1 && !haveReusePort {
		return nil, fmt.Errorf("jitsu: listen UDP %s: %d sockets need SO_REUSEPORT, which this system lacks", addr, n)
	}
	lc := net.ListenConfig{Control: reusePort}
	var pcs []net.PacketConn
	for range n {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			for _, p := range pcs {
				p.Close()
			}
			return nil, fmt.Errorf("jitsu: listen UDP %s: %w", addr, err)
		}
		pcs = append(pcs, pc)
		addr = pc.LocalAddr().String()
	}
	return pcs, nil
}
