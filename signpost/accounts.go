// Package signpost is identity and connectivity for every appliance; for now: accounts and
// the listeners systemd hands over.
package signpost

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Errors returned by Accounts; test them with errors.Is.
var (
	// ErrExists: Add was asked for a user that already exists.
	ErrExists = errors.New("signpost: user exists")
	// ErrNotFound: the user does not exist (AddToken).
	ErrNotFound = errors.New("signpost: no such user")
	// ErrBadCredentials: the user, password or token is wrong. It never says which.
	ErrBadCredentials = errors.New("signpost: bad credentials")
	// ErrInvalid: a name, password or label is malformed or outside its limits.
	ErrInvalid = errors.New("signpost: invalid argument")
	// ErrLimit: there are already as many users or tokens as allowed.
	ErrLimit = errors.New("signpost: limit reached")
)

// Limits Accounts enforces.
const (
	MaxNameLen      = 64       // bytes in a user name
	MinPasswordLen  = 8        // bytes in a password
	MaxPasswordLen  = 1024     // bytes in a password
	MaxLabelLen     = 64       // bytes in a token label
	MaxUsers        = 1000     // users in one accounts file
	MaxTokens       = 100      // tokens of one user
	MaxAccountsFile = 32 << 20 // bytes of the accounts file
)

