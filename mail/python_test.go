package mail

import (
	"bufio"
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

// debianPython is Debian's Python (the one on PATH may be another).
const debianPython = "/usr/bin/python3"

func TestPythonImaplib(t *testing.T) {
	testtool.File(t, debianPython, "python3")
	f := newFixture(t, fixtureOpts{})
	host, port, _ := net.SplitHostPort(f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, "testdata/imaplib_client.py", host, port, "alice", alicePass)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	var lines []string
	for {
		l, err := out.ReadString('\n')
		lines = append(lines, strings.TrimSpace(l))
		if err != nil {
			break
		}
		if strings.TrimSpace(l) == "IDLING" {
			if _, err := f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage("during idle", "a@example.org", "alice@example.org", "x")), nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			io.WriteString(stdin, "go\n")
		}
	}
	err = cmd.Wait()
	if err != nil || lines[len(lines)-2] != "PASS" {
		t.Fatalf("imaplib: %v\nstdout: %q\nstderr: %s", err, lines, stderr.String())
	}
}
