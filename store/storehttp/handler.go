package storehttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Repos is what the handler serves; *store.Repos and *memstore.Repos implement it.
// The handler never closes the stores Open returns: they belong to the Repos.
type Repos interface {
	// List returns the names ("owner/name") of all repositories.
	List(ctx context.Context) ([]string, error)
	// Open returns the named repository, creating it when create is true; without create
	// a missing repository is store.ErrNotFound.
	Open(ctx context.Context, name string, create bool) (store.Store, error)
}

var (
	_ Repos        = (*store.Repos)(nil)
	_ http.Handler = (*Handler)(nil)
)

// Authenticator checks credentials; signpost's accounts implement it.
type Authenticator interface {
	// CheckPassword returns nil when password is user's password. remote is the client's
	// address (host:port), for rate limiting failures.
	CheckPassword(ctx context.Context, remote, user, password string) error
	// CheckToken returns the user a bearer token belongs to, or an error if it is not valid.
	CheckToken(ctx context.Context, remote, token string) (user string, err error)
}

// Options configure a Handler.
type Options struct {
	// Auth checks every request's credentials. nil rejects every request with 401.
	Auth Authenticator
	// Logger receives server errors. nil: slog.Default().
	Logger *slog.Logger
	// MaxBody is the largest raw request body (a PUT value) in bytes
	// (<= 0: store.MaxValueSize + 1 MiB). JSON bodies may be 4/3 of it plus 1 MiB.
	MaxBody int64
	// TrustAuthors keeps the Author a client puts in a POST commits, merge or revert body
	// (an empty one still becomes the user). By default every commit made through the API
	// is authored by the authenticated user; set it only where clients are trusted, such as
	// the conformance tests.
	TrustAuthors bool
	// PeerUser, when set, names the user a request's peer may act as without a password:
	// a tailnet device whose login is mapped to an account that opted in. It is asked when
	// a request carries no credentials, or Basic credentials for that same user (clients
	// that always send a password); remote is the request's RemoteAddr.
	PeerUser func(ctx context.Context, remote string) (user string, ok bool)
	// RevertRules are the store.RevertRequest.Rules of every revert made through the API
	// (nil: none): what a layout must never take back, such as a mailbox's UIDNEXT.
	RevertRules store.MergeRules
}

// Handler serves the store's REST API (see the package documentation); it implements
// http.Handler and is safe for concurrent use.
type Handler struct {
	repos     Repos
	auth      Authenticator
	log       *slog.Logger
	maxBody   int64
	maxChange int64
	keepAlive time.Duration
	trust     bool
	peerUser  func(ctx context.Context, remote string) (string, bool)
	revert    store.MergeRules
}

// NewHandler returns a Handler serving repos.
func NewHandler(repos Repos, opts Options) *Handler {
	h := &Handler{
		repos:     repos,
		auth:      opts.Auth,
		log:       opts.Logger,
		maxBody:   opts.MaxBody,
		peerUser:  opts.PeerUser,
		revert:    opts.RevertRules,
		keepAlive: 15 * time.Second,
		trust:     opts.TrustAuthors,
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.maxBody <= 0 {
		h.maxBody = store.MaxValueSize + 1<<20
	}
	h.maxChange = h.maxBody/3*4 + 1<<20
	return h
}

// ServeHTTP authenticates the request and dispatches it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, err := h.authenticate(r)
	if err != nil {
		h.log.DebugContext(r.Context(), "storehttp: authentication failed", "path", r.URL.Path, "err", err)
		// An authenticator that throttles failed logins says how long to wait.
		var throttled interface{ RetryAfter() time.Duration }
		if errors.As(err, &throttled) {
			secs := int(math.Ceil(throttled.RetryAfter().Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeError(w, http.StatusTooManyRequests, "too many failed logins; try again later")
			return
		}
		w.Header().Set("WWW-Authenticate", wwwAuthenticate)
		writeError(w, http.StatusUnauthorized, "authentication required")
		return
	}
	p := r.URL.EscapedPath()
	if len(p) > maxPathLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("URL path longer than %d bytes", maxPathLen))
		return
	}
	switch {
	case p == "/api/repos" || p == "/api/repos/":
		h.serveRepos(w, r, user)
	case strings.HasPrefix(p, "/api/repos/"):
		h.serveRepo(w, r, user, p[len("/api/repos/"):])
	case strings.HasPrefix(p, "/api/"):
		writeError(w, http.StatusNotFound, "no such endpoint")
	default:
		h.routeGit(w, r, user, p)
	}
}

var errNoCredentials = errors.New("storehttp: no credentials")

