package delivery

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/store/memstore"
)

func swaks(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"--timeout", "30"}, args...)...).CombinedOutput()
	return string(out), err
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestSwaksSMTPAndLMTP(t *testing.T) {
	bin := testtool.Path(t, "swaks", "swaks")
	e := newEnv(t, newAccounts(t), Options{Aliases: map[string]string{"postmaster": "bob"}})

	h, p := hostPort(t, e.smtp)
	out, err := swaks(t, bin, "--server", h, "--port", p, "--from", "sender@example.org", "--to", "alice@home.arpa",
		"--header", "Subject: swaks smtp", "--body", "over SMTP")
	if err != nil {
		t.Fatalf("swaks SMTP: %v\n%s", err, out)
	}
	out, err = swaks(t, bin, "--server", h, "--port", p, "--from", "sender@example.org", "--to", "nobody@home.arpa")
	if err == nil || !strings.Contains(out, "<** 550 5.1.1") {
		t.Fatalf("swaks SMTP to an unknown user: %v\n%s", err, out)
	}

	h, p = hostPort(t, e.lmtp)
	out, err = swaks(t, bin, "--protocol", "LMTP", "--server", h, "--port", p, "--from", "sender@example.org",
		"--to", "alice@home.arpa,postmaster@home.arpa", "--header", "Subject: swaks lmtp", "--body", "over LMTP")
	if err != nil {
		t.Fatalf("swaks LMTP: %v\n%s", err, out)
	}
	if n := strings.Count(out, "<-  250 2.0.0 <"); n != 2 {
		t.Errorf("LMTP gave %d per-recipient replies, want 2:\n%s", n, out)
	}

	a, b := e.mb.messages(t, "alice", Inbox), e.mb.messages(t, "bob", Inbox)
	if len(a) != 2 || len(b) != 1 {
		t.Fatalf("alice has %d, bob %d messages; want 2 and 1", len(a), len(b))
	}
	if !strings.Contains(a[0], "Subject: swaks smtp") || !strings.Contains(a[0], "with ESMTP id") ||
		!strings.Contains(a[1], "Subject: swaks lmtp") || !strings.Contains(a[1], "with LMTP id") {
		t.Fatalf("alice got:\n%s\n---\n%s", a[0], a[1])
	}
}

func TestSwaksSubmissionRelay(t *testing.T) {
	bin := testtool.Path(t, "swaks", "swaks")
	host := newSmarthost(t, nil, "", "")
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: outbox})
	// Connections look remote, so AUTH needs TLS as it would for a client on the network.
	h, p := hostPort(t, serveSubmission(t, e, func(l net.Listener) net.Listener { return remoteListener{l} }))

	out, err := swaks(t, bin, "--server", h, "--port", p, "-a", "PLAIN", "--auth-user", "alice", "--auth-password", alicePass,
		"--from", "alice@home.arpa", "--to", "friend@example.org")
	if err == nil {
		t.Fatalf("swaks AUTH without TLS from a remote address succeeded:\n%s", out)
	}

	out, err = swaks(t, bin, "--server", h, "--port", p, "-tls", "-a", "PLAIN", "--auth-user", "alice", "--auth-password", alicePass,
		"--from", "alice@home.arpa", "--to", "friend@example.org", "--header", "Subject: swaks submission", "--body", "relayed")
	if err != nil {
		t.Fatalf("swaks submission: %v\n%s", err, out)
	}
	got := host.wait(t)
	if got.from != "alice@home.arpa" || len(got.to) != 1 || got.to[0] != "friend@example.org" ||
		!strings.Contains(got.data, "Subject: swaks submission") || !strings.Contains(got.data, "with ESMTPSA id") {
		t.Fatalf("smarthost got %+v", got)
	}
	if s := e.mb.messages(t, "alice", Sent); len(s) != 1 || !strings.Contains(s[0], "Subject: swaks submission") {
		t.Fatalf("alice's Sent: %q", s)
	}
}
