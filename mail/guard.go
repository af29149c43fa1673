package mail

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Connection guard: time limits and a command rate limit for IMAP clients.
//
// go-imap's imapserver has fixed read timeouts, set on the connection before each
// phase of reading: 30 s for a command (from its first byte, and before login also
// between commands), 5 min for a literal, 35 min between commands once logged in and
// during IDLE. guardConn sits under the library (under TLS too, since tls.Conn hands
// deadlines down to the connection it wraps), recognizes each phase by the deadline the
// library asks for and replaces it with the configured limit. Each command phase also
// takes a token from a per-connection bucket: a client sending faster than the rate is
// held back, and one that is still over it after CommandBurst held-back commands in a
// row gets BYE and is disconnected. A client cut off by a time limit gets BYE too (as far
// as its connection still takes writes). Nothing stored is affected: a command changes
// the store only once it has been read completely.

// Default limits of ServerOptions.
const (
	DefaultCommandTimeout       = 60 * time.Second
	DefaultLiteralTimeout       = 5 * time.Minute
	DefaultIdleTimeout          = 35 * time.Minute
	DefaultMaxCommandsPerSecond = 1000
	DefaultCommandBurst         = 5000
)

// The library's read timeouts (imapserver/conn.go) lie in these ranges.
const (
	libCommandMax = 2 * time.Minute  // cmdReadTimeout is 30 s
	libLiteralMax = 20 * time.Minute // literalReadTimeout is 5 min; idleReadTimeout 35 min
)

type guardLimits struct {
	command, literal, idle time.Duration
	rate                   float64 // tokens per second; <= 0: unlimited
	burst                  int
}

func (o *ServerOptions) guardLimits() guardLimits {
	l := guardLimits{command: o.CommandTimeout, literal: o.LiteralTimeout, idle: o.IdleTimeout,
		rate: o.MaxCommandsPerSecond, burst: o.CommandBurst}
	if l.command <= 0 {
		l.command = DefaultCommandTimeout
	}
	if l.literal <= 0 {
		l.literal = DefaultLiteralTimeout
	}
	if l.idle <= 0 {
		l.idle = DefaultIdleTimeout
	}
	if l.rate == 0 {
		l.rate = DefaultMaxCommandsPerSecond
	}
	if l.burst <= 0 {
		l.burst = DefaultCommandBurst
	}
	return l
}

// guardConn enforces guardLimits on a raw client connection.
type guardConn struct {
	net.Conn
	lim guardLimits
	now func() time.Time

	mu       sync.Mutex
	bye      func(text string) // the library connection's Bye, once the session exists
	ourLimit bool              // the current read deadline is one of ours
	greeted  bool              // the library has set a deadline: its greeting is out
	tokens   float64
	last     time.Time
	held     int // commands held back in a row
	byeSent  bool
	closed   chan struct{}
	closeOne sync.Once
}

func newGuardConn(c net.Conn, lim guardLimits) *guardConn {
	g := &guardConn{Conn: c, lim: lim, now: time.Now, closed: make(chan struct{})}
	g.tokens = float64(lim.burst)
	g.last = g.now()
	// Until the library sets its own: the greeting and a TLS handshake.
	g.ourLimit = true
	c.SetReadDeadline(g.now().Add(lim.command))
	return g
}

// findGuard returns the guardConn under nc (through TLS and the other wrappers), or nil.
func findGuard(nc net.Conn) *guardConn {
	for range 8 {
		switch v := nc.(type) {
		case *guardConn:
			return v
		case *tls.Conn:
			nc = v.NetConn()
		case *coalescingConn:
			nc = v.Conn
		case *countedConn:
			nc = v.Conn
		default:
			return nil
		}
	}
	return nil
}

func (g *guardConn) setBye(f func(string)) {
	g.mu.Lock()
	g.bye = f
	g.mu.Unlock()
}

