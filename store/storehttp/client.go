package storehttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/hearth-home/hearth/store"
)

// ErrUnauthorized is returned by the Client when the server rejects its credentials (401).
var ErrUnauthorized = errors.New("storehttp: unauthorized")

// ClientOptions configure a Client.
type ClientOptions struct {
	// HTTPClient sends the requests. nil: a client of the Client's own, whose idle
	// connections Close closes. Its Timeout, if any, also limits Watch streams.
	HTTPClient *http.Client
	// User and Password are sent as HTTP Basic credentials.
	User, Password string
	// Token, when set, is sent as "Authorization: Bearer" instead of User and Password.
	Token string
}

// Client is a store.Store that speaks to one repository of a Handler over HTTP.
// It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[/path] without a trailing slash
	baseErr error
	repo    string
	hc      *http.Client
	ownHC   bool
	opts    ClientOptions

	closed   atomic.Bool
	closeCtx context.Context
	closeFn  context.CancelFunc
}

var _ store.Store = (*Client)(nil)

// NewClient returns a Client for the repository repo ("owner/name") served under baseURL
// (such as "https://example.org"; the API lives at baseURL + "/api/"). A malformed
// baseURL or repo makes every call fail with store.ErrInvalid.
func NewClient(baseURL, repo string, opts ClientOptions) *Client {
	c := &Client{repo: repo, hc: opts.HTTPClient, opts: opts}
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	if c.hc == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		if ok {
			c.hc = &http.Client{Transport: t.Clone()}
		} else {
			c.hc = &http.Client{}
		}
		c.ownHC = true
	}
	u, err := url.Parse(baseURL)
	switch {
	case err != nil:
		c.baseErr = fmt.Errorf("storehttp: base URL: %v: %w", err, store.ErrInvalid)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		c.baseErr = fmt.Errorf("storehttp: base URL %q: want http(s)://host[/path]: %w", baseURL, store.ErrInvalid)
	default:
		c.base = strings.TrimRight(u.String(), "/")
	}
	if c.baseErr == nil {
		if err := store.CheckRepoName(repo); err != nil {
			c.baseErr = fmt.Errorf("storehttp: %w", err)
		}
	}
	return c
}

// Close makes every later call, and every call still waiting for the server, return
// store.ErrClosed, and closes the channels of running watches.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.closeFn()
	if c.ownHC {
		c.hc.CloseIdleConnections()
	}
	return nil
}

// request is one HTTP exchange with the repository's API.
type request struct {
	method string
	path   string // escaped, relative to /api/repos/REPO/
	query  url.Values
	body   []byte
	ctype  string
	header map[string]string
}

// send performs req and returns the response of a 2xx status; the caller closes its body
// and then calls done. Other statuses become errors mapped to the store's sentinels.
func (c *Client) send(ctx context.Context, req request) (*http.Response, func(), error) {
	if c.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	if c.baseErr != nil {
		return nil, nil, c.baseErr
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.closeCtx, cancel)
	done := func() { stop(); cancel() }
	u := c.base + "/api/repos/" + c.repo + "/" + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("%v: %w", err, store.ErrInvalid)
	}
	if req.ctype != "" {
		hr.Header.Set("Content-Type", req.ctype)
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	if c.opts.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.opts.Token)
	} else if c.opts.User != "" {
		hr.SetBasicAuth(c.opts.User, c.opts.Password)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		done()
		if c.closed.Load() {
			return nil, nil, store.ErrClosed
		}
		return nil, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := errorFromResponse(resp)
		resp.Body.Close()
		done()
		return nil, nil, err
	}
	return resp, done, nil
}

