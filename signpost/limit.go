package signpost

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrThrottled: there were too many failed logins from this address or for this user;
// the attempt was refused without checking the credentials. Try again later.
var ErrThrottled = errors.New("signpost: too many failed logins, try again later")

// ThrottledError is the error a throttled login gets: it matches ErrThrottled and says
// how long to wait, which protocol edges pass on (HTTP 429 with Retry-After).
type ThrottledError struct {
	What string        // "address 192.0.2.1" or "user alice"
	Wait time.Duration // until the next attempt is checked
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v (%s, %s left)", ErrThrottled, e.What, e.Wait.Round(time.Second))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// RetryAfter is how long the client should wait.
func (e *ThrottledError) RetryAfter() time.Duration { return e.Wait }

// LimitOptions configure a Limiter. Zero fields take the defaults given.
type LimitOptions struct {
	// Logger receives failures and lockouts (user and address, never a password).
	// nil: slog.Default().
	Logger *slog.Logger
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// FreeFailures is how many failures in a row may come without delay (default 5).
	FreeFailures int
	// BaseDelay is the first backoff after the free failures; it doubles with each further
	// failure (default 1s) up to MaxDelay (default 1 min).
	BaseDelay, MaxDelay time.Duration
	// LockoutAfter is the number of failures in a row that lock out (default 20) for
	// Lockout (default 15 min).
	LockoutAfter int
	Lockout      time.Duration
	// Forget is how long after its last failure a counter is dropped (default 1 h; at
	// least Lockout).
	Forget time.Duration
	// TrustFor is how long an address that logged in as a user stays trusted for that
	// user (default 30 days); MaxTrusted bounds those addresses per user (default 8).
	TrustFor   time.Duration
	MaxTrusted int
	// MaxEntries bounds the addresses and users tracked (default 10 000); when full, the
	// entry with the oldest failure is dropped.
	MaxEntries int
}

// Limiter rate-limits failed logins, by client address and by user: after FreeFailures
// failures in a row each further attempt must wait an exponentially growing delay, and
// after LockoutAfter failures attempts are refused for Lockout. A refused attempt is not
// checked (and costs no argon2id run); the caller gets ErrThrottled at once, nothing sleeps.
//
// # Policy
//
// The per-address counter stops one attacker guessing at any account; a success does not
// reset it (else a valid account of the attacker's own would let it go on guessing
// others); it is forgotten Forget after its last failure. IPv6 addresses count per /64.
//
// The per-user counter stops a distributed guess at one account from many addresses; a
// success resets it. Its cost is that anyone can lock a user out. To soften that, an
// address the user logged in from recently (within TrustFor) is trusted for that user and
// not refused by the user's counter — only by its own address counter. So an attacker
// locks out a user only on addresses the user has not used, while the user's own
// devices keep working; the price is that a guesser who shares a trusted address (the
// same NAT) bypasses the per-user limit and meets only the per-address one.
//
// A Limiter is safe for concurrent use; its memory is bounded by MaxEntries.
type Limiter struct {
	o   LimitOptions
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*limitEntry // "a ADDR" and "u USER"
}

type limitEntry struct {
	failures int
	last     time.Time            // of the last failure
	until    time.Time            // attempts are refused before this
	trusted  map[string]time.Time // for users: address → last successful login
}

// NewLimiter returns a Limiter with opts.
func NewLimiter(opts LimitOptions) *Limiter {
	o := opts
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt(&o.FreeFailures, 5)
	defInt(&o.LockoutAfter, 20)
	defInt(&o.MaxTrusted, 8)
	defInt(&o.MaxEntries, 10000)
	def(&o.BaseDelay, time.Second)
	def(&o.MaxDelay, time.Minute)
	def(&o.Lockout, 15*time.Minute)
	def(&o.Forget, time.Hour)
	def(&o.TrustFor, 30*24*time.Hour)
	o.Forget = max(o.Forget, o.Lockout)
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Limiter{o: o, log: o.Logger, entries: map[string]*limitEntry{}}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l
}

// addrKey reduces a client address (host or host:port) to what is counted: the IP, or its
// /64 for IPv6; an unparsable address counts as itself (bounded in length).
func addrKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return truncate(host)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// Allow returns nil if a login by user (may be "") from remote may be checked now, and an
// error matching ErrThrottled otherwise.
func (l *Limiter) Allow(remote, user string) error {
	now := l.o.Now()
	addr := addrKey(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.live("a "+addr, now); e != nil && now.Before(e.until) {
		return &ThrottledError{What: "address " + addr, Wait: e.until.Sub(now)}
	}
	if user == "" {
		return nil
	}
	if e := l.live("u "+truncate(user), now); e != nil && now.Before(e.until) {
		if t, ok := e.trusted[addr]; ok && now.Sub(t) < l.o.TrustFor {
			return nil
		}
		return &ThrottledError{What: "user " + truncate(user), Wait: e.until.Sub(now)}
	}
	return nil
}

// live returns the entry for key, nil if none; a failure count past Forget is reset.
func (l *Limiter) live(key string, now time.Time) *limitEntry {
	e := l.entries[key]
	if e != nil && e.failures > 0 && now.Sub(e.last) >= l.o.Forget && !now.Before(e.until) {
		e.failures, e.until = 0, time.Time{}
	}
	return e
}

// entry returns the entry for key, making one (and room for it) if needed.
func (l *Limiter) entry(key string, now time.Time) *limitEntry {
	if e := l.live(key, now); e != nil {
		return e
	}
	if len(l.entries) >= l.o.MaxEntries {
		l.sweep(now)
	}
	e := &limitEntry{}
	l.entries[key] = e
	return e
}

// sweep drops entries that hold nothing any more, and if still full the one whose last
// failure is oldest.
func (l *Limiter) sweep(now time.Time) {
	for k, e := range l.entries {
		for a, t := range e.trusted {
			if now.Sub(t) >= l.o.TrustFor {
				delete(e.trusted, a)
			}
		}
		if (e.failures == 0 || now.Sub(e.last) >= l.o.Forget && !now.Before(e.until)) && len(e.trusted) == 0 {
			delete(l.entries, k)
		}
	}
	for len(l.entries) >= l.o.MaxEntries {
		var oldest string
		var ot time.Time
		for k, e := range l.entries {
			if oldest == "" || e.last.Before(ot) {
				oldest, ot = k, e.last
			}
		}
		delete(l.entries, oldest)
	}
}

// fail counts one failure on e and returns whether it just locked out.
func (l *Limiter) fail(e *limitEntry, now time.Time) bool {
	e.failures++
	e.last = now
	switch n := e.failures; {
	case n >= l.o.LockoutAfter:
		e.until = now.Add(l.o.Lockout)
		return n == l.o.LockoutAfter
	case n >= l.o.FreeFailures:
		d := l.o.MaxDelay
		if shift := n - l.o.FreeFailures; shift < 62 && l.o.BaseDelay <= l.o.MaxDelay>>shift {
			d = l.o.BaseDelay << shift
		}
		e.until = now.Add(d)
	}
	return false
}

// Failure records a failed login by user (may be "") from remote.
func (l *Limiter) Failure(remote, user string) {
	now := l.o.Now()
	addr := addrKey(remote)
	l.mu.Lock()
	ae := l.entry("a "+addr, now)
	addrLocked := l.fail(ae, now)
	n := ae.failures
	userLocked := false
	if user != "" {
		userLocked = l.fail(l.entry("u "+truncate(user), now), now)
	}
	l.mu.Unlock()
	l.log.Info("signpost: login failed", "user", truncate(user), "remote", addr, "failures", n)
	if addrLocked {
		l.log.Warn("signpost: address locked out", "remote", addr, "for", l.o.Lockout)
	}
	if userLocked {
		l.log.Warn("signpost: user locked out for untrusted addresses", "user", truncate(user), "remote", addr, "for", l.o.Lockout)
	}
}

// Success records a successful login by user (may be "") from remote: the user's failures
// are forgotten and remote becomes trusted for the user.
func (l *Limiter) Success(remote, user string) {
	if user == "" {
		return
	}
	now := l.o.Now()
	addr := addrKey(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry("u "+truncate(user), now)
	e.failures, e.until = 0, time.Time{}
	if e.trusted == nil {
		e.trusted = map[string]time.Time{}
	}
	if _, ok := e.trusted[addr]; !ok && len(e.trusted) >= l.o.MaxTrusted {
		var oldest string
		for a, t := range e.trusted {
			if oldest == "" || t.Before(e.trusted[oldest]) {
				oldest = a
			}
		}
		delete(e.trusted, oldest)
	}
	e.trusted[addr] = now
}

// Len returns how many addresses and users the Limiter tracks.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
