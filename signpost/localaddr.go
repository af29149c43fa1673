package signpost

import "net"

// LANAddrs returns the addresses of this machine's up interfaces that the home CA may
// certify (private, shared and link-local ranges; loopback is always certified), so
// clients on the LAN that connect by address find them in the certificate.
func LANAddrs() ([]net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if ok && certifiable(ipn.IP) {
				out = append(out, ipn.IP)
			}
		}
	}
	return out, nil
}

// certifiable reports whether ip lies in the ranges the home CA may certify.
func certifiable(ip net.IP) bool {
	for _, r := range privateRanges {
		if _, n, err := net.ParseCIDR(r); err == nil && n.Contains(ip) {
			return true
		}
	}
	return false
}
