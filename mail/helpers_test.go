package mail

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
)

const (
	alicePass = "alice-secret-1"
	bobPass   = "bob-secret-12"
)

var quietLog = slog.New(slog.DiscardHandler)

// accountsCache shares one set of accounts between tests (argon2id is slow).
var accountsOnce struct {
	sync.Once
	a *signpost.Accounts
}

func testAccounts(t testing.TB) *signpost.Accounts {
	accountsOnce.Do(func() {
		a := signpost.NewAccounts(memstore.New(nil), signpost.AccountsOptions{Logger: quietLog,
			Limits: signpost.LimitOptions{FreeFailures: 1000, LockoutAfter: 2000}})
		ctx := context.Background()
		for u, p := range map[string]string{"alice": alicePass, "bob": bobPass} {
			if err := a.Add(ctx, u, p); err != nil {
				panic(err)
			}
		}
		accountsOnce.a = a
	})
	return accountsOnce.a
}

type fixture struct {
	t     testing.TB
	repos RepoOpener
	b     *Backend
	srv   *Server
	addr  string
}

type fixtureOpts struct {
	repos       RepoOpener
	appendLimit int64
	listener    func(net.Listener) net.Listener
	server      ServerOptions
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	if o.repos == nil {
		o.repos = memstore.NewRepos(nil)
	}
	b, err := NewBackend(o.repos, Options{Accounts: testAccounts(t), Logger: quietLog, AppendLimit: o.appendLimit})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(b, o.server)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := ln
	if o.listener != nil {
		served = o.listener(ln)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(served) }()
	f := &fixture{t: t, repos: o.repos, b: b, srv: srv, addr: ln.Addr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		b.Close()
	})
	return f
}

func gitRepos(t testing.TB, dir string) *store.Repos {
	t.Helper()
	r, err := store.OpenRepos(filepath.Join(dir, "repos"), &store.Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (f *fixture) dial(opts *imapclient.Options) *imapclient.Client {
	f.t.Helper()
	c, err := imapclient.DialInsecure(f.addr, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

func (f *fixture) login(user, pass string, opts *imapclient.Options) *imapclient.Client {
	f.t.Helper()
	c := f.dial(opts)
	if err := c.Login(user, pass).Wait(); err != nil {
		f.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func testMessage(subject, from, to, body string) string {
	return fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-Id: <%s@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		from, to, subject, strings.ReplaceAll(subject, " ", "."), body)
}

func appendMsg(t testing.TB, c *imapclient.Client, mbox, msg string, flags []imap.Flag) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mbox, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))})
	if _, err := cmd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return data
}

func imapCode(err error) imap.ResponseCode {
	if e, ok := err.(*imap.Error); ok {
		return e.Code
	}
	return ""
}

// rawClient speaks IMAP line by line, for what imapclient cannot send.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func (f *fixture) raw() *rawClient {
	f.t.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	rc := &rawClient{t: f.t, conn: conn, r: bufio.NewReader(conn)}
	rc.line() // greeting
	return rc
}

func (rc *rawClient) line() string {
	rc.t.Helper()
	rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns the untagged lines and the tagged status line.
func (rc *rawClient) cmd(format string, args ...any) ([]string, string) {
	rc.t.Helper()
	rc.n++
	tag := fmt.Sprintf("R%d", rc.n)
	fmt.Fprintf(rc.conn, tag+" "+format+"\r\n", args...)
	var untagged []string
	for {
		l := rc.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}
