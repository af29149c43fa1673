package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/signpost"
)

// opTimeout bounds the storage work of one command.
const opTimeout = 2 * time.Minute

// Replies the sessions give.
var (
	errAuthRequired    = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errEncryptRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required: use STARTTLS before AUTH"}
	errNotOwner        = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address is not one of yours"}
	errNoSuchUser      = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errRelayDenied     = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied: not a local domain"}
	errTempFailure     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errThrottled       = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins, try again later"}
	errQueueFullReply  = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Outgoing queue full, try again later"}
	errNullSender      = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "A null sender may not submit mail"}
)

func badAddress(err error) error {
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad address syntax: " + oneLine(err.Error(), 200)}
}

type backend struct {
	s    *Server
	kind kind
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &session{s: b.s, kind: b.kind, conn: c, isTLS: isTLS}, nil
}

// rcpt is one accepted recipient.
type rcpt struct {
	addr string // as the client sent it
	user string // local user; "" for a remote recipient
}

type session struct {
	s     *Server
	kind  kind
	conn  *smtp.Conn
	isTLS bool

	user  string // authenticated user (submission)
	from  string
	rcpts []rcpt
}

func (se *session) Reset() {
	se.from = ""
	se.rcpts = nil
}

func (se *session) Logout() error { return nil }

// authAllowed reports whether credentials may be sent on this connection now.
func (se *session) authAllowed() bool {
	return signpost.PlaintextAuthAllowedConn(rawConn(se.conn.Conn()), se.isTLS)
}

