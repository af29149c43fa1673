package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/hearth-home/hearth/store"
)

// Keys in the Outbox: a record and its message, written and deleted together.
const (
	recordsPrefix = "records/"
	messagesDir   = "messages/"
	maxRecord     = 256 << 10
	maxLastError  = 1000
)

// Timeouts of a relay connection.
const (
	dialTimeout       = 30 * time.Second
	commandTimeout    = 2 * time.Minute
	submissionTimeout = 10 * time.Minute
	attemptTimeout    = 15 * time.Minute
)

var queueAuthor = store.Signature{Name: "delivery", Email: "delivery@hearth.invalid"}

// record is one queued message's envelope and state, kept as JSON at records/ID.json.
type record struct {
	ID        string    `json:"id"`
	User      string    `json:"user"` // the sender's account: bounces go to its INBOX
	From      string    `json:"from"`
	To        []string  `json:"to"` // recipients not yet delivered
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	Next      time.Time `json:"next"` // zero: at once
	LastError string    `json:"lastError,omitempty"`
}

func recordKey(id string) string  { return recordsPrefix + id + ".json" }
func messageKey(id string) string { return messagesDir + id + ".eml" }

var errBadRecord = errors.New("delivery: bad queue record")

// validate checks a record's fields and limits.
func (r *record) validate() error {
	if len(r.ID) != 32 || strings.Trim(r.ID, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: id %q", errBadRecord, oneLine(r.ID, 64))
	}
	if r.User == "" || len(r.User) > 64 || strings.ContainsAny(r.User, "@/ \r\n") {
		return fmt.Errorf("%w: user %q", errBadRecord, oneLine(r.User, 64))
	}
	if _, err := ParseAddress(r.From); err != nil {
		return fmt.Errorf("%w: from: %w", errBadRecord, err)
	}
	if len(r.To) == 0 || len(r.To) > MaxMaxRecipients {
		return fmt.Errorf("%w: %d recipients (1..%d)", errBadRecord, len(r.To), MaxMaxRecipients)
	}
	for _, t := range r.To {
		if _, err := ParseAddress(t); err != nil {
			return fmt.Errorf("%w: to: %w", errBadRecord, err)
		}
	}
	if r.Attempts < 0 || len(r.LastError) > maxLastError {
		return fmt.Errorf("%w: attempts %d, error of %d bytes", errBadRecord, r.Attempts, len(r.LastError))
	}
	return nil
}

func encodeRecord(r record) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

func decodeRecord(b []byte) (record, error) {
	if len(b) > maxRecord {
		return record{}, fmt.Errorf("%w: %d bytes", errBadRecord, len(b))
	}
	var r record
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return record{}, fmt.Errorf("%w: %w", errBadRecord, err)
	}
	if d.More() {
		return record{}, fmt.Errorf("%w: trailing data", errBadRecord)
	}
	if err := r.validate(); err != nil {
		return record{}, err
	}
	return r, nil
}

// queue relays queued messages; one goroutine (run) works through it.
type queue struct {
	s    *Server
	st   store.Store
	wake chan struct{}
}

// errQueueFull: the queue holds Options.MaxQueued messages.
var errQueueFull = errors.New("delivery: outgoing queue full")

// len returns the number of queued messages.
func (q *queue) len(ctx context.Context) (int, error) {
	entries, err := q.st.List(ctx, "", strings.TrimSuffix(recordsPrefix, "/"))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("delivery: list queue: %w", err)
	}
	return len(entries), nil
}

