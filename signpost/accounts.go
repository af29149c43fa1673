// Package signpost is identity and connectivity for every appliance: accounts, login rate
// limits and the listeners systemd hands over.
package signpost

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Errors returned by Accounts; test them with errors.Is.
var (
	// ErrExists: Add was asked for a user (or an app password label) that already exists.
	ErrExists = errors.New("signpost: exists")
	// ErrNotFound: the user, app password or tailnet mapping does not exist.
	ErrNotFound = errors.New("signpost: not found")
	// ErrBadCredentials: the user, password or token is wrong, or the user is disabled.
	// It never says which.
	ErrBadCredentials = errors.New("signpost: bad credentials")
	// ErrInvalid: a name, password, label or login is malformed or outside its limits.
	ErrInvalid = errors.New("signpost: invalid argument")
	// ErrLimit: there are already as many users or app passwords as allowed.
	ErrLimit = errors.New("signpost: limit reached")
)

// errDamaged marks a stored record that does not decode.
var errDamaged = errors.New("damaged record")

// AccountsRepo is the store repository accounts live in, below a data directory's repos.
const AccountsRepo = ReservedName + "/accounts"

// Keys in AccountsRepo.
const (
	usersPrefix   = "users/"   // users/NAME.json: a userRecord
	tailnetPrefix = "tailnet/" // tailnet/LOGIN.json: a tailnetRecord
	recordSuffix  = ".json"
)

// maxRetries bounds how often an update re-reads and retries after losing a
// compare-and-swap to a concurrent writer.
const maxRetries = 100

// verifiedTTL is how long a successful password check is remembered; maxVerified bounds
// the cache (it is emptied when full).
const (
	verifiedTTL = 5 * time.Minute
	maxVerified = 4096
)

// author signs every commit Accounts makes.
var author = store.Signature{Name: "signpost", Email: "signpost@hearth.invalid"}

// AccountsOptions configure Accounts.
type AccountsOptions struct {
	// Logger receives logins refused, lockouts and account changes (never a secret).
	// nil: slog.Default().
	Logger *slog.Logger
	// Now returns the current time (nil: time.Now); tests set it.
	Now func() time.Time
	// Limits configure the rate limiter of failed logins; the zero value is the defaults
	// documented on LimitOptions. Its Logger and Now default to the ones above.
	Limits LimitOptions
}

// User describes one account; it holds no secret.
type User struct {
	Name         string    `json:"name"`
	Disabled     bool      `json:"disabled,omitempty"`
	Created      time.Time `json:"created"`
	AppPasswords int       `json:"appPasswords"` // how many
}

// AppPassword describes one app password; the secret itself is shown only when it is made.
type AppPassword struct {
	Label   string    `json:"label"`
	Created time.Time `json:"created"`
}

// Accounts is Hearth's users, kept in a store repository (AccountsRepo) so that every change
// is a commit with history. Each user is one key, users/NAME.json, holding an argon2id hash
// of the password (PHC string, parameters included), a disabled flag, the creation time
// and app passwords (label, SHA-256 of the secret, creation time); tailnet/LOGIN.json maps a
// tailnet login to a user. No plaintext secret is stored or logged.
//
// Every change re-reads the key and commits with Op.IfMatch, retrying when another writer
// (another process on the same repository) got there first, so no update is lost.
// Accounts is safe for concurrent use.
//
// # App passwords and tokens
//
// An app password is "hth_" + USER + "_" + 43 characters of base64url (256 random bits).
// It works wherever the user's password does (CheckPassword), and on its own as a bearer
// token (CheckToken), since it names its user.
type Accounts struct {
	s     store.Store
	log   *slog.Logger
	now   func() time.Time
	limit *Limiter
	dummy string // a well-formed hash no password matches: unknown users cost the same

	// verified remembers recent successful password checks, so a client that sends
	// HTTP Basic credentials with every request (DAV, REST) costs one argon2id run (19 MiB,
	// tens of ms) per verifiedTTL instead of one per request. Keys are HMACs under a
	// per-process random key of the user, the stored hash and the password: no password
	// is kept, and a changed password (a new hash) misses.
	mu       sync.Mutex
	cacheKey []byte
	verified map[[32]byte]time.Time
}