// AuthMechanisms implements smtp.AuthSession: PLAIN and LOGIN on submission once
// credentials are safe to send, nothing otherwise.
func (se *session) AuthMechanisms() []string {
	if se.kind != kindSubmission || !se.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.kind != kindSubmission {
		return nil, smtp.ErrAuthUnsupported
	}
	if !se.authAllowed() {
		return nil, errEncryptRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			return se.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: se.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks credentials; a user may log in with their name or one of their addresses.
func (se *session) login(username, password string) error {
	name := strings.ToLower(username)
	if strings.Contains(name, "@") {
		a, err := ParseAddress(name)
		if err != nil || !se.s.router.isLocalDomain(a.Domain) {
			return smtp.ErrAuthFailed
		}
		name = se.s.router.user(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	remote := se.conn.Conn().RemoteAddr().String()
	err := se.s.users.CheckPassword(ctx, remote, name, password)
	switch {
	case err == nil:
		se.user = name
		se.s.log.Info("submission login", "user", name, "remote", remote)
		return nil
	case errors.Is(err, signpost.ErrThrottled):
		return errThrottled
	case errors.Is(err, signpost.ErrBadCredentials):
		se.s.log.Info("submission login refused", "user", oneLine(name, 64), "remote", remote)
		return smtp.ErrAuthFailed
	default:
		se.s.log.Error("submission login", "user", oneLine(name, 64), "err", err)
		return errTempFailure
	}
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.kind == kindSubmission {
		if se.user == "" {
			return errAuthRequired
		}
		if from == "" {
			return errNullSender
		}
		a, err := ParseAddress(from)
		if err != nil {
			return badAddress(err)
		}
		if !se.s.router.isLocalDomain(a.Domain) || se.s.router.user(a) != se.user {
			return errNotOwner
		}
		se.from = from
		return nil
	}
	if from != "" {
		if _, err := ParseAddress(from); err != nil {
			return badAddress(err)
		}
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	a, err := ParseAddress(to)
	if err != nil {
		return badAddress(err)
	}
	if !se.s.router.isLocalDomain(a.Domain) {
		if se.kind == kindSubmission && se.s.queue != nil {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			if n, err := se.s.queue.len(ctx); err != nil {
				se.s.log.Error("queue", "err", err)
				return errTempFailure
			} else if n >= se.s.opts.MaxQueued {
				se.s.log.Error("outgoing queue full; recipient refused", "user", se.user, "queued", n)
				return errQueueFullReply
			}
			se.rcpts = append(se.rcpts, rcpt{addr: to})
			return nil
		}
		return errRelayDenied
	}
	user := se.s.router.user(a)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ok, err := se.s.users.Enabled(ctx, user)
	if err != nil {
		se.s.log.Error("recipient lookup", "rcpt", to, "err", err)
		return errTempFailure
	}
	if !ok {
		se.s.log.Info("unknown recipient refused", "proto", se.kind.String(), "rcpt", oneLine(to, 300))
		return errNoSuchUser
	}
	se.rcpts = append(se.rcpts, rcpt{addr: to, user: user})
	return nil
}

// read reads the message and prepends the Received header.
func (se *session) read(r io.Reader) (id string, body, withReceived []byte, err error) {
	body, err = io.ReadAll(r)
	if err != nil {
		return "", nil, nil, err // go-smtp's own error, such as 552 for a message too large
	}
	id = newID()
	if se.kind == kindSubmission {
		body = completeHeader(body, id, se.s.opts.Hostname, time.Now())
	}
	var forRcpt string
	if len(se.rcpts) == 1 {
		forRcpt = se.rcpts[0].addr
	}
	h := se.receivedHeader(id, forRcpt, time.Now())
	withReceived = make([]byte, 0, len(h)+len(body))
	withReceived = append(append(withReceived, h...), body...)
	return id, body, withReceived, nil
}

func (se *session) receivedHeader(id, forRcpt string, now time.Time) string {
	with := "ESMTP"
	switch {
	case se.kind == kindLMTP:
		with = "LMTP"
	case se.user != "" && se.isTLS:
		with = "ESMTPSA"
	case se.user != "":
		with = "ESMTPA"
	case se.isTLS:
		with = "ESMTPS"
	}
	helo := sanitizeToken(se.conn.Hostname(), 255)
	ip := "unknown"
	if a, ok := se.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP.String()
	} else if a := se.conn.Conn().RemoteAddr(); a != nil {
		ip = sanitizeToken(a.String(), 100)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Hearth) with %s id %s", helo, ip, sanitizeToken(se.s.opts.Hostname, 255), with, id)
	if forRcpt != "" {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitizeToken(forRcpt, 300))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// users returns the distinct local users among the recipients, in order.
func (se *session) localUsers() []string {
	var users []string
	seen := map[string]bool{}
	for _, r := range se.rcpts {
		if r.user != "" && !seen[r.user] {
			seen[r.user] = true
			users = append(users, r.user)
		}
	}
	return users
}

func (se *session) deliver(ctx context.Context, user, mailbox string, msg []byte, flags []imap.Flag) error {
	_, err := se.s.mb.Deliver(ctx, user, mailbox, msg, flags, time.Now())
	if err != nil {
		se.s.log.Error("delivery failed", "user", user, "mailbox", mailbox, "err", err)
		return err
	}
	return nil
}

// Data implements smtp.Session: all recipients share one reply.
func (se *session) Data(r io.Reader) error {
	id, body, msg, err := se.read(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, u := range se.localUsers() {
		if err := se.deliver(ctx, u, Inbox, msg, nil); err != nil {
			return errTempFailure
		}
	}
	if se.kind != kindSubmission {
		se.s.log.Info("delivered", "proto", se.kind.String(), "id", id, "from", oneLine(se.from, 300), "rcpts", len(se.rcpts), "bytes", len(msg))
		return nil
	}
	var remote []string
	for _, r := range se.rcpts {
		if r.user == "" {
			remote = append(remote, r.addr)
		}
	}
	if len(remote) > 0 {
		rec := record{ID: id, User: se.user, From: se.from, To: remote, Created: time.Now().UTC()}
		if err := se.s.queue.enqueue(ctx, rec, msg); errors.Is(err, errQueueFull) {
			se.s.log.Error("outgoing queue full; submission refused", "user", se.user, "err", err)
			return errQueueFullReply
		} else if err != nil {
			se.s.log.Error("queue", "id", id, "err", err)
			return errTempFailure
		}
	}
	// The message is accepted once it is delivered and queued; a failure to keep a copy
	// in Sent is logged but not the client's problem (a retry would send it twice).
	if err := se.deliver(ctx, se.user, Sent, body, []imap.Flag{imap.FlagSeen}); err != nil {
		se.s.log.Warn("could not store the sent copy", "user", se.user, "id", id)
	}
	se.s.log.Info("submitted", "id", id, "user", se.user, "local", len(se.rcpts)-len(remote), "remote", len(remote), "bytes", len(msg))
	return nil
}

// LMTPData implements smtp.LMTPSession: each recipient gets its own reply.
func (se *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	id, _, msg, err := se.read(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	results := map[string]error{}
	for _, u := range se.localUsers() {
		if err := se.deliver(ctx, u, Inbox, msg, nil); err != nil {
			results[u] = errTempFailure
		} else {
			results[u] = nil
		}
	}
	for _, r := range se.rcpts {
		status.SetStatus(r.addr, results[r.user])
	}
	se.s.log.Info("delivered", "proto", "lmtp", "id", id, "from", oneLine(se.from, 300), "rcpts", len(se.rcpts), "bytes", len(msg))
	return nil
}

// completeHeader adds the Date and Message-ID fields a submitted message lacks (RFC 6409
// section 8), in front of its header.
func completeHeader(msg []byte, id, hostname string, now time.Time) []byte {
	var hasDate, hasID bool
	for _, line := range bytes.Split(headerSection(msg, len(msg)), []byte("\r\n")) {
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "date":
			hasDate = true
		case "message-id":
			hasID = true
		}
	}
	var add string
	if !hasDate {
		add += "Date: " + now.Format(time.RFC1123Z) + "\r\n"
	}
	if !hasID {
		add += "Message-ID: <" + id + "@" + sanitizeToken(hostname, 255) + ">\r\n"
	}
	if add == "" {
		return msg
	}
	return append([]byte(add), msg...)
}

// loginServer is the server side of SASL LOGIN (draft-murchison-sasl-login).
type loginServer struct {
	check    func(user, pass string) error
	user     string
	gotUser  bool
	finished bool
}

// maxLoginField bounds the user name and password of LOGIN.
const maxLoginField = 1024

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	if l.finished {
		return nil, true, errors.New("unexpected response")
	}
	if len(resp) > maxLoginField {
		l.finished = true
		return nil, true, smtp.ErrAuthFailed
	}
	switch {
	case !l.gotUser && resp == nil:
		return []byte("Username:"), false, nil
	case !l.gotUser:
		l.user, l.gotUser = string(resp), true
		return []byte("Password:"), false, nil
	case resp == nil:
		return []byte("Password:"), false, nil
	}
	l.finished = true
	if err := l.check(l.user, string(resp)); err != nil {
		return nil, true, err
	}
	return nil, true, nil
}

// newID returns 16 random bytes in hex: a message's queue and log id.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sanitizeToken keeps the printable ASCII of s without spaces and brackets, at most n bytes.
func sanitizeToken(s string, n int) string {
	var b bytes.Buffer
	for i := 0; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '(' && c != ')' && c != '[' && c != ']' && c != ';' {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// oneLine replaces control characters of s with spaces and cuts it to n bytes.
func oneLine(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
