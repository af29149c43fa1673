package delivery

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
)

// remoteListener makes its connections look as if they came from 192.0.2.1 (not loopback).
type remoteListener struct{ net.Listener }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000} }

func serveSubmission(t *testing.T, e *env, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.ServeSubmission(wrap(ln))
	return ln.Addr().String()
}

func TestSubmissionRequiresAuth(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	c := dialSMTP(t, e.sub)
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	// Over loopback AUTH is offered without TLS.
	if !c.SupportsAuth("PLAIN") || !c.SupportsAuth("LOGIN") {
		t.Fatal("AUTH PLAIN and LOGIN not offered over loopback")
	}
	if err := c.Mail("alice@home.arpa", nil); code(err) != 530 {
		t.Fatalf("MAIL without AUTH: %v, want 530", err)
	}
	if err := c.Rcpt("bob@home.arpa", nil); code(err) != 502 {
		t.Fatalf("RCPT without MAIL: %v, want 502", err)
	}
}

func TestSubmissionAuthPolicy(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	remote := serveSubmission(t, e, func(l net.Listener) net.Listener { return remoteListener{l} })
	trusted := serveSubmission(t, e, func(l net.Listener) net.Listener { return signpost.TrustedListener(remoteListener{l}) })

	t.Run("plaintext from a remote address", func(t *testing.T) {
		c := dialSMTP(t, remote)
		if err := c.Hello("client"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Fatal("AUTH offered before STARTTLS to a remote client")
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not offered")
		}
		if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); code(err) != 538 {
			t.Fatalf("AUTH before STARTTLS: %v, want 538", err)
		}
		if err := c.Mail("alice@home.arpa", nil); code(err) != 530 {
			t.Fatalf("MAIL: %v, want 530", err)
		}
	})
	t.Run("after STARTTLS", func(t *testing.T) {
		c, err := smtp.DialStartTLS(remote, e.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
			t.Fatalf("AUTH after STARTTLS: %v", err)
		}
		if err := sendVia(t, c, "alice@home.arpa", []string{"bob@home.arpa"}, testMessage("tls")); err != nil {
			t.Fatal(err)
		}
		m := e.mb.messages(t, "bob", Inbox)
		if len(m) != 1 || !strings.Contains(m[0], "([192.0.2.1])") || !strings.Contains(m[0], " with ESMTPSA id ") {
			t.Fatalf("bob got %q", m)
		}
	})
	t.Run("trusted transport", func(t *testing.T) {
		c := dialSMTP(t, trusted)
		if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
			t.Fatalf("AUTH over a trusted listener: %v", err)
		}
	})
}

func TestSubmissionLogin(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{ExtraDomains: []string{"example.net"}})
	tests := []struct {
		name   string
		client sasl.Client
		want   int
	}{
		{"PLAIN", sasl.NewPlainClient("", "alice", alicePass), 0},
		{"LOGIN", sasl.NewLoginClient("bob", bobPass), 0},
		{"PLAIN with an address", sasl.NewPlainClient("", "alice@example.net", alicePass), 0},
		{"user name case", sasl.NewPlainClient("", "Alice", alicePass), 0},
		{"wrong password", sasl.NewPlainClient("", "alice", "wrong-password"), 535},
		{"LOGIN wrong password", sasl.NewLoginClient("bob", "nope-nope"), 535},
		{"unknown user", sasl.NewPlainClient("", "zed", "whatever1"), 535},
		{"disabled user", sasl.NewPlainClient("", "carol", "carol-password-3"), 535},
		{"identity of another user", sasl.NewPlainClient("bob", "alice", alicePass), 535},
		{"address of a remote domain", sasl.NewPlainClient("", "alice@example.org", alicePass), 535},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialSMTP(t, e.sub)
			if err := c.Auth(tt.client); code(err) != tt.want {
				t.Fatalf("AUTH: %v, want code %d", err, tt.want)
			}
		})
	}
	t.Run("LOGIN without initial response", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.sub)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		readLine(t, r)
		b64 := base64.StdEncoding.EncodeToString
		steps := []struct{ send, want string }{
			{"EHLO x", "250 "},
			{"AUTH LOGIN", "334 " + b64([]byte("Username:"))},
			{b64([]byte("alice")), "334 " + b64([]byte("Password:"))},
			{b64([]byte(alicePass)), "235 "},
		}
		for _, st := range steps {
			conn.Write([]byte(st.send + "\r\n"))
			if l := readReply(t, r); !strings.HasPrefix(l, st.want) {
				t.Fatalf("after %q: %q, want %q", st.send, l, st.want)
			}
		}
	})
	t.Run("unknown mechanism", func(t *testing.T) {
		c := dialSMTP(t, e.sub)
		if err := c.Auth(sasl.NewAnonymousClient("x")); code(err) != 504 {
			t.Fatalf("AUTH ANONYMOUS: %v, want 504", err)
		}
	})
}