// NewAccounts returns the accounts kept in s (normally the repository AccountsRepo).
// The caller keeps ownership of s.
func NewAccounts(s store.Store, opts AccountsOptions) *Accounts {
	a := &Accounts{s: s, log: opts.Logger, now: opts.Now, verified: map[[32]byte]time.Time{}, cacheKey: make([]byte, 32)}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	lo := opts.Limits
	if lo.Logger == nil {
		lo.Logger = a.log
	}
	if lo.Now == nil {
		lo.Now = a.now
	}
	a.limit = NewLimiter(lo)
	rand.Read(a.cacheKey)
	salt := make([]byte, argonSaltLen)
	sum := make([]byte, argonKeyLen)
	rand.Read(salt)
	rand.Read(sum)
	a.dummy = encodeHash(argonMemory, argonTime, argonThreads, salt, sum)
	return a
}

// RepoOpener opens store repositories by name; *store.Repos implements it.
type RepoOpener interface {
	Open(ctx context.Context, name string, create bool) (store.Store, error)
}

// OpenAccounts returns the accounts in the repository AccountsRepo of repos, creating it
// if needed. The repository belongs to repos (closing repos closes it).
func OpenAccounts(ctx context.Context, repos RepoOpener, opts AccountsOptions) (*Accounts, error) {
	s, err := repos.Open(ctx, AccountsRepo, true)
	if errors.Is(err, store.ErrConflict) { // another process created it just now
		s, err = repos.Open(ctx, AccountsRepo, true)
	}
	if err != nil {
		return nil, fmt.Errorf("signpost: open accounts: %w", err)
	}
	return NewAccounts(s, opts), nil
}

// Limiter returns the rate limiter CheckPassword and CheckToken consult, for services that
// check credentials of their own (such as tailnet identities) to share it.
func (a *Accounts) Limiter() *Limiter { return a.limit }

func userKey(name string) string     { return usersPrefix + name + recordSuffix }
func tailnetKey(login string) string { return tailnetPrefix + login + recordSuffix }

func (a *Accounts) stamp() time.Time { return a.now().UTC().Truncate(time.Second) }

// getUser reads a user's record and its version. ErrNotFound if there is none.
func (a *Accounts) getUser(ctx context.Context, name string) (userRecord, store.Hash, error) {
	b, e, err := a.s.Get(ctx, store.DefaultBranch, userKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return userRecord{}, store.Missing, ErrNotFound
	}
	if err != nil {
		return userRecord{}, "", err
	}
	u, err := decodeUser(b)
	if err != nil {
		return userRecord{}, "", fmt.Errorf("signpost: %s: %w: %v", userKey(name), errDamaged, err)
	}
	if u.Name != name {
		return userRecord{}, "", fmt.Errorf("signpost: %s: %w: holds user %q", userKey(name), errDamaged, u.Name)
	}
	return u, e.Version, nil
}

// updateUser applies fn to user name's record (exists false and a zero record when there
// is none) and commits the result with message, retrying on a lost compare-and-swap. fn
// returns the ops to commit besides the record's own (nil record: delete it).
func (a *Accounts) updateUser(ctx context.Context, name, message string, fn func(u *userRecord, exists bool) (keep bool, extra []store.Op, err error)) error {
	for range maxRetries {
		u, ver, err := a.getUser(ctx, name)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		keep, extra, err := fn(&u, exists)
		if err != nil {
			return err
		}
		op := store.Op{Key: userKey(name), IfMatch: ver, Delete: !keep}
		if keep {
			if op.Value, err = encodeUser(&u); err != nil {
				return err
			}
		}
		_, err = a.s.Commit(ctx, store.Change{Author: author, Message: message, Ops: append([]store.Op{op}, extra...)})
		if errors.Is(err, store.ErrConflict) {
			continue // someone else changed it: read again
		}
		if err != nil {
			return err
		}
		a.log.InfoContext(ctx, "signpost: "+message, "user", name)
		return nil
	}
	return fmt.Errorf("%w: gave up after %d conflicting updates", store.ErrConflict, maxRetries)
}

