package migrate

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
)

// maildirLetters maps the Maildir info letters to IMAP flags, in the ASCII order names
// carry them.
var maildirLetters = []struct {
	letter byte
	flag   imap.Flag
}{
	{'D', imap.FlagDraft},
	{'F', imap.FlagFlagged},
	{'P', imap.FlagForwarded},
	{'R', imap.FlagAnswered},
	{'S', imap.FlagSeen},
	{'T', imap.FlagDeleted},
}

// MaxMaildirNameLen is the longest Maildir file name ParseMaildirName accepts.
const MaxMaildirNameLen = 255

// ParseMaildirName splits a Maildir file name "UNIQUE:2,FLAGS" into its unique part and
// its IMAP flags (D \Draft, F \Flagged, P $Forwarded, R \Answered, S \Seen,
// T \Trashed → \Deleted). Letters it does not know (lower-case keywords) are ignored;
// a name without ":2," has no flags. ErrFormat for an empty or impossible name.
func ParseMaildirName(name string) (unique string, flags []imap.Flag, err error) {
	if name == "" || len(name) > MaxMaildirNameLen || strings.ContainsAny(name, "/\x00") || name[0] == '.' {
		return "", nil, fmt.Errorf("migrate: maildir file name %q: %w", clipString(name), ErrFormat)
	}
	unique, info, ok := strings.Cut(name, ":")
	if unique == "" {
		return "", nil, fmt.Errorf("migrate: maildir file name %q: %w: no unique part", clipString(name), ErrFormat)
	}
	if !ok {
		return unique, nil, nil
	}
	letters, ok := strings.CutPrefix(info, "2,")
	if !ok {
		return unique, nil, nil // experimental ":1," info, or something else: no flags
	}
	for i := 0; i < len(letters); i++ {
		for _, l := range maildirLetters {
			if l.letter == letters[i] {
				flags = addFlag(flags, l.flag)
			}
		}
	}
	return unique, flags, nil
}

// MaildirName returns "UNIQUE:2,LETTERS" for flags; flags without a letter are left out.
func MaildirName(unique string, flags []imap.Flag) string {
	var b strings.Builder
	b.WriteString(unique)
	b.WriteString(":2,")
	for _, l := range maildirLetters {
		if slices.Contains(flags, l.flag) {
			b.WriteByte(l.letter)
		}
	}
	return b.String()
}

