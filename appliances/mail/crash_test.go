package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/hearth-home/hearth/internal/testtool"
)

// TestCrashKeepsAcknowledgedAppends kills the appliance with SIGKILL while 8 clients
// APPEND; after a restart every APPEND that got its tagged OK is there, byte for byte.
func TestCrashKeepsAcknowledgedAppends(t *testing.T) {
	git := testtool.Path(t, "git", "git")
	data := dataWithUser(t)
	addr := freeAddr(t)
	p := startProc(t, []string{"-data", data, "-imap", addr}, nil)
	waitConn(t, addr)

	type acked struct {
		uid      imap.UID
		validity uint32
		body     []byte
	}
	var (
		mu    sync.Mutex
		done  []acked
		total atomic.Int64
		wg    sync.WaitGroup
	)
	killAt := int64(120)
	for w := range 8 {
		c := login(t, addr)
		wg.Go(func() {
			for i := 0; ; i++ {
				body := []byte(fmt.Sprintf("From: w%d@example.org\r\nSubject: crash %d-%d\r\n\r\n%s\r\n", w, w, i, bytes.Repeat([]byte("x"), 200+i)))
				cmd := c.Append("INBOX", int64(len(body)), nil)
				if _, err := cmd.Write(body); err != nil {
					return
				}
				if err := cmd.Close(); err != nil {
					return
				}
				res, err := cmd.Wait()
				if err != nil {
					return // the appliance died: this one was never acknowledged
				}
				if res.UID == 0 {
					t.Errorf("APPEND without APPENDUID")
					return
				}
				mu.Lock()
				done = append(done, acked{res.UID, res.UIDValidity, body})
				mu.Unlock()
				if total.Add(1) == killAt {
					p.cmd.Process.Kill()
				}
			}
		})
	}
	wg.Wait()
	<-p.done
	if int64(len(done)) < killAt {
		t.Fatalf("only %d appends acknowledged before the kill", len(done))
	}

	p2 := startProc(t, []string{"-data", data, "-imap", addr}, nil)
	waitConn(t, addr)
	c := login(t, addr)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	got := fetchBodies(t, c, "INBOX")
	for _, a := range done {
		if a.validity != sel.UIDValidity {
			t.Fatalf("UIDVALIDITY changed from %d to %d", a.validity, sel.UIDValidity)
		}
		if !bytes.Equal(got[a.uid], a.body) {
			t.Fatalf("acknowledged APPEND UID %d lost or changed after the crash (%d of %d messages there)", a.uid, len(got), len(done))
		}
	}
	t.Logf("%d acknowledged appends survived SIGKILL; %d messages in INBOX", len(done), len(got))
	c.Logout().Wait()
	p2.cmd.Process.Kill()
	<-p2.done

	repo := filepath.Join(data, "repos", "alice", "mail.git")
	out, err := exec.Command(git, "-C", repo, "fsck", "--full").CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) || bytes.Contains(out, []byte("missing")) {
		t.Fatalf("git fsck: %v\n%s", err, out)
	}
}
