package delivery

import (
	"bufio"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/store/memstore"
)

// serveSubmissionsTLS serves implicit-TLS submission on a new loopback listener whose
// connections look remote (so AUTH is allowed only because of TLS) and returns its address.
func serveSubmissionsTLS(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.ServeSubmissionTLS(remoteListener{ln})
	return ln.Addr().String()
}

func TestSubmissionsTLS(t *testing.T) {
	host := newSmarthost(t, nil, "", "")
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: outbox})
	addr := serveSubmissionsTLS(t, e)

	c, err := smtp.DialTLS(addr, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on an implicit-TLS connection")
	}
	if !c.SupportsAuth("PLAIN") || !c.SupportsAuth("LOGIN") {
		t.Fatal("AUTH PLAIN and LOGIN not offered over TLS to a remote client")
	}
	if err := c.Mail("alice@home.arpa", nil); code(err) != 530 {
		t.Fatalf("MAIL without AUTH: %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "wrong-password")); code(err) != 535 {
		t.Fatalf("AUTH with a wrong password: %v, want 535", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.Mail("bob@home.arpa", nil); code(err) != 553 {
		t.Fatalf("MAIL as someone else: %v, want 553", err)
	}
	msg := "From: alice@home.arpa\r\nTo: bob@home.arpa, friend@example.org\r\nSubject: implicit\r\n\r\nOver TLS from the start.\r\n"
	if err := sendVia(t, c, "alice@home.arpa", []string{"bob@home.arpa", "friend@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	got := host.wait(t)
	if got.from != "alice@home.arpa" || !slices.Equal(got.to, []string{"friend@example.org"}) ||
		!strings.Contains(got.data, "with ESMTPSA id") || !strings.HasSuffix(got.data, msg) {
		t.Fatalf("smarthost got %+v", got)
	}
	if m := e.mb.messages(t, "bob", Inbox); len(m) != 1 || !strings.HasSuffix(m[0], msg) || !strings.Contains(m[0], "with ESMTPSA id") {
		t.Fatalf("bob's INBOX: %q", m)
	}
	if s := e.mb.messages(t, "alice", Sent); len(s) != 1 || !strings.HasSuffix(s[0], msg) {
		t.Fatalf("alice's Sent: %q", s)
	}
	eventually(t, "queue empty", func() bool { return len(queued(t, outbox)) == 0 })
}

func TestSubmissionsPlainClient(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	addr := serveSubmissionsTLS(t, e)
	for _, tc := range []struct {
		name string
		send string
	}{
		{"smtp commands", "EHLO client\r\nAUTH PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3JkLTE=\r\n"},
		{"garbage", strings.Repeat("\x00\xff", 600)},
		{"nothing", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if tc.send != "" {
				if _, err := conn.Write([]byte(tc.send)); err != nil {
					t.Fatal(err)
				}
			} else {
				conn.(*net.TCPConn).CloseWrite()
			}
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			if strings.HasPrefix(line, "2") || strings.HasPrefix(line, "3") || strings.Contains(line, "ESMTP") {
				t.Fatalf("a plain-text client got an SMTP reply %q", line)
			}
		})
	}
	// The server is unharmed and frees the connections.
	c, err := smtp.DialTLS(addr, e.clientTLS)
	if err != nil {
		t.Fatalf("TLS client after the plain ones: %v", err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "bob", bobPass)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "plain connections closed", func() bool { return e.srv.OpenConns() == 1 })
}

func TestSubmissionsTLSNeedsConfig(t *testing.T) {
	srv, err := NewServer(&repoMailboxes{}, newAccounts(t), Options{Domain: "home.arpa", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeSubmissionTLS(ln); !errors.Is(err, ErrNoTLSConfig) {
		t.Fatalf("ServeSubmissionTLS without TLSConfig: %v, want ErrNoTLSConfig", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the listener was left open")
	}
}

func TestSubmissionsShutdown(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.ServeSubmissionTLS(ln) }()
	c, err := smtp.DialTLS(ln.Addr().String(), e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil with a client still connected")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeSubmissionTLS after Shutdown: %v", err)
	}
	if err := c.Noop(); err == nil {
		t.Fatal("the connection survived Shutdown")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}

func TestSubmissionsConnLimit(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{MaxConns: 1})
	addr := serveSubmissionsTLS(t, e)
	c1, err := smtp.DialTLS(addr, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := c1.Noop(); err != nil {
		t.Fatal(err)
	}
	// The second connection is closed before any TLS: the handshake fails.
	if c2, err := smtp.DialTLS(addr, e.clientTLS); err == nil {
		defer c2.Close()
		if err := c2.Noop(); err == nil {
			t.Fatal("a connection past MaxConns was served")
		}
	}
}