// Add creates a user. The name is 1–64 bytes of lowercase letters, digits, '.', '_' and '-',
// starting with a letter or digit, and not ReservedName; the password is 8–1024 bytes.
// ErrExists if the user exists.
func (a *Accounts) Add(ctx context.Context, name, password string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("signpost: add user %q: %w", name, err)
	}
	entries, err := a.s.List(ctx, store.DefaultBranch, strings.TrimSuffix(usersPrefix, "/"))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("signpost: add user %q: %w", name, err)
	}
	if len(entries) >= MaxUsers {
		return fmt.Errorf("signpost: add user %q: %w: %d users", name, ErrLimit, MaxUsers)
	}
	hash := hashPassword(password) // slow: once, outside the retry loop
	err = a.updateUser(ctx, name, "add user "+name, func(u *userRecord, exists bool) (bool, []store.Op, error) {
		if exists {
			return false, nil, ErrExists
		}
		*u = userRecord{Name: name, Password: hash, Created: a.stamp()}
		return true, nil, nil
	})
	if err != nil {
		return fmt.Errorf("signpost: add user %q: %w", name, err)
	}
	return nil
}

// List returns every user, sorted by name.
func (a *Accounts) List(ctx context.Context) ([]User, error) {
	entries, err := a.s.List(ctx, store.DefaultBranch, strings.TrimSuffix(usersPrefix, "/"))
	if errors.Is(err, store.ErrNotFound) {
		return []User{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("signpost: list users: %w", err)
	}
	users := make([]User, 0, len(entries))
	for _, e := range entries {
		name, ok := strings.CutSuffix(strings.TrimPrefix(e.Key, usersPrefix), recordSuffix)
		if !ok || CheckName(name) != nil {
			continue // not ours to interpret
		}
		u, _, err := a.getUser(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("signpost: list users: %w", err)
		}
		users = append(users, User{Name: u.Name, Disabled: u.Disabled, Created: u.Created, AppPasswords: len(u.AppPasswords)})
	}
	return users, nil
}

// SetPassword replaces a user's password. Logins with the old one fail from now on, also
// where they were remembered as verified. ErrNotFound if there is no such user.
func (a *Accounts) SetPassword(ctx context.Context, name, password string) error {
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("signpost: set password of %q: %w", name, err)
	}
	hash := hashPassword(password)
	err := a.updateUser(ctx, name, "set password of "+name, func(u *userRecord, exists bool) (bool, []store.Op, error) {
		if !exists {
			return false, nil, ErrNotFound
		}
		u.Password = hash
		return true, nil, nil
	})
	if err != nil {
		return fmt.Errorf("signpost: set password of %q: %w", name, err)
	}
	return nil
}

// Remove deletes a user, their app passwords, the tailnet logins mapped to them and the
// grants they made and were given (see Grant). Their repositories stay. ErrNotFound if
// there is no such user.
func (a *Accounts) Remove(ctx context.Context, name string) error {
	err := a.updateUser(ctx, name, "remove user "+name, func(u *userRecord, exists bool) (bool, []store.Op, error) {
		if !exists {
			return false, nil, ErrNotFound
		}
		maps, err := a.tailnetEntries(ctx)
		if err != nil {
			return false, nil, err
		}
		var ops []store.Op
		for _, m := range maps {
			if m.rec.User == name {
				ops = append(ops, store.Op{Key: tailnetKey(m.rec.Login), Delete: true, IfMatch: m.version})
			}
		}
		gops, err := a.removeGrantOps(ctx, name)
		if err != nil {
			return false, nil, err
		}
		return false, append(ops, gops...), nil
	})
	if err != nil {
		return fmt.Errorf("signpost: remove user %q: %w", name, err)
	}
	return nil
}

// SetDisabled disables a user (every login fails, with ErrBadCredentials) or enables them
// again. ErrNotFound if there is no such user.
func (a *Accounts) SetDisabled(ctx context.Context, name string, disabled bool) error {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	err := a.updateUser(ctx, name, verb+" user "+name, func(u *userRecord, exists bool) (bool, []store.Op, error) {
		if !exists {
			return false, nil, ErrNotFound
		}
		u.Disabled = disabled
		return true, nil, nil
	})
	if err != nil {
		return fmt.Errorf("signpost: %s user %q: %w", verb, name, err)
	}
	return nil
}

