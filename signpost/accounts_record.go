package signpost

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Limits Accounts enforces.
const (
	MaxNameLen      = 64      // bytes in a user name
	MinPasswordLen  = 8       // bytes in a password
	MaxPasswordLen  = 1024    // bytes in a password
	MaxLabelLen     = 64      // bytes in an app password's label
	MaxLoginLen     = 128     // bytes in a tailnet login name
	MaxUsers        = 1000    // users (checked at each Add; concurrent adds may pass it by a few)
	MaxAppPasswords = 100     // app passwords of one user
	MaxRecordSize   = 1 << 20 // bytes of one stored record
)

// ReservedName is the owner of Hearth's own repositories (such as AccountsRepo); no user may
// take it, or that user could read every account's hash through the store's API.
const ReservedName = "system"

// Argon2id parameters for new password hashes: OWASP's minimum recommendation
// (m=19456 KiB, t=2, p=1), measured on the 2-core development machines at 25–27 ms per
// verification (BenchmarkLogin), inside the 20–60 ms aimed for. Verification uses the
// parameters stored with each hash, so these can be raised later.
const (
	argonMemory  = 19456 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Bounds on parameters read back from a stored hash, so a damaged record cannot make one
// check take gigabytes or minutes.
const (
	maxArgonMemory  = 1 << 20 // KiB (1 GiB)
	maxArgonTime    = 16
	maxArgonThreads = 16
)

// userRecord is what is stored under users/NAME.json. It holds no plaintext secret.
type userRecord struct {
	Name         string              `json:"name"`
	Password     string              `json:"password"` // PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$hash
	Disabled     bool                `json:"disabled,omitempty"`
	Created      time.Time           `json:"created"`
	AppPasswords []appPasswordRecord `json:"appPasswords,omitempty"`
}

// appPasswordRecord is one app password: only the SHA-256 of the whole token is kept.
type appPasswordRecord struct {
	Label   string    `json:"label"`
	SHA256  string    `json:"sha256"` // hex SHA-256 of the app password as handed out
	Created time.Time `json:"created"`
}

// tailnetRecord is what is stored under tailnet/LOGIN.json.
type tailnetRecord struct {
	Login        string    `json:"login"`
	User         string    `json:"user"`
	Passwordless bool      `json:"passwordless,omitempty"`
	Created      time.Time `json:"created"`
}

// encodeUser returns the stored form of u.
func encodeUser(u *userRecord) ([]byte, error) {
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrLimit, len(b))
	}
	return b, nil
}

// decodeUser parses and checks a stored user record. It never panics on any input.
func decodeUser(b []byte) (userRecord, error) {
	var u userRecord
	if err := decodeStrict(b, &u); err != nil {
		return u, err
	}
	if err := CheckName(u.Name); err != nil {
		return u, err
	}
	if _, err := parseHash(u.Password); err != nil {
		return u, fmt.Errorf("user %q: password hash: %w", u.Name, err)
	}
	if len(u.AppPasswords) > MaxAppPasswords {
		return u, fmt.Errorf("user %q: %d app passwords, limit %d", u.Name, len(u.AppPasswords), MaxAppPasswords)
	}
	seen := map[string]bool{}
	for _, ap := range u.AppPasswords {
		if err := checkLabel(ap.Label); err != nil {
			return u, fmt.Errorf("user %q: %w", u.Name, err)
		}
		if seen[ap.Label] {
			return u, fmt.Errorf("user %q: app password %q twice", u.Name, ap.Label)
		}
		seen[ap.Label] = true
		if h, err := hex.DecodeString(ap.SHA256); err != nil || len(h) != sha256.Size {
			return u, fmt.Errorf("user %q: app password %q: bad sha256", u.Name, ap.Label)
		}
	}
	return u, nil
}

// decodeTailnet parses and checks a stored tailnet mapping.
func decodeTailnet(b []byte) (tailnetRecord, error) {
	var r tailnetRecord
	if err := decodeStrict(b, &r); err != nil {
		return r, err
	}
	if err := checkLogin(r.Login); err != nil {
		return r, err
	}
	if err := CheckName(r.User); err != nil {
		return r, err
	}
	return r, nil
}

