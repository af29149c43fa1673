package delivery

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on addresses (RFC 5321 section 4.5.3.1).
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxAddress   = 254
)

// errBadAddress marks an address that is not local@domain.
var errBadAddress = errors.New("malformed address")

// Address is a parsed mailbox address: the local part as sent and the domain in lower case.
type Address struct {
	Local  string
	Domain string
}

// String returns local@domain.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// ParseAddress parses an envelope address "local@domain" (the form go-smtp hands over,
// without angle brackets). The local part may be quoted; it must be 1–64 bytes of printable
// ASCII or UTF-8 without spaces or control characters outside quotes. The domain must be
// 1–255 bytes of letters, digits, '-', '.', or an address literal in brackets. The domain
// is returned in lower case.
func ParseAddress(s string) (Address, error) {
	if len(s) > maxAddress {
		return Address{}, fmt.Errorf("delivery: address of %d bytes (limit %d): %w", len(s), maxAddress, errBadAddress)
	}
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return Address{}, fmt.Errorf("delivery: address %q: %w", s, errBadAddress)
	}
	local, domain := s[:i], strings.ToLower(s[i+1:])
	if err := checkLocalPart(local); err != nil {
		return Address{}, fmt.Errorf("delivery: address %q: %w", s, err)
	}
	if err := checkDomain(domain); err != nil {
		return Address{}, fmt.Errorf("delivery: address %q: %w", s, err)
	}
	return Address{Local: local, Domain: domain}, nil
}

func checkLocalPart(l string) error {
	if len(l) == 0 || len(l) > maxLocalPart {
		return fmt.Errorf("local part of %d bytes (1..%d): %w", len(l), maxLocalPart, errBadAddress)
	}
	quoted := len(l) >= 2 && l[0] == '"' && l[len(l)-1] == '"'
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character in local part: %w", errBadAddress)
		}
		if !quoted && (c == ' ' || c == '@' || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' || c == ';' || c == ':' || c == '\\' || c == '"' || c == '[' || c == ']') {
			return fmt.Errorf("character %q in local part: %w", c, errBadAddress)
		}
	}
	return nil
}

func checkDomain(d string) error {
	if len(d) == 0 || len(d) > maxDomain {
		return fmt.Errorf("domain of %d bytes (1..%d): %w", len(d), maxDomain, errBadAddress)
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' {
			return fmt.Errorf("unterminated address literal: %w", errBadAddress)
		}
		for _, c := range []byte(d[1 : len(d)-1]) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '.' || c == ':' || c == '-') {
				return fmt.Errorf("character %q in address literal: %w", c, errBadAddress)
			}
		}
		return nil
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("domain label of %d bytes (1..63): %w", len(label), errBadAddress)
		}
		for _, c := range []byte(label) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '_' || c >= 0x80) {
				return fmt.Errorf("character %q in domain: %w", c, errBadAddress)
			}
		}
	}
	return nil
}

// normalizeAlias returns the lookup form of an alias key: "local@domain" with both in
// lower case, or a bare lower-case "local" that applies to every local domain.
func normalizeAlias(k string) (string, error) {
	k = strings.ToLower(strings.TrimSpace(k))
	if !strings.Contains(k, "@") {
		if err := checkLocalPart(k); err != nil {
			return "", fmt.Errorf("delivery: alias %q: %w", k, err)
		}
		return k, nil
	}
	a, err := ParseAddress(k)
	if err != nil {
		return "", err
	}
	return strings.ToLower(a.Local) + "@" + a.Domain, nil
}

// router maps addresses to local users.
type router struct {
	domains map[string]bool   // local domains, lower case, no trailing dot
	aliases map[string]string // normalized alias -> user
}

func newRouter(domain string, extra []string, aliases map[string]string) (*router, error) {
	r := &router{domains: map[string]bool{}, aliases: map[string]string{}}
	for _, d := range append([]string{domain}, extra...) {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d == "" || d[0] == '[' {
			return nil, fmt.Errorf("delivery: domain %q: %w", d, errBadAddress)
		}
		if err := checkDomain(d); err != nil {
			return nil, fmt.Errorf("delivery: domain %q: %w", d, err)
		}
		r.domains[d] = true
	}
	for k, u := range aliases {
		n, err := normalizeAlias(k)
		if err != nil {
			return nil, err
		}
		if i := strings.IndexByte(n, '@'); i >= 0 && !r.domains[n[i+1:]] {
			return nil, fmt.Errorf("delivery: alias %q: domain is not local", k)
		}
		if u == "" || strings.ContainsAny(u, "@/ ") {
			return nil, fmt.Errorf("delivery: alias %q: bad user %q", k, u)
		}
		r.aliases[n] = u
	}
	return r, nil
}

// isLocalDomain reports whether d (lower case) is one of the local domains.
func (r *router) isLocalDomain(d string) bool {
	return r.domains[strings.TrimSuffix(d, ".")]
}

// user returns the user name an address of a local domain belongs to before checking that
// the user exists: an alias (full address first, then the bare local part), or the local
// part in lower case without a "+tag" subaddress.
func (r *router) user(a Address) string {
	local := strings.ToLower(a.Local)
	if u, ok := r.aliases[local+"@"+strings.TrimSuffix(a.Domain, ".")]; ok {
		return u
	}
	if u, ok := r.aliases[local]; ok {
		return u
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		base := local[:i]
		if u, ok := r.aliases[base+"@"+strings.TrimSuffix(a.Domain, ".")]; ok {
			return u
		}
		if u, ok := r.aliases[base]; ok {
			return u
		}
		return base
	}
	return local
}