// AddAppPassword makes a new app password for user, labelled with what it is for (1–64
// printable bytes, unique per user), and returns it. Only its SHA-256 is kept, so it cannot
// be shown again. ErrNotFound if the user does not exist, ErrExists if the label does.
func (a *Accounts) AddAppPassword(ctx context.Context, user, label string) (string, error) {
	if err := checkLabel(label); err != nil {
		return "", fmt.Errorf("signpost: add app password for %q: %w", user, err)
	}
	if err := CheckName(user); err != nil {
		return "", err
	}
	secret := newAppPassword(user)
	err := a.updateUser(ctx, user, fmt.Sprintf("add app password %q for %s", label, user), func(u *userRecord, exists bool) (bool, []store.Op, error) {
		if !exists {
			return false, nil, ErrNotFound
		}
		if len(u.AppPasswords) >= MaxAppPasswords {
			return false, nil, fmt.Errorf("%w: %d app passwords", ErrLimit, MaxAppPasswords)
		}
		for _, ap := range u.AppPasswords {
			if ap.Label == label {
				return false, nil, fmt.Errorf("%w: app password %q", ErrExists, label)
			}
		}
		u.AppPasswords = append(u.AppPasswords, appPasswordRecord{Label: label, SHA256: secretHash(secret), Created: a.stamp()})
		return true, nil, nil
	})
	if err != nil {
		return "", fmt.Errorf("signpost: add app password for %q: %w", user, err)
	}
	return secret, nil
}

// AppPasswords lists a user's app passwords in the order they were made.
func (a *Accounts) AppPasswords(ctx context.Context, user string) ([]AppPassword, error) {
	if err := CheckName(user); err != nil {
		return nil, err
	}
	u, _, err := a.getUser(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("signpost: app passwords of %q: %w", user, err)
	}
	aps := make([]AppPassword, len(u.AppPasswords))
	for i, ap := range u.AppPasswords {
		aps[i] = AppPassword{Label: ap.Label, Created: ap.Created}
	}
	return aps, nil
}

// RevokeAppPassword deletes a user's app password by label; the others keep working.
// ErrNotFound if the user or label does not exist.
func (a *Accounts) RevokeAppPassword(ctx context.Context, user, label string) error {
	if err := CheckName(user); err != nil {
		return err
	}
	err := a.updateUser(ctx, user, fmt.Sprintf("revoke app password %q of %s", label, user), func(u *userRecord, exists bool) (bool, []store.Op, error) {
		if !exists {
			return false, nil, ErrNotFound
		}
		for i, ap := range u.AppPasswords {
			if ap.Label == label {
				u.AppPasswords = append(u.AppPasswords[:i], u.AppPasswords[i+1:]...)
				return true, nil, nil
			}
		}
		return false, nil, fmt.Errorf("%w: app password %q", ErrNotFound, label)
	})
	if err != nil {
		return fmt.Errorf("signpost: revoke app password of %q: %w", user, err)
	}
	return nil
}

// CheckPassword returns nil if password is user's password or one of their app passwords,
// and the user is not disabled; ErrBadCredentials otherwise, taking the same time (one
// argon2id verification) whether or not the user exists. remote is the client's address
// (host or host:port): failures are rate limited per address and per user (see Limiter),
// and while they are, CheckPassword refuses at once with an error matching ErrThrottled.
func (a *Accounts) CheckPassword(ctx context.Context, remote, user, password string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("signpost: check password: %w", err)
	}
	if err := a.limit.Allow(remote, user); err != nil {
		return err
	}
	ok, err := a.checkPassword(ctx, user, password)
	if err != nil {
		return err // the store failed: not the client's fault, not counted
	}
	if !ok {
		a.limit.Failure(remote, user)
		return ErrBadCredentials
	}
	a.limit.Success(remote, user)
	return nil
}

