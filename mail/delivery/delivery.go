// Package delivery receives mail over LMTP, SMTP and authenticated submission, stores it in
// local mailboxes and relays outgoing mail through a smarthost with a durable retry queue.
//
// # Serving
//
// A Server is made once with NewServer and serves any number of listeners: ServeLMTP
// (local delivery agents such as fetchmail), ServeSMTP (inbound mail from the world, local
// recipients only, no authentication), ServeSubmission (mail clients: STARTTLS, then
// AUTH PLAIN or LOGIN checked against the accounts; plain-text AUTH only over loopback or a
// signpost.TrustedListener) and ServeSubmissionTLS (the same over implicit TLS, RFC 8314's
// "submissions"). Every path accepts a message only after it is durably stored.
//
// # The outgoing queue
//
// Submitted mail for recipients outside the local domains is kept in the store given as
// Options.Outbox (normally the repository OutboxRepo): one commit holds the message and its
// envelope, so it survives a crash and a restart. The queue runs from NewServer until
// Shutdown: it relays due messages to Options.Smarthost, retries temporary failures with
// exponential backoff (Retry) and, once a message is older than Retry.MaxAge or a recipient
// is refused for good, bounces it with a delivery status notification into the sender's INBOX.
package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// Mailbox names messages are delivered to.
const (
	Inbox = "INBOX"
	Sent  = "Sent"
)

// OutboxRepo is the store repository the outgoing queue normally lives in.
const OutboxRepo = signpost.ReservedName + "/outbox"

// Defaults and limits of Options.
const (
	DefaultMaxMessageBytes = 25 << 20
	MaxMaxMessageBytes     = 48 << 20 // leaves room below store.MaxValueSize
	MinMaxMessageBytes     = 8 << 10
	DefaultMaxRecipients   = 100
	MaxMaxRecipients       = 1000
	DefaultReadTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = time.Minute
	DefaultMaxLineLength   = 2000
	DefaultMaxConns        = 100
	DefaultMaxQueued       = 10000
)

// headerRoom is what the header fields this package adds may take of MaxMessageBytes:
// a Received field (at most ~1.1 KiB: its tokens are cut to fixed lengths) and Date and
// Message-ID (~330 bytes).
const headerRoom = 2 << 10

// ErrServerClosed is returned by the Serve methods after Shutdown.
var ErrServerClosed = errors.New("delivery: server closed")

// Mailboxes stores messages; *mail.Backend implements it.
type Mailboxes interface {
	// Deliver appends msg to a user's mailbox and returns once it is durable.
	Deliver(ctx context.Context, user, mailbox string, msg []byte, flags []imap.Flag, date time.Time) (imap.UID, error)
}

// Users answers who may receive and send mail; AccountsUsers adapts *signpost.Accounts.
type Users interface {
	// Enabled reports whether name is an account that exists and is not disabled.
	Enabled(ctx context.Context, name string) (bool, error)
	// CheckPassword returns nil if password is user's, as signpost.Accounts.CheckPassword.
	CheckPassword(ctx context.Context, remote, user, password string) error
}

// AccountsUsers returns the Users backed by Hearth's accounts. Enabled lists the accounts
// on every call (a home has few).
func AccountsUsers(a *signpost.Accounts) Users { return accountsUsers{a} }

type accountsUsers struct{ a *signpost.Accounts }

func (u accountsUsers) Enabled(ctx context.Context, name string) (bool, error) {
	list, err := u.a.List(ctx)
	if err != nil {
		return false, fmt.Errorf("delivery: look up user %q: %w", name, err)
	}
	for _, x := range list {
		if x.Name == name {
			return !x.Disabled, nil
		}
	}
	return false, nil
}

func (u accountsUsers) CheckPassword(ctx context.Context, remote, user, password string) error {
	return u.a.CheckPassword(ctx, remote, user, password)
}