// remoteError is an error answer from the server; it unwraps to the matching sentinel.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// errorFromResponse turns an error answer into the store's sentinel or typed error.
func errorFromResponse(resp *http.Response) error {
	var ans errorAnswer
	if resp.Request == nil || resp.Request.Method != http.MethodHead {
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&ans)
	}
	msg := ans.Error
	if msg == "" {
		msg = "server answered " + resp.Status
	}
	var sentinel error
	switch resp.StatusCode {
	case http.StatusPreconditionFailed:
		return &store.PreconditionError{Branch: ans.Branch, Key: ans.Key, Want: ans.Want, Have: ans.Have}
	case http.StatusConflict:
		if len(ans.Keys) > 0 {
			return &store.MergeConflictError{Keys: ans.Keys}
		}
		sentinel = store.ErrConflict
	case http.StatusBadRequest:
		sentinel = store.ErrInvalid
	case http.StatusUnauthorized:
		sentinel = ErrUnauthorized
	case http.StatusNotFound:
		sentinel = store.ErrNotFound
	case http.StatusRequestEntityTooLarge:
		sentinel = store.ErrTooLarge
	case http.StatusServiceUnavailable:
		sentinel = store.ErrClosed
	default:
		return fmt.Errorf("storehttp: %s: %s", resp.Status, msg)
	}
	return &remoteError{msg: msg, sentinel: sentinel}
}

// getJSON performs req and decodes the JSON answer into out.
func (c *Client) do(ctx context.Context, req request, in, out any) error {
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%v: %w", err, store.ErrInvalid)
		}
		req.body, req.ctype = b, contentJSON
	}
	resp, done, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer done()
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONAnswer)).Decode(out); err != nil {
		if c.closed.Load() {
			return store.ErrClosed
		}
		return fmt.Errorf("bad answer: %w", err)
	}
	return nil
}

func revQuery(name, rev string) url.Values {
	if rev == "" {
		return nil
	}
	return url.Values{name: {rev}}
}

// Get returns a key's value and entry at rev.
func (c *Client) Get(ctx context.Context, rev, key string) ([]byte, store.Entry, error) {
	value, e, err := c.get(ctx, rev, key)
	if err != nil {
		return nil, store.Entry{}, fmt.Errorf("storehttp: get %q: %w", key, err)
	}
	return value, e, nil
}

func (c *Client) get(ctx context.Context, rev, key string) ([]byte, store.Entry, error) {
	if err := c.check(store.CheckRev(rev), store.CheckKey(key)); err != nil {
		return nil, store.Entry{}, err
	}
	resp, done, err := c.send(ctx, request{method: http.MethodGet, path: "keys/" + keyPath(key), query: revQuery("rev", rev)})
	if err != nil {
		return nil, store.Entry{}, err
	}
	defer done()
	defer resp.Body.Close()
	version, ok := parseETag(resp.Header.Get("ETag"))
	if !ok {
		return nil, store.Entry{}, fmt.Errorf("answer has no valid ETag")
	}
	value, err := io.ReadAll(io.LimitReader(resp.Body, store.MaxValueSize+1))
	switch {
	case err != nil && c.closed.Load():
		return nil, store.Entry{}, store.ErrClosed
	case err != nil:
		return nil, store.Entry{}, err
	case len(value) > store.MaxValueSize:
		return nil, store.Entry{}, fmt.Errorf("answer over %d bytes: %w", store.MaxValueSize, store.ErrTooLarge)
	case store.BlobHash(value) != version:
		return nil, store.Entry{}, fmt.Errorf("value does not match its ETag %s", version)
	}
	return value, store.Entry{Key: key, Version: version, Size: int64(len(value))}, nil
}

