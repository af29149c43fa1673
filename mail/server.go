package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/hearth-home/hearth/signpost"
)

// DefaultMaxConns is how many IMAP connections a Server holds at once unless
// ServerOptions.MaxConns says otherwise.
const DefaultMaxConns = 500

// ServerOptions configure a Server.
type ServerOptions struct {
	// TLSConfig enables STARTTLS on Serve and is required by ServeTLS.
	TLSConfig *tls.Config
	// Logger receives connection errors; nil: the Backend's logger.
	Logger *slog.Logger
	// MaxConns bounds open connections (0: DefaultMaxConns); a client over it gets BYE.
	MaxConns int

	// CommandTimeout is how long a client may take to send one command once it has
	// begun, and before login how long it may stay silent (0: DefaultCommandTimeout).
	CommandTimeout time.Duration
	// LiteralTimeout is how long a client may take to send one literal, such as an
	// APPEND's message (0: DefaultLiteralTimeout).
	LiteralTimeout time.Duration
	// IdleTimeout is how long a logged-in client may stay silent between commands or in
	// IDLE (0: DefaultIdleTimeout; RFC 9051 asks for at least 30 minutes).
	IdleTimeout time.Duration
	// MaxCommandsPerSecond is the sustained command rate of one connection (0:
	// DefaultMaxCommandsPerSecond, negative: unlimited). Commands over it are held back;
	// a client still over it after CommandBurst held-back commands in a row gets BYE.
	// Each command counts once, each literal once more, and before login every command
	// counts twice.
	MaxCommandsPerSecond float64
	// CommandBurst is how many commands a connection may send at once above the rate
	// (0: DefaultCommandBurst).
	CommandBurst int
}

// Server serves IMAP (IMAP4rev2 and IMAP4rev1) for a Backend, net/http style.
//
// Time limits come from ServerOptions (see CommandTimeout, LiteralTimeout, IdleTimeout;
// a response must be taken within 30 s) and replace imapserver's fixed ones; a client
// sending commands faster than MaxCommandsPerSecond is held back, then cut off. A
// stalled or flooding client gets BYE and is disconnected; nothing stored is affected,
// since every change is one commit made only once its command was read completely.
type Server struct {
	b    *Backend
	opts ServerOptions
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	// loose serves connections on which passwords may travel in plain text (loopback,
	// trusted transports, TLS); strict serves the rest: LOGINDISABLED until STARTTLS.
	loose, strict     *imapserver.Server
	looseLn, strictLn *chanListener
	startOnce         sync.Once
	serving           sync.WaitGroup // the inner servers' Serve calls

	limits guardLimits

	mu        sync.Mutex
	listeners map[net.Listener]bool
	conns     int
	closed    bool
	idle      chan struct{} // closed when conns drops to 0 during shutdown
}

// NewServer returns a Server for b.
func NewServer(b *Backend, opts ServerOptions) *Server {
	s := &Server{b: b, opts: opts, log: opts.Logger, listeners: map[net.Listener]bool{}}
	if s.log == nil {
		s.log = b.log
	}
	if s.opts.MaxConns <= 0 {
		s.opts.MaxConns = DefaultMaxConns
	}
	s.limits = s.opts.guardLimits()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapNamespace, imap.CapUIDPlus,
		imap.CapESearch, imap.CapSearchRes, imap.CapListExtended, imap.CapListStatus, imap.CapMove,
		imap.CapStatusSize, imap.CapSpecialUse, imap.CapCreateSpecialUse, imap.CapLiteralPlus,
		imap.CapUnauthenticate, imap.CapChildren, imap.CapAppendLimit} {
		caps[c] = struct{}{}
	}
	logger := slogPrintf{s.log}
	s.looseLn, s.strictLn = newChanListener(), newChanListener()
	s.loose = imapserver.New(&imapserver.Options{NewSession: s.newSession(true), Caps: caps,
		Logger: logger, TLSConfig: opts.TLSConfig, InsecureAuth: true})
	s.strict = imapserver.New(&imapserver.Options{NewSession: s.newSession(false), Caps: caps,
		Logger: logger, TLSConfig: opts.TLSConfig})
	return s
}

type slogPrintf struct{ l *slog.Logger }

func (l slogPrintf) Printf(format string, args ...any) {
	l.l.Info("imap: " + fmt.Sprintf(format, args...))
}

func (s *Server) newSession(plainOK bool) func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	return func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
		if g := findGuard(c.NetConn()); g != nil {
			g.setBye(func(text string) { c.Bye(text) })
		}
		return &session{srv: s, b: s.b, conn: c, ctx: s.ctx, plainOK: plainOK}, nil, nil
	}
}

func (s *Server) start() {
	s.startOnce.Do(func() {
		s.serving.Add(2)
		go func() { defer s.serving.Done(); s.loose.Serve(s.looseLn) }()
		go func() { defer s.serving.Done(); s.strict.Serve(s.strictLn) }()
	})
}

// Serve accepts plain IMAP connections on ln (STARTTLS is offered if a TLS config is
// set). Passwords are accepted before STARTTLS only from loopback addresses and
// signpost.TrustedListener connections. It returns when ln fails or the server shuts
// down (then with nil).
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeTLS accepts implicit-TLS connections (IMAPS) on ln, a plain TCP listener that
// ServeTLS wraps with ServerOptions.TLSConfig.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("mail: serve TLS: no TLS config")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, isTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.listeners[ln] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	s.start()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("mail: accept: %w", err)
		}
		delay = 0
		if !s.admit() {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("* BYE Too many connections\r\n"))
			c.Close()
			continue
		}
		target := s.strictLn
		if isTLS || signpost.PlaintextAuthAllowedConn(c, false) {
			target = s.looseLn
		}
		var nc net.Conn = newCoalescingConn(&countedConn{Conn: newGuardConn(c, s.limits), s: s})
		if isTLS {
			nc = tls.Server(nc, s.opts.TLSConfig)
		}
		if !target.deliver(nc) {
			nc.Close()
		}
	}
}

func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.conns >= s.opts.MaxConns {
		return false
	}
	s.conns++
	return true
}

func (s *Server) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
	if s.conns == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// OpenConns is how many IMAP connections are open (for idle exit).
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Shutdown stops accepting connections, closes the open ones (a client reconnects and
// resynchronizes by UID) and waits for their sessions to end or ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	var idle chan struct{}
	if s.conns > 0 {
		s.idle = make(chan struct{})
		idle = s.idle
	}
	s.mu.Unlock()
	s.cancel()
	// Stop the inner servers' accept loops first and wait for them: imapserver's Close
	// racing with its Serve starting is a data race inside the library.
	s.looseLn.Close()
	s.strictLn.Close()
	s.serving.Wait()
	s.loose.Close()
	s.strict.Close()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countedConn releases its slot in the server's count when closed. It is never a
// *tls.Conn wrapper: implicit TLS wraps it (tls.Conn over countedConn) so the library
// still sees a *tls.Conn where it looks.
type countedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.s.release)
	return err
}

// chanListener hands connections accepted elsewhere to an imapserver.Server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