// Argon2id parameters for new password hashes (OWASP's minimum recommendation). Verification
// uses the parameters stored with each hash, so these can be raised later.
const (
	argonMemory  = 19456 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Bounds on parameters read back from a stored hash, so a damaged file cannot make one
// check take gigabytes or minutes.
const (
	maxArgonMemory  = 1 << 20 // KiB (1 GiB)
	maxArgonTime    = 16
	maxArgonThreads = 16
)

// tokenBytes is the number of random bytes in a bearer token.
const tokenBytes = 32

// Accounts is a set of users with argon2id password hashes and bearer tokens, kept in one
// JSON file. It is safe for concurrent use, and beside other processes using the same file
// (writes take an advisory lock and replace the file atomically; reads notice the new file).
type Accounts struct {
	path  string
	dummy string // a well-formed hash no password matches: unknown users cost the same

	mu    sync.Mutex
	data  accountsFile
	stamp os.FileInfo // of the file data was read from; nil when there was none

	// verified remembers recent successful password checks, so a client that sends
	// HTTP Basic credentials with every request (DAV, REST) costs one argon2id run (19 MiB,
	// tens of ms) per verifiedTTL instead of one per request. Keys are HMACs under a
	// per-process random key of the user, the stored hash and the password: no password
	// is kept, and a changed password (a new hash) misses.
	cacheKey []byte
	verified map[[32]byte]time.Time
}

// verifiedTTL is how long a successful password check is remembered; maxVerified bounds
// the cache (it is emptied when full).
const (
	verifiedTTL = 5 * time.Minute
	maxVerified = 4096
)

func (a *Accounts) credentialKey(user, hash, password string) [32]byte {
	m := hmac.New(sha256.New, a.cacheKey)
	for _, s := range []string{user, hash, password} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// accountsFile is the on-disk form. It holds no plaintext secrets.
type accountsFile struct {
	Users []userRecord `json:"users"`
}

type userRecord struct {
	Name     string        `json:"name"`
	Password string        `json:"password"` // PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$hash
	Created  time.Time     `json:"created"`
	Tokens   []tokenRecord `json:"tokens,omitempty"`
}

type tokenRecord struct {
	Label   string    `json:"label"`
	SHA256  string    `json:"sha256"` // hex SHA-256 of the token as handed out
	Created time.Time `json:"created"`
}

// OpenAccounts opens the accounts kept in the JSON file at path. The file need not exist:
// it is created (mode 0600) on the first write; its directory must exist by then. Writers
// lock the empty file path+".lock" beside it.
func OpenAccounts(path string) (*Accounts, error) {
	if path == "" {
		return nil, fmt.Errorf("signpost: accounts: %w: empty path", ErrInvalid)
	}
	salt := make([]byte, argonSaltLen)
	sum := make([]byte, argonKeyLen)
	rand.Read(salt)
	rand.Read(sum)
	a := &Accounts{path: path, dummy: encodeHash(argonMemory, argonTime, argonThreads, salt, sum),
		cacheKey: make([]byte, 32), verified: map[[32]byte]time.Time{}}
	rand.Read(a.cacheKey)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Path returns the file the accounts are kept in.
func (a *Accounts) Path() string { return a.path }

// Add creates a user. The name is 1–64 bytes of lowercase letters, digits, '.', '_' and '-',
// starting with a letter or digit; the password is 8–1024 bytes. ErrExists if the user exists.
func (a *Accounts) Add(ctx context.Context, name, password string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("signpost: add %q: %w", name, err)
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("signpost: add %q: %w", name, err)
	}
	hash := hashPassword(password) // slow: outside the lock
	err := a.update(func(f *accountsFile) error {
		i, found := f.find(name)
		if found {
			return fmt.Errorf("signpost: add %q: %w", name, ErrExists)
		}
		if len(f.Users) >= MaxUsers {
			return fmt.Errorf("signpost: add %q: %w: %d users", name, ErrLimit, MaxUsers)
		}
		f.Users = slices.Insert(f.Users, i, userRecord{Name: name, Password: hash, Created: time.Now().UTC().Truncate(time.Second)})
		return nil
	})
	return err
}

// List returns the names of all users, sorted.
func (a *Accounts) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signpost: list: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reload(); err != nil {
		return nil, err
	}
	names := make([]string, len(a.data.Users))
	for i, u := range a.data.Users {
		names[i] = u.Name
	}
	return names, nil
}

// CheckPassword returns nil if password is user's password and ErrBadCredentials otherwise,
// taking the same time whether or not the user exists.
func (a *Accounts) CheckPassword(ctx context.Context, user, password string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("signpost: check password: %w", err)
	}
	a.mu.Lock()
	err := a.reload()
	hash, known := a.dummy, false
	if i, ok := a.data.find(user); ok && err == nil {
		hash, known = a.data.Users[i].Password, true
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if _, perr := parseHash(hash); perr != nil {
		hash, known = a.dummy, false // a damaged record matches nothing, at the usual cost
	}
	if len(password) > MaxPasswordLen {
		return ErrBadCredentials // refuse to spend work on huge inputs
	}
	key := a.credentialKey(user, hash, password)
	now := time.Now()
	a.mu.Lock()
	exp, hit := a.verified[key]
	a.mu.Unlock()
	if known && hit && now.Before(exp) {
		return nil
	}
	ok := verifyPassword(hash, password)
	if !ok || !known {
		return ErrBadCredentials
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerified {
		clear(a.verified)
	}
	a.verified[key] = now.Add(verifiedTTL)
	a.mu.Unlock()
	return nil
}

// AddToken makes a new bearer token for user and returns it: 32 random bytes in base64url.
// Only its SHA-256 is kept, so the token cannot be shown again. The label (1–64 printable
// bytes) says what the token is for. ErrNotFound if the user does not exist.
func (a *Accounts) AddToken(ctx context.Context, user, label string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("signpost: add token for %q: %w", user, err)
	}
	if err := checkLabel(label); err != nil {
		return "", fmt.Errorf("signpost: add token for %q: %w", user, err)
	}
	raw := make([]byte, tokenBytes)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	err := a.update(func(f *accountsFile) error {
		i, ok := f.find(user)
		if !ok {
			return fmt.Errorf("signpost: add token for %q: %w", user, ErrNotFound)
		}
		u := &f.Users[i]
		if len(u.Tokens) >= MaxTokens {
			return fmt.Errorf("signpost: add token for %q: %w: %d tokens", user, ErrLimit, MaxTokens)
		}
		u.Tokens = append(u.Tokens, tokenRecord{Label: label, SHA256: tokenHash(token), Created: time.Now().UTC().Truncate(time.Second)})
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// CheckToken returns the user a bearer token belongs to, or ErrBadCredentials.
func (a *Accounts) CheckToken(ctx context.Context, token string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("signpost: check token: %w", err)
	}
	if len(token) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return "", ErrBadCredentials
	}
	if _, err := base64.RawURLEncoding.DecodeString(token); err != nil {
		return "", ErrBadCredentials
	}
	want, _ := hex.DecodeString(tokenHash(token))
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reload(); err != nil {
		return "", err
	}
	user := ""
	for _, u := range a.data.Users {
		for _, t := range u.Tokens {
			have, err := hex.DecodeString(t.SHA256)
			if err == nil && subtle.ConstantTimeCompare(have, want) == 1 {
				user = u.Name
			}
		}
	}
	if user == "" {
		return "", ErrBadCredentials
	}
	return user, nil
}

// CheckName reports whether name is a valid user name: 1–64 bytes of lowercase letters,
// digits, '.', '_' and '-', starting with a letter or digit. Errors wrap ErrInvalid.
func CheckName(name string) error {
	ok := name != "" && len(name) <= MaxNameLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("signpost: user name %q: %w: want 1–%d of a-z 0-9 . _ -, starting with a letter or digit", truncate(name), ErrInvalid, MaxNameLen)
	}
	return nil
}

func checkPassword(p string) error {
	if len(p) < MinPasswordLen || len(p) > MaxPasswordLen {
		return fmt.Errorf("%w: password must be %d–%d bytes, not %d", ErrInvalid, MinPasswordLen, MaxPasswordLen, len(p))
	}
	return nil
}

func checkLabel(l string) error {
	if l == "" || len(l) > MaxLabelLen || !utf8.ValidString(l) {
		return fmt.Errorf("%w: token label must be 1–%d bytes of UTF-8", ErrInvalid, MaxLabelLen)
	}
	for _, r := range l {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: token label contains %q", ErrInvalid, r)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// find returns where name is or would be in the sorted user list.
func (f *accountsFile) find(name string) (int, bool) {
	return slices.BinarySearchFunc(f.Users, name, func(u userRecord, n string) int { return strings.Compare(u.Name, n) })
}

// clone copies f deeply enough for an update to change it without touching the original.
func (f *accountsFile) clone() accountsFile {
	c := accountsFile{Users: slices.Clone(f.Users)}
	for i := range c.Users {
		c.Users[i].Tokens = slices.Clone(c.Users[i].Tokens)
	}
	return c
}

// reload rereads the file if it is not the one a.data came from. a.mu must be held.
func (a *Accounts) reload() error {
	f, err := os.Open(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		a.data, a.stamp = accountsFile{}, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("signpost: accounts: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("signpost: accounts: %w", err)
	}
	if a.stamp != nil && os.SameFile(a.stamp, fi) && a.stamp.ModTime().Equal(fi.ModTime()) && a.stamp.Size() == fi.Size() {
		return nil
	}
	if fi.Size() > MaxAccountsFile {
		return fmt.Errorf("signpost: accounts %s: %d bytes, limit %d", a.path, fi.Size(), MaxAccountsFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxAccountsFile+1))
	if err != nil {
		return fmt.Errorf("signpost: accounts %s: %w", a.path, err)
	}
	data, err := parseAccounts(b)
	if err != nil {
		return fmt.Errorf("signpost: accounts %s: %w", a.path, err)
	}
	a.data, a.stamp = data, fi
	return nil
}

func parseAccounts(b []byte) (accountsFile, error) {
	var data accountsFile
	if len(b) > MaxAccountsFile {
		return data, fmt.Errorf("longer than %d bytes", MaxAccountsFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&data); err != nil {
		return data, fmt.Errorf("bad JSON: %w", err)
	}
	if len(data.Users) > MaxUsers {
		return data, fmt.Errorf("%d users, limit %d", len(data.Users), MaxUsers)
	}
	for i, u := range data.Users {
		if err := CheckName(u.Name); err != nil {
			return data, err
		}
		if i > 0 && data.Users[i-1].Name >= u.Name {
			return data, fmt.Errorf("users not sorted or %q twice", u.Name)
		}
		if len(u.Tokens) > MaxTokens {
			return data, fmt.Errorf("user %q: %d tokens, limit %d", u.Name, len(u.Tokens), MaxTokens)
		}
	}
	return data, nil
}

// update applies fn to the current accounts and writes the result, holding the file lock so
// no other process's update is lost. If fn fails, nothing is written.
func (a *Accounts) update(fn func(*accountsFile) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	unlock, err := lockFile(a.path + ".lock")
	if err != nil {
		return fmt.Errorf("signpost: accounts: lock: %w", err)
	}
	defer unlock()
	if err := a.reload(); err != nil {
		return err
	}
	next := a.data.clone()
	if err := fn(&next); err != nil {
		return err
	}
	b, err := json.MarshalIndent(&next, "", "  ")
	if err != nil {
		return fmt.Errorf("signpost: accounts: %w", err)
	}
	b = append(b, '\n')
	if len(b) > MaxAccountsFile {
		return fmt.Errorf("signpost: accounts: %w: file would be %d bytes", ErrLimit, len(b))
	}
	fi, err := writeFileAtomic(a.path, b)
	if err != nil {
		return fmt.Errorf("signpost: accounts: %w", err)
	}
	a.data, a.stamp = next, fi
	return nil
}

// writeFileAtomic replaces path with b durably: a temporary file in the same directory is
// written, fsynced and renamed over path, then the directory is fsynced. It returns the
// new file's info.
func writeFileAtomic(path string, b []byte) (os.FileInfo, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, err
	}
	if _, err := tmp.Write(b); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	fi, err := tmp.Stat()
	if err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return nil, err
	}
	return fi, nil
}

// hashPassword returns password's argon2id hash as a PHC string with a new random salt.
func hashPassword(password string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return encodeHash(argonMemory, argonTime, argonThreads, salt, sum)
}

func encodeHash(m, t uint32, p uint8, salt, sum []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// argonParams are the parts of a PHC argon2id string.
type argonParams struct {
	memory, time uint32
	threads      uint8
	salt, sum    []byte
}

// parseHash decodes a PHC argon2id string, refusing parameters outside sane bounds.
func parseHash(s string) (argonParams, error) {
	var p argonParams
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errors.New("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, fmt.Errorf("unsupported version %q", parts[2])
	}
	var m, t, th uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, fmt.Errorf("parameter %q: %w", kv, err)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		default:
			return p, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if th < 1 || th > maxArgonThreads || t < 1 || t > maxArgonTime || m < 8*th || m > maxArgonMemory {
		return p, fmt.Errorf("parameters %q out of bounds", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, errors.New("bad salt")
	}
	sum, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(sum) < 16 || len(sum) > 64 {
		return p, errors.New("bad hash")
	}
	return argonParams{memory: uint32(m), time: uint32(t), threads: uint8(th), salt: salt, sum: sum}, nil
}

// verifyPassword reports whether password matches the PHC hash; a malformed hash matches
// nothing.
func verifyPassword(hash, password string) bool {
	p, err := parseHash(hash)
	if err != nil {
		return false
	}
	sum := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.sum)))
	return subtle.ConstantTimeCompare(sum, p.sum) == 1
}

// tokenHash is what is stored of a token: its SHA-256 in hex.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
