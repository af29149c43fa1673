package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// imapOps are the operations of the benchmark's mix, in the order one round runs them.
var imapOps = []string{"login", "select", "fetch", "append", "store", "expunge"}

// Limits of "hearth bench imap".
const (
	maxBenchClients   = 1000
	benchIMAPPassword = "testpass"
	benchIMAPUsers    = 20 // user1..user20, as the Dovecot peer has them
	benchSeedMessages = 30 // messages in each INBOX before the clock starts
	benchKeepMessages = 30 // a round expunges one message once the INBOX holds more
	benchOpTimeout    = 30 * time.Second
	benchIdleClients  = 100
)

func cmdBenchIMAP(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "bench imap", "[-clients 10,50] [-duration 10s] [-peers DIR] [-appliance PATH]")
	clientsFlag := fs.String("clients", "10,50", "comma-separated numbers of concurrent clients")
	dur := fs.Duration("duration", 10*time.Second, "how long each run lasts")
	peers := fs.String("peers", "/work/shared/peers", "directory with run-peer (Dovecot); empty: Hearth only")
	appliance := fs.String("appliance", "", "mail appliance binary (default: go build ./appliances/mail)")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	clients, err := parseClientCounts(*clientsFlag)
	if err != nil || *dur <= 0 {
		fmt.Fprintf(s.err, "hearth bench imap: -clients %q / -duration %v: %v\n", *clientsFlag, *dur, err)
		return 2
	}
	if err := benchIMAP(ctx, s, clients, *dur, *peers, *appliance); err != nil {
		fmt.Fprintln(s.err, "hearth bench imap:", err)
		return 1
	}
	return 0
}

// parseClientCounts parses "10,50".
func parseClientCounts(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxBenchClients {
			return nil, fmt.Errorf("want client counts from 1 to %d", maxBenchClients)
		}
		out = append(out, n)
		if len(out) > 16 {
			return nil, errors.New("at most 16 client counts")
		}
	}
	return out, nil
}

// imapLoad is the outcome of one timed run against one server.
type imapLoad struct {
	Clients  int
	Duration time.Duration
	Ops      map[string]int64
	Errors   map[string]int64
	FirstErr error
}

// Rate returns op's completed operations per second.
func (l imapLoad) Rate(op string) float64 {
	if l.Duration <= 0 {
		return 0
	}
	return float64(l.Ops[op]) / l.Duration.Seconds()
}

// TotalErrors sums the errors over every operation.
func (l imapLoad) TotalErrors() int64 {
	var n int64
	for _, v := range l.Errors {
		n += v
	}
	return n
}

// imapCounters are a run's shared counters.
type imapCounters struct {
	ops, errs [6]atomic.Int64
	mu        sync.Mutex
	first     error
}

func (c *imapCounters) fail(op int, err error) {
	c.errs[op].Add(1)
	c.mu.Lock()
	if c.first == nil {
		c.first = fmt.Errorf("%s: %w", imapOps[op], err)
	}
	c.mu.Unlock()
}

// benchMessage is the message each append adds: a plain text mail of about 2 KB.
func benchMessage(client, round int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Bench Client %d <client%d@example.org>\r\n", client, client)
	fmt.Fprintf(&b, "To: Someone <someone@example.org>\r\n")
	fmt.Fprintf(&b, "Subject: benchmark message %d of client %d\r\n", round, client)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <bench.%d.%d.%d@example.org>\r\n", client, round, time.Now().UnixNano())
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	for i := range 30 {
		fmt.Fprintf(&b, "Line %02d of a message that fills a couple of kilobytes, like a short mail.\r\n", i)
	}
	return []byte(b.String())
}

