package jitsu

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

// DNSStats are the server's counters since it was made.
type DNSStats struct {
	// Queries counts questions by type name ("A", "SRV", ...; "other" above type 255).
	Queries map[string]uint64
	// Rcodes counts responses by rcode name ("NOERROR", "NXDOMAIN", "REFUSED", ...).
	Rcodes map[string]uint64
	// RateLimited counts UDP answers withheld by the rate limit, Slipped those of them
	// sent as empty truncated replies.
	RateLimited, Slipped uint64
	// Truncated counts answers sent with TC set; Dropped requests with no answer at all
	// (no header, or a response); Forwarded queries sent to the upstream.
	Truncated, Dropped, Forwarded uint64
}

// counters are one socket's (or TCP's) counters; each has its own so readers of
// different sockets do not share cache lines.
type counters struct {
	qtype                                               [257]atomic.Uint64
	rcode                                               [32]atomic.Uint64
	rateLimited, slipped, truncated, dropped, forwarded atomic.Uint64
	_                                                   [64]byte
}

func (c *counters) countType(t uint16) { c.qtype[min(int(t), 256)].Add(1) }

// Stats returns the counters summed over every socket.
func (s *DNSServer) Stats() DNSStats {
	st := DNSStats{Queries: make(map[string]uint64), Rcodes: make(map[string]uint64)}
	s.mu.Lock()
	cs := append([]*counters(nil), s.counters...)
	s.mu.Unlock()
	for _, c := range cs {
		for t := range c.qtype {
			if n := c.qtype[t].Load(); n > 0 {
				name := "other"
				if t < 256 {
					name = dns.Type(t).String()
				}
				st.Queries[name] += n
			}
		}
		for r := range c.rcode {
			if n := c.rcode[r].Load(); n > 0 {
				st.Rcodes[dns.RcodeToString[r]] += n
			}
		}
		st.RateLimited += c.rateLimited.Load()
		st.Slipped += c.slipped.Load()
		st.Truncated += c.truncated.Load()
		st.Dropped += c.dropped.Load()
		st.Forwarded += c.forwarded.Load()
	}
	return st
}