// sayBye sends BYE through the library (once) and closes the connection.
func (g *guardConn) sayBye(text string) {
	g.mu.Lock()
	f, sent, greeted := g.bye, g.byeSent, g.greeted
	g.byeSent = true
	g.mu.Unlock()
	if sent {
		return
	}
	if f == nil || !greeted { // no session yet, or stuck before the greeting (a TLS handshake)
		g.Close()
		return
	}
	// A client that stopped reading must not hold us for the library's 30 s.
	g.Conn.SetWriteDeadline(g.now().Add(min(g.lim.command, 5*time.Second)))
	// Bye runs on its own goroutine: we may be called inside a TLS handshake, whose lock
	// a write would wait for. If it cannot finish soon, the connection is just closed.
	done := make(chan struct{})
	go func() { defer close(done); f(text) }()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.Close()
	}
}

// SetReadDeadline maps the library's read timeouts to the configured limits.
func (g *guardConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		g.mu.Lock()
		g.ourLimit, g.greeted = false, true
		g.mu.Unlock()
		return g.Conn.SetReadDeadline(t)
	}
	d := t.Sub(g.now())
	var limit time.Duration
	switch {
	case d <= libCommandMax:
		limit = g.lim.command
		if !g.admitCommand() {
			g.sayBye("Too many commands, slow down")
			return net.ErrClosed
		}
	case d <= libLiteralMax:
		limit = g.lim.literal
	default:
		limit = g.lim.idle
	}
	g.mu.Lock()
	g.ourLimit, g.greeted = true, true
	g.mu.Unlock()
	return g.Conn.SetReadDeadline(g.now().Add(limit))
}

// admitCommand takes a token, waiting for one if the client is over the rate. It
// reports false when the client has been held back for more than a burst in a row or
// the connection closed while waiting.
func (g *guardConn) admitCommand() bool {
	if g.lim.rate <= 0 {
		return true
	}
	g.mu.Lock()
	now := g.now()
	g.tokens = min(float64(g.lim.burst), g.tokens+now.Sub(g.last).Seconds()*g.lim.rate)
	g.last = now
	if g.tokens >= 1 {
		g.tokens--
		g.held = 0
		g.mu.Unlock()
		return true
	}
	g.held++
	if g.held > g.lim.burst {
		g.mu.Unlock()
		return false
	}
	wait := time.Duration((1 - g.tokens) / g.lim.rate * float64(time.Second))
	g.tokens--
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-g.closed:
		return false
	}
}

// Read turns a read that hit one of our limits into BYE and a closed connection.
func (g *guardConn) Read(p []byte) (int, error) {
	select {
	case <-g.closed:
		return 0, net.ErrClosed
	default:
	}
	n, err := g.Conn.Read(p)
	select {
	case <-g.closed:
		return 0, net.ErrClosed
	default:
	}
	if err != nil {
		var ne net.Error
		g.mu.Lock()
		ours := g.ourLimit
		g.mu.Unlock()
		if ours && errors.As(err, &ne) && ne.Timeout() {
			g.sayBye("Autologout; client silent for too long")
		}
	}
	return n, err
}

// Close closes the connection. When the client may still be sending (cut off by a
// limit), it shuts down the sending side first and drains for a moment, so that the
// client reads the BYE rather than a connection reset.
func (g *guardConn) Close() error {
	var err error
	g.closeOne.Do(func() {
		close(g.closed)
		g.mu.Lock()
		linger := g.byeSent
		g.mu.Unlock()
		type closeWriter interface{ CloseWrite() error }
		if cw, ok := g.Conn.(closeWriter); linger && ok {
			cw.CloseWrite()
			g.Conn.SetReadDeadline(time.Now()) // wakes a blocked Read, which sees closed
			go func() {
				time.Sleep(10 * time.Millisecond)
				g.Conn.SetReadDeadline(time.Now().Add(time.Second))
				io.Copy(io.Discard, io.LimitReader(g.Conn, 1<<20))
				g.Conn.Close()
			}()
			return
		}
		err = g.Conn.Close()
	})
	return err
}
