package jitsu

import (
	"net/netip"
	"sync"
	"time"
)

// RRLOptions configure response-rate limiting over UDP: a token bucket per client prefix
// (/24 for IPv4, /56 for IPv6), so the server cannot be used to amplify floods at a spoofed
// address. TCP is never limited (its source address cannot be spoofed). The zero value
// turns limiting on with the defaults.
type RRLOptions struct {
	// Disabled turns rate limiting off (benchmarks, a trusted network).
	Disabled bool
	// ResponsesPerSecond is the rate each prefix may receive; 0 means 200.
	ResponsesPerSecond int
	// Burst is how many responses a prefix may receive at once; 0 means ResponsesPerSecond.
	Burst int
	// Slip: every Slip-th limited response is sent as an empty truncated reply (TC set)
	// so a real client retries over TCP; the others are dropped. 0 means 2, -1 never.
	Slip int
	// Buckets bounds the memory: at most this many prefixes are tracked (a colliding
	// prefix takes over a bucket); 0 means 16384.
	Buckets int
}

// rrlVerdict is what to do with one response.
type rrlVerdict uint8

const (
	rrlSend rrlVerdict = iota // within the rate
	rrlSlip                   // limited: send an empty truncated reply
	rrlDrop                   // limited: send nothing
)

const rrlShards = 64

// rrl is the limiter: a fixed table of buckets, sharded by lock.
type rrl struct {
	interval  int64 // nanoseconds per token
	tolerance int64 // burst × interval
	slip      int
	shards    [rrlShards]rrlShard
	now       func() time.Time
}

type rrlShard struct {
	mu      sync.Mutex
	buckets []rrlBucket
	_       [40]byte // keep shards on separate cache lines
}

// rrlBucket holds one prefix by the generic cell rate algorithm: tat is the theoretical
// arrival time of the next response in nanoseconds.
type rrlBucket struct {
	key     uint64
	tat     int64
	limited uint32
}

// newRRL returns the limiter for o, or nil when it is disabled.
func newRRL(o RRLOptions) *rrl {
	if o.Disabled {
		return nil
	}
	rate := o.ResponsesPerSecond
	if rate <= 0 {
		rate = 200
	}
	burst := o.Burst
	if burst <= 0 {
		burst = rate
	}
	slip := o.Slip
	if slip == 0 {
		slip = 2
	}
	n := o.Buckets
	if n <= 0 {
		n = 16384
	}
	n = max(1, min(n, 1<<22)/rrlShards)
	r := &rrl{interval: int64(time.Second) / int64(rate), slip: slip, now: time.Now}
	r.tolerance = int64(burst) * r.interval
	for i := range r.shards {
		r.shards[i].buckets = make([]rrlBucket, n)
	}
	return r
}

// prefixKey maps a client address to its /24 or /56 prefix, tagged by family; never 0.
func prefixKey(a netip.Addr) uint64 {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | 4
	}
	b := a.As16()
	var k uint64
	for i := 0; i < 7; i++ {
		k = k<<8 | uint64(b[i])
	}
	return k<<8 | 6
}

// check charges one response to client and says what to do with it.
func (r *rrl) check(client netip.Addr) rrlVerdict {
	key := prefixKey(client)
	h := key * 0x9E3779B97F4A7C15
	sh := &r.shards[h>>58]
	now := r.now().UnixNano()
	sh.mu.Lock()
	b := &sh.buckets[(h>>16)%uint64(len(sh.buckets))]
	if b.key != key {
		*b = rrlBucket{key: key, tat: now}
	}
	tat := max(b.tat, now)
	if tat-now <= r.tolerance-r.interval {
		b.tat = tat + r.interval
		b.limited = 0
		sh.mu.Unlock()
		return rrlSend
	}
	b.limited++
	n := b.limited
	sh.mu.Unlock()
	if r.slip > 0 && n%uint32(r.slip) == 0 {
		return rrlSlip
	}
	return rrlDrop
}
