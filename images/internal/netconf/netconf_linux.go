//go:build linux

package netconf

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Configure sets interface name and the loopback up, gives name the address prefix and
// adds a default route via gateway. An address or route that already exists (the kernel's
// ip= autoconfiguration may have set them) is fine.
func Configure(name string, prefix netip.Prefix, gateway netip.Addr) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netconf: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netconf: netlink bind: %w", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("netconf: %w", err)
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("netconf: %w", err)
	}
	addr, err := AddAddr(3, ifc.Index, prefix)
	if err != nil {
		return err
	}
	route, err := AddDefaultRoute(4, gateway)
	if err != nil {
		return err
	}
	steps := []struct {
		what string
		req  []byte
		seq  uint32
	}{
		{"set lo up", LinkUp(1, lo.Index), 1},
		{"set " + name + " up", LinkUp(2, ifc.Index), 2},
		{"add address " + prefix.String(), addr, 3},
		{"add default route via " + gateway.String(), route, 4},
	}
	buf := make([]byte, maxNetlinkMsg)
	for _, s := range steps {
		if err := unix.Sendto(fd, s.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("netconf: %s: %w", s.what, err)
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netconf: %s: %w", s.what, err)
		}
		errno, err := ParseAck(buf[:n], s.seq)
		if err != nil {
			return fmt.Errorf("netconf: %s: %w", s.what, err)
		}
		if errno != 0 && unix.Errno(errno) != unix.EEXIST {
			return fmt.Errorf("netconf: %s: %w", s.what, unix.Errno(errno))
		}
	}
	return nil
}
