package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

const bobPassword = "bob-password"

// addBob adds user bob to the data directory (before the appliance starts).
func addBob(t *testing.T, data string) {
	t.Helper()
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(context.Background(), "bob", bobPassword); err != nil {
		t.Fatal(err)
	}
}

// mailboxSubjects logs in over IMAP as user and returns the Subject lines in mailbox.
func mailboxSubjects(t *testing.T, imapAddr, user, password, mailbox string) []string {
	t.Helper()
	c, err := imapclient.DialInsecure(imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	var out []string
	for _, b := range fetchBodies(t, c, mailbox) {
		for _, line := range strings.Split(string(b), "\r\n") {
			if s, ok := strings.CutPrefix(line, "Subject: "); ok {
				out = append(out, s)
			}
		}
	}
	c.Logout().Wait()
	return out
}

// homeTLS is a client config trusting the data directory's home CA for mail.DOMAIN.
func homeTLS(t *testing.T, data string) *tls.Config {
	t.Helper()
	ca, names, err := signpost.OpenHomeCA(data, signpost.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: ca.CertPool(), ServerName: names.FQDN("mail")}
}

// TestSubmissionsSocketActivated serves implicit-TLS submission on a socket named
// "submissions" and submits through it with swaks (--tls-on-connect) and go-smtp's DialTLS.
func TestSubmissionsSocketActivated(t *testing.T) {
	data := dataWithUser(t)
	addBob(t, data)
	imapAddr, imapFile := listenerFile(t)
	subsAddr, subsFile := listenerFile(t)
	startProc(t, []string{"-data", data},
		[]string{"LISTEN_FDS=2", "LISTEN_FDNAMES=imap:submissions"}, imapFile, subsFile)
	waitConn(t, imapAddr)
	clientTLS := homeTLS(t, data)

	// go-smtp over implicit TLS, verifying the home CA's certificate.
	c, err := smtp.DialTLS(subsAddr, clientTLS)
	if err != nil {
		t.Fatalf("DialTLS: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on the submissions port")
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "not-her-password")); err == nil {
		t.Fatal("AUTH with a wrong password succeeded")
	} else if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 535 {
		t.Fatalf("AUTH with a wrong password: %v, want 535", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePassword)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail("alice@home.arpa", []string{"bob@home.arpa"}, strings.NewReader(
		"From: alice@home.arpa\r\nTo: bob@home.arpa\r\nSubject: via-go-smtp\r\n\r\nHello Bob.\r\n")); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Quit()

	// swaks with --tls-on-connect.
	bin := testtool.Path(t, "swaks", "swaks")
	h, p, _ := net.SplitHostPort(subsAddr)
	out, err := swaksRun(bin, "--server", h, "--port", p, "--tls-on-connect", "-a", "PLAIN",
		"--auth-user", "alice", "--auth-password", alicePassword, "--from", "alice@home.arpa",
		"--to", "bob@home.arpa", "--header", "Subject: via-swaks", "--body", "Hello again.")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(out, "=== TLS started") || strings.Contains(out, "STARTTLS") {
		t.Errorf("swaks did not start with TLS, or saw STARTTLS:\n%s", out)
	}
	out, err = swaksRun(bin, "--server", h, "--port", p, "--tls-on-connect", "-a", "PLAIN",
		"--auth-user", "alice", "--auth-password", "wrong", "--from", "alice@home.arpa", "--to", "bob@home.arpa")
	if err == nil || !strings.Contains(out, "535") {
		t.Fatalf("swaks with a wrong password: %v\n%s", err, out)
	}

	// A plain-text client gets no SMTP greeting; the appliance carries on.
	conn, err := net.Dial("tcp", subsAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("EHLO plain\r\n"))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if strings.HasPrefix(line, "220") || strings.HasPrefix(line, "250") {
		t.Fatalf("a plain-text client got %q", line)
	}

	inbox := mailboxSubjects(t, imapAddr, "bob", bobPassword, "INBOX")
	sent := mailboxSubjects(t, imapAddr, "alice", alicePassword, "Sent")
	for _, want := range []string{"via-go-smtp", "via-swaks"} {
		if !slices.Contains(inbox, want) {
			t.Errorf("bob's INBOX %q lacks %q", inbox, want)
		}
		if !slices.Contains(sent, want) {
			t.Errorf("alice's Sent %q lacks %q", sent, want)
		}
	}
	if len(inbox) != 2 || len(sent) != 2 {
		t.Errorf("bob's INBOX has %d, alice's Sent %d messages; want 2 each", len(inbox), len(sent))
	}
}

// TestSubmissionsFlag serves implicit-TLS submission on the address of -submissions.
func TestSubmissionsFlag(t *testing.T) {
	data := dataWithUser(t)
	addr := freeAddr(t)
	startProc(t, []string{"-data", data, "-submissions", addr}, nil)
	waitConn(t, addr)
	c, err := smtp.DialTLS(addr, homeTLS(t, data))
	if err != nil {
		t.Fatalf("DialTLS: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if !c.SupportsAuth("PLAIN") {
		t.Fatal("AUTH PLAIN not offered")
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", alicePassword)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	c.Quit()
}

// swaksRun runs swaks with a timeout and returns its combined output.
func swaksRun(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"--timeout", "30"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