func (a *Accounts) checkPassword(ctx context.Context, user, password string) (bool, error) {
	rec, known := userRecord{}, false
	if CheckName(user) == nil {
		var err error
		rec, _, err = a.getUser(ctx, user)
		switch {
		case err == nil:
			known = true
		case errors.Is(err, ErrNotFound):
		default:
			if !errors.Is(err, errDamaged) {
				return false, fmt.Errorf("signpost: check password: %w", err)
			}
			// A damaged record matches nothing, at the usual cost.
			a.log.ErrorContext(ctx, "signpost: damaged user record", "user", user, "err", err)
		}
	}
	if len(password) > MaxPasswordLen {
		return false, nil // refuse to spend work on huge inputs
	}
	if known {
		if u, ok := parseAppPassword(password); ok && u == user && matchAppPassword(&rec, password) {
			return !rec.Disabled, nil
		}
	}
	hash := a.dummy
	if known {
		hash = rec.Password
	}
	key := a.credentialKey(user, hash, password)
	now := a.now()
	a.mu.Lock()
	exp, hit := a.verified[key]
	a.mu.Unlock()
	if known && hit && now.Before(exp) {
		return !rec.Disabled, nil
	}
	if !verifyPassword(hash, password) || !known {
		return false, nil
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerified {
		clear(a.verified)
	}
	a.verified[key] = now.Add(verifiedTTL)
	a.mu.Unlock()
	return !rec.Disabled, nil
}

// matchAppPassword reports whether secret is one of u's app passwords, comparing with
// every one in constant time.
func matchAppPassword(u *userRecord, secret string) bool {
	want, _ := hex.DecodeString(secretHash(secret))
	found := 0
	for _, ap := range u.AppPasswords {
		have, err := hex.DecodeString(ap.SHA256)
		if err == nil {
			found |= subtle.ConstantTimeCompare(have, want)
		}
	}
	return found == 1
}

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

// CheckToken returns the user a bearer token (an app password, see Accounts) belongs to,
// or ErrBadCredentials; a disabled user's tokens fail. Failures are rate limited per
// remote address like CheckPassword's.
func (a *Accounts) CheckToken(ctx context.Context, remote, token string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("signpost: check token: %w", err)
	}
	if err := a.limit.Allow(remote, ""); err != nil {
		return "", err
	}
	user, ok := parseAppPassword(token)
	if ok {
		rec, _, err := a.getUser(ctx, user)
		switch {
		case err == nil:
			ok = matchAppPassword(&rec, token) && !rec.Disabled
		case errors.Is(err, ErrNotFound):
			ok = false
		default:
			return "", fmt.Errorf("signpost: check token: %w", err)
		}
	}
	if !ok {
		a.limit.Failure(remote, "")
		return "", ErrBadCredentials
	}
	a.limit.Success(remote, "")
	return user, nil
}

// TailnetLogin is a tailnet login mapped to an account.
type TailnetLogin struct {
	Login, User  string
	Passwordless bool // the account accepts this device without a password
	Created      time.Time
}

// TailnetLogins lists the tailnet logins mapped to accounts, sorted by login.
func (a *Accounts) TailnetLogins(ctx context.Context) ([]TailnetLogin, error) {
	entries, err := a.tailnetEntries(ctx)
	if err != nil {
		return nil, fmt.Errorf("signpost: list tailnet logins: %w", err)
	}
	out := make([]TailnetLogin, 0, len(entries))
	for _, e := range entries {
		out = append(out, TailnetLogin{Login: e.rec.Login, User: e.rec.User, Passwordless: e.rec.Passwordless, Created: e.rec.Created})
	}
	slices.SortFunc(out, func(x, y TailnetLogin) int { return strings.Compare(x.Login, y.Login) })
	return out, nil
}

// tailnetEntry is a stored tailnet mapping and its version.
type tailnetEntry struct {
	rec     tailnetRecord
	version store.Hash
}