func decodeStrict(b []byte, v any) error {
	if len(b) > MaxRecordSize {
		return fmt.Errorf("record of %d bytes, limit %d", len(b), MaxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON: %w", err)
	}
	if dec.More() {
		return errors.New("bad JSON: data after the record")
	}
	return nil
}

// CheckName reports whether name is a valid user name: 1–64 bytes of lowercase letters,
// digits, '.', '_' and '-', starting with a letter or digit, and not ReservedName.
// Errors wrap ErrInvalid.
func CheckName(name string) error {
	ok := name != "" && len(name) <= MaxNameLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("signpost: user name %q: %w: want 1–%d of a-z 0-9 . _ -, starting with a letter or digit", truncate(name), ErrInvalid, MaxNameLen)
	}
	if name == ReservedName {
		return fmt.Errorf("signpost: user name %q: %w: reserved for Hearth itself", name, ErrInvalid)
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
		return fmt.Errorf("%w: app password label must be 1–%d bytes of UTF-8", ErrInvalid, MaxLabelLen)
	}
	for _, r := range l {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: app password label contains %q", ErrInvalid, r)
		}
	}
	return nil
}

// checkLogin reports whether login is a valid tailnet login name (such as
// "alice@example.com" or "alice@github"): 1–128 bytes of ASCII letters, digits and
// "@._+-", not starting with '.'.
func checkLogin(login string) error {
	ok := login != "" && len(login) <= MaxLoginLen && login[0] != '.'
	for i := 0; ok && i < len(login); i++ {
		c := login[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("@._+-", c) >= 0
	}
	if !ok {
		return fmt.Errorf("signpost: tailnet login %q: %w: want 1–%d of letters, digits and @._+-", truncate(login), ErrInvalid, MaxLoginLen)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
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
	if len(s) > 512 {
		return p, errors.New("PHC string too long")
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errors.New("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, fmt.Errorf("unsupported version %q", parts[2])
	}
	var m, t, th uint64
	var seen [3]bool
	for i, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != v {
			return p, fmt.Errorf("parameter %q: not a number", kv)
		}
		// The order is m, t, p, as every PHC encoder writes it, so a string has one form.
		want := [3]string{"m", "t", "p"}
		if i > 2 || k != want[i] || seen[i] {
			return p, fmt.Errorf("parameter %q unknown or out of order", k)
		}
		seen[i] = true
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		}
	}
	if !seen[2] {
		return p, errors.New("missing parameters")
	}
	if th < 1 || th > maxArgonThreads || t < 1 || t > maxArgonTime || m < 8*th || m > maxArgonMemory {
		return p, fmt.Errorf("parameters %q out of bounds", parts[3])
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, errors.New("bad salt")
	}
	sum, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
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

// App passwords and bearer tokens are one string: "hth_" + user + "_" + 43 characters of
// base64url (32 random bytes). It works as the user's password in HTTP Basic, IMAP, DAV
// and as "Authorization: Bearer" on its own, since it names its user. The user name
// (which may contain '_') is everything between the prefix and the last 44 characters.
const (
	appPasswordPrefix = "hth_"
	appSecretBytes    = 32
	appSecretLen      = 43 // base64.RawURLEncoding.EncodedLen(appSecretBytes)
)

// newAppPassword returns a fresh app password for user.
func newAppPassword(user string) string {
	raw := make([]byte, appSecretBytes)
	rand.Read(raw)
	return appPasswordPrefix + user + "_" + base64.RawURLEncoding.EncodeToString(raw)
}

// parseAppPassword returns the user an app password names, or false if s does not have
// the form of one.
func parseAppPassword(s string) (user string, ok bool) {
	rest, ok := strings.CutPrefix(s, appPasswordPrefix)
	if !ok || len(rest) < appSecretLen+2 || len(rest) > MaxNameLen+1+appSecretLen {
		return "", false
	}
	user, secret := rest[:len(rest)-appSecretLen-1], rest[len(rest)-appSecretLen:]
	if rest[len(user)] != '_' || CheckName(user) != nil {
		return "", false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil {
		return "", false
	}
	return user, true
}

// secretHash is what is stored of an app password: its SHA-256 in hex.
func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
