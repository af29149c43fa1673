// Package netconf configures a Linux network interface with a static IPv4 address and a
// default route over rtnetlink, for inits that have no DHCP client.
package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Message types, flags and attributes of rtnetlink used here (linux/rtnetlink.h).
const (
	rtmNewLink  = 16
	rtmNewAddr  = 20
	rtmNewRoute = 24

	nlmFRequest = 0x1
	nlmFAck     = 0x4
	nlmFExcl    = 0x200
	nlmFCreate  = 0x400

	ifaAddress = 1
	ifaLocal   = 2
	rtaGateway = 5

	afInet        = 2
	iffUp         = 0x1
	rtTableMain   = 254
	rtprotBoot    = 3
	rtScopeUniv   = 0
	rtnUnicast    = 1
	nlmsgHdrLen   = 16
	ifInfoMsgLen  = 16
	ifAddrMsgLen  = 8
	rtMsgLen      = 12
	nlmsgError    = 2
	maxNetlinkMsg = 1 << 16
)

// ErrBadMessage is returned (wrapped) for a netlink answer that cannot be parsed.
var ErrBadMessage = errors.New("netconf: bad netlink message")

// LinkUp returns the request that sets interface index up.
func LinkUp(seq uint32, index int) []byte {
	b := make([]byte, ifInfoMsgLen)
	b[0] = 0 // AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], iffUp)  // flags
	binary.NativeEndian.PutUint32(b[12:], iffUp) // change mask
	return message(rtmNewLink, nlmFRequest|nlmFAck, seq, b)
}

// AddAddr returns the request that adds prefix (an IPv4 address with its prefix length)
// to interface index.
func AddAddr(seq uint32, index int, prefix netip.Prefix) ([]byte, error) {
	if !prefix.Addr().Is4() {
		return nil, fmt.Errorf("netconf: address %s: only IPv4", prefix)
	}
	b := make([]byte, ifAddrMsgLen)
	b[0] = afInet
	b[1] = byte(prefix.Bits())
	b[3] = rtScopeUniv
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	a := prefix.Addr().As4()
	b = attr(b, ifaLocal, a[:])
	b = attr(b, ifaAddress, a[:])
	return message(rtmNewAddr, nlmFRequest|nlmFAck|nlmFCreate|nlmFExcl, seq, b), nil
}

// AddDefaultRoute returns the request that adds a default route via gateway.
func AddDefaultRoute(seq uint32, gateway netip.Addr) ([]byte, error) {
	if !gateway.Is4() {
		return nil, fmt.Errorf("netconf: gateway %s: only IPv4", gateway)
	}
	b := make([]byte, rtMsgLen)
	b[0] = afInet
	b[4] = rtTableMain
	b[5] = rtprotBoot
	b[6] = rtScopeUniv
	b[7] = rtnUnicast
	g := gateway.As4()
	b = attr(b, rtaGateway, g[:])
	return message(rtmNewRoute, nlmFRequest|nlmFAck|nlmFCreate|nlmFExcl, seq, b), nil
}

// message frames payload with a netlink header.
func message(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(payload))
	binary.NativeEndian.PutUint32(b[0:], uint32(nlmsgHdrLen+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return append(b, payload...)
}

// attr appends a route attribute, padded to 4 bytes.
func attr(b []byte, typ uint16, data []byte) []byte {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// ParseAck returns the error number of the acknowledgement for request seq in b (0: the
// request succeeded), or an error when b holds no such acknowledgement.
func ParseAck(b []byte, seq uint32) (errno int32, err error) {
	if len(b) > maxNetlinkMsg {
		return 0, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	for len(b) >= nlmsgHdrLen {
		n := binary.NativeEndian.Uint32(b[0:])
		typ := binary.NativeEndian.Uint16(b[4:])
		s := binary.NativeEndian.Uint32(b[8:])
		if n < nlmsgHdrLen || int(n) > len(b) {
			return 0, fmt.Errorf("%w: length %d of %d", ErrBadMessage, n, len(b))
		}
		if typ == nlmsgError && s == seq {
			if n < nlmsgHdrLen+4 {
				return 0, fmt.Errorf("%w: short error message", ErrBadMessage)
			}
			return -int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:])), nil
		}
		adv := (int(n) + 3) &^ 3
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return 0, fmt.Errorf("%w: no acknowledgement for request %d", ErrBadMessage, seq)
}