// authenticate returns the user the request's credentials name.
func (h *Handler) authenticate(r *http.Request) (string, error) {
	if h.auth == nil {
		return "", errors.New("storehttp: no authenticator configured")
	}
	ctx := r.Context()
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		token = strings.TrimSpace(token)
		if token == "" {
			return "", errNoCredentials
		}
		user, err := h.auth.CheckToken(ctx, r.RemoteAddr, token)
		if err != nil {
			return "", err
		}
		if user == "" {
			return "", errors.New("storehttp: token names no user")
		}
		return user, nil
	}
	user, password, ok := r.BasicAuth()
	if h.peerUser != nil && (!ok || user != "") {
		if peer, known := h.peerUser(ctx, r.RemoteAddr); known && (!ok || peer == user) {
			return peer, nil
		}
	}
	if !ok || user == "" {
		return "", errNoCredentials
	}
	if err := h.auth.CheckPassword(ctx, r.RemoteAddr, user, password); err != nil {
		return "", err
	}
	return user, nil
}

// serveRepos answers /api/repos.
func (h *Handler) serveRepos(w http.ResponseWriter, r *http.Request, user string) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		names, err := h.repos.List(ctx)
		if err != nil {
			h.writeStoreError(w, r, err)
			return
		}
		mine := []string{}
		for _, n := range names {
			if owner, _, _ := strings.Cut(n, "/"); owner == user {
				mine = append(mine, n)
			}
		}
		writeJSON(w, http.StatusOK, reposAnswer{Repos: mine})
	case http.MethodPost:
		var req repoRequest
		if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxSmallJSON), maxSmallJSON, &req); err != nil {
			h.writeStoreError(w, r, err)
			return
		}
		if err := store.CheckRepoName(req.Name); err != nil {
			h.writeStoreError(w, r, err)
			return
		}
		if owner, _, _ := strings.Cut(req.Name, "/"); owner != user {
			writeError(w, http.StatusNotFound, "repository not found")
			return
		}
		status := http.StatusOK
		_, err := h.repos.Open(ctx, req.Name, false)
		if errors.Is(err, store.ErrNotFound) {
			status = http.StatusCreated
			_, err = h.repos.Open(ctx, req.Name, true)
		}
		if err != nil {
			h.writeStoreError(w, r, err)
			return
		}
		writeJSON(w, status, repoRequest{Name: req.Name})
	default:
		methodNotAllowed(w, "GET, HEAD, POST")
	}
}

// repoCtx is one request on one repository after routing.
type repoCtx struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	user string
	name string // "owner/name"
	arg  string // the decoded key, prefix or branch name the path names
}

// open opens the repository, creating it when create is true, and writes the error
// answer when it fails.
func (c *repoCtx) open(create bool) (store.Store, bool) {
	s, err := c.h.repos.Open(c.r.Context(), c.name, create)
	if errors.Is(err, store.ErrNotFound) {
		writeError(c.w, http.StatusNotFound, fmt.Sprintf("repository %q not found", c.name))
		return nil, false
	}
	if err != nil {
		c.h.writeStoreError(c.w, c.r, err)
		return nil, false
	}
	return s, true
}

// fail writes the answer for err.
func (c *repoCtx) fail(err error) { c.h.writeStoreError(c.w, c.r, err) }

// author is the signature of the commits the user makes.
func (c *repoCtx) author() store.Signature {
	return store.Signature{Name: c.user, Email: c.user + "@localhost"}
}

// authorFor returns the author of a commit whose body claimed claimed: the user, unless
// the handler trusts authors and one was given.
func (c *repoCtx) authorFor(claimed store.Signature) store.Signature {
	if c.h.trust && claimed != (store.Signature{}) {
		return claimed
	}
	return c.author()
}

// serveRepo answers /api/repos/OWNER/NAME/... ; rest is the escaped path after /api/repos/.
func (h *Handler) serveRepo(w http.ResponseWriter, r *http.Request, user, rest string) {
	owner, rest, _ := strings.Cut(rest, "/")
	repo, sub, _ := strings.Cut(rest, "/")
	name := owner + "/" + repo
	if err := store.CheckRepoName(name); err != nil {
		h.writeStoreError(w, r, err)
		return
	}
	if owner != user {
		writeError(w, http.StatusNotFound, "repository not found")
		return
	}
	serve, arg, err := route(r.Method, sub)
	if err != nil {
		var me *methodError
		if errors.As(err, &me) {
			methodNotAllowed(w, me.allow)
			return
		}
		h.writeStoreError(w, r, err)
		return
	}
	serve(&repoCtx{h: h, w: w, r: r, user: user, name: name, arg: arg})
}

// methodError says which methods a path allows.
type methodError struct{ allow string }

func (e *methodError) Error() string { return "storehttp: method not allowed; allowed: " + e.allow }

var errNoEndpoint = fmt.Errorf("storehttp: no such endpoint: %w", store.ErrNotFound)