// enqueue stores a message and its envelope in one durable commit and wakes the queue.
func (q *queue) enqueue(ctx context.Context, rec record, msg []byte) error {
	b, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	n, err := q.len(ctx)
	if err != nil {
		return err
	}
	if n >= q.s.opts.MaxQueued {
		return fmt.Errorf("%w (%d messages)", errQueueFull, n)
	}
	_, err = q.st.Commit(ctx, store.Change{
		Author:  queueAuthor,
		Message: "queue " + rec.ID,
		Ops: []store.Op{
			{Key: messageKey(rec.ID), Value: msg, IfMatch: store.Missing},
			{Key: recordKey(rec.ID), Value: b, IfMatch: store.Missing},
		},
	})
	if err != nil {
		return fmt.Errorf("delivery: queue %s: %w", rec.ID, err)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// run works through the queue until ctx ends: it attempts every due message, then sleeps
// until the next one is due or a new one is queued. The first pass attempts every queued
// message at once, due or not: an appliance started on demand may not have been running
// when a retry was due.
func (q *queue) run(ctx context.Context) {
	for first := true; ; first = false {
		next, err := q.processDue(ctx, first)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			q.s.log.Error("outgoing queue", "err", err)
			next = time.Now().Add(q.s.opts.Retry.Initial)
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// processDue attempts every message that is due (all: every message) and returns when the earliest remaining
// one is (zero: none is queued).
func (q *queue) processDue(ctx context.Context, all bool) (time.Time, error) {
	entries, err := q.st.List(ctx, "", strings.TrimSuffix(recordsPrefix, "/"))
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("delivery: list queue: %w", err)
	}
	var next time.Time
	for _, e := range entries {
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		b, ent, err := q.st.Get(ctx, "", e.Key)
		if err != nil {
			return time.Time{}, fmt.Errorf("delivery: read %s: %w", e.Key, err)
		}
		rec, err := decodeRecord(b)
		if err != nil {
			q.s.log.Error("damaged queue record left alone", "key", e.Key, "err", err)
			continue
		}
		if !all && time.Now().Before(rec.Next) {
			if next.IsZero() || rec.Next.Before(next) {
				next = rec.Next
			}
			continue
		}
		rec, done, err := q.attempt(ctx, rec, ent.Version)
		if err != nil {
			return time.Time{}, err
		}
		if !done && (next.IsZero() || rec.Next.Before(next)) {
			next = rec.Next
		}
	}
	return next, nil
}

// attempt tries to relay one message, bounces what failed for good, and records the
// outcome. done is true when the record is gone.
func (q *queue) attempt(ctx context.Context, rec record, version store.Hash) (record, bool, error) {
	retry := q.s.opts.Retry
	msg, _, err := q.st.Get(ctx, "", messageKey(rec.ID))
	if errors.Is(err, store.ErrNotFound) {
		q.s.log.Error("queued message lost; dropping its record", "id", rec.ID)
		return rec, true, q.remove(ctx, rec.ID, version)
	}
	if err != nil {
		return rec, false, fmt.Errorf("delivery: read queued message %s: %w", rec.ID, err)
	}
	rctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	results, connErr := q.relay(rctx, rec.From, rec.To, msg)
	cancel()
	if ctx.Err() != nil {
		return rec, false, ctx.Err()
	}
	now := time.Now()
	rec.Attempts++
	var remaining []string
	var failed []failure
	for _, to := range rec.To {
		err := connErr
		if err == nil {
			err = results[to]
		}
		switch {
		case err == nil:
			q.s.log.Info("relayed", "id", rec.ID, "rcpt", to, "attempt", rec.Attempts)
		case isPermanent(err):
			failed = append(failed, failure{rcpt: to, err: err})
		default:
			remaining = append(remaining, to)
			rec.LastError = oneLine(err.Error(), maxLastError)
		}
	}
	expired := !now.Before(rec.Created.Add(retry.MaxAge))
	if len(remaining) > 0 && expired {
		for _, to := range remaining {
			failed = append(failed, failure{rcpt: to, err: errExpired{last: rec.LastError}})
		}
		remaining = nil
	}
	if len(failed) > 0 {
		if err := q.bounce(ctx, rec, failed, msg); err != nil {
			q.s.log.Error("bounce not delivered", "id", rec.ID, "user", rec.User, "err", err)
		}
	}
	if len(remaining) == 0 {
		return rec, true, q.remove(ctx, rec.ID, version)
	}
	rec.To = remaining
	rec.Next = now.Add(retry.delay(rec.Attempts))
	if deadline := rec.Created.Add(retry.MaxAge); rec.Next.After(deadline) {
		rec.Next = deadline
	}
	b, err := encodeRecord(rec)
	if err != nil {
		return rec, false, err
	}
	q.s.log.Warn("relay deferred", "id", rec.ID, "attempt", rec.Attempts, "next", rec.Next, "err", rec.LastError)
	_, err = q.st.Commit(ctx, store.Change{
		Author: queueAuthor, Message: fmt.Sprintf("retry %s (attempt %d)", rec.ID, rec.Attempts),
		Ops: []store.Op{{Key: recordKey(rec.ID), Value: b, IfMatch: version}},
	})
	if err != nil {
		return rec, false, fmt.Errorf("delivery: update queue record %s: %w", rec.ID, err)
	}
	return rec, false, nil
}

func (q *queue) remove(ctx context.Context, id string, version store.Hash) error {
	_, err := q.st.Commit(ctx, store.Change{
		Author: queueAuthor, Message: "done " + id,
		Ops: []store.Op{
			{Key: recordKey(id), Delete: true, IfMatch: version},
			{Key: messageKey(id), Delete: true},
		},
	})
	if err != nil {
		return fmt.Errorf("delivery: remove queued %s: %w", id, err)
	}
	return nil
}

// errExpired is why a message is bounced after Retry.MaxAge.
type errExpired struct{ last string }

func (e errExpired) Error() string {
	if e.last == "" {
		return "delivery time expired"
	}
	return "delivery time expired; last error: " + e.last
}

// temporary marks an error as worth retrying whatever reply code it carries.
type temporary struct{ error }

func (t temporary) Unwrap() error { return t.error }

// isPermanent reports whether err is a 5xx reply from the smarthost, or expiry.
func isPermanent(err error) bool {
	var tmp temporary
	if errors.As(err, &tmp) {
		return false
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500 && se.Code < 600
	}
	var ex errExpired
	return errors.As(err, &ex)
}

// relay sends msg to the smarthost. connErr applies to every recipient; otherwise
// results holds each recipient's outcome (nil: accepted).
func (q *queue) relay(ctx context.Context, from string, to []string, msg []byte) (results map[string]error, connErr error) {
	sh := q.s.opts.Smarthost
	c, err := q.dial(ctx, sh)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if sh.User != "" {
		if _, isTLS := c.TLSConnectionState(); !mayAuthenticate(sh.Addr, isTLS) {
			return nil, fmt.Errorf("delivery: smarthost %s: refusing to send credentials without TLS", sh.Addr)
		}
		if err := c.Auth(sasl.NewPlainClient("", sh.User, sh.Password)); err != nil {
			// A refused login is a configuration problem to fix, not the message's fault.
			return nil, temporary{fmt.Errorf("delivery: smarthost auth: %w", err)}
		}
	}
	opts, err := relayMailOptions(c, from, to, msg)
	if err != nil {
		return nil, err
	}
	if err := c.Mail(from, opts); err != nil {
		return nil, fmt.Errorf("delivery: smarthost MAIL: %w", err)
	}
	results = map[string]error{}
	accepted := 0
	for _, t := range to {
		if err := c.Rcpt(t, nil); err != nil {
			results[t] = fmt.Errorf("delivery: smarthost RCPT: %w", err)
			continue
		}
		results[t] = nil
		accepted++
	}
	if accepted == 0 {
		return results, nil
	}
	w, err := c.Data()
	if err == nil {
		if _, err = w.Write(msg); err == nil {
			err = w.Close()
		} else {
			w.Close()
		}
	}
	if err != nil {
		for t, r := range results {
			if r == nil {
				results[t] = fmt.Errorf("delivery: smarthost DATA: %w", err)
			}
		}
		return results, nil
	}
	c.Quit()
	return results, nil
}

// mayAuthenticate reports whether credentials may be sent to the smarthost at addr: over
// TLS, or to a loopback address.
func mayAuthenticate(addr string, isTLS bool) bool {
	if isTLS {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// dial connects to the smarthost, encrypting as sh.TLS says, and says EHLO.
func (q *queue) dial(ctx context.Context, sh *Smarthost) (*smtp.Client, error) {
	host, _, _ := net.SplitHostPort(sh.Addr)
	cfg := &tls.Config{ServerName: host}
	if sh.TLSConfig != nil {
		cfg = sh.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
	}
	connect := func() (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, "tcp", sh.Addr)
		if err != nil {
			return nil, fmt.Errorf("delivery: smarthost %s: %w", sh.Addr, err)
		}
		// Shutdown (or the attempt's time limit) cuts the connection.
		context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
	setup := func(c *smtp.Client) (*smtp.Client, error) {
		c.CommandTimeout = commandTimeout
		c.SubmissionTimeout = submissionTimeout
		if err := c.Hello(q.s.opts.Hostname); err != nil {
			c.Close()
			return nil, fmt.Errorf("delivery: smarthost %s: EHLO: %w", sh.Addr, err)
		}
		return c, nil
	}
	conn, err := connect()
	if err != nil {
		return nil, err
	}
	switch sh.TLS {
	case ImplicitTLS:
		return setup(smtp.NewClient(tls.Client(conn, cfg)))
	case NoTLS:
		return setup(smtp.NewClient(conn))
	case STARTTLSRequired:
		c, err := smtp.NewClientStartTLS(conn, cfg)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("delivery: smarthost %s: STARTTLS: %w", sh.Addr, err)
		}
		return setup(c)
	}
	// STARTTLSIfOffered: look, and start over with STARTTLS when it is offered (go-smtp
	// upgrades only as part of making a client).
	c, err := setup(smtp.NewClient(conn))
	if err != nil {
		return nil, err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return c, nil
	}
	c.Quit()
	c.Close()
	if conn, err = connect(); err != nil {
		return nil, err
	}
	c, err = smtp.NewClientStartTLS(conn, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("delivery: smarthost %s: STARTTLS: %w", sh.Addr, err)
	}
	return setup(c)
}

// failure is a recipient that will not get the message.
type failure struct {
	rcpt string
	err  error
}

// bounce delivers a delivery status notification (RFC 3464) about failed recipients to
// the sender's INBOX.
func (q *queue) bounce(ctx context.Context, rec record, failed []failure, msg []byte) error {
	b := buildBounce(q.s.opts.Hostname, q.s.opts.Domain, rec, failed, msg, time.Now())
	_, err := q.s.mb.Deliver(ctx, rec.User, Inbox, b, nil, time.Now())
	if err != nil {
		return fmt.Errorf("delivery: bounce %s to %q: %w", rec.ID, rec.User, err)
	}
	for _, f := range failed {
		q.s.log.Warn("bounced", "id", rec.ID, "user", rec.User, "rcpt", f.rcpt, "err", f.err)
	}
	return nil
}

// maxBounceHeaders bounds the original headers quoted in a bounce.
const maxBounceHeaders = 64 << 10

func buildBounce(hostname, domain string, rec record, failed []failure, msg []byte, now time.Time) []byte {
	boundary := "bounce-" + rec.ID
	var b bytes.Buffer
	crlf := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	crlf("From: Mail Delivery System <MAILER-DAEMON@%s>", domain)
	crlf("To: <%s>", rec.From)
	crlf("Subject: Undelivered Mail Returned to Sender")
	crlf("Date: %s", now.Format(time.RFC1123Z))
	crlf("Message-ID: <%s.bounce@%s>", rec.ID, hostname)
	crlf("Auto-Submitted: auto-replied")
	crlf("MIME-Version: 1.0")
	crlf("Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary)
	crlf("")
	crlf("--%s", boundary)
	crlf("Content-Type: text/plain; charset=utf-8")
	crlf("")
	crlf("Your message could not be delivered to these recipients:")
	crlf("")
	for _, f := range failed {
		crlf("  <%s>: %s", oneLine(f.rcpt, 300), oneLine(f.err.Error(), 500))
	}
	crlf("")
	crlf("--%s", boundary)
	crlf("Content-Type: message/delivery-status")
	crlf("")
	crlf("Reporting-MTA: dns; %s", hostname)
	crlf("Arrival-Date: %s", rec.Created.Format(time.RFC1123Z))
	for _, f := range failed {
		crlf("")
		crlf("Final-Recipient: rfc822; %s", oneLine(f.rcpt, 300))
		crlf("Action: failed")
		crlf("Status: %s", statusCode(f.err))
		crlf("Diagnostic-Code: smtp; %s", oneLine(f.err.Error(), 500))
	}
	crlf("")
	crlf("--%s", boundary)
	crlf("Content-Type: text/rfc822-headers")
	crlf("")
	b.Write(headerSection(msg, maxBounceHeaders))
	crlf("")
	crlf("--%s--", boundary)
	return b.Bytes()
}

// statusCode returns the enhanced status code (RFC 3463) for a failure.
func statusCode(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.EnhancedCode[0] == 5 {
		return fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	var ex errExpired
	if errors.As(err, &ex) {
		return "4.4.7"
	}
	return "5.0.0"
}

// headerSection returns the header of a message (up to the first empty line), at most n
// bytes, cut at a line end, with CRLF line ends.
func headerSection(msg []byte, n int) []byte {
	end := len(msg)
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		end = i + 2
	} else if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		end = i + 1
	}
	h := msg[:end]
	if len(h) > n {
		h = h[:n]
		if i := bytes.LastIndexByte(h, '\n'); i >= 0 {
			h = h[:i+1]
		}
	}
	h = bytes.ReplaceAll(h, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(h, []byte("\n"), []byte("\r\n"))
}

// relayMailOptions returns the MAIL FROM parameters for relaying msg: its SIZE (RFC 1870;
// a smarthost with a lower limit refuses it before the data is sent), and SMTPUTF8 when
// an address is not ASCII (RFC 6531). A smarthost without SMTPUTF8 cannot take such an
// address at all: that is a permanent failure (5.6.7), and the sender gets a bounce at
// once rather than after the retries. (go-smtp's client declares BODY=8BITMIME itself
// whenever the smarthost offers it.)
func relayMailOptions(c *smtp.Client, from string, to []string, msg []byte) (*smtp.MailOptions, error) {
	opts := smtp.MailOptions{Size: int64(len(msg))}
	utf8 := !isASCII(from)
	for _, t := range to {
		utf8 = utf8 || !isASCII(t)
	}
	if utf8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return nil, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
				Message: "the smarthost does not take internationalized (UTF-8) addresses"}
		}
		opts.UTF8 = true
	}
	return &opts, nil
}

// isASCII reports whether s has only 7-bit bytes.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
