package delivery

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/memstore"
)

// noUsers is a Users for tests that never look users up.
type noUsers struct{}

func (noUsers) Enabled(context.Context, string) (bool, error) { return false, nil }
func (noUsers) CheckPassword(context.Context, string, string, string) error {
	return signpost.ErrBadCredentials
}

func TestRetryDelay(t *testing.T) {
	r := Retry{Initial: time.Minute, Max: 10 * time.Minute}.withDefaults()
	tests := []struct {
		attempts int
		want     time.Duration
	}{
		{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {4, 8 * time.Minute},
		{5, 10 * time.Minute}, {60, 10 * time.Minute}, {1 << 30, 10 * time.Minute},
	}
	for _, tt := range tests {
		if got := r.delay(tt.attempts); got != tt.want {
			t.Errorf("delay(%d) = %v, want %v", tt.attempts, got, tt.want)
		}
	}
	if d := (Retry{}).withDefaults(); d.Initial != time.Minute || d.Max != time.Hour || d.MaxAge != 5*24*time.Hour {
		t.Errorf("defaults %+v", d)
	}
}

// With the smarthost down the queue retries after 1, 2, 4, 4 minutes (capped) and bounces
// the message into the sender's INBOX once it is MaxAge old.
func TestQueueBackoffThenBounce(t *testing.T) {
	down := closedAddr(t)
	synctest.Test(t, func(t *testing.T) {
		outbox := memstore.New(nil)
		mb := &repoMailboxes{repos: memstore.NewRepos(nil)}
		s, err := NewServer(mb, noUsers{}, Options{
			Domain:    "home.arpa",
			Smarthost: &Smarthost{Addr: down},
			Outbox:    outbox,
			Retry:     Retry{Initial: time.Minute, Max: 4 * time.Minute, MaxAge: 10 * time.Minute},
			Logger:    quietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown(context.Background())
		start := time.Now()
		rec := record{ID: newID(), User: "alice", From: "alice@home.arpa", To: []string{"friend@example.org"}, Created: start.UTC()}
		if err := s.queue.enqueue(context.Background(), rec, []byte(testMessage("doomed"))); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			at       time.Duration
			attempts int
		}{
			{30 * time.Second, 1},
			{59 * time.Second, 1},
			{90 * time.Second, 2},
			{179 * time.Second, 2},
			{210 * time.Second, 3},
			{419 * time.Second, 3},
			{450 * time.Second, 4},
			{599 * time.Second, 4},
		}
		for _, st := range steps {
			time.Sleep(time.Until(start.Add(st.at)))
			synctest.Wait()
			q := queued(t, outbox)
			if len(q) != 1 || q[0].Attempts != st.attempts {
				t.Fatalf("at %v: queue %+v, want one record with %d attempts", st.at, q, st.attempts)
			}
			if n := len(mb.messages(t, "alice", Inbox)); n != 0 {
				t.Fatalf("at %v: bounced early", st.at)
			}
		}
		time.Sleep(time.Until(start.Add(630 * time.Second)))
		synctest.Wait()
		if q := queued(t, outbox); len(q) != 0 {
			t.Fatalf("after MaxAge the queue still holds %+v", q)
		}
		b := mb.messages(t, "alice", Inbox)
		if len(b) != 1 {
			t.Fatalf("alice has %d messages, want one bounce", len(b))
		}
		for _, want := range []string{"To: <alice@home.arpa>", "Final-Recipient: rfc822; friend@example.org", "Status: 4.4.7", "delivery time expired; last error: ", "Subject: doomed"} {
			if !strings.Contains(b[0], want) {
				t.Errorf("bounce lacks %q:\n%s", want, b[0])
			}
		}
		if _, err := outbox.Stat(context.Background(), "", messageKey(rec.ID)); err == nil {
			t.Error("the message stayed in the outbox")
		}
	})
}

// A smarthost that answers 4xx is retried like one that is down; it gets the message
// once it accepts.
func TestQueueTemporaryRejection(t *testing.T) {
	host := newSmarthost(t, nil, "", "")
	host.tempFail = true
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: outbox, Retry: Retry{Initial: 50 * time.Millisecond, Max: 50 * time.Millisecond}})
	rec := record{ID: newID(), User: "alice", From: "alice@home.arpa", To: []string{"friend@example.org"}, Created: time.Now().UTC()}
	if err := e.srv.queue.enqueue(context.Background(), rec, []byte(testMessage("later"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two refused attempts", func() bool {
		q := queued(t, outbox)
		return len(q) == 1 && q[0].Attempts >= 2 && strings.Contains(q[0].LastError, "451")
	})
	host.mu.Lock()
	host.tempFail = false
	host.mu.Unlock()
	if got := host.wait(t); got.to[0] != "friend@example.org" {
		t.Fatalf("relayed %+v", got)
	}
	eventually(t, "queue empty", func() bool { return len(queued(t, outbox)) == 0 })
	if n := len(e.mb.messages(t, "alice", Inbox)); n != 0 {
		t.Fatalf("%d bounces for a message that was delivered", n)
	}
}

func TestSmarthostSTARTTLSRequired(t *testing.T) {
	host := newSmarthost(t, nil, "", "") // offers no STARTTLS
	outbox := memstore.New(nil)
	e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr, TLS: STARTTLSRequired}, Outbox: outbox, Retry: Retry{Initial: time.Hour}})
	rec := record{ID: newID(), User: "alice", From: "alice@home.arpa", To: []string{"friend@example.org"}, Created: time.Now().UTC()}
	if err := e.srv.queue.enqueue(context.Background(), rec, []byte(testMessage("secret"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a refused attempt", func() bool {
		q := queued(t, outbox)
		return len(q) == 1 && q[0].Attempts == 1 && strings.Contains(q[0].LastError, "STARTTLS")
	})
	select {
	case r := <-host.got:
		t.Fatalf("relayed without TLS: %+v", r)
	default:
	}
}

