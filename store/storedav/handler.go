package storedav

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// Accounts checks credentials and access; *signpost.Accounts implements it.
type Accounts interface {
	CheckPassword(ctx context.Context, remote, user, password string) error
	CheckToken(ctx context.Context, remote, token string) (string, error)
	Access(ctx context.Context, user string, c signpost.Collection) (signpost.Access, error)
	GrantsTo(ctx context.Context, grantee string) ([]signpost.GrantInfo, error)
}

var _ Accounts = (*signpost.Accounts)(nil)

// DefaultSyncTokenBase is what sync tokens start with; the store commit id follows.
const DefaultSyncTokenBase = "http://hearth.home.arpa/sync/"

// Options configure a Handler.
type Options struct {
	// Kind says what the collections hold (required).
	Kind *Kind
	// Repos holds the owners' repositories OWNER/Kind.Repo (required).
	Repos Repos
	// Accounts authenticates requests and answers access and grants (required).
	Accounts Accounts
	// Next answers the REPORTs Handler does not (everything but sync-collection),
	// normally a go-webdav carddav.Handler or caldav.Handler with an empty Prefix. It
	// sees authenticated requests whose context carries the user (UserFromContext), for
	// paths the user may read. nil: such REPORTs get 403 DAV:supported-report.
	Next http.Handler
	// Limits bound sizes and counts (zero: the defaults).
	Limits Limits
	// Realm is the HTTP Basic realm ("" : "Hearth").
	Realm string
	// SyncTokenBase prefixes sync tokens ("" : DefaultSyncTokenBase).
	SyncTokenBase string
	// PeerUser, when set, names the user a request's peer may act as without a password
	// (a tailnet device), as in storehttp.Options.
	PeerUser func(ctx context.Context, remote string) (user string, ok bool)
	// Logger receives server errors. nil: slog.Default().
	Logger *slog.Logger
}

// Handler serves a kind's collections over WebDAV (see the package documentation).
type Handler struct {
	kind  *Kind
	coll  *Collections
	acct  Accounts
	next  http.Handler
	realm string
	base  string
	peer  func(ctx context.Context, remote string) (string, bool)
	log   *slog.Logger
}

// NewHandler returns a Handler; it fails when a required option is missing.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Kind == nil || opts.Repos == nil || opts.Accounts == nil {
		return nil, errors.New("storedav: NewHandler needs Kind, Repos and Accounts")
	}
	if err := opts.Kind.Check(); err != nil {
		return nil, err
	}
	h := &Handler{kind: opts.Kind, acct: opts.Accounts, next: opts.Next, realm: opts.Realm,
		base: opts.SyncTokenBase, peer: opts.PeerUser, log: opts.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.realm == "" {
		h.realm = "Hearth"
	}
	if h.base == "" {
		h.base = DefaultSyncTokenBase
	}
	h.coll = NewCollections(opts.Repos, opts.Kind, opts.Limits, h.log)
	return h, nil
}

// Collections returns the model the handler serves.
func (h *Handler) Collections() *Collections { return h.coll }

type userKey struct{}

// WithUser returns ctx carrying the authenticated user.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// UserFromContext returns the user Handler authenticated for the request ctx belongs to.
func UserFromContext(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok && u != ""
}

var errNoCredentials = errors.New("storedav: no credentials")

func (h *Handler) authenticate(r *http.Request) (string, error) {
	ctx := r.Context()
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		token = strings.TrimSpace(token)
		if token == "" {
			return "", errNoCredentials
		}
		return h.acct.CheckToken(ctx, r.RemoteAddr, token)
	}
	user, password, ok := r.BasicAuth()
	if h.peer != nil && (!ok || user != "") {
		if peer, known := h.peer(ctx, r.RemoteAddr); known && (!ok || peer == user) {
			return peer, nil
		}
	}
	if !ok || user == "" {
		return "", errNoCredentials
	}
	if err := h.acct.CheckPassword(ctx, r.RemoteAddr, user, password); err != nil {
		return "", err
	}
	return user, nil
}