// runIMAPLoad runs clients concurrent clients against addr for dur, each repeating the
// mix (login, select, fetch of the newest ten messages' flags, envelope and body, append,
// store \Seen on the appended message, and, above benchKeepMessages, \Deleted on the
// oldest plus expunge, then logout) as user(i) with password pass.
func runIMAPLoad(ctx context.Context, addr string, user func(i int) string, pass string, clients int, dur time.Duration) imapLoad {
	var c imapCounters
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for round := 0; ctx.Err() == nil; round++ {
				if err := imapRound(ctx, addr, user(i), pass, i, round, &c); err != nil && ctx.Err() == nil {
					select { // a refused or broken connection: do not spin
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
	// Only operations that ended before the deadline count, so the run lasted dur.
	l := imapLoad{Clients: clients, Duration: min(dur, time.Since(start)), Ops: map[string]int64{}, Errors: map[string]int64{}, FirstErr: c.first}
	for i, op := range imapOps {
		l.Ops[op] = c.ops[i].Load()
		l.Errors[op] = c.errs[i].Load()
	}
	return l
}

// imapRound runs the mix once on a fresh connection. Operations that fail because the
// run is over are not counted at all.
func imapRound(ctx context.Context, addr, user, pass string, client, round int, c *imapCounters) error {
	d := net.Dialer{Timeout: benchOpTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if !runOver(ctx) {
			c.fail(0, err)
		}
		return err
	}
	// The connection is not closed when the run ends: closing it under a command races
	// inside imapclient. A command in flight then finishes, uncounted, within the deadline.
	conn.SetDeadline(time.Now().Add(benchOpTimeout))
	cl := imapclient.New(conn, nil)
	defer cl.Close()
	step := func(op int, fn func() error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err := fn()
		if runOver(ctx) {
			return context.DeadlineExceeded
		}
		if err != nil {
			c.fail(op, err)
			return err
		}
		c.ops[op].Add(1)
		return nil
	}
	var n uint32
	err = step(0, func() error { return cl.Login(user, pass).Wait() })
	if err == nil {
		err = step(1, func() error {
			data, err := cl.Select("INBOX", nil).Wait()
			if err == nil {
				n = data.NumMessages
			}
			return err
		})
	}
	if err == nil {
		err = step(2, func() error {
			if n == 0 {
				return nil
			}
			first := uint32(1)
			if n > 10 {
				first = n - 9
			}
			var set imap.SeqSet
			set.AddRange(first, n)
			_, err := cl.Fetch(set, &imap.FetchOptions{
				Flags: true, Envelope: true, UID: true,
				BodySection: []*imap.FetchItemBodySection{{Peek: true}},
			}).Collect()
			return err
		})
	}
	var uid imap.UID
	if err == nil {
		err = step(3, func() error {
			msg := benchMessage(client, round)
			cmd := cl.Append("INBOX", int64(len(msg)), nil)
			if _, err := cmd.Write(msg); err != nil {
				cmd.Close()
				return err
			}
			if err := cmd.Close(); err != nil {
				return err
			}
			data, err := cmd.Wait()
			if err == nil {
				uid = data.UID
			}
			return err
		})
	}
	if err == nil {
		err = step(4, func() error {
			set := imap.NumSet(imap.SeqSetNum(1))
			if uid != 0 {
				set = imap.UIDSetNum(uid)
			}
			return cl.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
		})
	}
	if err == nil && n+1 > benchKeepMessages {
		err = step(5, func() error {
			if err := cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			return cl.Expunge().Close()
		})
	}
	if err == nil && ctx.Err() == nil {
		cl.Logout().Wait()
	}
	return err
}

// runOver reports whether the run's context has ended or reached its deadline (a dial
// fails at the deadline a moment before the context says so).
func runOver(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// seedIMAP logs every user in once (so later logins hit the server's credential cache,
// as a mail client's do) and fills their INBOX up to benchSeedMessages messages.
func seedIMAP(ctx context.Context, addr string, users []string, pass string) error {
	for _, u := range users {
		cl, err := dialIMAP(ctx, addr)
		if err != nil {
			return err
		}
		err = cl.Login(u, pass).Wait()
		var data *imap.SelectData
		if err == nil {
			data, err = cl.Select("INBOX", nil).Wait()
		}
		for i := 0; err == nil && data.NumMessages+uint32(i) < benchSeedMessages; i++ {
			msg := benchMessage(-1, i)
			cmd := cl.Append("INBOX", int64(len(msg)), nil)
			if _, err = cmd.Write(msg); err == nil {
				err = cmd.Close()
			}
			if err == nil {
				_, err = cmd.Wait()
			}
		}
		cl.Close()
		if err != nil {
			return fmt.Errorf("seed %s: %w", u, err)
		}
	}
	return nil
}

func dialIMAP(ctx context.Context, addr string) (*imapclient.Client, error) {
	d := net.Dialer{Timeout: benchOpTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return imapclient.New(conn, nil), nil
}

// benchUsers are the users the load logs in as.
func benchUsers() []string {
	u := make([]string, benchIMAPUsers)
	for i := range u {
		u[i] = "user" + strconv.Itoa(i+1)
	}
	return u
}

func benchUser(i int) string { return "user" + strconv.Itoa(i%benchIMAPUsers+1) }

// writeIMAPTable prints hearth's and the peer's runs side by side, one row per client
// count and operation. peer entries may be missing (no Dovecot).
func writeIMAPTable(w io.Writer, hearth []imapLoad, peer map[int]imapLoad) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "clients\toperation\tHearth ops/s\tDovecot ops/s\tratio\tHearth errors\tDovecot errors\t\n")
	for _, h := range hearth {
		p, havePeer := peer[h.Clients]
		for _, op := range imapOps {
			pr, ratio, perr := "-", "-", "-"
			if havePeer {
				pr = fmt.Sprintf("%.1f", p.Rate(op))
				perr = strconv.FormatInt(p.Errors[op], 10)
				if p.Rate(op) > 0 {
					ratio = fmt.Sprintf("%.2f×", h.Rate(op)/p.Rate(op))
				}
			}
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%s\t%s\t%d\t%s\t\n", h.Clients, op, h.Rate(op), pr, ratio, h.Errors[op], perr)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, h := range hearth {
		if h.FirstErr != nil {
			fmt.Fprintf(w, "Hearth, %d clients, first error: %v\n", h.Clients, h.FirstErr)
		}
		if p, ok := peer[h.Clients]; ok && p.FirstErr != nil {
			fmt.Fprintf(w, "Dovecot, %d clients, first error: %v\n", h.Clients, p.FirstErr)
		}
	}
	return nil
}

// benchIMAP runs the load against a spawned mail appliance and against Dovecot, prints
// the table, then measures the appliance's memory idle and with idle IMAP clients.
func benchIMAP(ctx context.Context, s stdio, clients []int, dur time.Duration, peers, appliance string) error {
	tmp, err := os.MkdirTemp("", "hearth-bench-imap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if appliance == "" {
		appliance = filepath.Join(tmp, "mail-appliance")
		build := exec.CommandContext(ctx, "go", "build", "-o", appliance, "./appliances/mail")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./appliances/mail (run from the source tree, or pass -appliance): %v: %s", err, out)
		}
	}
	var hearth []imapLoad
	peer := map[int]imapLoad{}
	for _, n := range clients {
		// A fresh appliance and Dovecot for every client count, so both start alike.
		app, err := startMailAppliance(ctx, appliance, filepath.Join(tmp, "hearth-"+strconv.Itoa(n)), benchUsers())
		if err != nil {
			return err
		}
		err = seedIMAP(ctx, app.addr, benchUsers(), benchIMAPPassword)
		if err == nil {
			hearth = append(hearth, runIMAPLoad(ctx, app.addr, benchUser, benchIMAPPassword, n, dur))
		}
		app.stop()
		if err != nil {
			return fmt.Errorf("hearth: %w", err)
		}
		if peers == "" {
			continue
		}
		l, err := dovecotLoad(ctx, peers, n, dur)
		if err != nil {
			fmt.Fprintf(s.err, "dovecot (%d clients): %v\n", n, err)
			continue
		}
		peer[n] = l
	}
	if err := writeIMAPTable(s.out, hearth, peer); err != nil {
		return err
	}
	idle, busy, err := mailApplianceRSS(ctx, appliance, filepath.Join(tmp, "rss"), benchIdleClients)
	if err != nil {
		fmt.Fprintf(s.out, "appliance memory: error: %v\n", err)
		return nil
	}
	fmt.Fprintf(s.out, "mail appliance RSS: idle %.1f MiB, with %d IDLE clients %.1f MiB\n",
		float64(idle)/(1<<20), benchIdleClients, float64(busy)/(1<<20))
	return nil
}

// dovecotLoad starts Dovecot with run-peer on a free port, runs the load and stops it.
// Its directory is world-readable: Dovecot's unprivileged processes must reach it.
func dovecotLoad(ctx context.Context, peers string, clients int, dur time.Duration) (imapLoad, error) {
	dir, err := os.MkdirTemp("", "hearth-bench-dovecot-")
	if err != nil {
		return imapLoad{}, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return imapLoad{}, err
	}
	port, err := freePort()
	if err != nil {
		return imapLoad{}, err
	}
	pid, err := startPeer(ctx, peers, "dovecot", dir, port)
	if err != nil {
		return imapLoad{}, err
	}
	defer func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for range 50 { // dovecot's master stops its children first
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitTCP(ctx, addr); err != nil {
		return imapLoad{}, err
	}
	if err := waitLogin(ctx, addr, "user1", benchIMAPPassword); err != nil {
		return imapLoad{}, err
	}
	if err := seedIMAP(ctx, addr, benchUsers(), benchIMAPPassword); err != nil {
		return imapLoad{}, err
	}
	return runIMAPLoad(ctx, addr, benchUser, benchIMAPPassword, clients, dur), nil
}

// waitLogin waits up to 10 s for a login to succeed (Dovecot's auth process starts after
// its listener).
func waitLogin(ctx context.Context, addr, user, pass string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, err := dialIMAP(ctx, addr)
		if err == nil {
			err = cl.Login(user, pass).Wait()
			cl.Close()
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no login at %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits up to 10 s for addr to accept connections.
func waitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s never accepted a connection: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mailApp is a spawned mail appliance.
type mailApp struct {
	addr string
	cmd  *exec.Cmd
}

func (a *mailApp) stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-done
	}
}

// addMailUsers makes the users (password benchIMAPPassword) in a data directory.
func addMailUsers(ctx context.Context, data string, users []string) error {
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		return err
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: slog.New(slog.DiscardHandler)})
	for _, u := range users {
		if err != nil {
			break
		}
		err = accounts.Add(ctx, u, benchIMAPPassword)
	}
	return errors.Join(err, repos.Close())
}

// startMailAppliance makes a data directory with users and starts the appliance on an
// inherited IMAP socket, as jitsu would.
func startMailAppliance(ctx context.Context, binary, data string, users []string) (*mailApp, error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	if err := addMailUsers(ctx, data, users); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(binary, "-data", data)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=imap")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &mailApp{addr: ln.Addr().String(), cmd: cmd}, nil
}

// mailApplianceRSS starts a fresh appliance, lets a client log in and out, reads its
// resident memory once idle, then opens idleClients connections that log in, select
// INBOX and IDLE, and reads it again.
func mailApplianceRSS(ctx context.Context, binary, data string, idleClients int) (idle, busy int64, err error) {
	app, err := startMailAppliance(ctx, binary, data, []string{"user1"})
	if err != nil {
		return 0, 0, err
	}
	defer app.stop()
	if err := seedIMAP(ctx, app.addr, []string{"user1"}, benchIMAPPassword); err != nil {
		return 0, 0, err
	}
	time.Sleep(3 * time.Second) // idle: the appliance returns freed memory
	if idle, err = rssOf(app.cmd.Process.Pid); err != nil {
		return 0, 0, err
	}
	var idles []*imapclient.IdleCommand
	var conns []*imapclient.Client
	defer func() {
		for i, c := range idles {
			c.Close()
			conns[i].Close()
		}
	}()
	for range idleClients {
		cl, err := dialIMAP(ctx, app.addr)
		if err != nil {
			return 0, 0, err
		}
		err = cl.Login("user1", benchIMAPPassword).Wait()
		if err == nil {
			_, err = cl.Select("INBOX", nil).Wait()
		}
		var ic *imapclient.IdleCommand
		if err == nil {
			ic, err = cl.Idle()
		}
		if err != nil {
			cl.Close()
			return 0, 0, fmt.Errorf("idle client: %w", err)
		}
		idles = append(idles, ic)
		conns = append(conns, cl)
	}
	time.Sleep(3 * time.Second)
	busy, err = rssOf(app.cmd.Process.Pid)
	return idle, busy, err
}
