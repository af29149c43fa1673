package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smarthost is a fake relay that records what it is given.
type smarthost struct {
	mu       sync.Mutex
	authUser string
	authPass string
	rcpts    []string
	data     []byte
	got      chan struct{}
}

type smarthostSession struct {
	h     *smarthost
	rcpts []string
}

func (s *smarthostSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smarthostSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		s.h.mu.Lock()
		s.h.authUser, s.h.authPass = username, password
		s.h.mu.Unlock()
		if password != "relay-secret" {
			return errors.New("bad password")
		}
		return nil
	}), nil
}

func (s *smarthostSession) Reset()                               {}
func (s *smarthostSession) Logout() error                        { return nil }
func (s *smarthostSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smarthostSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *smarthostSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.h.mu.Lock()
	s.h.rcpts, s.h.data = s.rcpts, b
	s.h.mu.Unlock()
	select {
	case s.h.got <- struct{}{}:
	default:
	}
	return nil
}

// TestSubmissionRelaysThroughSmarthost submits a message for an outside address over
// submission and checks that the appliance relays it to -smarthost with the credentials
// from -smarthost-credentials, and keeps a copy in Sent.
func TestSubmissionRelaysThroughSmarthost(t *testing.T) {
	h := &smarthost{got: make(chan struct{}, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smarthostSession{h: h}, nil }))
	srv.Domain = "relay.example.org"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	data := dataWithUser(t)
	cred := filepath.Join(t.TempDir(), "relay-credentials")
	os.WriteFile(cred, []byte("relayuser:relay-secret\n"), 0o600)
	subAddr, smtpAddr, imapAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	startProc(t, []string{"-data", data, "-submission", subAddr, "-smtp", smtpAddr, "-imap", imapAddr,
		"-smarthost", ln.Addr().String(), "-smarthost-tls", "none", "-smarthost-credentials", cred}, nil)
	waitConn(t, subAddr)
	waitConn(t, smtpAddr)

	msg := "From: alice@home.arpa\r\nTo: carol@example.net\r\nSubject: outgoing\r\n\r\nHi Carol.\r\n"
	c, err := smtp.Dial(subAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePassword)); err != nil {
		t.Fatalf("AUTH on loopback submission: %v", err)
	}
	if err := c.SendMail("alice@home.arpa", []string{"carol@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("submit: %v", err)
	}
	select {
	case <-h.got:
	case <-time.After(30 * time.Second):
		t.Fatal("the smarthost never got the message")
	}
	h.mu.Lock()
	if h.authUser != "relayuser" || h.authPass != "relay-secret" {
		t.Errorf("smarthost AUTH as %q/%q, want the credentials file's", h.authUser, h.authPass)
	}
	if len(h.rcpts) != 1 || h.rcpts[0] != "carol@example.net" || !bytes.Contains(h.data, []byte("Subject: outgoing")) {
		t.Errorf("relayed to %v: %q", h.rcpts, h.data)
	}
	h.mu.Unlock()

	// Inbound SMTP for a local user lands in the INBOX; an outside recipient is refused.
	ic, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.SendMail("dave@example.net", []string{"alice@home.arpa"}, strings.NewReader("Subject: inbound\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("inbound SMTP: %v", err)
	}
	if err := ic.SendMail("dave@example.net", []string{"erin@example.net"}, strings.NewReader("Subject: relay?\r\n\r\n")); err == nil {
		t.Error("inbound SMTP relayed to an outside address")
	}
	cl := login(t, imapAddr)
	found := false
	for _, b := range fetchBodies(t, cl, "INBOX") {
		found = found || bytes.Contains(b, []byte("Subject: inbound"))
	}
	if !found {
		t.Error("inbound SMTP message not in INBOX")
	}
	found = false
	for _, b := range fetchBodies(t, cl, "Sent") {
		found = found || bytes.Contains(b, []byte("Subject: outgoing"))
	}
	if !found {
		t.Error("submitted message not in Sent")
	}
}
