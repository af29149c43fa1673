package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// startInProcessIMAP serves a mail backend on a temporary data directory with the given
// users (password benchIMAPPassword) and returns its address.
func startInProcessIMAP(t *testing.T, users []string) string {
	t.Helper()
	data := t.TempDir()
	if err := addMailUsers(context.Background(), data, users); err != nil {
		t.Fatal(err)
	}
	addr, _ := serveIMAP(t, data)
	return addr
}

// serveIMAP serves IMAP for the data directory data in this process; stop ends it and
// closes the repositories (it also runs at cleanup).
func serveIMAP(t *testing.T, data string) (addr string, stop func()) {
	t.Helper()
	ctx := context.Background()
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := mail.NewBackend(repos, mail.Options{Accounts: accounts})
	if err != nil {
		t.Fatal(err)
	}
	srv := mail.NewServer(b, mail.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			// Not srv.Shutdown: under -race it reports a race between go-imap's
			// Server.Serve and Server.Close inside package mail. Closing the listener
			// stops new sessions; the tests have closed their clients.
			ln.Close()
			b.Close()
			repos.Close()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func TestIMAPLoadAgainstHearth(t *testing.T) {
	const clients = 4
	users := []string{"user1", "user2", "user3", "user4"}
	addr := startInProcessIMAP(t, users)
	ctx := context.Background()
	if err := seedIMAP(ctx, addr, users, benchIMAPPassword); err != nil {
		t.Fatal(err)
	}
	l := runIMAPLoad(ctx, addr, benchUser, benchIMAPPassword, clients, time.Second)
	if l.TotalErrors() != 0 {
		t.Fatalf("%d errors, first: %v", l.TotalErrors(), l.FirstErr)
	}
	for _, op := range imapOps {
		if l.Ops[op] == 0 {
			t.Errorf("no %s completed in 1 s: %v", op, l.Ops)
		}
	}
	var out bytes.Buffer
	if err := writeIMAPTable(&out, []imapLoad{l}, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if got := strings.Count(out.String(), "\n"); got != 1+len(imapOps) {
		t.Errorf("table has %d lines, want %d:\n%s", got, 1+len(imapOps), out.String())
	}

	// Bad credentials are counted as a login error, and the round stops there.
	var c imapCounters
	if err := imapRound(ctx, addr, "user1", "wrong", 0, 0, &c); err == nil {
		t.Fatal("a round with a wrong password succeeded")
	}
	if c.errs[0].Load() != 1 || c.ops[0].Load() != 0 || c.ops[1].Load() != 0 || c.first == nil {
		t.Errorf("wrong password: login ops %d errors %d, select ops %d", c.ops[0].Load(), c.errs[0].Load(), c.ops[1].Load())
	}
}

func TestWriteIMAPTable(t *testing.T) {
	h := imapLoad{Clients: 10, Duration: 2 * time.Second, Ops: map[string]int64{"login": 200, "fetch": 100}, Errors: map[string]int64{"fetch": 3}}
	p := imapLoad{Clients: 10, Duration: time.Second, Ops: map[string]int64{"login": 50, "fetch": 0}, Errors: map[string]int64{}}
	var out bytes.Buffer
	if err := writeIMAPTable(&out, []imapLoad{h, {Clients: 50, Duration: time.Second, Ops: map[string]int64{}, Errors: map[string]int64{}}}, map[int]imapLoad{10: p}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1+2*len(imapOps) {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	tests := []struct{ name, line string }{
		{"login ratio", "10 login 100.0 50.0 2.00× 0 0"},
		{"no peer rate gives no ratio", "10 fetch 50.0 0.0 - 3 0"},
		{"no peer run", "50 login 0.0 - - 0 -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found := false
			for _, l := range lines {
				found = found || strings.Join(strings.Fields(l), " ") == tt.line
			}
			if !found {
				t.Errorf("no line %q in:\n%s", tt.line, out.String())
			}
		})
	}
}

func TestParseClientCounts(t *testing.T) {
	tests := []struct {
		name, in string
		want     []int
		err      bool
	}{
		{"default", "10,50", []int{10, 50}, false},
		{"spaces", " 1 , 2 ", []int{1, 2}, false},
		{"zero", "0", nil, true},
		{"too many clients", "100000", nil, true},
		{"not a number", "ten", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseClientCounts(tt.in)
			if (err != nil) != tt.err || (!tt.err && (len(got) != len(tt.want) || got[0] != tt.want[0])) {
				t.Fatalf("= %v %v, want %v (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestBenchIMAPUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"bench", "imap", "-clients", "0"}, nil, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2; stderr %s", code, errOut.String())
	}
}
