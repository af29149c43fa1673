package mail

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emersion/go-imap/v2"
)

// readUntilClosed reads lines until the server closes the connection and returns them.
// It fails the test if the connection is still open after 10 s.
func readUntilClosed(t *testing.T, conn net.Conn, r *bufio.Reader) []string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after 10 s; read %q", lines)
			}
			return lines
		}
	}
}

func hasPrefixLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestStalledClientsAreCutOff(t *testing.T) {
	f := newFixture(t, fixtureOpts{server: ServerOptions{
		CommandTimeout: 300 * time.Millisecond,
		LiteralTimeout: 300 * time.Millisecond,
		IdleTimeout:    1500 * time.Millisecond,
	}})
	ctx := context.Background()
	if _, err := f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage("kept", "a@example.org", "alice@example.org", "x")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		login bool
		send  string // sent after login; the client then stalls
		cont  string // sent after a continuation request, if any
		bye   string
	}{
		{"half a line before login", false, "A1 LOGIN ali", "", "* BYE"},
		{"silent before login", false, "", "", "* BYE"},
		{"half a line", true, "A2 SELECT INB", "", "* BYE"},
		{"half a literal", true, "A3 APPEND INBOX {100}\r\n", strings.Repeat("x", 50), "* BYE"},
		{"half a non-synchronizing literal", true, "A4 APPEND INBOX {100+}\r\n" + strings.Repeat("y", 60), "", "* BYE"},
		{"silent after login", true, "", "", "* BYE Autologout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := f.raw()
			if tc.login {
				if _, st := rc.cmd(`LOGIN alice "%s"`, alicePass); !strings.HasPrefix(st, "OK") {
					t.Fatalf("login: %s", st)
				}
			}
			if tc.send != "" {
				fmt.Fprint(rc.conn, tc.send)
			}
			if tc.cont != "" {
				if l := rc.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("want continuation, got %q", l)
				}
				fmt.Fprint(rc.conn, tc.cont)
			}
			lines := readUntilClosed(t, rc.conn, rc.r)
			if !hasPrefixLine(lines, tc.bye) {
				t.Errorf("lines before close %q, want %q", lines, tc.bye)
			}
		})
	}

	// IDLE may last longer than a command; it ends at IdleTimeout.
	t.Run("idle", func(t *testing.T) {
		rc := f.raw()
		rc.cmd(`LOGIN alice "%s"`, alicePass)
		rc.cmd("SELECT INBOX")
		fmt.Fprint(rc.conn, "I1 IDLE\r\n")
		if l := rc.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
		time.Sleep(700 * time.Millisecond) // over CommandTimeout, under IdleTimeout
		fmt.Fprint(rc.conn, "DONE\r\n")
		if l := rc.line(); !strings.HasPrefix(l, "I1 OK") {
			t.Fatalf("after DONE: %q", l)
		}
		fmt.Fprint(rc.conn, "I2 IDLE\r\n")
		rc.line()
		lines := readUntilClosed(t, rc.conn, rc.r)
		if !hasPrefixLine(lines, "* BYE Autologout") {
			t.Errorf("idle past IdleTimeout: %q", lines)
		}
	})

	// Other clients work, and stored mail is untouched by the cut-off appends.
	good := f.login("alice", alicePass, nil)
	st, err := good.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 1 {
		t.Fatalf("INBOX after stalled appends: %+v, %v", st, err)
	}
	appendMsg(t, good, "INBOX", testMessage("after", "a@example.org", "alice@example.org", "y"), nil)
}

func TestFloodingClientIsCutOff(t *testing.T) {
	f := newFixture(t, fixtureOpts{server: ServerOptions{MaxCommandsPerSecond: 50, CommandBurst: 20}})
	ctx := context.Background()
	if _, err := f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage("kept", "a@example.org", "alice@example.org", "x")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	good := f.login("alice", alicePass, nil)

	rc := f.raw()
	if _, st := rc.cmd(`LOGIN alice "%s"`, alicePass); !strings.HasPrefix(st, "OK") {
		t.Fatalf("login: %s", st)
	}
	const n = 2000
	go func() {
		w := bufio.NewWriter(rc.conn)
		for i := range n {
			if _, err := fmt.Fprintf(w, "F%d NOOP\r\n", i); err != nil {
				return
			}
		}
		w.Flush()
	}()
	lines := readUntilClosed(t, rc.conn, rc.r)
	oks := 0
	for _, l := range lines {
		if strings.Contains(l, " OK ") {
			oks++
		}
	}
	if !hasPrefixLine(lines, "* BYE Too many commands") {
		t.Errorf("no BYE; last lines %q", lines[max(0, len(lines)-3):])
	}
	if oks >= n || oks < 20 {
		t.Errorf("%d commands answered of %d", oks, n)
	}

	// Other clients and stored mail are unaffected.
	if err := good.Noop().Wait(); err != nil {
		t.Errorf("other client: %v", err)
	}
	st, err := good.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 1 {
		t.Errorf("INBOX: %+v, %v", st, err)
	}
}

func TestGuardTokenBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		g := newGuardConn(a, guardLimits{command: time.Second, literal: time.Second, idle: time.Second, rate: 10, burst: 5})
		start := time.Now()
		for i := range 5 {
			if !g.admitCommand() {
				t.Fatalf("command %d of the burst refused", i)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("burst held back for %v", d)
		}
		// Over the rate: each command waits for its token (100 ms at 10/s).
		for i := range 5 {
			before := time.Now()
			if !g.admitCommand() {
				t.Fatalf("held-back command %d refused", i)
			}
			if d := time.Since(before); d != 100*time.Millisecond {
				t.Fatalf("held-back command %d waited %v, want 100ms", i, d)
			}
		}
		// Still over the rate after a burst of held-back commands: refused.
		if g.admitCommand() {
			t.Fatal("flood not refused")
		}
		// A pause earns tokens back.
		time.Sleep(time.Second)
		for i := range 5 {
			if !g.admitCommand() {
				t.Fatalf("after a pause, command %d refused", i)
			}
		}
	})
}

func TestGuardDeadlineMapping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		lim := guardLimits{command: time.Second, literal: 2 * time.Second, idle: 3 * time.Second, rate: -1, burst: 1}
		g := newGuardConn(a, lim)
		byes := 0
		g.setBye(func(string) { byes++ })
		cases := []struct {
			name string
			lib  time.Duration // what imapserver asks for
			want time.Duration
		}{
			{"command", 30 * time.Second, time.Second},
			{"literal", 5 * time.Minute, 2 * time.Second},
			{"idle", 35 * time.Minute, 3 * time.Second},
		}
		for i, tc := range cases {
			g.SetReadDeadline(time.Now().Add(tc.lib))
			start := time.Now()
			_, err := g.Read(make([]byte, 1))
			if err == nil {
				t.Fatalf("%s: read returned data", tc.name)
			}
			if d := time.Since(start); d != tc.want {
				t.Errorf("%s: read timed out after %v, want %v", tc.name, d, tc.want)
			}
			if byes != i+1 {
				t.Errorf("%s: %d BYEs, want %d", tc.name, byes, i+1)
			}
			g.mu.Lock()
			g.byeSent = false // allow the next case its own BYE
			g.mu.Unlock()
		}
	})
}

// TestStalledTLSClients: the limits hold under TLS too, and during a TLS handshake.
func TestStalledTLSClients(t *testing.T) {
	imaps, starttls, cfg, _ := tlsFixtureOpts(t, ServerOptions{
		CommandTimeout: 300 * time.Millisecond,
		LiteralTimeout: 300 * time.Millisecond,
		IdleTimeout:    time.Second,
	})
	t.Run("no handshake", func(t *testing.T) {
		conn, err := net.Dial("tcp", imaps)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		readUntilClosed(t, conn, bufio.NewReader(conn))
	})
	t.Run("half a line over IMAPS", func(t *testing.T) {
		conn, err := tls.Dial("tcp", imaps, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting %q, %v", l, err)
		}
		fmt.Fprintf(conn, "A1 LOGIN alice \"%s\"\r\n", alicePass)
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "A1 OK") {
			t.Fatalf("login %q, %v", l, err)
		}
		fmt.Fprint(conn, "A2 SELECT IN")
		if lines := readUntilClosed(t, conn, r); !hasPrefixLine(lines, "* BYE") {
			t.Errorf("lines before close %q", lines)
		}
	})
	t.Run("stalled STARTTLS handshake", func(t *testing.T) {
		conn, err := net.Dial("tcp", starttls)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		r.ReadString('\n')
		fmt.Fprint(conn, "S1 STARTTLS\r\n")
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "S1 OK") {
			t.Fatalf("STARTTLS %q, %v", l, err)
		}
		readUntilClosed(t, conn, r) // no ClientHello: cut off
	})
}
