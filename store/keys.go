package store

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CheckKey reports whether key is a valid key: non-empty, at most MaxKeyLen bytes of UTF-8,
// slash-separated segments that are non-empty, at most MaxSegmentLen bytes, not "." or "..",
// not ".git" in any case, and free of NUL, control characters and backslashes.
func CheckKey(key string) error {
	if err := checkPath(key); err != nil {
		return fmt.Errorf("store: key %q: %w", truncate(key), err)
	}
	return nil
}

// CheckPrefix is CheckKey for a prefix, which may also be empty (everything).
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return CheckKey(prefix)
}

func checkPath(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalid)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: contains %q", ErrInvalid, r)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%w: empty path segment", ErrInvalid)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: %q segment", ErrInvalid, seg)
		case strings.EqualFold(seg, ".git"):
			return fmt.Errorf("%w: .git segment", ErrInvalid)
		case len(seg) > MaxSegmentLen:
			return fmt.Errorf("%w: segment longer than %d bytes", ErrInvalid, MaxSegmentLen)
		}
	}
	return nil
}

// CheckBranch reports whether name is a valid branch name: what git's check-ref-format
// accepts, restricted to letters, digits and "._-/", at most MaxBranchLen bytes, and not
// 40 hex digits (which would read as a commit id).
func CheckBranch(name string) error {
	bad := func(why string) error { return fmt.Errorf("store: branch %q: %w: %s", truncate(name), ErrInvalid, why) }
	if name == "" {
		return bad("empty")
	}
	if len(name) > MaxBranchLen {
		return bad("too long")
	}
	if IsHash(name) {
		return bad("looks like a commit id")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '/'
		if !ok {
			return bad(fmt.Sprintf("contains %q", r))
		}
	}
	if strings.Contains(name, "..") || strings.Contains(name, "//") {
		return bad("contains .. or //")
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || strings.HasPrefix(seg, ".") || strings.HasSuffix(seg, ".lock") {
			return bad("bad path segment")
		}
	}
	if strings.HasSuffix(name, ".") || name == "HEAD" {
		return bad("reserved")
	}
	return nil
}

// IsHash reports whether s is 40 lowercase hex digits.
func IsHash(s string) bool {
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

// CheckRev reports whether rev is a valid revision: "", a branch name, or a commit id.
func CheckRev(rev string) error {
	if rev == "" || IsHash(rev) {
		return nil
	}
	return CheckBranch(rev)
}

// BlobHash returns the Version a value gets: its git blob hash.
func BlobHash(value []byte) Hash {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.Itoa(len(value)) + "\x00"))
	h.Write(value)
	return Hash(hex.EncodeToString(h.Sum(nil)))
}

// UnderPrefix reports whether key is prefix itself or lies below it ("" holds every key).
func UnderPrefix(key, prefix string) bool {
	if prefix == "" || key == prefix {
		return true
	}
	return len(key) > len(prefix) && key[len(prefix)] == '/' && key[:len(prefix)] == prefix
}

// CheckChange validates a Change's shape (not its preconditions) against the limits.
// maxValue is the largest value allowed (<= 0: MaxValueSize).
func CheckChange(c *Change, maxValue int64) error {
	if maxValue <= 0 {
		maxValue = MaxValueSize
	}
	if c.Branch != "" {
		if err := CheckBranch(c.Branch); err != nil {
			return err
		}
	}
	if c.Parent != "" && !IsHash(string(c.Parent)) {
		return fmt.Errorf("store: parent %q: %w", truncate(string(c.Parent)), ErrInvalid)
	}
	if len(c.Ops) == 0 {
		return fmt.Errorf("store: change with no operations: %w", ErrInvalid)
	}
	if len(c.Ops) > MaxOps {
		return fmt.Errorf("store: %d operations, limit %d: %w", len(c.Ops), MaxOps, ErrTooLarge)
	}
	if err := CheckAuthor(c.Author, c.Message); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.Ops))
	for i := range c.Ops {
		op := &c.Ops[i]
		if err := CheckKey(op.Key); err != nil {
			return err
		}
		if seen[op.Key] {
			return fmt.Errorf("store: key %q twice in one change: %w", op.Key, ErrInvalid)
		}
		seen[op.Key] = true
		if int64(len(op.Value)) > maxValue {
			return fmt.Errorf("store: put %q: %d bytes, limit %d: %w", op.Key, len(op.Value), maxValue, ErrTooLarge)
		}
		if op.IfMatch != "" && !IsHash(string(op.IfMatch)) {
			return fmt.Errorf("store: key %q: ifMatch %q: %w", op.Key, truncate(string(op.IfMatch)), ErrInvalid)
		}
		if op.Copy != "" && (!IsHash(string(op.Copy)) || op.Delete || op.Value != nil) {
			return fmt.Errorf("store: key %q: copy needs a version and no value or delete: %w", op.Key, ErrInvalid)
		}
	}
	// A key and a key below it cannot both be put: a path is a value or a directory.
	for k := range seen {
		for i := strings.IndexByte(k, '/'); i >= 0; i = nextSlash(k, i) {
			if seen[k[:i]] {
				return fmt.Errorf("store: %q and %q in one change: %w", k[:i], k, ErrConflict)
			}
		}
	}
	return nil
}

// CheckAuthor validates a commit's author and message: a message of at most MaxMessageLen
// bytes without NUL, an author without NUL, newlines or angle brackets.
func CheckAuthor(a Signature, message string) error {
	if len(message) > MaxMessageLen {
		return fmt.Errorf("store: message of %d bytes: %w", len(message), ErrTooLarge)
	}
	if strings.ContainsRune(message, 0) || strings.ContainsAny(a.Name+a.Email, "<>\n\x00") || len(a.Name)+len(a.Email) > 1024 {
		return fmt.Errorf("store: author or message: %w: NUL, newline, angle bracket or too long", ErrInvalid)
	}
	return nil
}

func nextSlash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// CheckRepoName reports whether name is a valid repository name: "owner/name", each part
// 1–64 bytes of lowercase letters, digits, '.', '_' and '-', starting with a letter or
// digit, the name not ending in ".git". The owner is the user the repository belongs to.
func CheckRepoName(name string) error {
	owner, rest, ok := strings.Cut(name, "/")
	if !ok || !repoPart(owner) || !repoPart(rest) || strings.HasSuffix(rest, ".git") {
		return fmt.Errorf("store: repository name %q: %w: want owner/name in lowercase letters, digits, . _ -", truncate(name), ErrInvalid)
	}
	return nil
}

func repoPart(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}
