package delivery

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func sendVia(t *testing.T, c *smtp.Client, from string, to []string, msg string) error {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			c.Reset()
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

func TestSMTPInbound(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{
		ExtraDomains: []string{"example.net"},
		Aliases:      map[string]string{"postmaster": "alice", "sales@example.net": "bob"},
	})
	tests := []struct {
		name     string
		rcpt     string
		wantCode int    // 0: delivered
		wantUser string // whose INBOX gets it
	}{
		{"local user", "alice@home.arpa", 0, "alice"},
		{"local user in upper case", "Alice@HOME.arpa", 0, "alice"},
		{"subaddress", "alice+lists@home.arpa", 0, "alice"},
		{"extra domain", "bob@example.net", 0, "bob"},
		{"alias in every domain", "postmaster@example.net", 0, "alice"},
		{"alias in one domain", "sales@example.net", 0, "bob"},
		{"alias of another domain", "sales@home.arpa", 550, ""},
		{"unknown user", "nobody@home.arpa", 550, ""},
		{"disabled user", "carol@home.arpa", 550, ""},
		{"remote domain", "someone@example.org", 550, ""},
		{"malformed address", "a b@home.arpa", 501, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := 0
			if tt.wantUser != "" {
				before = len(e.mb.messages(t, tt.wantUser, Inbox))
			}
			c := dialSMTP(t, e.smtp)
			err := sendVia(t, c, "sender@example.org", []string{tt.rcpt}, testMessage(tt.name))
			if got := code(err); got != tt.wantCode {
				t.Fatalf("send to %s: code %d (%v), want %d", tt.rcpt, got, err, tt.wantCode)
			}
			if tt.wantUser == "" {
				return
			}
			msgs := e.mb.messages(t, tt.wantUser, Inbox)
			if len(msgs) != before+1 {
				t.Fatalf("%s has %d messages, want %d", tt.wantUser, len(msgs), before+1)
			}
			m := msgs[len(msgs)-1]
			if !strings.HasPrefix(m, "Received: from localhost ([127.0.0.1])\r\n\tby mail.home.arpa (Hearth) with ESMTP id ") {
				t.Errorf("no Received header first:\n%s", m)
			}
			if !strings.Contains(m, "\tfor <"+tt.rcpt+">;") || !strings.HasSuffix(m, testMessage(tt.name)) {
				t.Errorf("message stored as\n%s", m)
			}
		})
	}
}

func TestSMTPInboundSTARTTLS(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	c, err := smtp.DialStartTLS(e.smtp, e.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendVia(t, c, "", []string{"alice@home.arpa"}, testMessage("tls")); err != nil {
		t.Fatal(err)
	}
	m := e.mb.messages(t, "alice", Inbox)
	if len(m) != 1 || !strings.Contains(m[0], " with ESMTPS id ") {
		t.Fatalf("got %q", m)
	}
}

func TestSMTPMultipleRecipients(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{Aliases: map[string]string{"both": "alice"}})
	c := dialSMTP(t, e.smtp)
	// alice twice (directly and by alias) gets one copy.
	if err := sendVia(t, c, "x@example.org", []string{"alice@home.arpa", "bob@home.arpa", "both@home.arpa"}, testMessage("multi")); err != nil {
		t.Fatal(err)
	}
	if a, b := len(e.mb.messages(t, "alice", Inbox)), len(e.mb.messages(t, "bob", Inbox)); a != 1 || b != 1 {
		t.Fatalf("alice has %d, bob %d messages; want 1 each", a, b)
	}
	// A mailbox that fails makes the whole SMTP transaction a temporary failure.
	if err := sendVia(t, c, "x@example.org", []string{"bob@home.arpa", "broken@home.arpa"}, testMessage("fail")); code(err) != 451 {
		t.Fatalf("got %v, want 451", err)
	}
}

func TestOversize(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{MaxMessageBytes: MinMaxMessageBytes})
	for _, addr := range []string{e.smtp, e.lmtp} {
		lmtp := addr == e.lmtp
		var c *smtp.Client
		if lmtp {
			c = dialLMTP(t, addr)
		} else {
			c = dialSMTP(t, addr)
		}
		big := testMessage("big") + strings.Repeat("0123456789abcdef\r\n", 400)
		err := sendVia(t, c, "x@example.org", []string{"alice@home.arpa"}, big)
		var le smtp.LMTPDataError
		if errors.As(err, &le) {
			err = le["alice@home.arpa"]
		}
		if code(err) != 552 {
			t.Fatalf("lmtp %v: oversize message got %v, want 552", lmtp, err)
		}
		// The connection still works for a message within the limit.
		if err := sendVia(t, c, "x@example.org", []string{"alice@home.arpa"}, testMessage("small")); err != nil {
			t.Fatalf("lmtp %v: small message after a big one: %v", lmtp, err)
		}
	}
	// A message right at the limit clients see is accepted, and stored within MaxMessageBytes.
	c := dialSMTP(t, e.smtp)
	if err := c.Hello(strings.Repeat("h", 250)); err != nil {
		t.Fatal(err)
	}
	size, ok := c.MaxMessageSize()
	limit := MinMaxMessageBytes - headerRoom
	if !ok || size != limit+1 {
		t.Fatalf("SIZE %d, %v; want %d", size, ok, limit+1)
	}
	full := testMessage("full")
	for len(full) < limit-80 {
		full += strings.Repeat("x", 70) + "\r\n"
	}
	full += strings.Repeat("y", limit-len(full)-2) + "\r\n"
	if err := sendVia(t, c, "x@example.org", []string{"alice+" + strings.Repeat("t", 50) + "@home.arpa"}, full); err != nil {
		t.Fatalf("message of %d bytes: %v", len(full), err)
	}
	msgs := e.mb.messages(t, "alice", Inbox)
	if len(msgs) != 3 {
		t.Fatalf("alice has %d messages, want 3", len(msgs))
	}
	if err := sendVia(t, c, "x@example.org", []string{"alice@home.arpa"}, full+"z"); code(err) != 552 {
		t.Fatalf("one byte more: %v, want 552", err)
	}
	if n := len(msgs[2]); n > MinMaxMessageBytes || !strings.HasSuffix(msgs[2], full) {
		t.Fatalf("stored %d bytes (limit %d)", n, MinMaxMessageBytes)
	}
	for _, m := range msgs {
		if strings.Contains(m, "0123456789abcdef") {
			t.Fatal("the oversize message was stored")
		}
	}
}

