package mail

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/hearth-home/hearth/store"
)

// Keys of the layout in a user's mail repository (see the package doc).
const (
	subscriptionsKey = "subscriptions"
	metaPrefix       = "meta/"
	indexPrefix      = "index/"
	msgPrefix        = "msg/"

	// indexChunk is how many UIDs one index chunk covers: uid/indexChunk names it.
	indexChunk = 256
	// msgShard is how many UIDs one message directory covers: uid/msgShard names it.
	msgShard = 256

	indexHeader = "hearth-mail-index 1\n"
)

// Limits on what the layout decoder accepts.
const (
	maxMetaSize      = 64 << 10
	maxChunkSize     = 4 << 20
	maxFlagsPerMsg   = 64
	maxFlagLen       = 128
	maxMailboxName   = 512
	maxMailboxes     = 10000
	maxSubscriptions = 10000
	maxKeywords      = 256 // distinct keywords per mailbox
)

var errLayout = errors.New("mail: damaged layout")

// mailboxMeta is the JSON kept at meta/<id>.
type mailboxMeta struct {
	Name        string           `json:"name"`
	UIDValidity uint32           `json:"uidValidity"`
	UIDNext     imap.UID         `json:"uidNext"`
	SpecialUse  imap.MailboxAttr `json:"specialUse,omitempty"`
	Created     time.Time        `json:"created"`
}