func TestSmarthostCredentials(t *testing.T) {
	tests := []struct {
		addr  string
		isTLS bool
		want  bool
	}{
		{"192.0.2.1:25", false, false},
		{"relay.example.org:587", false, false},
		{"relay.example.org:587", true, true},
		{"127.0.0.1:25", false, true},
		{"[::1]:25", false, true},
		{"localhost:25", false, true},
		{"garbage", false, false},
	}
	for _, tt := range tests {
		if got := mayAuthenticate(tt.addr, tt.isTLS); got != tt.want {
			t.Errorf("mayAuthenticate(%q, %v) = %v", tt.addr, tt.isTLS, got)
		}
	}
	// A loopback smarthost gets AUTH without TLS, and a wrong password is a failure of
	// the whole connection.
	host := newSmarthost(t, nil, "u", "p")
	q := &queue{s: &Server{opts: Options{Hostname: "mail.home.arpa", Smarthost: &Smarthost{Addr: host.addr, User: "u", Password: "p", TLS: NoTLS}}}}
	res, err := q.relay(context.Background(), "alice@home.arpa", []string{"x@example.org"}, []byte(testMessage("x")))
	if err != nil || res["x@example.org"] != nil {
		t.Fatalf("relay to loopback with credentials: %v %v", res, err)
	}
	host.wait(t)
	q.s.opts.Smarthost.Password = "wrong"
	if _, err := q.relay(context.Background(), "alice@home.arpa", []string{"x@example.org"}, []byte(testMessage("x"))); code(err) != 535 {
		t.Fatalf("relay with a wrong password: %v, want 535", err)
	} else if isPermanent(err) {
		t.Fatal("a refused smarthost login counts as permanent: it would bounce every message")
	}
}