// route picks the endpoint for a method and the escaped path after the repository, and
// decodes the key, prefix or branch name in it. Bad paths are store.ErrInvalid, unknown
// ones store.ErrNotFound, a wrong method a *methodError.
func route(method, sub string) (func(*repoCtx), string, error) {
	seg, tail, hasTail := strings.Cut(sub, "/")
	only := func(allow string, f func(*repoCtx)) (func(*repoCtx), string, error) {
		if hasTail {
			return nil, "", errNoEndpoint
		}
		for m := range strings.SplitSeq(allow, ", ") {
			if m == method {
				return f, "", nil
			}
		}
		return nil, "", &methodError{allow}
	}
	switch seg {
	case "branches":
		if !hasTail {
			switch method {
			case http.MethodGet, http.MethodHead:
				return (*repoCtx).listBranches, "", nil
			case http.MethodPost:
				return (*repoCtx).createBranch, "", nil
			}
			return nil, "", &methodError{"GET, HEAD, POST"}
		}
		serve := (*repoCtx).deleteBranch
		name, ff := strings.CutSuffix(tail, "/fast-forward")
		switch {
		case ff && method == http.MethodPost:
			serve = (*repoCtx).fastForward
		case method == http.MethodDelete:
			name = tail
		case ff:
			return nil, "", &methodError{"POST, DELETE"}
		default:
			return nil, "", &methodError{"DELETE"}
		}
		name, err := unescapePath(name)
		if err == nil {
			err = store.CheckBranch(name)
		}
		return serve, name, err
	case "resolve":
		return only("GET, HEAD", (*repoCtx).resolve)
	case "log":
		return only("GET, HEAD", (*repoCtx).log)
	case "diff":
		return only("GET, HEAD", (*repoCtx).diff)
	case "watch":
		return only("GET", (*repoCtx).watch)
	case "commits":
		return only("POST", (*repoCtx).commit)
	case "merge":
		return only("POST", (*repoCtx).merge)
	case "revert":
		return only("POST", (*repoCtx).revert)
	case "list":
		if method != http.MethodGet && method != http.MethodHead {
			return nil, "", &methodError{"GET, HEAD"}
		}
		prefix, err := prefixFromPath(tail)
		return (*repoCtx).list, prefix, err
	case "history":
		if method != http.MethodGet && method != http.MethodHead {
			return nil, "", &methodError{"GET, HEAD"}
		}
		key, err := keyFromPath(tail)
		return (*repoCtx).history, key, err
	case "keys":
		var serve func(*repoCtx)
		switch method {
		case http.MethodGet, http.MethodHead:
			serve = (*repoCtx).getKey
		case http.MethodPut:
			serve = (*repoCtx).putKey
		case http.MethodDelete:
			serve = (*repoCtx).deleteKey
		default:
			return nil, "", &methodError{"GET, HEAD, PUT, DELETE"}
		}
		key, err := keyFromPath(tail)
		return serve, key, err
	}
	return nil, "", errNoEndpoint
}

// routeGit answers /OWNER/NAME.git/REST (git smart HTTP); p is the escaped path.
func (h *Handler) routeGit(w http.ResponseWriter, r *http.Request, user, p string) {
	owner, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	repo, rest, _ := strings.Cut(rest, "/")
	repo, isGit := strings.CutSuffix(repo, ".git")
	name := owner + "/" + repo
	if !isGit || store.CheckRepoName(name) != nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if owner != user {
		writeError(w, http.StatusNotFound, "repository not found")
		return
	}
	push := rest == "git-receive-pack" || rest == "info/refs" && r.URL.Query().Get("service") == "git-receive-pack"
	s, err := h.repos.Open(r.Context(), name, push)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "repository not found")
		return
	}
	if err != nil {
		h.writeStoreError(w, r, err)
		return
	}
	h.serveGit(w, r, user, name, s, rest)
}

// writeStoreError maps err to its status and writes it as JSON.
func (h *Handler) writeStoreError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		pe *store.PreconditionError
		mc *store.MergeConflictError
		me *http.MaxBytesError
	)
	ans := errorAnswer{Error: err.Error()}
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &pe):
		status = http.StatusPreconditionFailed
		ans.Branch, ans.Key, ans.Want, ans.Have = pe.Branch, pe.Key, pe.Want, pe.Have
	case errors.As(err, &mc):
		status = http.StatusConflict
		ans.Keys = mc.Keys
	case errors.Is(err, store.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, store.ErrTooLarge) || errors.As(err, &me):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, store.ErrClosed):
		status = http.StatusServiceUnavailable
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		status = http.StatusServiceUnavailable
		ans.Error = "request canceled"
	default:
		h.log.ErrorContext(r.Context(), "storehttp: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ans.Error = "internal server error"
	}
	writeJSON(w, status, ans)
}

// writeError writes {"error": msg} with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorAnswer{Error: msg})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed")
}

// writeJSON writes v as a JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only values this package builds are written; they always marshal.
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal server error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentJSON)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