// Options configure a Server. Domain is required.
type Options struct {
	// Domain is the home mail domain: NAME@Domain reaches user NAME.
	Domain string
	// ExtraDomains are further domains whose addresses reach the same users.
	ExtraDomains []string
	// Aliases maps an address to a user name. A key "local@domain" (a local domain) matches
	// that address; a bare "local" matches it in every local domain. Keys are case-insensitive.
	// A "+tag" after the local part is ignored when looking up users and aliases.
	Aliases map[string]string
	// MaxMessageBytes limits a message as stored, with the header fields added here
	// (Received; Date and Message-ID on submission): clients may send up to
	// MaxMessageBytes − headerRoom (2 KiB) bytes, so a Mailboxes with the same limit never
	// refuses what was accepted. 0: DefaultMaxMessageBytes; MinMaxMessageBytes to
	// MaxMaxMessageBytes.
	MaxMessageBytes int64
	// MaxRecipients limits the recipients of one message (0: DefaultMaxRecipients).
	MaxRecipients int
	// Hostname names this server in greetings, Received headers and to the smarthost
	// (default "mail." + Domain).
	Hostname string
	// TLSConfig enables STARTTLS on SMTP and submission and is required by
	// ServeSubmissionTLS. Without it, submission accepts AUTH only over loopback or a
	// signpost.TrustedListener.
	TLSConfig *tls.Config
	// Smarthost relays mail for recipients outside the local domains; nil refuses them.
	Smarthost *Smarthost
	// Outbox keeps the outgoing queue (normally the repository OutboxRepo); required when
	// Smarthost is set. The caller keeps ownership.
	Outbox store.Store
	// Retry is the queue's backoff; zero fields take the defaults documented on Retry.
	Retry Retry
	// ReadTimeout cuts off a client that sends nothing for this long; it also bounds the
	// whole DATA transfer (0: DefaultReadTimeout). WriteTimeout bounds each reply
	// (0: DefaultWriteTimeout).
	ReadTimeout, WriteTimeout time.Duration
	// MaxLineLength limits a command line (0: DefaultMaxLineLength).
	MaxLineLength int
	// MaxConns limits the open client connections of all listeners together; more are
	// answered "421" and closed (0: DefaultMaxConns).
	MaxConns int
	// MaxQueued limits the messages in the outgoing queue; past it submission of mail
	// for remote recipients is refused with a temporary error (0: DefaultMaxQueued).
	MaxQueued int
	// Logger receives deliveries, refusals and queue events. nil: slog.Default().
	Logger *slog.Logger
}

// Retry is the outgoing queue's backoff: the n-th retry waits Initial·2ⁿ⁻¹, capped at Max;
// a message still undelivered MaxAge after it was queued is bounced.
type Retry struct {
	Initial time.Duration // default 1 minute
	Max     time.Duration // default 1 hour
	MaxAge  time.Duration // default 5 days
}

func (r Retry) withDefaults() Retry {
	if r.Initial <= 0 {
		r.Initial = time.Minute
	}
	if r.Max <= 0 {
		r.Max = time.Hour
	}
	if r.Max < r.Initial {
		r.Max = r.Initial
	}
	if r.MaxAge <= 0 {
		r.MaxAge = 5 * 24 * time.Hour
	}
	return r
}

// delay returns how long to wait after the attempts-th failed attempt (attempts >= 1).
func (r Retry) delay(attempts int) time.Duration {
	d := r.Initial
	for i := 1; i < attempts && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max)
}

// SmarthostTLS says how the relay connection to the smarthost is encrypted.
type SmarthostTLS int

// The SmarthostTLS modes.
const (
	// STARTTLSIfOffered upgrades with STARTTLS when the smarthost offers it (the default).
	STARTTLSIfOffered SmarthostTLS = iota
	// STARTTLSRequired refuses to relay unless the smarthost offers STARTTLS.
	STARTTLSRequired
	// ImplicitTLS speaks TLS from the start (port 465).
	ImplicitTLS
	// NoTLS never encrypts (for a smarthost on loopback).
	NoTLS
)

// Smarthost is the server outgoing mail is relayed to.
type Smarthost struct {
	// Addr is host:port.
	Addr string
	// User and Password, when User is set, authenticate with AUTH PLAIN. They are sent
	// only over TLS or to a loopback address.
	User, Password string
	// TLS chooses the encryption.
	TLS SmarthostTLS
	// TLSConfig verifies the smarthost (nil: the system roots and the host of Addr).
	TLSConfig *tls.Config
}

