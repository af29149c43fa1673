package storedav

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/hearth-home/hearth/signpost"
)

// MaxPathLen is the longest URL path accepted, in bytes (escaped).
const MaxPathLen = 2048

// Levels of a Target, by URL depth.
const (
	LevelRoot       = iota // "/"
	LevelPrincipal         // "/OWNER/"
	LevelHome              // "/OWNER/REPO/"
	LevelCollection        // "/OWNER/REPO/NAME/"
	LevelObject            // "/OWNER/REPO/NAME/RESOURCE"
)

// Target is what a URL path names.
type Target struct {
	Level      int
	Owner      string // from LevelPrincipal
	Collection string // from LevelCollection
	Resource   string // at LevelObject
}

// ParsePath parses an escaped URL path (r.URL.EscapedPath()) for the kind whose
// repository is repo. It refuses, with an error wrapping ErrInvalid, paths longer than
// MaxPathLen, not starting with '/', with empty, "." or ".." segments, with encoded
// slashes, backslashes or NULs, bad escapes, an owner that is not a user name, and names
// CheckName refuses, and a second segment other than repo (no such resource can exist).
func ParsePath(repo, escaped string) (Target, error) {
	if len(escaped) > MaxPathLen {
		return Target{}, fmt.Errorf("storedav: path longer than %d bytes: %w", MaxPathLen, ErrInvalid)
	}
	if !strings.HasPrefix(escaped, "/") {
		return Target{}, fmt.Errorf("storedav: path %q: %w: not absolute", trunc(escaped), ErrInvalid)
	}
	low := strings.ToLower(escaped)
	for _, bad := range []string{"%2f", "%5c", "%00", "\\"} {
		if strings.Contains(low, bad) {
			return Target{}, fmt.Errorf("storedav: path %q: %w: encoded slash, backslash or NUL", trunc(escaped), ErrInvalid)
		}
	}
	segs := strings.Split(escaped[1:], "/")
	if segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1] // trailing slash
	}
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return Target{}, fmt.Errorf("storedav: path %q: %w: %v", trunc(escaped), ErrInvalid, err)
		}
		segs[i] = u
	}
	return parseSegments(repo, segs, strings.HasSuffix(escaped, "/"), escaped)
}

// parseDecoded parses an already unescaped path such as go-webdav hands its backend.
// Names cannot hold '/' or '%', so splitting is exact.
func parseDecoded(repo, p string) (Target, error) {
	if len(p) > MaxPathLen || !strings.HasPrefix(p, "/") {
		return Target{}, fmt.Errorf("storedav: path %q: %w", trunc(p), ErrInvalid)
	}
	segs := strings.Split(p[1:], "/")
	if segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1]
	}
	return parseSegments(repo, segs, strings.HasSuffix(p, "/"), p)
}

func parseSegments(repo string, segs []string, slash bool, orig string) (Target, error) {
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return Target{}, fmt.Errorf("storedav: path %q: %w: empty, . or .. segment", trunc(orig), ErrInvalid)
		}
	}
	t := Target{Level: len(segs)}
	switch {
	case len(segs) > LevelObject:
		return Target{}, fmt.Errorf("storedav: path %q: %w: too deep", trunc(orig), ErrInvalid)
	case len(segs) == LevelObject && slash:
		return Target{}, fmt.Errorf("storedav: path %q: %w: an object is not a collection", trunc(orig), ErrInvalid)
	}
	if len(segs) >= LevelPrincipal {
		if err := signpost.CheckName(segs[0]); err != nil {
			return Target{}, fmt.Errorf("storedav: path %q: %w: bad owner", trunc(orig), ErrInvalid)
		}
		t.Owner = segs[0]
	}
	if len(segs) >= LevelHome && segs[1] != repo {
		return Target{}, fmt.Errorf("storedav: path %q: %w: no such home set", trunc(orig), ErrInvalid)
	}
	if len(segs) >= LevelCollection {
		if err := CheckName(segs[2]); err != nil {
			return Target{}, err
		}
		t.Collection = segs[2]
	}
	if len(segs) == LevelObject {
		if err := CheckName(segs[3]); err != nil {
			return Target{}, err
		}
		t.Resource = segs[3]
	}
	return t, nil
}

// Href returns the escaped URL path of t for the kind whose repository is repo;
// collections and the levels above end in '/'.
func (t Target) Href(repo string) string {
	var b strings.Builder
	b.WriteString("/")
	if t.Level >= LevelPrincipal {
		b.WriteString(t.Owner + "/")
	}
	if t.Level >= LevelHome {
		b.WriteString(repo + "/")
	}
	if t.Level >= LevelCollection {
		b.WriteString(url.PathEscape(t.Collection) + "/")
	}
	if t.Level == LevelObject {
		b.WriteString(url.PathEscape(t.Resource))
	}
	return b.String()
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
