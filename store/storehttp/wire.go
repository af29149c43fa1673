package storehttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hearth-home/hearth/store"
)

// Limits of the protocol.
const (
	maxPathLen      = 8 << 10  // bytes in an escaped URL path
	maxSmallJSON    = 1 << 20  // bytes in a JSON body other than a Change
	maxErrorBody    = 1 << 20  // bytes of an error answer the client reads
	maxJSONAnswer   = 1 << 30  // bytes of a JSON answer the client reads
	maxEventSize    = 64 << 20 // bytes in one server-sent event
	headerCommit    = "X-Hearth-Commit"
	headerMessage   = "X-Hearth-Message"
	contentJSON     = "application/json"
	contentValue    = "application/octet-stream"
	contentEvents   = "text/event-stream"
	wwwAuthenticate = `Basic realm="hearth"`
)

// Wire shapes of the JSON bodies.
type (
	reposAnswer struct {
		Repos []string `json:"repos"`
	}
	repoRequest struct {
		Name string `json:"name"`
	}
	branchesAnswer struct {
		Branches []store.Branch `json:"branches"`
	}
	branchRequest struct {
		Name string `json:"name"`
		From string `json:"from"`
	}
	fastForwardRequest struct {
		To store.Hash `json:"to"`
	}
	resolveAnswer struct {
		Commit store.Hash `json:"commit"`
	}
	entriesAnswer struct {
		Entries []store.Entry `json:"entries"`
	}
	commitsAnswer struct {
		Commits []store.Commit `json:"commits"`
	}
	diffsAnswer struct {
		Diffs []store.Diff `json:"diffs"`
	}
	// errorAnswer is every error body. Keys is set for a merge conflict; Branch, Key, Want
	// and Have for a failed precondition.
	errorAnswer struct {
		Error  string     `json:"error"`
		Keys   []string   `json:"keys,omitempty"`
		Branch string     `json:"branch,omitempty"`
		Key    string     `json:"key,omitempty"`
		Want   store.Hash `json:"want,omitempty"`
		Have   store.Hash `json:"have,omitempty"`
	}
)

// errBodyTooLarge reports a request body over its limit.
var errBodyTooLarge = fmt.Errorf("storehttp: request body too large: %w", store.ErrTooLarge)

// decodeJSON decodes exactly one JSON value of at most limit bytes from r into v, refusing
// unknown fields and trailing data. Malformed input wraps store.ErrInvalid; input over the
// limit wraps store.ErrTooLarge.
func decodeJSON(r io.Reader, limit int64, v any) error {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// One value only: anything but white space after it is an error.
		var extra json.RawMessage
		if err2 := dec.Decode(&extra); !errors.Is(err2, io.EOF) {
			err = errors.New("data after the JSON value")
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case lr.N <= 0 || errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.Is(err, io.EOF):
		return fmt.Errorf("storehttp: empty JSON body: %w", store.ErrInvalid)
	case err != nil:
		return fmt.Errorf("storehttp: bad JSON body: %v: %w", err, store.ErrInvalid)
	}
	return nil
}

// keyPath escapes a key for a URL path: each segment percent-encoded, slashes kept.
func keyPath(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// keyFromPath decodes the escaped URL path tail naming a key and checks it with
// store.CheckKey. An encoded slash (%2F) is a slash.
func keyFromPath(escaped string) (string, error) {
	key, err := unescapePath(escaped)
	if err != nil {
		return "", err
	}
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// prefixFromPath is keyFromPath for a prefix, which may be empty.
func prefixFromPath(escaped string) (string, error) {
	if escaped == "" {
		return "", nil
	}
	return keyFromPath(escaped)
}

func unescapePath(escaped string) (string, error) {
	// A key is at most MaxKeyLen bytes, each of which takes at most 3 escaped.
	if len(escaped) > 3*store.MaxKeyLen {
		return "", fmt.Errorf("storehttp: path of %d bytes: %w", len(escaped), store.ErrInvalid)
	}
	s, err := url.PathUnescape(escaped)
	if err != nil {
		return "", fmt.Errorf("storehttp: path: %v: %w", err, store.ErrInvalid)
	}
	return s, nil
}

// etag quotes a version as a strong entity tag.
func etag(v store.Hash) string { return `"` + string(v) + `"` }

// parseETag returns the version a strong entity tag names, or false.
func parseETag(s string) (store.Hash, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	v := s[1 : len(s)-1]
	if !store.IsHash(v) {
		return "", false
	}
	return store.Hash(v), true
}

// noneMatch reports whether an If-None-Match header value matches version: "*", or a list
// of entity tags compared weakly (RFC 9110 13.1.2).
func noneMatch(header string, v store.Hash) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		t = strings.TrimPrefix(t, "W/")
		if h, ok := parseETag(t); ok && h == v {
			return true
		}
	}
	return false
}

// marshalLine encodes v as JSON without a trailing newline.
func marshalLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