func (a *Accounts) tailnetEntries(ctx context.Context) ([]tailnetEntry, error) {
	entries, err := a.s.List(ctx, store.DefaultBranch, strings.TrimSuffix(tailnetPrefix, "/"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []tailnetEntry
	for _, e := range entries {
		b, e2, err := a.s.Get(ctx, store.DefaultBranch, e.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r, err := decodeTailnet(b)
		if err != nil || tailnetKey(r.Login) != e.Key {
			a.log.WarnContext(ctx, "signpost: damaged tailnet mapping", "key", e.Key, "err", err)
			continue
		}
		out = append(out, tailnetEntry{rec: r, version: e2.Version})
	}
	return out, nil
}

// MapTailnetLogin maps a tailnet login (a peer's identity, such as "alice@example.com") to
// a Hearth user, replacing any earlier mapping of that login. passwordless is the user's
// opt-in to accept any password from a peer with that login (the tailnet has already
// authenticated it). ErrNotFound if the user does not exist.
func (a *Accounts) MapTailnetLogin(ctx context.Context, login, user string, passwordless bool) error {
	if err := checkLogin(login); err != nil {
		return err
	}
	if err := CheckName(user); err != nil {
		return err
	}
	msg := fmt.Sprintf("map tailnet login %s to %s", login, user)
	if passwordless {
		msg += " (passwordless)"
	}
	b, err := json.Marshal(tailnetRecord{Login: login, User: user, Passwordless: passwordless, Created: a.stamp()})
	if err != nil {
		return err
	}
	for range maxRetries {
		// The user must exist as the mapping is written: the IfMatch on the user's record
		// makes a concurrent Remove and this exclude each other.
		_, uver, err := a.getUser(ctx, user)
		if err != nil {
			return fmt.Errorf("signpost: map tailnet login %q: user %q: %w", login, user, err)
		}
		_, e, err := a.s.Get(ctx, store.DefaultBranch, tailnetKey(login))
		ver := e.Version
		if errors.Is(err, store.ErrNotFound) {
			ver = store.Missing
		} else if err != nil {
			return fmt.Errorf("signpost: map tailnet login %q: %w", login, err)
		}
		_, err = a.s.Commit(ctx, store.Change{Author: author, Message: msg, Ops: []store.Op{
			{Key: tailnetKey(login), Value: append(b, '\n'), IfMatch: ver},
			{Key: userKey(user), Copy: uver, IfMatch: uver},
		}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("signpost: map tailnet login %q: %w", login, err)
		}
		a.log.InfoContext(ctx, "signpost: "+msg, "user", user, "login", login)
		return nil
	}
	return fmt.Errorf("signpost: map tailnet login %q: %w: gave up after %d conflicting updates", login, store.ErrConflict, maxRetries)
}

// TailnetUser returns the user a tailnet login is mapped to and whether that user accepts
// any password from it. ErrNotFound if the login is not mapped, or its user is disabled
// or gone.
func (a *Accounts) TailnetUser(ctx context.Context, login string) (user string, passwordless bool, err error) {
	if err := checkLogin(login); err != nil {
		return "", false, err
	}
	b, _, err := a.s.Get(ctx, store.DefaultBranch, tailnetKey(login))
	if errors.Is(err, store.ErrNotFound) {
		return "", false, fmt.Errorf("signpost: tailnet login %q: %w", login, ErrNotFound)
	}
	if err != nil {
		return "", false, fmt.Errorf("signpost: tailnet login %q: %w", login, err)
	}
	r, err := decodeTailnet(b)
	if err != nil || r.Login != login {
		return "", false, fmt.Errorf("signpost: tailnet login %q: damaged mapping: %v", login, err)
	}
	u, _, err := a.getUser(ctx, r.User)
	if err != nil {
		return "", false, fmt.Errorf("signpost: tailnet login %q: user %q: %w", login, r.User, err)
	}
	if u.Disabled {
		return "", false, fmt.Errorf("signpost: tailnet login %q: user %q is disabled: %w", login, r.User, ErrNotFound)
	}
	return r.User, r.Passwordless, nil
}

// UnmapTailnetLogin removes a tailnet login's mapping. ErrNotFound if there is none.
func (a *Accounts) UnmapTailnetLogin(ctx context.Context, login string) error {
	if err := checkLogin(login); err != nil {
		return err
	}
	for range maxRetries {
		_, e, err := a.s.Get(ctx, store.DefaultBranch, tailnetKey(login))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("signpost: unmap tailnet login %q: %w", login, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("signpost: unmap tailnet login %q: %w", login, err)
		}
		_, err = a.s.Commit(ctx, store.Change{Author: author, Message: "unmap tailnet login " + login,
			Ops: []store.Op{{Key: tailnetKey(login), Delete: true, IfMatch: e.Version}}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("signpost: unmap tailnet login %q: %w", login, err)
		}
		a.log.InfoContext(ctx, "signpost: unmap tailnet login", "login", login)
		return nil
	}
	return fmt.Errorf("signpost: unmap tailnet login %q: %w: gave up after %d conflicting updates", login, store.ErrConflict, maxRetries)
}