func TestNewServerOptions(t *testing.T) {
	mb := &repoMailboxes{repos: memstore.NewRepos(nil)}
	tests := []struct {
		name string
		opts Options
	}{
		{"no domain", Options{}},
		{"bad domain", Options{Domain: "a b"}},
		{"bad extra domain", Options{Domain: "home.arpa", ExtraDomains: []string{"x..y"}}},
		{"alias of a remote domain", Options{Domain: "home.arpa", Aliases: map[string]string{"a@example.org": "alice"}}},
		{"alias to an address", Options{Domain: "home.arpa", Aliases: map[string]string{"a": "alice@example.org"}}},
		{"message limit too big", Options{Domain: "home.arpa", MaxMessageBytes: 1 << 40}},
		{"negative recipients", Options{Domain: "home.arpa", MaxRecipients: -1}},
		{"smarthost without outbox", Options{Domain: "home.arpa", Smarthost: &Smarthost{Addr: "127.0.0.1:25"}}},
		{"smarthost without port", Options{Domain: "home.arpa", Smarthost: &Smarthost{Addr: "relay"}, Outbox: memstore.New(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewServer(mb, noUsers{}, tt.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewServer(nil, noUsers{}, Options{Domain: "home.arpa"}); err == nil {
		t.Fatal("accepted nil Mailboxes")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := record{ID: newID(), User: "alice", From: "alice@home.arpa", To: []string{"a@example.org", "b@example.org"},
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Attempts: 3, Next: time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC), LastError: "451 later"}
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	bad := []string{
		``, `{}`, `[]`, `{"id":"x"}`,
		`{"id":"` + r.ID + `","user":"alice","from":"alice@home.arpa","to":[]}`,
		`{"id":"` + r.ID + `","user":"alice","from":"alice@home.arpa","to":["x"]}`,
		`{"id":"` + r.ID + `","user":"a/b","from":"alice@home.arpa","to":["x@y.z"]}`,
		`{"id":"` + r.ID + `","user":"alice","from":"alice@home.arpa","to":["x@y.z"],"extra":1}`,
		`{"id":"` + r.ID + `","user":"alice","from":"alice@home.arpa","to":["x@y.z"],"attempts":-1}`,
		`{"id":"` + r.ID + `","user":"alice","from":"alice@home.arpa","to":["x@y.z"]} {}`,
	}
	for _, s := range bad {
		if _, err := decodeRecord([]byte(s)); !errors.Is(err, errBadRecord) {
			t.Errorf("decode %s: %v, want errBadRecord", s, err)
		}
	}
}

func TestStatusCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"smtp 550", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}}, "5.1.1"},
		{"expired", errExpired{}, "4.4.7"},
		{"other", errors.New("x"), "5.0.0"},
	}
	for _, tt := range tests {
		if got := statusCode(tt.err); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// The relay declares the message's SIZE, BODY=8BITMIME (the smarthost offers it) and
// SMTPUTF8 for a UTF-8 address when the smarthost offers it; a smarthost without SMTPUTF8
// cannot take a UTF-8 address, and the sender gets a bounce at once.
func TestRelaySizeAndSMTPUTF8(t *testing.T) {
	enqueue := func(t *testing.T, e *env, to, body string) int {
		t.Helper()
		rec := record{ID: newID(), User: "alice", From: "alice@home.arpa", To: []string{to}, Created: time.Now().UTC()}
		msg := "From: alice@home.arpa\r\nTo: " + to + "\r\nSubject: test\r\n\r\n" + body + "\r\n"
		if err := e.srv.queue.enqueue(context.Background(), rec, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		return len(msg)
	}
	for _, tc := range []struct {
		name, to, body string
		smtputf8       bool
	}{
		{"ASCII", "friend@example.org", "plain text", false},
		{"8-bit body", "friend@example.org", "Grüße aus der Küche", false},
		{"UTF-8 address", "jörg@example.org", "plain text", true},
		{"UTF-8 address and body", "jörg@example.org", "Grüße", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := newSmarthost(t, nil, "", "", func(s *smtp.Server) { s.EnableSMTPUTF8 = tc.smtputf8 })
			e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: memstore.New(nil)})
			size := enqueue(t, e, tc.to, tc.body)
			got := host.wait(t)
			if got.body != smtp.Body8BitMIME || got.utf8 != tc.smtputf8 || got.to[0] != tc.to || !strings.Contains(got.data, tc.body) {
				t.Fatalf("relayed BODY=%q SMTPUTF8=%v to %q, want BODY=8BITMIME SMTPUTF8=%v", got.body, got.utf8, got.to, tc.smtputf8)
			}
			if got.size < int64(size) || got.size > int64(len(got.data)) {
				t.Errorf("SIZE=%d for %d bytes relayed", got.size, len(got.data))
			}
		})
	}
	t.Run("UTF-8 address, smarthost without SMTPUTF8", func(t *testing.T) {
		host := newSmarthost(t, nil, "", "")
		outbox := memstore.New(nil)
		e := newEnv(t, newAccounts(t), Options{Smarthost: &Smarthost{Addr: host.addr}, Outbox: outbox})
		enqueue(t, e, "jörg@example.org", "plain text")
		eventually(t, "a bounce", func() bool { return len(e.mb.messages(t, "alice", Inbox)) == 1 })
		b := e.mb.messages(t, "alice", Inbox)[0]
		if !strings.Contains(b, "Status: 5.6.7") || !strings.Contains(b, "jörg@example.org") {
			t.Errorf("bounce:\n%s", b)
		}
		eventually(t, "queue empty", func() bool { return len(queued(t, outbox)) == 0 })
		select {
		case r := <-host.got:
			t.Fatalf("the smarthost got %+v", r)
		default:
		}
	})
}
