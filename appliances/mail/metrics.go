package main

import (
	"bytes"
	"net"
	"strconv"
	"sync"

	"github.com/hearth-home/hearth/signpost"
)

// mailMetrics are the mail appliance's protocol metrics beside signpost's: connections
// and bytes per socket, and, read from what the server sends on plain-text connections,
// IMAP command completions by status and logins, and SMTP/LMTP replies by class and
// logins. The commands of encrypted sessions (IMAPS, and everything after STARTTLS) are
// not visible there: only their connections and bytes are counted.
type mailMetrics struct {
	conns        *signpost.ConnMetrics
	imapStatus   *signpost.CounterVec
	logins       *signpost.CounterVec
	smtpReplies  *signpost.CounterVec
	encryptedOff *signpost.CounterVec
}

func newMailMetrics(m *signpost.Metrics) *mailMetrics {
	mm := &mailMetrics{
		conns: m.ConnMetrics(),
		imapStatus: signpost.NewCounterVec("hearth_imap_commands_total",
			"IMAP commands completed on plain-text connections, by status (ok, no, bad; no and bad are errors).", "status"),
		logins: signpost.NewCounterVec("hearth_mail_logins_total",
			"Logins seen on plain-text connections, by protocol and result (ok, failed).", "proto", "result"),
		smtpReplies: signpost.NewCounterVec("hearth_smtp_replies_total",
			"SMTP/LMTP replies on plain-text connections, by protocol and class (2xx .. 5xx; 4xx and 5xx are errors).", "proto", "class"),
		encryptedOff: signpost.NewCounterVec("hearth_mail_starttls_total",
			"Connections that switched to TLS with STARTTLS, by protocol (their commands are not counted after that).", "proto"),
	}
	// The names are fixed and distinct from signpost's, so registering cannot fail.
	_ = m.Registry().Register(mm.imapStatus, mm.logins, mm.smtpReplies, mm.encryptedOff)
	return mm
}

// wrap counts the connections of the socket named name.
func (mm *mailMetrics) wrap(name string, ln net.Listener) net.Listener {
	var observe func() func([]byte)
	switch name {
	case "imap":
		observe = func() func([]byte) { return newLineScanner(mm.imapLine).feed }
	case "lmtp", "smtp", "submission":
		observe = func() func([]byte) { return newLineScanner(mm.smtpLine(name)).feed }
	}
	return mm.conns.Listener(name, ln, observe)
}

// maxScanLine bounds the partial line a scanner keeps; longer lines are skipped.
const maxScanLine = 4096

// lineScanner splits a server's output into lines, skipping IMAP literals ({N} at the
// end of a line announces N bytes of data); handle returns false to stop scanning (the
// connection is switching to TLS).
type lineScanner struct {
	mu      sync.Mutex
	handle  func(line []byte) (literal int64, more bool)
	buf     []byte
	skip    int64 // literal bytes still to pass over
	tooLong bool
	done    bool
}

func newLineScanner(handle func([]byte) (int64, bool)) *lineScanner {
	return &lineScanner{handle: handle}
}

func (s *lineScanner) feed(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(p) > 0 && !s.done {
		if s.skip > 0 {
			n := min(int64(len(p)), s.skip)
			s.skip -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		s.buf = append(s.buf, part...)
		if len(s.buf) > maxScanLine {
			// Too long to look at: keep only its end, where a literal is announced.
			s.buf = append(s.buf[:0], s.buf[len(s.buf)-literalTail:]...)
			s.tooLong = true
		}
		if i < 0 {
			return
		}
		p = p[i+1:]
		line := bytes.TrimSuffix(s.buf, []byte{'\r'})
		if s.tooLong {
			s.skip = literalAt(line)
		} else {
			var more bool
			s.skip, more = s.handle(line)
			s.done = !more
		}
		s.buf, s.tooLong = s.buf[:0], false
	}
}

// literalTail is how much of an over-long line is kept: enough for "{N}" with any N.
const literalTail = 32

// literalAt returns N when line ends with an IMAP literal announcement {N} or ~{N}.
func literalAt(line []byte) int64 {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0
	}
	n, err := strconv.ParseInt(string(bytes.TrimSuffix(line[open+1:len(line)-1], []byte{'+'})), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// imapLine counts one line the IMAP server sent.
func (mm *mailMetrics) imapLine(line []byte) (int64, bool) {
	lit := literalAt(line)
	tag, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(tag) == 0 || tag[0] == '*' || tag[0] == '+' {
		return lit, true
	}
	status, text, _ := bytes.Cut(rest, []byte{' '})
	switch string(status) {
	case "OK":
		mm.imapStatus.WithLabelValues("ok").Inc()
		if bytes.HasSuffix(text, []byte("Logged in")) || bytes.HasSuffix(text, []byte("authentication successful")) {
			mm.logins.WithLabelValues("imap", "ok").Inc()
		}
		if bytes.Contains(text, []byte("Begin TLS")) {
			mm.encryptedOff.WithLabelValues("imap").Inc()
			return 0, false
		}
	case "NO":
		mm.imapStatus.WithLabelValues("no").Inc()
		if bytes.HasPrefix(text, []byte("[AUTHENTICATIONFAILED]")) {
			mm.logins.WithLabelValues("imap", "failed").Inc()
		}
	case "BAD":
		mm.imapStatus.WithLabelValues("bad").Inc()
	}
	return lit, true
}

// smtpLine returns the line handler of an SMTP-like protocol.
func (mm *mailMetrics) smtpLine(proto string) func([]byte) (int64, bool) {
	greeted := false
	return func(line []byte) (int64, bool) {
		if len(line) < 4 || line[3] != ' ' || line[0] < '2' || line[0] > '5' {
			return 0, true // a continuation line or not a reply
		}
		code := string(line[:3])
		mm.smtpReplies.WithLabelValues(proto, string(line[0])+"xx").Inc()
		switch {
		case code == "235":
			mm.logins.WithLabelValues(proto, "ok").Inc()
		case code == "535":
			mm.logins.WithLabelValues(proto, "failed").Inc()
		case code == "220" && greeted:
			mm.encryptedOff.WithLabelValues(proto).Inc()
			return 0, false // STARTTLS accepted
		}
		greeted = true
		return 0, true
	}
}
