package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// binary is the appliance, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mail-appliance-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mail")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const alicePassword = "alice-password"

// dataWithUser makes a data directory with user alice.
func dataWithUser(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(context.Background(), "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	return data
}

// proc is a running appliance.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc runs the appliance with args, extra environment and files as descriptors 3….
func startProc(t *testing.T, args, env []string, files ...*os.File) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") })
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	p := &proc{cmd: cmd, done: make(chan struct{}), log: &syncBuffer{}}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("appliance log:\n%s", p.log.String())
		}
	})
	return p
}

// wait waits up to d for the process to exit and returns its error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("appliance still running after %v", d)
		return nil
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// listenerFile returns a listening socket's file, to hand to the appliance.
func listenerFile(t *testing.T) (string, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	t.Cleanup(func() { f.Close() })
	return ln.Addr().String(), f
}

// waitConn dials addr until it accepts, for up to 20 s.
func waitConn(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// login connects to addr over IMAP and logs in as alice.
func login(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", alicePassword).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// lmtpDeliver delivers msg to rcpt over LMTP.
func lmtpDeliver(t *testing.T, addr, rcpt string, msg []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(msg)
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		t.Fatalf("LMTP data: %v", err)
	}
	c.Quit()
}

// fetchBodies returns every message of a mailbox by UID.
func fetchBodies(t *testing.T, c *imapclient.Client, mailbox string) map[imap.UID][]byte {
	t.Helper()
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	out := map[imap.UID][]byte{}
	if sel.NumMessages == 0 {
		return out
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(all, &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for _, m := range msgs {
		for _, b := range m.BodySection {
			out[m.UID] = b.Bytes
		}
	}
	return out
}

func testMessage(subject string) []byte {
	return []byte("From: Bob <bob@example.org>\r\nTo: alice@home.arpa\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\nHello Alice.\r\n")
}

func TestFlagsLoginDeliverSIGTERM(t *testing.T) {
	data := dataWithUser(t)
	imapAddr, lmtpAddr := freeAddr(t), freeAddr(t)
	aliases := filepath.Join(t.TempDir(), "aliases")
	os.WriteFile(aliases, []byte("postmaster: alice\n"), 0o600)
	p := startProc(t, []string{"-data", data, "-imap", imapAddr, "-lmtp", lmtpAddr,
		"-aliases", aliases, "-extra-domains", "example.com"}, nil)
	waitConn(t, imapAddr)
	waitConn(t, lmtpAddr)

	c := login(t, imapAddr)
	lmtpDeliver(t, lmtpAddr, "alice@home.arpa", testMessage("over-lmtp"))
	lmtpDeliver(t, lmtpAddr, "postmaster@home.arpa", testMessage("to-alias"))
	lmtpDeliver(t, lmtpAddr, "alice@example.com", testMessage("to-extra-domain"))
	got := fetchBodies(t, c, "INBOX")
	for _, subject := range []string{"over-lmtp", "to-alias", "to-extra-domain"} {
		found := false
		for _, b := range got {
			found = found || bytes.Contains(b, []byte("Subject: "+subject))
		}
		if !found {
			t.Errorf("message %q not in INBOX (%d messages)", subject, len(got))
		}
	}
	// A wrong password is refused.
	c2, err := imapclient.DialInsecure(imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	c.Logout().Wait()
	c2.Close()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func TestSocketActivationIMAPSAndIdleExit(t *testing.T) {
	data := dataWithUser(t)
	imapAddr, imapFile := listenerFile(t)
	imapsAddr, imapsFile := listenerFile(t)
	lmtpAddr, lmtpFile := listenerFile(t)
	p := startProc(t, []string{"-data", data, "-idle-exit", "2s"},
		[]string{"LISTEN_FDS=3", "LISTEN_FDNAMES=imap:imaps:lmtp"}, imapFile, imapsFile, lmtpFile)

	c := login(t, imapAddr)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	lmtpDeliver(t, lmtpAddr, "alice@home.arpa", testMessage("activated"))

	// IMAPS with a certificate from the home CA.
	ca, names, err := signpost.OpenHomeCA(data, signpost.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := imapclient.DialTLS(imapsAddr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: ca.CertPool(), ServerName: names.FQDN("mail")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Login("alice", alicePassword).Wait(); err != nil {
		t.Fatalf("login over IMAPS: %v", err)
	}
	got := fetchBodies(t, tc, "INBOX")
	if len(got) != 1 {
		t.Fatalf("INBOX over IMAPS has %d messages, want 1", len(got))
	}
	tc.Logout().Wait()
	tc.Close()
	// STARTTLS on the plain IMAP port, with the same certificate.
	sc, err := imapclient.DialStartTLS(imapAddr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: ca.CertPool(), ServerName: names.FQDN("mail")}})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := sc.Login("alice", alicePassword).Wait(); err != nil {
		t.Fatalf("login after STARTTLS: %v", err)
	}
	sc.Logout().Wait()
	sc.Close()

	// While a client is connected the appliance stays; once it leaves, it exits.
	select {
	case <-p.done:
		t.Fatalf("exited with a client connected: %v", p.err)
	case <-time.After(3 * time.Second):
	}
	c.Logout().Wait()
	c.Close()
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Fatalf("idle exit: %v", err)
	}
	if !strings.Contains(p.log.String(), "idle, exiting") {
		t.Errorf("log does not say it exited for idleness:\n%s", p.log.String())
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no data", []string{"-imap", "127.0.0.1:0"}},
		{"negative idle", []string{"-data", "x", "-idle-exit", "-1s"}},
		{"huge message size", []string{"-data", "x", "-max-message-size", "999999999999"}},
		{"credentials without smarthost", []string{"-data", "x", "-smarthost-credentials", "f"}},
		{"bad smarthost tls", []string{"-data", "x", "-smarthost", "h:25", "-smarthost-tls", "maybe"}},
		{"extra argument", []string{"-data", "x", "extra"}},
		{"no IMAP connections", []string{"-data", "x", "-imap-max-conns", "0"}},
		{"IMAP idle timeout under 30m", []string{"-data", "x", "-imap-idle-timeout", "5m"}},
		{"IMAP command timeout under 1s", []string{"-data", "x", "-imap-command-timeout", "10ms"}},
		{"IMAP command rate 0", []string{"-data", "x", "-imap-max-commands-per-second", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := exec.Command(binary, tt.args...).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit = %v, want status 2", err)
			}
		})
	}
	t.Run("nothing to serve", func(t *testing.T) {
		err := exec.Command(binary, "-data", t.TempDir()).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit = %v, want status 1", err)
		}
	})
}

func TestReadAliasesAndCredentials(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "aliases")
	os.WriteFile(good, []byte("# aliases\npostmaster: alice\n\nbob@home.arpa : alice\n"), 0o600)
	a, err := readAliases(good)
	if err != nil || a["postmaster"] != "alice" || a["bob@home.arpa"] != "alice" || len(a) != 2 {
		t.Fatalf("readAliases = %v, %v", a, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("no colon here\n"), 0o600)
	if _, err := readAliases(bad); err == nil {
		t.Fatal("readAliases accepted a line without a colon")
	}
	cred := filepath.Join(dir, "cred")
	os.WriteFile(cred, []byte("relayuser:s3cr:et\n"), 0o600)
	u, pw, err := readCredentials(cred)
	if err != nil || u != "relayuser" || pw != "s3cr:et" {
		t.Fatalf("readCredentials = %q %q %v", u, pw, err)
	}
	os.WriteFile(cred, []byte("nopassword\n"), 0o600)
	if _, _, err := readCredentials(cred); err == nil {
		t.Fatal("readCredentials accepted a line without a colon")
	}
}

// TestIMAPMaxConnsFlag starts the appliance with -imap-max-conns 2: two clients are
// served, a third gets BYE at once, and once one leaves a new one is served again.
func TestIMAPMaxConnsFlag(t *testing.T) {
	data := dataWithUser(t)
	imapAddr := freeAddr(t)
	startProc(t, []string{"-data", data, "-imap", imapAddr, "-imap-max-conns", "2"}, nil)
	waitConn(t, imapAddr)
	greeting := func() string {
		t.Helper()
		c, err := net.DialTimeout("tcp", imapAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("greeting: %v", err)
		}
		return line
	}
	c1 := login(t, imapAddr)
	if g := greeting(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("second connection: %q", g)
	}
	if g := greeting(); !strings.HasPrefix(g, "* BYE") {
		t.Fatalf("third connection: %q, want BYE", g)
	}
	c1.Logout().Wait()
	c1.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := greeting()
		if strings.HasPrefix(g, "* OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a client left: %q", g)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