// ServeHTTP authenticates the request and answers it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, err := h.authenticate(r)
	if err != nil {
		var throttled interface{ RetryAfter() time.Duration }
		if errors.As(err, &throttled) {
			secs := int(math.Ceil(throttled.RetryAfter().Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			http.Error(w, "too many failed logins; try again later", http.StatusTooManyRequests)
			return
		}
		if !errors.Is(err, errNoCredentials) && !errors.Is(err, signpost.ErrBadCredentials) {
			h.log.ErrorContext(r.Context(), "storedav: authentication", "err", err)
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="`+h.realm+`", charset="UTF-8"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	r = r.WithContext(WithUser(r.Context(), user))
	p := r.URL.EscapedPath()
	if p == "/.well-known/carddav" || p == "/.well-known/caldav" || p == "/.well-known/carddav/" || p == "/.well-known/caldav/" {
		http.Redirect(w, r, "/"+user+"/", http.StatusPermanentRedirect)
		return
	}
	t, err := ParsePath(h.kind.Repo, p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rq := &request{h: h, w: w, r: r, user: user, t: t}
	rq.serve()
}

// request is one request being answered.
type request struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	user string
	t    Target
	acc  signpost.Access
}

func (q *request) ctx() context.Context { return q.r.Context() }

// access returns what the user may do with the target's collection (or home set).
func (q *request) access() (signpost.Access, error) { return q.h.access(q.ctx(), q.user, q.t) }

// access returns what user may do with what t names: read the root, everything of
// their own, a collection (and its objects) shared with them as the grant says.
func (h *Handler) access(ctx context.Context, user string, t Target) (signpost.Access, error) {
	switch {
	case t.Level <= LevelRoot:
		return signpost.ReadOnly, nil
	case t.Owner == user:
		return signpost.ReadWrite, nil
	case t.Level < LevelCollection:
		return signpost.NoAccess, nil
	}
	return h.acct.Access(ctx, user, signpost.Collection{Owner: t.Owner, Repo: h.kind.Repo, Path: t.Collection})
}

func (q *request) serve() {
	acc, err := q.access()
	if err != nil {
		q.fail(err)
		return
	}
	q.acc = acc
	if acc == signpost.NoAccess {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("need-privileges"), Reason: "not shared with you"})
		return
	}
	write := false
	switch q.r.Method {
	case http.MethodOptions:
		q.options()
		return
	case "PROPFIND":
		q.propfind()
		return
	case "REPORT":
		q.report()
		return
	case http.MethodGet, http.MethodHead:
		q.get()
		return
	case "PROPPATCH", "MKCOL", http.MethodPut, http.MethodDelete:
		write = true
	default:
		if q.h.kind.MkcolMethod != "" && q.r.Method == q.h.kind.MkcolMethod {
			write = true
		}
	}
	if !write {
		q.w.Header().Set("Allow", q.allow())
		http.Error(q.w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if acc < signpost.ReadWrite {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("need-privileges"), Reason: "shared with you read-only"})
		return
	}
	switch q.r.Method {
	case "PROPPATCH":
		q.proppatch()
	case http.MethodPut:
		q.put()
	case http.MethodDelete:
		q.delete()
	default:
		q.mkcol()
	}
}

func (q *request) allow() string {
	m := "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, REPORT, MKCOL"
	if q.h.kind.MkcolMethod != "" {
		m += ", " + q.h.kind.MkcolMethod
	}
	return m
}

func (q *request) options() {
	q.w.Header().Set("DAV", "1, 3, extended-mkcol, "+q.h.kind.Compliance)
	q.w.Header().Set("Allow", q.allow())
	q.w.WriteHeader(http.StatusOK)
}

// fail answers an error from the model.
func (q *request) fail(err error) {
	var pe *PreconditionError
	switch {
	case errors.As(err, &pe):
		q.condition(pe)
	case errors.Is(err, store.ErrNotFound):
		http.Error(q.w, "not found", http.StatusNotFound)
	case errors.Is(err, ErrPrecondition):
		http.Error(q.w, "precondition failed", http.StatusPreconditionFailed)
	case errors.Is(err, ErrExists):
		http.Error(q.w, "the collection exists", http.StatusMethodNotAllowed)
	case errors.Is(err, ErrInvalid), errors.Is(err, signpost.ErrInvalid):
		http.Error(q.w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrLimit):
		http.Error(q.w, err.Error(), http.StatusInsufficientStorage)
	case errors.Is(err, ErrForbidden):
		http.Error(q.w, err.Error(), http.StatusForbidden)
	case errors.Is(err, context.Canceled):
		http.Error(q.w, "canceled", http.StatusServiceUnavailable)
	default:
		q.h.log.ErrorContext(q.ctx(), "storedav: request failed", "method", q.r.Method, "path", q.r.URL.Path, "err", err)
		http.Error(q.w, "internal error", http.StatusInternalServerError)
	}
}

func (q *request) condition(e *PreconditionError) { writeCondition(q.w, q.h.kind, e) }

// readBody reads a request body of at most limit bytes; ok false means it answered.
func (q *request) readBody(limit int64) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(q.r.Body, limit+1))
	if err != nil {
		http.Error(q.w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if int64(len(b)) > limit {
		q.condition(&PreconditionError{Status: http.StatusRequestEntityTooLarge, Name: xmlName(q.h.kind.NS, "max-resource-size"),
			Reason: fmt.Sprintf("the body is larger than %d bytes", limit)})
		return nil, false
	}
	return b, true
}

// parseETag parses one quoted strong entity tag into a store version ("" if malformed).
func parseETag(s string) store.Hash {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return ""
	}
	return store.Hash(s[1 : len(s)-1])
}