func TestSubmissionSender(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{
		ExtraDomains: []string{"example.net"},
		Aliases:      map[string]string{"boss@example.net": "alice", "help": "bob"},
	})
	tests := []struct {
		from string
		want int
	}{
		{"alice@home.arpa", 0},
		{"alice+news@home.arpa", 0},
		{"ALICE@example.net", 0},
		{"boss@example.net", 0},
		{"bob@home.arpa", 553},
		{"help@home.arpa", 553},
		{"alice@example.org", 553},
		{"", 550},
		{"not an address", 501},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			c := dialSMTP(t, e.sub)
			if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
				t.Fatal(err)
			}
			if err := c.Mail(tt.from, nil); code(err) != tt.want {
				t.Fatalf("MAIL FROM:<%s>: %v, want %d", tt.from, err, tt.want)
			}
		})
	}
}

func TestSubmissionNoSmarthost(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	c := dialSMTP(t, e.sub)
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@home.arpa", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("friend@example.org", nil); code(err) != 550 {
		t.Fatalf("remote RCPT without a smarthost: %v, want 550", err)
	}
}

func TestSubmissionRelay(t *testing.T) {
	serverTLS, clientTLS := testCA(t)
	host := newSmarthost(t, serverTLS, "relayuser", "relay-secret")
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{
		Smarthost: &Smarthost{Addr: host.addr, User: "relayuser", Password: "relay-secret", TLSConfig: clientTLS},
		Outbox:    outbox,
	})
	c, err := smtp.DialStartTLS(e.sub, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewLoginClient("alice", alicePass)); err != nil {
		t.Fatal(err)
	}
	msg := "From: alice@home.arpa\r\nTo: friend@example.org, bob@home.arpa\r\nSubject: out\r\n\r\nGoing out.\r\n"
	if err := sendVia(t, c, "alice@home.arpa", []string{"friend@example.org", "bob@home.arpa", "other@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	got := host.wait(t)
	if got.from != "alice@home.arpa" || !slices.Equal(got.to, []string{"friend@example.org", "other@example.com"}) {
		t.Fatalf("smarthost got from %q to %q", got.from, got.to)
	}
	if !got.tls || got.user != "relayuser" {
		t.Fatalf("relay tls=%v user=%q; want STARTTLS and AUTH", got.tls, got.user)
	}
	if !strings.HasPrefix(got.data, "Received: from localhost ([127.0.0.1])") || !strings.Contains(got.data, "with ESMTPSA") || !strings.HasSuffix(got.data, msg) {
		t.Fatalf("relayed data:\n%s", got.data)
	}
	if m := e.mb.messages(t, "bob", Inbox); len(m) != 1 || !strings.HasSuffix(m[0], msg) {
		t.Fatalf("bob (local) got %q", m)
	}
	sent := e.mb.messages(t, "alice", Sent)
	if len(sent) != 1 || !strings.HasSuffix(sent[0], msg) || strings.Contains(sent[0], "Received:") {
		t.Fatalf("alice's Sent holds %q, want the message as submitted", sent)
	}
	// The message lacked Date and Message-ID: they were added, the same in every copy.
	hdr := sent[0][:len(sent[0])-len(msg)]
	if !strings.HasPrefix(hdr, "Date: ") || !strings.Contains(hdr, "\r\nMessage-ID: <") || !strings.HasSuffix(hdr, "@mail.home.arpa>\r\n") {
		t.Fatalf("added header %q", hdr)
	}
	if !strings.HasSuffix(got.data, hdr+msg) {
		t.Fatalf("the relayed copy differs from the Sent copy:\n%s", got.data)
	}
	eventually(t, "queue empty", func() bool { return len(queued(t, outbox)) == 0 })
}

func TestQueuePartialRejection(t *testing.T) {
	host := newSmarthost(t, nil, "", "")
	host.rejectRcpt = "gone@example.org"
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: outbox})
	c := dialSMTP(t, e.sub)
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
		t.Fatal(err)
	}
	if err := sendVia(t, c, "alice@home.arpa", []string{"friend@example.org", "gone@example.org"}, testMessage("partial")); err != nil {
		t.Fatal(err)
	}
	if got := host.wait(t); !slices.Equal(got.to, []string{"friend@example.org"}) {
		t.Fatalf("relayed to %q", got.to)
	}
	eventually(t, "a bounce in alice's INBOX", func() bool { return len(e.mb.messages(t, "alice", Inbox)) == 1 })
	b := e.mb.messages(t, "alice", Inbox)[0]
	for _, want := range []string{"Final-Recipient: rfc822; gone@example.org", "Status: 5.1.1", "Subject: partial", "report-type=delivery-status"} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "friend@example.org>:") {
		t.Errorf("bounce names the recipient that got it:\n%s", b)
	}
	eventually(t, "queue empty", func() bool { return len(queued(t, outbox)) == 0 })
}

