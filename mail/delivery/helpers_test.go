package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
)

// repoMailboxes is a Mailboxes that writes each message as a key MAILBOX/N of the
// repository USER/mail, so a delivery is a durable commit as with the real backend.
type repoMailboxes struct {
	repos interface {
		Open(ctx context.Context, name string, create bool) (store.Store, error)
	}
	mu   sync.Mutex
	uid  imap.UID
	fail map[string]bool // users whose deliveries fail
}

func (m *repoMailboxes) Deliver(ctx context.Context, user, mailbox string, msg []byte, flags []imap.Flag, date time.Time) (imap.UID, error) {
	m.mu.Lock()
	if m.fail[user] {
		m.mu.Unlock()
		return 0, errors.New("mailbox broken")
	}
	m.uid++
	uid := m.uid
	m.mu.Unlock()
	st, err := m.repos.Open(ctx, user+"/mail", true)
	if err != nil {
		return 0, err
	}
	key := fmt.Sprintf("%s/%08d", mailbox, uid)
	ops := []store.Op{{Key: key, Value: msg, IfMatch: store.Missing}}
	if slices.Contains(flags, imap.FlagSeen) {
		ops = append(ops, store.Op{Key: key + ".seen", Value: []byte("1")})
	}
	if _, err := st.Commit(ctx, store.Change{Message: "deliver", Ops: ops}); err != nil {
		return 0, err
	}
	return uid, nil
}

// messages returns the messages in a user's mailbox, oldest first.
func (m *repoMailboxes) messages(t testing.TB, user, mailbox string) []string {
	t.Helper()
	ctx := context.Background()
	st, err := m.repos.Open(ctx, user+"/mail", false)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.List(ctx, "", mailbox)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Key, ".seen") {
			continue
		}
		b, _, err := st.Get(ctx, "", e.Key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// testUsers is the fixed set of accounts tests use: a real signpost.Accounts in memory.
const (
	alicePass = "alice-password-1"
	bobPass   = "bob-password-22"
)

func newAccounts(t testing.TB) Users {
	t.Helper()
	ctx := context.Background()
	a := signpost.NewAccounts(memstore.New(nil), signpost.AccountsOptions{Logger: quietLogger()})
	for name, pw := range map[string]string{"alice": alicePass, "bob": bobPass, "carol": "carol-password-3", "broken": "broken-password"} {
		if err := a.Add(ctx, name, pw); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetDisabled(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}
	return AccountsUsers(a)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testCA returns a server TLS config for localhost/127.0.0.1 and a client config trusting it.
func testCA(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	ca, err := signpost.OpenCA(t.TempDir(), signpost.CAOptions{Hostname: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return ca.ServerConfig(nil, nil), &tls.Config{RootCAs: ca.CertPool(), ServerName: "localhost"}
}

// env is a running Server with its three listeners.
type env struct {
	srv       *Server
	mb        *repoMailboxes
	repos     *store.Repos
	clientTLS *tls.Config
	lmtp      string
	smtp      string
	sub       string
}

func newEnv(t testing.TB, users Users, opts Options) *env {
	t.Helper()
	repos, err := store.OpenRepos(filepath.Join(t.TempDir(), "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repos.Close() })
	return newEnvRepos(t, users, repos, opts)
}

func newEnvRepos(t testing.TB, users Users, repos *store.Repos, opts Options) *env {
	t.Helper()
	serverTLS, clientTLS := testCA(t)
	if opts.Domain == "" {
		opts.Domain = "home.arpa"
	}
	if opts.TLSConfig == nil {
		opts.TLSConfig = serverTLS
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e := &env{mb: &repoMailboxes{repos: repos, fail: map[string]bool{"broken": true}}, repos: repos, clientTLS: clientTLS}
	srv, err := NewServer(e.mb, users, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	serve := func(f func(net.Listener) error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go f(ln)
		return ln.Addr().String()
	}
	e.lmtp = serve(srv.ServeLMTP)
	e.smtp = serve(srv.ServeSMTP)
	e.sub = serve(srv.ServeSubmission)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return e
}

func dialSMTP(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialLMTP(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

// code returns the SMTP reply code of err (0 for nil, -1 for a non-SMTP error).
func code(err error) int {
	if err == nil {
		return 0
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return -1
}

func testMessage(subject string) string {
	return "From: someone@example.org\r\nTo: alice@home.arpa\r\nSubject: " + subject + "\r\n\r\nHello " + subject + ".\r\n"
}

// relayed is one message the test smarthost received.
type relayed struct {
	from string
	to   []string
	data string
	tls  bool
	user string
	body smtp.BodyType // MAIL FROM's BODY= ("" when not given)
	size int64         // MAIL FROM's SIZE= (0 when not given)
	utf8 bool          // MAIL FROM's SMTPUTF8
}

// smarthost is a go-smtp server that records what it gets. It offers STARTTLS and, when
// user is set, requires AUTH PLAIN with user/pass. tempFail makes every RCPT a 451,
// rejectRcpt makes the named recipient a 550.
type smarthost struct {
	addr       string
	got        chan relayed
	user, pass string
	mu         sync.Mutex
	tempFail   bool
	rejectRcpt string
}

func newSmarthost(t testing.TB, tlsConfig *tls.Config, user, pass string, configure ...func(*smtp.Server)) *smarthost {
	t.Helper()
	h := &smarthost{got: make(chan relayed, 10), user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &hostSession{h: h, tls: isTLS}, nil
	}))
	srv.Domain = "smarthost.test"
	srv.TLSConfig = tlsConfig
	srv.AllowInsecureAuth = true
	srv.ErrorLog = slogAdapter{quietLogger()}
	for _, f := range configure {
		f(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

type hostSession struct {
	h    *smarthost
	tls  bool
	user string
	r    relayed
}

func (s *hostSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *hostSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, u, p string) error {
		if u != s.h.user || p != s.h.pass {
			return smtp.ErrAuthFailed
		}
		s.user = u
		return nil
	}), nil
}
func (s *hostSession) Reset()        { s.r = relayed{} }
func (s *hostSession) Logout() error { return nil }
func (s *hostSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.h.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.r.from = from
	if opts != nil {
		s.r.body, s.r.size, s.r.utf8 = opts.Body, opts.Size, opts.UTF8
	}
	return nil
}
func (s *hostSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if s.h.tempFail {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	if to == s.h.rejectRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	s.r.to = append(s.r.to, to)
	return nil
}
func (s *hostSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.data, s.r.tls, s.r.user = string(b), s.tls, s.user
	s.h.got <- s.r
	return nil
}

func (h *smarthost) wait(t testing.TB) relayed {
	t.Helper()
	select {
	case r := <-h.got:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the smarthost got nothing")
		return relayed{}
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// queued returns the records in an outbox.
func queued(t testing.TB, st store.Store) []record {
	t.Helper()
	ctx := context.Background()
	entries, err := st.List(ctx, "", strings.TrimSuffix(recordsPrefix, "/"))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	var out []record
	for _, e := range entries {
		b, _, err := st.Get(ctx, "", e.Key)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// eventually polls cond until it holds or 30 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