// Server receives and relays mail. It is safe for concurrent use.
type Server struct {
	mb     Mailboxes
	users  Users
	opts   Options
	log    *slog.Logger
	router *router

	conns connSet

	mu      sync.Mutex
	servers []*smtp.Server
	closed  bool

	queue       *queue
	queueCancel context.CancelFunc
	queueDone   chan struct{}
}

// NewServer checks opts and returns a Server. When opts.Smarthost is set it starts the
// outgoing queue, which runs until Shutdown.
func NewServer(mb Mailboxes, users Users, opts Options) (*Server, error) {
	if mb == nil || users == nil {
		return nil, errors.New("delivery: new server: Mailboxes and Users are required")
	}
	if opts.Domain == "" {
		return nil, errors.New("delivery: new server: no Domain")
	}
	r, err := newRouter(opts.Domain, opts.ExtraDomains, opts.Aliases)
	if err != nil {
		return nil, fmt.Errorf("delivery: new server: %w", err)
	}
	switch {
	case opts.MaxMessageBytes == 0:
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	case opts.MaxMessageBytes < MinMaxMessageBytes || opts.MaxMessageBytes > MaxMaxMessageBytes:
		return nil, fmt.Errorf("delivery: new server: MaxMessageBytes %d outside %d..%d", opts.MaxMessageBytes, MinMaxMessageBytes, MaxMaxMessageBytes)
	}
	switch {
	case opts.MaxRecipients == 0:
		opts.MaxRecipients = DefaultMaxRecipients
	case opts.MaxRecipients < 0 || opts.MaxRecipients > MaxMaxRecipients:
		return nil, fmt.Errorf("delivery: new server: MaxRecipients %d outside 1..%d", opts.MaxRecipients, MaxMaxRecipients)
	}
	if opts.Hostname == "" {
		opts.Hostname = "mail." + strings.ToLower(opts.Domain)
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = DefaultMaxLineLength
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = DefaultMaxQueued
	}
	opts.Retry = opts.Retry.withDefaults()
	s := &Server{mb: mb, users: users, opts: opts, log: opts.Logger, router: r}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.Smarthost != nil {
		if opts.Outbox == nil {
			return nil, errors.New("delivery: new server: a Smarthost needs an Outbox")
		}
		if _, _, err := net.SplitHostPort(opts.Smarthost.Addr); err != nil {
			return nil, fmt.Errorf("delivery: new server: smarthost address: %w", err)
		}
		s.queue = &queue{s: s, st: opts.Outbox, wake: make(chan struct{}, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		s.queueCancel = cancel
		s.queueDone = make(chan struct{})
		go func() {
			defer close(s.queueDone)
			s.queue.run(ctx)
		}()
	}
	return s, nil
}

// kind is which protocol a listener speaks.
type kind int

const (
	kindLMTP kind = iota
	kindSMTP
	kindSubmission
)

func (k kind) String() string {
	return [...]string{"lmtp", "smtp", "submission"}[k]
}

// ServeLMTP accepts LMTP connections on ln (RFC 2033) until Shutdown; each recipient gets
// its own reply after DATA. It always returns a non-nil error (ErrServerClosed after Shutdown).
func (s *Server) ServeLMTP(ln net.Listener) error { return s.serve(ln, kindLMTP) }

// ServeSMTP accepts inbound SMTP connections on ln, as a domain's MX: mail for local
// recipients only, no authentication, STARTTLS when TLSConfig is set.
func (s *Server) ServeSMTP(ln net.Listener) error { return s.serve(ln, kindSMTP) }

// ServeSubmission accepts mail clients on ln (port 587 style): AUTH is required before
// MAIL, and allowed only after STARTTLS or over loopback or a signpost.TrustedListener.
func (s *Server) ServeSubmission(ln net.Listener) error { return s.serve(ln, kindSubmission) }

func (s *Server) serve(ln net.Listener, k kind) error { return s.serveOn(ln, k, false) }

// serveOn serves ln speaking k; implicitTLS wraps every connection in TLS (opts.TLSConfig,
// checked by the caller) before the greeting and offers no STARTTLS.
func (s *Server) serveOn(ln net.Listener, k kind, implicitTLS bool) error {
	proto := k.String()
	if implicitTLS {
		proto += "s"
	}
	srv := smtp.NewServer(&backend{s: s, kind: k})
	srv.Domain = s.opts.Hostname
	// go-smtp refuses a message of exactly its MaxMessageBytes (it fails the read after the
	// last byte), hence the + 1.
	srv.MaxMessageBytes = s.opts.MaxMessageBytes - headerRoom + 1
	srv.MaxRecipients = s.opts.MaxRecipients
	srv.MaxLineLength = s.opts.MaxLineLength
	srv.ReadTimeout = s.opts.ReadTimeout
	srv.WriteTimeout = s.opts.WriteTimeout
	srv.ErrorLog = slogAdapter{s.log.With("proto", proto)}
	srv.EnableSMTPUTF8 = true
	switch k {
	case kindLMTP:
		srv.LMTP = true
	case kindSMTP:
		srv.TLSConfig = s.opts.TLSConfig
	case kindSubmission:
		srv.TLSConfig = s.opts.TLSConfig
		// The sessions decide per connection (loopback, trusted transport); see Auth.
		srv.AllowInsecureAuth = true
	}
	var wrapped net.Listener = &countingListener{Listener: ln, set: &s.conns, max: s.opts.MaxConns, log: s.log, silent: implicitTLS}
	if implicitTLS {
		srv.TLSConfig = nil // already encrypted: no STARTTLS
		wrapped = tls.NewListener(wrapped, s.opts.TLSConfig)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(wrapped)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	if err == nil {
		err = ErrServerClosed
	}
	return fmt.Errorf("delivery: serve %s: %w", proto, err)
}

// OpenConns returns how many client connections are open.
func (s *Server) OpenConns() int { return s.conns.len() }

// Queued returns how many messages wait in the outgoing queue (0 without a Smarthost).
// An appliance that exits when idle can keep running while it is not 0.
func (s *Server) Queued(ctx context.Context) (int, error) {
	if s.queue == nil {
		return 0, nil
	}
	return s.queue.len(ctx)
}

// Shutdown stops accepting connections, waits for open ones to finish (closing them when
// ctx ends) and stops the outgoing queue. Queued mail stays in the Outbox for the next start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closed = true
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				// go-smtp's Close does nothing after Shutdown: close the connections here.
				s.conns.closeAll()
				if !errors.Is(err, smtp.ErrServerClosed) {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if s.queueCancel != nil {
		s.queueCancel()
		select {
		case <-s.queueDone:
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delivery: shutdown: %w", err)
	}
	return nil
}

// connSet is the open client connections.
type connSet struct {
	mu sync.Mutex
	m  map[*countedConn]struct{}
}

// add registers c unless max connections are open.
func (cs *connSet) add(c *countedConn, max int) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.m) >= max {
		return false
	}
	if cs.m == nil {
		cs.m = map[*countedConn]struct{}{}
	}
	cs.m[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c *countedConn) {
	cs.mu.Lock()
	delete(cs.m, c)
	cs.mu.Unlock()
}

func (cs *connSet) len() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.m)
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	conns := make([]*countedConn, 0, len(cs.m))
	for c := range cs.m {
		conns = append(conns, c)
	}
	cs.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// countingListener registers its connections in set, turning away those past max (with a
// 421 reply unless silent: on an implicit-TLS port a plain-text reply means nothing).
type countingListener struct {
	net.Listener
	set    *connSet
	max    int
	log    *slog.Logger
	silent bool
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &countedConn{Conn: c, set: l.set}
		if !l.set.add(cc, l.max) {
			l.log.Warn("too many connections; refused one", "remote", c.RemoteAddr().String(), "limit", l.max)
			if !l.silent {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
			}
			c.Close()
			continue
		}
		return cc, nil
	}
}

type countedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.set.remove(c) })
	return c.Conn.Close()
}

// rawConn unwraps TLS and the counting wrapper to the connection the listener accepted.
func rawConn(c net.Conn) net.Conn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		c = cc.Conn
	}
	return c
}

// slogAdapter lets go-smtp log through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Warn(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }
