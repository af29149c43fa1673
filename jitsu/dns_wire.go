package jitsu

import (
	"encoding/binary"
)

// Wire-format constants of RFC 1035 and RFC 6891.
const (
	hdrLen      = 12
	minUDPSize  = 512 // a client without EDNS
	ourUDPSize  = 1232
	maxMsgSize  = 65535
	typeOPT     = 41
	classINET   = 1
	classANY    = 255
	flagQR      = 0x80 // in byte 2
	flagAA      = 0x04 // in byte 2
	flagTC      = 0x02 // in byte 2
	flagRD      = 0x01 // in byte 2
	rcodeNoErr  = 0
	rcodeFormE  = 1
	rcodeServF  = 2
	rcodeNXDom  = 3
	rcodeNotImp = 4
	rcodeRefuse = 5
	rcodeBadVer = 16 // extended, in the OPT record
)

// action is what the caller does after answer.
type action uint8

const (
	actReply   action = iota // send out
	actDrop                  // send nothing
	actForward               // out of zone with an upstream: forward req
)

// query is what answer learns from a request.
type query struct {
	qend    int    // end of the question section
	qtype   uint16 // the question's type
	edns    bool   // the request had an OPT record
	do      bool   // its DO bit
	size    int    // its UDP payload size
	version uint8  // its EDNS version
}

// answer writes the response to req into out[:0] and returns it, using z for the zone.
// limit is the largest response the transport carries (65535 over TCP); slip forces an
// empty truncated reply (rate limiting). It never allocates, and never panics on any
// input: a request whose header does not parse is dropped, one whose body does not gets
// FORMERR.
func (s *DNSServer) answer(z *Zone, req, out []byte, udp, slip bool, c *counters) ([]byte, action) {
	if len(req) < hdrLen || req[2]&flagQR != 0 {
		c.dropped.Add(1)
		return out[:0], actDrop // not even a header, or a response: never answer those
	}
	if opcode := req[2] >> 3 & 0xF; opcode != 0 {
		return s.errorReply(req, out, rcodeNotImp, c), actReply
	}
	var q query
	var key [258]byte
	nlen, zoneAt, ok := parseQuestion(req, &q, key[:])
	if !ok {
		return s.errorReply(req, out, rcodeFormE, c), actReply
	}
	c.countType(q.qtype)
	limit := maxMsgSize
	if udp {
		limit = minUDPSize
		if q.edns {
			limit = max(minUDPSize, min(q.size, ourUDPSize))
		}
	}
	if q.edns && q.version != 0 {
		return s.finish(req, head(req, out, &q, rcodeNoErr, 0), &q, rcodeBadVer, limit, false, c), actReply
	}
	if slip {
		return s.finish(req, head(req, out, &q, rcodeNoErr, 0), &q, rcodeNoErr, limit, true, c), actReply
	}
	qclass := binary.BigEndian.Uint16(req[q.qend-2:])
	if qclass != classINET && qclass != classANY {
		return s.finish(req, head(req, out, &q, rcodeRefuse, 0), &q, rcodeRefuse, limit, false, c), actReply
	}
	if zoneAt < 0 || !inZone(key[:nlen], zoneAt, z.wire) {
		if s.opts.Upstream != "" {
			c.forwarded.Add(1)
			return out[:0], actForward
		}
		return s.finish(req, head(req, out, &q, rcodeRefuse, 0), &q, rcodeRefuse, limit, false, c), actReply
	}
	key[nlen], key[nlen+1] = byte(q.qtype>>8), byte(q.qtype)
	if e := z.entries[string(key[:nlen+2])]; e != nil {
		s.lookedUp(e.appliance)
		out = append(out[:0], e.msg...)
		copy(out, req[:2])
		out[2] = flagQR | flagAA | req[2]&flagRD
		out[3] = rcodeNoErr
		copy(out[hdrLen:q.qend], req[hdrLen:q.qend])
		return s.finish(req, out, &q, rcodeNoErr, limit, false, c), actReply
	}
	app, exists := z.names[string(key[:nlen])]
	s.lookedUp(app)
	rcode := byte(rcodeNXDom)
	if exists {
		rcode = rcodeNoErr // NODATA
	}
	out = head(req, out, &q, rcode, 1)
	out = append(out, z.soa...)
	return s.finish(req, out, &q, int(rcode), limit, false, c), actReply
}

// head starts a reply: the request's header and question, with ns records to follow.
func head(req, out []byte, q *query, rcode byte, ns uint16) []byte {
	out = append(out[:0], req[:q.qend]...)
	out[2] = flagQR | flagAA | req[2]&flagRD
	out[3] = rcode
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], ns)
	binary.BigEndian.PutUint16(out[10:], 0)
	return out
}

// finish adds the OPT record when the client sent one and truncates what does not fit.
func (s *DNSServer) finish(req, out []byte, q *query, rcode, limit int, tc bool, c *counters) []byte {
	optLen := 0
	if q.edns {
		optLen = 11
	}
	if tc || len(out)+optLen > limit {
		out = out[:q.qend]
		out[2] |= flagTC
		clear(out[6:12])
		c.truncated.Add(1)
	}
	if q.edns {
		ar := binary.BigEndian.Uint16(out[10:])
		binary.BigEndian.PutUint16(out[10:], ar+1)
		var do byte
		if q.do {
			do = 0x80
		}
		out = append(out, 0, 0, typeOPT, ourUDPSize>>8, ourUDPSize&0xFF, byte(rcode>>4), 0, do, 0, 0, 0)
	}
	c.rcode[rcode&0x1F].Add(1)
	return out
}

// errorReply answers a request whose question cannot be used: header only, QR set.
func (s *DNSServer) errorReply(req, out []byte, rcode byte, c *counters) []byte {
	out = append(out[:0], req[:hdrLen]...)
	out[2] = flagQR | req[2]&(0xF<<3|flagRD)
	out[3] = rcode
	clear(out[4:12])
	c.rcode[rcode].Add(1)
	return out
}

// parseQuestion reads the one question of req into q and its lower-cased name (wire
// format) into key, and the additional section's OPT record. It returns the name's length
// in key and its number of labels (-1 for the root name); ok is false when the request is
// malformed.
func parseQuestion(req []byte, q *query, key []byte) (nlen, labels int, ok bool) {
	if binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 || binary.BigEndian.Uint16(req[8:]) != 0 {
		return 0, 0, false
	}
	off := hdrLen
	for {
		if off >= len(req) {
			return 0, 0, false
		}
		l := int(req[off])
		if l == 0 {
			key[nlen] = 0
			nlen++
			off++
			break
		}
		if l > 63 || off+1+l > len(req) || nlen+1+l >= 255 {
			return 0, 0, false // a pointer, a reserved label type, or too long
		}
		key[nlen] = byte(l)
		for i := 1; i <= l; i++ {
			b := req[off+i]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			key[nlen+i] = b
		}
		nlen += 1 + l
		off += 1 + l
		labels++
	}
	if off+4 > len(req) {
		return 0, 0, false
	}
	q.qtype = binary.BigEndian.Uint16(req[off:])
	q.qend = off + 4
	off = q.qend
	for range binary.BigEndian.Uint16(req[10:]) {
		root := off < len(req) && req[off] == 0
		var good bool
		if off, good = skipName(req, off); !good || off+10 > len(req) {
			return 0, 0, false
		}
		t := binary.BigEndian.Uint16(req[off:])
		rdlen := int(binary.BigEndian.Uint16(req[off+8:]))
		if off+10+rdlen > len(req) {
			return 0, 0, false
		}
		if t == typeOPT {
			if q.edns || !root {
				return 0, 0, false // RFC 6891: one OPT, owned by the root
			}
			q.edns = true
			q.size = int(binary.BigEndian.Uint16(req[off+2:]))
			q.version = req[off+5]
			q.do = req[off+6]&0x80 != 0
		}
		off += 10 + rdlen
	}
	if nlen == 1 {
		labels = -1
	}
	return nlen, labels, true
}

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(msg []byte, off int) (int, bool) {
	for n := 0; n < 128; n++ {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return 0, false
			}
			return off + 2, true
		case l > 63:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

// inZone says whether the lower-case wire name ends, at a label boundary, with zone.
func inZone(name []byte, labels int, zone []byte) bool {
	if len(name) < len(zone) || labels < 0 {
		return false
	}
	start := len(name) - len(zone)
	if string(name[start:]) != string(zone) {
		return false
	}
	for off := 0; off < len(name); off += 1 + int(name[off]) {
		if off == start {
			return true
		}
	}
	return false
}