func etag(h store.Hash) string { return `"` + string(h) + `"` }

func (q *request) get() {
	if q.t.Level != LevelObject {
		q.w.Header().Set("Allow", "OPTIONS, PROPFIND, REPORT")
		http.Error(q.w, "GET of a collection is not supported; use PROPFIND", http.StatusMethodNotAllowed)
		return
	}
	data, info, err := q.h.coll.Object(q.ctx(), q.t.Owner, q.t.Collection, q.t.Resource)
	if err != nil {
		q.fail(err)
		return
	}
	hd := q.w.Header()
	hd.Set("ETag", etag(info.ETag))
	hd.Set("Content-Type", q.h.kind.ContentType)
	if inm := q.r.Header.Get("If-None-Match"); inm != "" && matchesAny(inm, info.ETag) {
		q.w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(data)))
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method != http.MethodHead {
		q.w.Write(data)
	}
}

// matchesAny reports whether an If-None-Match / If-Match list names v (or is "*").
func matchesAny(list string, v store.Hash) bool {
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || parseETag(part) == v {
			return true
		}
	}
	return false
}

func (q *request) put() {
	if q.t.Level != LevelObject {
		http.Error(q.w, "PUT needs an object path: /OWNER/"+q.h.kind.Repo+"/COLLECTION/NAME", http.StatusMethodNotAllowed)
		return
	}
	limit := q.h.coll.limits.MaxResourceSize
	if q.r.ContentLength > limit {
		q.condition(&PreconditionError{Status: http.StatusRequestEntityTooLarge, Name: xmlName(q.h.kind.NS, "max-resource-size"),
			Reason: fmt.Sprintf("the body is larger than %d bytes", limit)})
		return
	}
	body, ok := q.readBody(limit)
	if !ok {
		return
	}
	var cond Conditions
	if im := q.r.Header.Get("If-Match"); im != "" {
		if strings.TrimSpace(im) == "*" {
			// Any existing version: compare with what is there now.
			_, info, err := q.h.coll.Object(q.ctx(), q.t.Owner, q.t.Collection, q.t.Resource)
			if errors.Is(err, store.ErrNotFound) {
				http.Error(q.w, "precondition failed", http.StatusPreconditionFailed)
				return
			} else if err != nil {
				q.fail(err)
				return
			}
			cond.IfMatch = info.ETag
		} else if cond.IfMatch = parseETag(strings.Split(im, ",")[0]); cond.IfMatch == "" {
			http.Error(q.w, "precondition failed: If-Match needs a strong entity tag", http.StatusPreconditionFailed)
			return
		}
	}
	if inm := q.r.Header.Get("If-None-Match"); inm != "" {
		if strings.TrimSpace(inm) != "*" {
			http.Error(q.w, "If-None-Match on PUT must be *", http.StatusBadRequest)
			return
		}
		cond.IfNoneMatch = true
	}
	res, err := q.h.coll.Put(q.ctx(), q.t.Owner, q.t.Collection, q.t.Resource, body, cond)
	if err != nil {
		var pe *PreconditionError
		if errors.As(err, &pe) && pe.Href != "" {
			pe.Href = Target{Level: LevelObject, Owner: q.t.Owner, Collection: q.t.Collection, Resource: pe.Href}.Href(q.h.kind.Repo)
		}
		q.fail(err)
		return
	}
	q.w.Header().Set("ETag", etag(res.ETag))
	if res.Created {
		q.w.Header().Set("Location", q.t.Href(q.h.kind.Repo))
		q.w.WriteHeader(http.StatusCreated)
	} else {
		q.w.WriteHeader(http.StatusNoContent)
	}
}

