package migrate

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// MboxReader reads the messages of an mbox file one by one. A message starts at a line
// "From SENDER DATE" that begins the file or follows an empty line and carries a date
// asctime can parse; lines of the body that were quoted as ">From ", ">>From ", … lose one
// ">" (mboxrd). The empty line before the next "From " line is the separator, not part
// of the message.
type MboxReader struct {
	r       *bufio.Reader
	max     int
	pending []byte // a "From " line already read that starts the next message
	started bool
	n       int // messages returned
	line    int
}

// NewMboxReader returns a reader of the mbox r that refuses messages over maxSize
// bytes (<= 0: DefaultMaxMessageSize).
func NewMboxReader(r io.Reader, maxSize int) *MboxReader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	return &MboxReader{r: bufio.NewReaderSize(r, 64<<10), max: maxSize}
}

// readLine returns the next line with its line ending; io.EOF only when nothing is left.
// A line longer than the size limit is ErrTooLarge.
func (m *MboxReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := m.r.ReadSlice('\n')
		if len(line)+len(chunk) > m.max {
			return nil, fmt.Errorf("migrate: mbox line %d: %w (over %d bytes)", m.line+1, ErrTooLarge, m.max)
		}
		line = append(line, chunk...)
		switch err {
		case nil:
			m.line++
			return line, nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			m.line++
			return line, nil
		default:
			return nil, fmt.Errorf("migrate: mbox line %d: %w", m.line+1, err)
		}
	}
}

// Next returns the next message, or io.EOF after the last one. Its Mailbox is empty; its
// Date is the "From " line's date (UTC), or the Date header's when that does not parse,
// or zero; its Flags come from the Status and X-Status headers.
func (m *MboxReader) Next() (*Message, error) {
	from := m.pending
	m.pending = nil
	if !m.started {
		m.started = true
		for {
			line, err := m.readLine()
			if err == io.EOF {
				return nil, io.EOF
			}
			if err != nil {
				return nil, err
			}
			if isBlank(line) {
				continue // tolerate leading empty lines
			}
			if _, ok := parseFromLine(line); !ok {
				return nil, fmt.Errorf("migrate: mbox line %d: %w: want a \"From \" line, got %q", m.line, ErrFormat, clip(line))
			}
			from = line
			break
		}
	}
	if from == nil {
		return nil, io.EOF
	}
	var body bytes.Buffer
	prevBlank := false
	for {
		line, err := m.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if prevBlank {
			if _, ok := parseFromLine(line); ok {
				m.pending = line
				break
			}
		}
		prevBlank = isBlank(line)
		if q := quotedFrom(line); q > 0 {
			line = line[1:]
		}
		if body.Len()+len(line) > m.max {
			return nil, fmt.Errorf("migrate: mbox message %d: %w (over %d bytes)", m.n+1, ErrTooLarge, m.max)
		}
		body.Write(line)
	}
	b := trimSeparator(body.Bytes())
	m.n++
	msg := &Message{Body: b}
	if d, ok := parseFromLine(from); ok {
		msg.Date = d
	}
	msg.Flags, msg.Date = headerFlagsAndDate(b, msg.Date)
	return msg, nil
}

// trimSeparator drops the empty line that separates a message from the next one.
func trimSeparator(b []byte) []byte {
	switch {
	case bytes.HasSuffix(b, []byte("\r\n\r\n")):
		return b[:len(b)-2]
	case bytes.HasSuffix(b, []byte("\n\n")):
		return b[:len(b)-1]
	}
	return b
}

func isBlank(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

// quotedFrom returns how many ">" quote a ">…>From " line (0: not such a line).
func quotedFrom(line []byte) int {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if i > 0 && bytes.HasPrefix(line[i:], []byte("From ")) {
		return i
	}
	return 0
}

// fromLayouts are the date forms found on "From " lines, after the fields are joined
// with single spaces.
var fromLayouts = []struct {
	fields int
	layout string
}{
	{5, "Mon Jan 2 15:04:05 2006"},
	{6, "Mon Jan 2 15:04:05 -0700 2006"},
	{6, "Mon Jan 2 15:04:05 MST 2006"},
	{6, "Mon Jan 2 15:04:05 2006 -0700"},
	{4, "Jan 2 15:04:05 2006"},
}

// ParseFromLine reports whether line is an mbox "From SENDER DATE" separator line and
// returns its date (UTC unless the line names a zone).
func ParseFromLine(line []byte) (time.Time, bool) { return parseFromLine(line) }

func parseFromLine(line []byte) (time.Time, bool) {
	if !bytes.HasPrefix(line, []byte("From ")) || len(line) > 1000 {
		return time.Time{}, false
	}
	f := strings.Fields(string(line[5:]))
	if len(f) < 2 {
		return time.Time{}, false
	}
	for _, l := range fromLayouts {
		if len(f) < l.fields+1 { // the sender comes first
			continue
		}
		s := strings.Join(f[len(f)-l.fields:], " ")
		if t, err := time.Parse(l.layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// headerFlagsAndDate reads the Status/X-Status flags of a message and, when date is
// zero, its Date header.
func headerFlagsAndDate(b []byte, date time.Time) ([]imap.Flag, time.Time) {
	end := bytes.Index(b, []byte("\n\n"))
	if e := bytes.Index(b, []byte("\r\n\r\n")); e >= 0 && (end < 0 || e < end) {
		end = e + 2
	}
	if end < 0 {
		end = len(b)
	} else {
		end++
	}
	var flags []imap.Flag
	for _, line := range bytes.Split(b[:end], []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch strings.ToLower(string(name)) {
		case "status":
			if bytes.ContainsRune(value, 'R') {
				flags = addFlag(flags, imap.FlagSeen)
			}
		case "x-status":
			for _, c := range bytes.TrimSpace(value) {
				switch c {
				case 'A':
					flags = addFlag(flags, imap.FlagAnswered)
				case 'F':
					flags = addFlag(flags, imap.FlagFlagged)
				case 'D':
					flags = addFlag(flags, imap.FlagDeleted)
				case 'T':
					flags = addFlag(flags, imap.FlagDraft)
				}
			}
		case "date":
			if date.IsZero() {
				if t, err := mail.ParseDate(strings.TrimSpace(string(value))); err == nil {
					date = t
				}
			}
		}
	}
	return flags, date
}

// WriteMbox writes one message to w in mboxrd form: a "From " line with the date (now
// when zero), the body with "From " lines quoted, a final newline if it lacks one, and
// the empty separator line. The body is not changed otherwise.
func WriteMbox(w io.Writer, m *Message) error {
	d := m.Date
	if d.IsZero() {
		d = time.Now()
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "From MAILER-DAEMON %s\n", d.UTC().Format(time.ANSIC))
	rest := m.Body
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i+1], rest[i+1:]
		}
		if bytes.HasPrefix(line, []byte("From ")) || quotedFrom(line) > 0 {
			bw.WriteByte('>')
		}
		bw.Write(line)
	}
	if len(m.Body) > 0 && m.Body[len(m.Body)-1] != '\n' {
		bw.WriteByte('\n')
	}
	bw.WriteByte('\n')
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("migrate: write mbox: %w", err)
	}
	return nil
}

// clip shortens a line for an error message.
func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return strings.TrimRight(string(b), "\r\n")
}