func TestLMTPPerRecipient(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{Aliases: map[string]string{"team": "bob"}})
	c := dialLMTP(t, e.lmtp)
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@home.arpa", "team@home.arpa", "broken@home.arpa", "bob@home.arpa"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	if err := c.Rcpt("nobody@home.arpa", nil); code(err) != 550 {
		t.Fatalf("RCPT of an unknown user: %v, want 550", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage("lmtp")))
	resp, err := w.CloseWithLMTPResponse()
	var le smtp.LMTPDataError
	if !errors.As(err, &le) {
		t.Fatalf("want a per-recipient error, got %v", err)
	}
	if len(le) != 1 || code(le["broken@home.arpa"]) != 451 {
		t.Fatalf("errors %v, want only broken@ with 451", le)
	}
	for _, r := range []string{"alice@home.arpa", "team@home.arpa", "bob@home.arpa"} {
		if resp[r] == nil {
			t.Errorf("no success reply for %s: %v", r, resp)
		}
	}
	a, b := e.mb.messages(t, "alice", Inbox), e.mb.messages(t, "bob", Inbox)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("alice has %d, bob %d messages; want 1 each (bob once for two addresses)", len(a), len(b))
	}
	if !strings.Contains(a[0], " with LMTP id ") {
		t.Errorf("Received header: %q", a[0])
	}
}

func TestLMTPRequiresLHLO(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{})
	conn, err := net.Dial("tcp", e.lmtp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	readLine(t, r) // greeting
	conn.Write([]byte("EHLO x\r\n"))
	if l := readLine(t, r); !strings.HasPrefix(l, "500 ") {
		t.Fatalf("EHLO on LMTP: %q", l)
	}
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

// readReply reads a possibly multi-line reply and returns its last line.
func readReply(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	for {
		l := readLine(t, r)
		if len(l) < 4 || l[3] != '-' {
			return l
		}
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{MaxLineLength: 200, MaxRecipients: 2})
	tests := []struct {
		name  string
		cmds  []string
		want  string // prefix of the last reply
		close bool   // the server ends the connection
	}{
		{"unknown command", []string{"EHLO x", "FROB"}, "500 ", false},
		{"MAIL before HELO", []string{"MAIL FROM:<a@b.c>"}, "502 ", false},
		{"MAIL without colon", []string{"EHLO x", "MAIL <a@b.c>"}, "501 ", false},
		{"RCPT before MAIL", []string{"EHLO x", "RCPT TO:<alice@home.arpa>"}, "502 ", false},
		{"bad sender", []string{"EHLO x", "MAIL FROM:<a b@@>"}, "501 ", false},
		{"DATA without RCPT", []string{"EHLO x", "MAIL FROM:<a@b.c>", "DATA"}, "502 ", false},
		{"too many recipients", []string{"EHLO x", "MAIL FROM:<a@b.c>", "RCPT TO:<alice@home.arpa>", "RCPT TO:<bob@home.arpa>", "RCPT TO:<alice@home.arpa>"}, "452 ", false},
		{"AUTH on inbound SMTP", []string{"EHLO x", "AUTH PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3JkLTE="}, "5", false},
		{"line too long", []string{"EHLO " + strings.Repeat("x", 300)}, "500 ", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.smtp)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			readLine(t, r)
			var last string
			for _, c := range tt.cmds {
				conn.Write([]byte(c + "\r\n"))
				last = readReply(t, r)
			}
			if !strings.HasPrefix(last, tt.want) {
				t.Fatalf("last reply %q, want %q", last, tt.want)
			}
			if tt.close {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if l, err := r.ReadString('\n'); err == nil {
					t.Fatalf("connection still open, read %q", l)
				}
			}
		})
	}
}

// A client that stops talking is cut off after ReadTimeout.
func TestStalledClientCutOff(t *testing.T) {
	e := newEnv(t, newAccounts(t), Options{ReadTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", e.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	readLine(t, r)
	conn.Write([]byte("EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@home.arpa>\r\nDATA\r\nSubject: half\r\n"))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var last string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			break
		}
		last = l
	}
	if !strings.HasPrefix(last, "421 ") && !strings.HasPrefix(last, "354 ") {
		t.Fatalf("last line before the cut %q", last)
	}
	if n := len(e.mb.messages(t, "alice", Inbox)); n != 0 {
		t.Fatalf("a half message was stored (%d)", n)
	}
	eventually(t, "connection count back to 0", func() bool { return e.srv.OpenConns() == 0 })
}
