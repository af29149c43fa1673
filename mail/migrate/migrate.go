// Package migrate reads and writes the mbox and Maildir formats that mail moves in and out of Hearth in.
//
// An mbox file is read with MboxReader (mboxrd ">From " unquoting, the internal date from
// the "From " line, flags from Status/X-Status headers); a Maildir directory with
// ReadMaildir (Maildir++ subfolders such as ".Sent" or ".Archive.2024" become mailboxes
// "Sent" and "Archive/2024", flags come from the ":2,FRS" suffix of file names, the
// internal date from the file's mtime); MaildirWriter writes a Maildir back, one subfolder
// per mailbox, flags in the names and the internal date as mtime. Message bytes are
// passed through untouched; ToCRLF and ToLF convert line endings between the Unix files
// and IMAP's CRLF.
package migrate

import (
	"bytes"
	"errors"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Limits on what the readers accept.
const (
	// DefaultMaxMessageSize is the largest message a reader returns unless told otherwise.
	DefaultMaxMessageSize = 64 << 20
	// MaxMailboxNameLen is the longest mailbox name, in bytes.
	MaxMailboxNameLen = 1000
	// MaxMailboxDepth is how many levels a mailbox name may have.
	MaxMailboxDepth = 32
	// MaxFlags is how many flags one message may carry.
	MaxFlags = 64
)

// Errors returned by the readers; test them with errors.Is.
var (
	// ErrTooLarge: a message is over the reader's size limit.
	ErrTooLarge = errors.New("migrate: message too large")
	// ErrFormat: the input is not an mbox file, a Maildir or a Maildir file name.
	ErrFormat = errors.New("migrate: bad format")
)

// Message is one message with the metadata the formats keep.
type Message struct {
	// Mailbox is the IMAP name of the mailbox, with "/" between levels ("INBOX", "Sent",
	// "Archive/2024").
	Mailbox string
	// Body is the raw message (RFC 5322 header and body), exactly as stored in the file.
	Body []byte
	// Flags are the IMAP flags (\Seen, \Answered, \Flagged, \Draft, \Deleted, $Forwarded).
	Flags []imap.Flag
	// Date is the internal date: when the message arrived. Zero when the source has none.
	Date time.Time
	// Path is the file a Maildir message was read from ("" for mbox).
	Path string
}

// ToCRLF returns b with every bare LF turned into CRLF (what IMAP sends and stores).
func ToCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte("\n")) - bytes.Count(b, []byte("\r\n"))
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// ToLF returns b with every CRLF turned into LF (what Unix mail files hold).
func ToLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\r\n")) {
		return b
	}
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

// addFlag appends f unless it is there already.
func addFlag(flags []imap.Flag, f imap.Flag) []imap.Flag {
	for _, g := range flags {
		if g == f {
			return flags
		}
	}
	return append(flags, f)
}