// The queue is durable: a message that could not be relayed before a shutdown is relayed
// by the next server on the same outbox.
func TestQueueSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repos")
	users := newAccounts(t)
	open := func() (*store.Repos, store.Store) {
		repos, err := store.OpenRepos(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		outbox, err := repos.Open(context.Background(), OutboxRepo, true)
		if err != nil {
			t.Fatal(err)
		}
		return repos, outbox
	}
	repos, outbox := open()
	e := newEnvRepos(t, users, repos, Options{
		Smarthost: &Smarthost{Addr: closedAddr(t)},
		Outbox:    outbox,
		Retry:     Retry{Initial: time.Hour},
	})
	c := dialSMTP(t, e.sub)
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
		t.Fatal(err)
	}
	if err := sendVia(t, c, "alice@home.arpa", []string{"friend@example.org"}, testMessage("later")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	eventually(t, "a failed attempt", func() bool {
		q := queued(t, outbox)
		return len(q) == 1 && q[0].Attempts == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := repos.Close(); err != nil {
		t.Fatal(err)
	}

	host := newSmarthost(t, nil, "", "")
	repos2, outbox2 := open()
	t.Cleanup(func() { repos2.Close() })
	q := queued(t, outbox2)
	if len(q) != 1 || q[0].LastError == "" || !q[0].Next.After(time.Now()) {
		t.Fatalf("after reopening the queue holds %+v", q)
	}
	newEnvRepos(t, users, repos2, Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: outbox2, Retry: Retry{Initial: time.Hour}})
	got := host.wait(t)
	if !slices.Equal(got.to, []string{"friend@example.org"}) || !strings.HasSuffix(got.data, testMessage("later")) {
		t.Fatalf("relayed after restart: %+v", got)
	}
	eventually(t, "queue empty", func() bool { return len(queued(t, outbox2)) == 0 })
}

func TestQueueFull(t *testing.T) {
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: closedAddr(t)}, Outbox: outbox, MaxQueued: 1, Retry: Retry{Initial: time.Hour}})
	c := dialSMTP(t, e.sub)
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePass)); err != nil {
		t.Fatal(err)
	}
	if err := sendVia(t, c, "alice@home.arpa", []string{"friend@example.org"}, testMessage("one")); err != nil {
		t.Fatal(err)
	}
	if n, err := e.srv.Queued(context.Background()); err != nil || n != 1 {
		t.Fatalf("Queued = %d, %v; want 1", n, err)
	}
	if err := sendVia(t, c, "alice@home.arpa", []string{"friend@example.org"}, testMessage("two")); code(err) != 452 {
		t.Fatalf("second message with a full queue: %v, want 452", err)
	}
	// Local mail still flows.
	if err := sendVia(t, c, "alice@home.arpa", []string{"bob@home.arpa"}, testMessage("local")); err != nil {
		t.Fatal(err)
	}
}

func TestConnLimitAndShutdown(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{MaxConns: 2})
	c1, c2 := dialSMTP(t, e.smtp), dialLMTP(t, e.lmtp)
	if err := c1.Noop(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Hello("x"); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.OpenConns(); n != 2 {
		t.Fatalf("OpenConns = %d, want 2", n)
	}
	// A third connection is turned away.
	c3 := dialSMTP(t, e.sub)
	if err := c3.Noop(); code(err) != 421 {
		t.Fatalf("third connection: %v, want 421", err)
	}
	c2.Quit()
	eventually(t, "one connection open", func() bool { return e.srv.OpenConns() == 1 })

	// Shutdown waits for c1, then closes it when its context ends.
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.ServeSubmission(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil with a client still connected")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if err := c1.Noop(); err == nil {
		t.Fatal("the connection survived Shutdown")
	}
	eventually(t, "no connection open", func() bool { return e.srv.OpenConns() == 0 })
	if err := e.srv.ServeSMTP(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}