// isMaildir reports whether dir has cur and new subdirectories.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// Mailboxes lists the mailboxes of the Maildir at root and the directories that hold
// them: the root itself is INBOX, each Maildir++ subfolder ".A.B" is "A/B", and a plain
// subdirectory that is itself a Maildir (the "SubFolders Verbatim" layout of mbsync,
// where INBOX may also be a directory "INBOX") is its name, nested.
func Mailboxes(root string) (map[string]string, error) {
	if !isMaildir(root) {
		found := false
		if ents, err := os.ReadDir(root); err == nil {
			for _, e := range ents {
				if e.IsDir() && isMaildir(filepath.Join(root, e.Name())) {
					found = true
					break
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("migrate: %s: %w: not a Maildir (no cur and new)", root, ErrFormat)
		}
	}
	boxes := map[string]string{}
	if isMaildir(root) {
		boxes["INBOX"] = root
	}
	var walk func(dir, prefix string, depth int) error
	walk = func(dir, prefix string, depth int) error {
		if depth > MaxMailboxDepth {
			return nil
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("migrate: read maildir: %w", err)
		}
		for _, e := range ents {
			n := e.Name()
			if !e.IsDir() || n == "cur" || n == "new" || n == "tmp" || n == "." || n == ".." {
				continue
			}
			p := filepath.Join(dir, n)
			if strings.HasPrefix(n, ".") {
				if depth > 0 || !isMaildir(p) {
					continue // Maildir++ folders live only directly below the root
				}
				parts := strings.Split(n[1:], ".")
				for i := range parts {
					parts[i] = unescapeName(parts[i])
				}
				name := strings.Join(parts, "/")
				if validMailboxName(name) {
					boxes[name] = p
				}
				continue
			}
			name := prefix + unescapeName(n)
			if isMaildir(p) && validMailboxName(name) {
				if strings.EqualFold(name, "INBOX") {
					name = "INBOX"
				}
				if _, dup := boxes[name]; !dup {
					boxes[name] = p
				}
			}
			if err := walk(p, name+"/", depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root, "", 0); err != nil {
		return nil, err
	}
	return boxes, nil
}

func validMailboxName(name string) bool {
	if name == "" || len(name) > MaxMailboxNameLen || strings.Count(name, "/") >= MaxMailboxDepth {
		return false
	}
	for _, p := range strings.Split(name, "/") {
		if p == "" {
			return false
		}
	}
	return true
}

// ReadMaildir calls fn for every message of every mailbox of the Maildir at root (see
// Mailboxes), mailbox by mailbox in name order and, inside one, in file name order
// (cur/ first, then new/). The internal date is the file's mtime, or the Date header
// when the mtime is not after 1970 (archives that lost it). Files over maxSize bytes (<= 0: DefaultMaxMessageSize) are ErrTooLarge.
// An error from fn stops the walk and is returned.
func ReadMaildir(root string, maxSize int, fn func(*Message) error) error {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	boxes, err := Mailboxes(root)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(boxes))
	for n := range boxes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, sub := range []string{"cur", "new"} {
			dir := filepath.Join(boxes[name], sub)
			ents, err := os.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("migrate: read maildir %s: %w", name, err)
			}
			for _, e := range ents {
				if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				_, flags, err := ParseMaildirName(e.Name())
				if err != nil {
					return err
				}
				p := filepath.Join(dir, e.Name())
				body, mtime, err := readFile(p, maxSize)
				if err != nil {
					return err
				}
				if mtime.Unix() <= 0 {
					_, mtime = headerFlagsAndDate(body, time.Time{})
				}
				m := &Message{Mailbox: name, Body: body, Flags: flags, Date: mtime, Path: p}
				if err := fn(m); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func readFile(p string, maxSize int) ([]byte, time.Time, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("migrate: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("migrate: %w", err)
	}
	if fi.Size() > int64(maxSize) {
		return nil, time.Time{}, fmt.Errorf("migrate: %s: %w (%d bytes, limit %d)", p, ErrTooLarge, fi.Size(), maxSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(maxSize)+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("migrate: read %s: %w", p, err)
	}
	if len(b) > maxSize {
		return nil, time.Time{}, fmt.Errorf("migrate: %s: %w", p, ErrTooLarge)
	}
	return b, fi.ModTime(), nil
}

// MaildirWriter writes messages into a Maildir: INBOX at the root, other mailboxes as
// Maildir++ subfolders ("Archive/2024" → ".Archive.2024"; a "." or "%" inside a level is
// written as "%2E" or "%25"). Each message is written to tmp/, fsynced, and moved to
// cur/ under a name carrying its flags; its mtime is its internal date.
type MaildirWriter struct {
	root    string
	prefix  string
	counter atomic.Uint64
	made    map[string]bool
}

// NewMaildirWriter returns a writer into root, which it creates if needed.
func NewMaildirWriter(root string) (*MaildirWriter, error) {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", "\\057", ":", "\\072", ".", "_").Replace(host)
	if host == "" {
		host = "hearth"
	}
	return &MaildirWriter{
		root:   root,
		prefix: fmt.Sprintf("M%s_P%d.%s", hex.EncodeToString(r[:]), os.Getpid(), host),
		made:   map[string]bool{},
	}, nil
}

// Dir returns the directory that holds mailbox name.
func (w *MaildirWriter) Dir(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return w.root
	}
	parts := strings.Split(name, "/")
	for i := range parts {
		parts[i] = escapeName(parts[i])
	}
	return filepath.Join(w.root, "."+strings.Join(parts, "."))
}

// MakeMailbox creates the Maildir of a mailbox (cur, new, tmp) if it does not exist.
func (w *MaildirWriter) MakeMailbox(name string) (string, error) {
	if !validMailboxName(name) {
		return "", fmt.Errorf("migrate: mailbox name %q: %w", clipString(name), ErrFormat)
	}
	dir := w.Dir(name)
	if w.made[dir] {
		return dir, nil
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return "", fmt.Errorf("migrate: make mailbox %q: %w", name, err)
		}
	}
	if dir != w.root {
		// Maildir++ marks a folder with this file (Courier, Dovecot).
		if f, err := os.OpenFile(filepath.Join(dir, "maildirfolder"), os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
	w.made[dir] = true
	return dir, nil
}

// Write stores m in its mailbox and returns the file's path. A zero Date leaves the
// mtime at now.
func (w *MaildirWriter) Write(m *Message) (string, error) {
	dir, err := w.MakeMailbox(m.Mailbox)
	if err != nil {
		return "", err
	}
	d := m.Date
	if d.IsZero() {
		d = time.Now()
	}
	unique := fmt.Sprintf("%d.%sQ%d,S=%d", d.Unix(), w.prefix, w.counter.Add(1), len(m.Body))
	tmp := filepath.Join(dir, "tmp", unique)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("migrate: write message: %w", err)
	}
	_, err = f.Write(m.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !m.Date.IsZero() {
		err = os.Chtimes(tmp, m.Date, m.Date)
	}
	final := filepath.Join(dir, "cur", MaildirName(unique, m.Flags))
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("migrate: write message to %s: %w", m.Mailbox, err)
	}
	return final, nil
}

// Sync makes the directory entries of everything written so far durable.
func (w *MaildirWriter) Sync() error {
	var errs []error
	for dir := range w.made {
		for _, d := range []string{filepath.Join(dir, "cur"), dir} {
			if err := syncDir(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := syncDir(w.root); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return fmt.Errorf("migrate: sync %s: %w", d, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("migrate: sync %s: %w", d, err)
	}
	return nil
}

// escapeName makes one level of a mailbox name safe as part of a Maildir++ folder name.
func escapeName(s string) string {
	return strings.NewReplacer("%", "%25", ".", "%2E").Replace(s)
}

// unescapeName undoes escapeName.
func unescapeName(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%2E", ".", "%2e", ".", "%25", "%").Replace(s)
}

func clipString(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
