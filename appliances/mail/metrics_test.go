package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestMetrics drives the appliance with go-imap's client and LMTP, then reads /metrics
// from -metrics: connections, IMAP commands by status, logins, LMTP replies, commits.
func TestMetrics(t *testing.T) {
	data := dataWithUser(t)
	imapAddr, lmtpAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	startProc(t, []string{"-data", data, "-imap", imapAddr, "-lmtp", lmtpAddr, "-metrics", metricsAddr, "-log-format", "json"}, nil)
	waitConn(t, imapAddr)
	waitConn(t, lmtpAddr)
	waitConn(t, metricsAddr)

	lmtpDeliver(t, lmtpAddr, "alice@home.arpa", testMessage("counted"))
	c := login(t, imapAddr)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// A literal in the answer must not be mistaken for responses: the message body holds a
	// line that looks like a tagged NO.
	lmtpDeliver(t, lmtpAddr, "alice@home.arpa", []byte("Subject: tricky\r\n\r\nA9 NO [AUTHENTICATIONFAILED] not really\r\n"))
	if _, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("No such mailbox", nil).Wait(); err == nil {
		t.Fatal("selected a missing mailbox")
	}
	c2, err := imapclient.DialInsecure(imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Login("alice", "wrong password").Wait(); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	c2.Close()
	c.Logout().Wait()

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`hearth_connections_total{appliance="mail",proto="imap"} 3`, // waitConn, the session, the wrong password
		`hearth_connections_total{appliance="mail",proto="lmtp"} 3`, // waitConn and two deliveries
		`hearth_mail_logins_total{appliance="mail",proto="imap",result="ok"} 1`,
		`hearth_mail_logins_total{appliance="mail",proto="imap",result="failed"} 1`,
		`hearth_imap_commands_total{appliance="mail",status="no"} 2`, // the bad SELECT and the bad LOGIN
		`hearth_smtp_replies_total{appliance="mail",class="5xx",proto="lmtp"}`,
		`hearth_store_commits_total{appliance="mail"}`,
	} {
		has := strings.Contains(text, want+"\n") || strings.Contains(text, want+" ")
		if strings.HasSuffix(want, "5xx\",proto=\"lmtp\"}") {
			has = !has // no LMTP error happened
		}
		if !has {
			t.Errorf("metrics: want %s", want)
		}
	}
	if !strings.Contains(text, `hearth_imap_commands_total{appliance="mail",status="ok"}`) {
		t.Error("no IMAP command counted ok")
	}
}

func TestLogFormatFlag(t *testing.T) {
	out, err := exec.Command(binary, "-data", t.TempDir(), "-imap", "127.0.0.1:0", "-log-format", "yaml").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "log format") {
		t.Fatalf("bad -log-format: %v %s", err, out)
	}
	out, err = exec.Command(binary, "-data", "/dev/null/x", "-imap", "127.0.0.1:0", "-log-format", "json").CombinedOutput()
	if err == nil {
		t.Fatal("a bad data directory was accepted")
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || rec["msg"] != "mail stopped" {
		t.Fatalf("not a JSON log line (%v): %s", err, out)
	}
	out, err = exec.Command(binary, "-data", t.TempDir(), "-imap", "127.0.0.1:0", "-metrics", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback") {
		t.Fatalf("a public metrics address was accepted: %s", out)
	}
}

// TestMetricsSocketActivated: a socket named "metrics" among the passed ones serves /metrics.
func TestMetricsSocketActivated(t *testing.T) {
	data := dataWithUser(t)
	imapAddr, imapFile := listenerFile(t)
	metricsAddr, metricsFile := listenerFile(t)
	startProc(t, []string{"-data", data}, []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=imap:metrics"}, imapFile, metricsFile)
	c := login(t, imapAddr)
	c.Logout().Wait()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `hearth_mail_logins_total{appliance="mail",proto="imap",result="ok"} 1`; !strings.Contains(string(b), want) {
		t.Fatalf("metrics lack %s:\n%s", want, b)
	}
}