func metaKey(id string) string { return metaPrefix + id }
func indexKey(id string, chunk uint32) string {
	return indexPrefix + id + "/" + strconv.FormatUint(uint64(chunk), 10)
}
func msgKey(id string, uid imap.UID) string {
	return msgPrefix + id + "/" + strconv.FormatUint(uint64(uid)/msgShard, 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}
func chunkOf(uid imap.UID) uint32 { return uint32(uid) / indexChunk }

// validMailboxID reports whether id is a mailbox id this package makes: 1–32 lowercase hex digits.
func validMailboxID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func encodeMeta(m mailboxMeta) []byte {
	b, _ := json.Marshal(m) // cannot fail: plain fields
	return append(b, '\n')
}

func decodeMeta(b []byte) (mailboxMeta, error) {
	var m mailboxMeta
	if len(b) > maxMetaSize {
		return m, fmt.Errorf("%w: meta of %d bytes", errLayout, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: meta: %v", errLayout, err)
	}
	if err := checkMailboxName(m.Name); err != nil {
		return m, fmt.Errorf("%w: meta: %v", errLayout, err)
	}
	if m.UIDValidity == 0 || m.UIDNext == 0 {
		return m, fmt.Errorf("%w: meta: zero UIDVALIDITY or UIDNEXT", errLayout)
	}
	if m.SpecialUse != "" && !knownSpecialUse(m.SpecialUse) {
		return m, fmt.Errorf("%w: meta: unknown special-use %q", errLayout, m.SpecialUse)
	}
	return m, nil
}

func decodeSubscriptions(b []byte) ([]string, error) {
	var subs []string
	if len(b) > maxMetaSize*16 {
		return nil, fmt.Errorf("%w: subscriptions of %d bytes", errLayout, len(b))
	}
	if err := json.Unmarshal(b, &subs); err != nil {
		return nil, fmt.Errorf("%w: subscriptions: %v", errLayout, err)
	}
	if len(subs) > maxSubscriptions {
		return nil, fmt.Errorf("%w: %d subscriptions", errLayout, len(subs))
	}
	for _, s := range subs {
		if err := checkMailboxName(s); err != nil {
			return nil, fmt.Errorf("%w: subscriptions: %v", errLayout, err)
		}
	}
	return subs, nil
}

func encodeSubscriptions(subs []string) []byte {
	s := slices.Clone(subs)
	slices.Sort(s)
	s = slices.Compact(s)
	if s == nil {
		s = []string{}
	}
	b, _ := json.Marshal(s)
	return append(b, '\n')
}

// entry is one message in a mailbox's index.
type entry struct {
	UID     imap.UID
	Version store.Hash // the message's blob at msg/<id>/<shard>/<uid>
	Size    int64
	Date    time.Time // INTERNALDATE
	Flags   []imap.Flag
	modseq  uint64 // in memory only: when the entry last changed
}

// encodeChunk writes entries (sorted by UID, all in one chunk) in the index chunk format:
// a header line, then one line per message "UID VERSION SIZE DATE FLAG...".
func encodeChunk(entries []entry) []byte {
	var b bytes.Buffer
	b.Grow(len(indexHeader) + len(entries)*96)
	b.WriteString(indexHeader)
	for _, e := range entries {
		b.WriteString(strconv.FormatUint(uint64(e.UID), 10))
		b.WriteByte(' ')
		b.WriteString(string(e.Version))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(e.Size, 10))
		b.WriteByte(' ')
		b.WriteString(e.Date.Format(time.RFC3339))
		for _, f := range e.Flags {
			b.WriteByte(' ')
			b.WriteString(string(f))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// decodeChunk parses an index chunk; every UID must belong to chunk, lines are in
// increasing UID order.
func decodeChunk(b []byte, chunk uint32) ([]entry, error) {
	if len(b) > maxChunkSize {
		return nil, fmt.Errorf("%w: index chunk of %d bytes", errLayout, len(b))
	}
	rest, ok := bytes.CutPrefix(b, []byte(indexHeader))
	if !ok {
		return nil, fmt.Errorf("%w: index chunk: bad header", errLayout)
	}
	var out []entry
	var last imap.UID
	for len(rest) > 0 {
		line, tail, found := bytes.Cut(rest, []byte{'\n'})
		if !found {
			return nil, fmt.Errorf("%w: index chunk: unterminated line", errLayout)
		}
		rest = tail
		e, err := decodeLine(string(line))
		if err != nil {
			return nil, err
		}
		if chunkOf(e.UID) != chunk {
			return nil, fmt.Errorf("%w: index chunk %d: uid %d out of place", errLayout, chunk, e.UID)
		}
		if e.UID <= last {
			return nil, fmt.Errorf("%w: index chunk %d: uid %d out of order", errLayout, chunk, e.UID)
		}
		last = e.UID
		out = append(out, e)
	}
	return out, nil
}

func decodeLine(line string) (entry, error) {
	var e entry
	f := strings.Split(line, " ")
	if len(f) < 4 || len(f) > 4+maxFlagsPerMsg {
		return e, fmt.Errorf("%w: index line has %d fields", errLayout, len(f))
	}
	uid, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil || uid == 0 {
		return e, fmt.Errorf("%w: index line: bad uid %q", errLayout, f[0])
	}
	if !validHash(f[1]) {
		return e, fmt.Errorf("%w: index line: bad version %q", errLayout, f[1])
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || size < 0 || size > store.MaxValueSize {
		return e, fmt.Errorf("%w: index line: bad size %q", errLayout, f[2])
	}
	date, err := time.Parse(time.RFC3339, f[3])
	if err != nil {
		return e, fmt.Errorf("%w: index line: bad date %q", errLayout, f[3])
	}
	e.UID, e.Version, e.Size, e.Date = imap.UID(uid), store.Hash(f[1]), size, date
	for _, fl := range f[4:] {
		if !validFlag(fl) {
			return e, fmt.Errorf("%w: index line: bad flag %q", errLayout, fl)
		}
		e.Flags = append(e.Flags, canonicalFlag(imap.Flag(fl)))
	}
	return e, nil
}

func validHash(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validFlag reports whether s is a flag as IMAP writes it: "\Name" for a system flag or an
// atom for a keyword, without the characters that atoms forbid.
func validFlag(s string) bool {
	if s == "" || len(s) > maxFlagLen {
		return false
	}
	body := s
	if s[0] == '\\' {
		body = s[1:]
		if body == "" || body == "*" {
			return false
		}
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c <= ' ' || c >= 0x7f {
			return false
		}
		switch c {
		case '(', ')', '{', '%', '*', '"', '\\', ']':
			return false
		}
	}
	return true
}

// canonicalFlag spells system flags the standard way; keywords stay as written
// (keyword comparison is case-insensitive, see flagEqual).
func canonicalFlag(f imap.Flag) imap.Flag {
	switch strings.ToLower(string(f)) {
	case `\seen`:
		return imap.FlagSeen
	case `\answered`:
		return imap.FlagAnswered
	case `\flagged`:
		return imap.FlagFlagged
	case `\deleted`:
		return imap.FlagDeleted
	case `\draft`:
		return imap.FlagDraft
	case `\recent`:
		return `\Recent`
	case "$forwarded":
		return imap.FlagForwarded
	case "$mdnsent":
		return imap.FlagMDNSent
	case "$junk":
		return imap.FlagJunk
	case "$notjunk":
		return imap.FlagNotJunk
	case "$phishing":
		return imap.FlagPhishing
	case "$important":
		return imap.FlagImportant
	}
	return f
}

func knownSpecialUse(a imap.MailboxAttr) bool {
	switch a {
	case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
		imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrImportant:
		return true
	}
	return false
}

// checkMailboxName rejects names that cannot be stored: empty, too long, control
// characters, empty hierarchy levels, or a leading/trailing delimiter.
func checkMailboxName(name string) error {
	if name == "" || len(name) > maxMailboxName {
		return fmt.Errorf("mailbox name must be 1–%d bytes", maxMailboxName)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f || r == '*' || r == '%' {
			return fmt.Errorf("mailbox name %q has a forbidden character", name)
		}
	}
	for _, part := range strings.Split(name, delimStr) {
		if part == "" {
			return fmt.Errorf("mailbox name %q has an empty level", name)
		}
	}
	return nil
}

const (
	delim    = '/'
	delimStr = "/"
)

// normalizeName makes INBOX case-insensitive, as IMAP requires.
func normalizeName(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	if len(name) > 6 && strings.EqualFold(name[:6], "INBOX/") {
		return "INBOX" + name[5:]
	}
	return name
}