// check returns the closed error before any argument error, then the first argument error.
func (c *Client) check(errs ...error) error {
	if c.closed.Load() {
		return store.ErrClosed
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkBranchOrEmpty is store.CheckBranch where "" (the default branch) is allowed too.
func checkBranchOrEmpty(name string) error {
	if name == "" {
		return nil
	}
	return store.CheckBranch(name)
}

// checkText refuses a message or signature that JSON cannot carry unchanged (it would
// replace invalid UTF-8).
func checkText(message string, author store.Signature) error {
	if !utf8.ValidString(message) || !utf8.ValidString(author.Name) || !utf8.ValidString(author.Email) {
		return fmt.Errorf("storehttp: message or author is not UTF-8: %w", store.ErrInvalid)
	}
	return nil
}

// Stat returns a key's entry at rev without its value.
func (c *Client) Stat(ctx context.Context, rev, key string) (store.Entry, error) {
	e, err := c.stat(ctx, rev, key)
	if err != nil {
		return store.Entry{}, fmt.Errorf("storehttp: stat %q: %w", key, err)
	}
	return e, nil
}

func (c *Client) stat(ctx context.Context, rev, key string) (store.Entry, error) {
	if err := c.check(store.CheckRev(rev), store.CheckKey(key)); err != nil {
		return store.Entry{}, err
	}
	resp, done, err := c.send(ctx, request{method: http.MethodHead, path: "keys/" + keyPath(key), query: revQuery("rev", rev)})
	if err != nil {
		return store.Entry{}, err
	}
	defer done()
	resp.Body.Close()
	version, ok := parseETag(resp.Header.Get("ETag"))
	if !ok {
		return store.Entry{}, fmt.Errorf("answer has no valid ETag")
	}
	if resp.ContentLength < 0 {
		return store.Entry{}, fmt.Errorf("answer has no Content-Length")
	}
	return store.Entry{Key: key, Version: version, Size: resp.ContentLength}, nil
}

// List returns the entries below prefix at rev, sorted by key.
func (c *Client) List(ctx context.Context, rev, prefix string) ([]store.Entry, error) {
	var ans entriesAnswer
	err := c.check(store.CheckRev(rev), store.CheckPrefix(prefix))
	if err == nil {
		path := "list"
		if prefix != "" {
			path += "/" + keyPath(prefix)
		}
		err = c.do(ctx, request{method: http.MethodGet, path: path, query: revQuery("rev", rev)}, nil, &ans)
	}
	if err != nil {
		return nil, fmt.Errorf("storehttp: list %q: %w", prefix, err)
	}
	return ans.Entries, nil
}

// Resolve returns the commit rev names.
func (c *Client) Resolve(ctx context.Context, rev string) (store.Hash, error) {
	var ans resolveAnswer
	err := c.check(store.CheckRev(rev))
	if err == nil {
		err = c.do(ctx, request{method: http.MethodGet, path: "resolve", query: revQuery("rev", rev)}, nil, &ans)
	}
	if err != nil {
		return "", fmt.Errorf("storehttp: resolve %q: %w", rev, err)
	}
	return ans.Commit, nil
}

// Commit applies a Change. Its shape is checked (store.CheckChange) before it is sent.
// The server records the authenticated user as its author unless it trusts authors.
func (c *Client) Commit(ctx context.Context, ch store.Change) (store.Commit, error) {
	var commit store.Commit
	err := c.check(store.CheckChange(&ch, 0), checkText(ch.Message, ch.Author))
	if err == nil {
		err = c.do(ctx, request{method: http.MethodPost, path: "commits"}, ch, &commit)
	}
	if err != nil {
		return store.Commit{}, fmt.Errorf("storehttp: commit on %q: %w", ch.Branch, err)
	}
	return commit, nil
}

// Revert restores everything below a prefix to its state at an older commit. r.Rules
// cannot travel: the server's Options.RevertRules apply.
func (c *Client) Revert(ctx context.Context, r store.RevertRequest) (store.Commit, error) {
	var commit store.Commit
	err := c.check(checkBranchOrEmpty(r.Branch), store.CheckPrefix(r.Prefix), checkText(r.Message, r.Author))
	if err == nil {
		err = c.do(ctx, request{method: http.MethodPost, path: "revert"}, r, &commit)
	}
	if err != nil {
		return store.Commit{}, fmt.Errorf("storehttp: revert %q on %q: %w", r.Prefix, r.Branch, err)
	}
	return commit, nil
}

// Log lists the commits reachable from rev, newest first, at most limit (<= 0: all).
func (c *Client) Log(ctx context.Context, rev string, limit int) ([]store.Commit, error) {
	var ans commitsAnswer
	err := c.check(store.CheckRev(rev))
	if err == nil {
		q := revQuery("rev", rev)
		if limit > 0 {
			q = withLimit(q, limit)
		}
		err = c.do(ctx, request{method: http.MethodGet, path: "log", query: q}, nil, &ans)
	}
	if err != nil {
		return nil, fmt.Errorf("storehttp: log %q: %w", rev, err)
	}
	return ans.Commits, nil
}

func withLimit(q url.Values, limit int) url.Values {
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", strconv.Itoa(limit))
	return q
}

// History lists the commits reachable from rev that changed key, newest first.
func (c *Client) History(ctx context.Context, rev, key string, limit int) ([]store.Commit, error) {
	var ans commitsAnswer
	err := c.check(store.CheckRev(rev), store.CheckKey(key))
	if err == nil {
		q := revQuery("rev", rev)
		if limit > 0 {
			q = withLimit(q, limit)
		}
		err = c.do(ctx, request{method: http.MethodGet, path: "history/" + keyPath(key), query: q}, nil, &ans)
	}
	if err != nil {
		return nil, fmt.Errorf("storehttp: history %q: %w", key, err)
	}
	return ans.Commits, nil
}

// Diff lists the keys below prefix that differ between two revisions.
func (c *Client) Diff(ctx context.Context, from, to, prefix string) ([]store.Diff, error) {
	var ans diffsAnswer
	err := c.check(store.CheckRev(from), store.CheckRev(to), store.CheckPrefix(prefix))
	if err == nil {
		q := url.Values{}
		for k, v := range map[string]string{"from": from, "to": to, "prefix": prefix} {
			if v != "" {
				q.Set(k, v)
			}
		}
		err = c.do(ctx, request{method: http.MethodGet, path: "diff", query: q}, nil, &ans)
	}
	if err != nil {
		return nil, fmt.Errorf("storehttp: diff %q..%q: %w", from, to, err)
	}
	return ans.Diffs, nil
}

// Branches lists all branches sorted by name.
func (c *Client) Branches(ctx context.Context) ([]store.Branch, error) {
	var ans branchesAnswer
	err := c.check()
	if err == nil {
		err = c.do(ctx, request{method: http.MethodGet, path: "branches"}, nil, &ans)
	}
	if err != nil {
		return nil, fmt.Errorf("storehttp: branches: %w", err)
	}
	return ans.Branches, nil
}

// CreateBranch makes a branch at the commit rev names.
func (c *Client) CreateBranch(ctx context.Context, name, rev string) (store.Branch, error) {
	var b store.Branch
	err := c.check(store.CheckBranch(name), store.CheckRev(rev))
	if err == nil {
		err = c.do(ctx, request{method: http.MethodPost, path: "branches"}, branchRequest{Name: name, From: rev}, &b)
	}
	if err != nil {
		return store.Branch{}, fmt.Errorf("storehttp: create branch %q: %w", name, err)
	}
	return b, nil
}

// DeleteBranch removes a branch.
func (c *Client) DeleteBranch(ctx context.Context, name string) error {
	err := c.check(store.CheckBranch(name))
	if err == nil {
		err = c.do(ctx, request{method: http.MethodDelete, path: "branches/" + name}, nil, nil)
	}
	if err != nil {
		return fmt.Errorf("storehttp: delete branch %q: %w", name, err)
	}
	return nil
}

// FastForward moves a branch to a commit that descends from its head.
func (c *Client) FastForward(ctx context.Context, name string, to store.Hash) error {
	err := c.check(store.CheckBranch(name))
	if err == nil && !store.IsHash(string(to)) {
		err = fmt.Errorf("commit %q: %w", to, store.ErrInvalid)
	}
	if err == nil {
		err = c.do(ctx, request{method: http.MethodPost, path: "branches/" + name + "/fast-forward"}, fastForwardRequest{To: to}, nil)
	}
	if err != nil {
		return fmt.Errorf("storehttp: fast-forward %q to %s: %w", name, to, err)
	}
	return nil
}

// Merge merges branch From into branch Into. The server records the authenticated user
// as the author of a merge commit unless it trusts authors.
func (c *Client) Merge(ctx context.Context, m store.MergeRequest) (store.Commit, error) {
	var commit store.Commit
	err := c.check(checkBranchOrEmpty(m.Into), store.CheckRev(m.From), checkText(m.Message, m.Author))
	if err == nil {
		err = c.do(ctx, request{method: http.MethodPost, path: "merge"}, m, &commit)
	}
	if err != nil {
		return store.Commit{}, fmt.Errorf("storehttp: merge %q into %q: %w", m.From, m.Into, err)
	}
	return commit, nil
}