func (q *request) delete() {
	switch q.t.Level {
	case LevelObject:
		var ifMatch store.Hash
		if im := q.r.Header.Get("If-Match"); im != "" && strings.TrimSpace(im) != "*" {
			if ifMatch = parseETag(strings.Split(im, ",")[0]); ifMatch == "" {
				http.Error(q.w, "precondition failed: If-Match needs a strong entity tag", http.StatusPreconditionFailed)
				return
			}
		}
		if err := q.h.coll.DeleteObject(q.ctx(), q.t.Owner, q.t.Collection, q.t.Resource, ifMatch); err != nil {
			q.fail(err)
			return
		}
	case LevelCollection:
		if q.t.Owner != q.user {
			q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("need-privileges"), Reason: "only the owner may delete a collection"})
			return
		}
		if err := q.h.coll.Delete(q.ctx(), q.t.Owner, q.t.Collection); err != nil {
			q.fail(err)
			return
		}
	default:
		http.Error(q.w, "only objects and collections can be deleted", http.StatusForbidden)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// report answers sync-collection and hands every other REPORT to Next.
func (q *request) report() {
	body, err := io.ReadAll(io.LimitReader(q.r.Body, maxXMLBody+1))
	if err != nil || len(body) > maxXMLBody {
		http.Error(q.w, "REPORT body unreadable or too large", http.StatusBadRequest)
		return
	}
	root, err := ParseXML(bytes.NewReader(body))
	if err != nil || root == nil {
		http.Error(q.w, "REPORT needs an XML body", http.StatusBadRequest)
		return
	}
	k := q.h.kind
	switch {
	case root.Name == nameDAV("sync-collection"):
		q.syncCollection(root)
		return
	case k.Multiget != "" && root.Name == xmlName(k.NS, k.Multiget) && len(root.Child(NSDAV, "prop").Child(k.NS, k.DataProp).Children) == 0:
		q.multiget(root)
		return
	case k.Query != "" && k.Match != nil && root.Name == xmlName(k.NS, k.Query):
		q.query(root)
		return
	}
	if q.h.next == nil {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("supported-report"), Reason: root.Name.Local + " is not supported"})
		return
	}
	q.r.Body = io.NopCloser(bytes.NewReader(body))
	q.r.ContentLength = int64(len(body))
	q.h.next.ServeHTTP(q.w, q.r)
}
