package dashboard

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

// AdminUser is the user who may manage users and stop appliances.
const AdminUser = "admin"

// Defaults of Options.
const (
	DefaultSessionIdle = 30 * time.Minute
	DefaultSessionMax  = 12 * time.Hour
	// InvitationLifetime is how long an invitation link stays valid when unused.
	InvitationLifetime = 7 * 24 * time.Hour
	// MaxSessions bounds the sessions kept; when full, the oldest is dropped.
	MaxSessions = 10000
	// MaxFormSize bounds a form's body.
	MaxFormSize = 64 << 10
	// HistoryPageSize is how many commits a history page lists.
	HistoryPageSize = 25
	// HistoryScan bounds the commits one history page looks through for ones that changed
	// the data set; when it finds fewer, it links to the rest.
	HistoryScan = 1000
)

// Options configure New.
type Options struct {
	// Repos opens the users' repositories and system/dashboard (required).
	Repos signpost.RepoOpener
	// Accounts checks logins and is managed on the users page (required).
	Accounts *signpost.Accounts
	// CA is the home CA whose certificate /ca.pem serves (nil: none).
	CA *signpost.CA
	// Names are the appliances' names and ports for the setup page (zero: DefaultNames).
	Names signpost.Names
	// JitsuStatusURL is jitsu's status JSON, e.g. http://127.0.0.1:8053/status ("": the
	// appliances part says jitsu is not configured).
	JitsuStatusURL string
	// StopURL is where the stop button posts, with "{name}" replaced by the appliance's
	// name and JitsuToken as a bearer token ("": derived from JitsuStatusURL as
	// BASE/appliances/{name}/stop). Without JitsuToken there is no stop button.
	StopURL    string
	JitsuToken string
	// HTTPClient talks to jitsu (nil: a client with a 5 s timeout).
	HTTPClient *http.Client
	// ProcDir is where process statistics are read (""; "/proc").
	ProcDir string
	// SessionIdle and SessionMax end a session after that long without a request and
	// after that long in any case (0: DefaultSessionIdle, DefaultSessionMax).
	SessionIdle, SessionMax time.Duration
	// SessionFile, when set, keeps the sessions across restarts (an appliance exits when
	// idle): New loads it, Close writes it (mode 0600; the cookies' hashes, not the
	// cookies). A damaged file is logged and ignored.
	SessionFile string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Logger receives logins, changes and errors (never a secret). nil: slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the dashboard's metrics (logins, restores, CSRF refusals,
	// requests by route) and the handler serves no /metrics of its own: the appliance's
	// main serves them with the rest (signpost.Metrics). nil: the handler keeps them in a
	// registry of its own, with Go and process metrics, at /metrics for loopback
	// clients and the admin.
	Registerer *signpost.Registry
}

// Handler is the dashboard's http.Handler.
type Handler struct {
	opts     Options
	logger   *slog.Logger
	now      func() time.Time
	sessions *sessions
	mux      *http.ServeMux
	h        http.Handler
	tmpl     *template.Template
	met      *metrics
	client   *http.Client
}

// New returns the dashboard for opts.
func New(opts Options) (*Handler, error) {
	if opts.Repos == nil || opts.Accounts == nil {
		return nil, errors.New("dashboard: Repos and Accounts are required")
	}
	if opts.Names.Domain == "" {
		opts.Names = signpost.DefaultNames("")
	}
	if opts.ProcDir == "" {
		opts.ProcDir = "/proc"
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = DefaultSessionIdle
	}
	if opts.SessionMax <= 0 {
		opts.SessionMax = DefaultSessionMax
	}
	if opts.StopURL == "" && opts.JitsuStatusURL != "" {
		base := opts.JitsuStatusURL
		if i := strings.LastIndexByte(base, '/'); i > len("https://") {
			base = base[:i]
		}
		opts.StopURL = base + "/appliances/{name}/stop"
	}
	h := &Handler{opts: opts, logger: opts.Logger, now: opts.Now, client: opts.HTTPClient}
	if h.logger == nil {
		h.logger = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.client == nil {
		h.client = &http.Client{Timeout: 5 * time.Second}
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	h.tmpl = tmpl
	h.sessions = newSessions(h.now, opts.SessionIdle, opts.SessionMax, MaxSessions)
	if opts.SessionFile != "" {
		if err := h.sessions.load(opts.SessionFile); err != nil {
			h.logger.Warn("dashboard: sessions not restored", "file", opts.SessionFile, "err", err)
		}
	}
	if h.met, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("dashboard: metrics: %w", err)
	}
	h.routes()
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.h.ServeHTTP(w, r)
}

// routes builds the mux and the middleware around it.
func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.authed(h.home))
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("POST /logout", h.authed(h.logout))
	m.HandleFunc("GET /appliances", h.authed(h.appliances))
	m.HandleFunc("POST /appliances/{name}/stop", h.admin(h.stopAppliance))
	m.HandleFunc("GET /data", h.authed(h.dataSets))
	m.HandleFunc("GET /history/{service}/{set}", h.authed(h.history))
	m.HandleFunc("GET /history/{service}/{set}/{commit}", h.authed(h.commitView))
	m.HandleFunc("POST /restore", h.authed(h.restore))
	m.HandleFunc("GET /users", h.admin(h.users))
	m.HandleFunc("POST /users", h.admin(h.addUser))
	m.HandleFunc("POST /users/{name}/disable", h.admin(h.setDisabled(true)))
	m.HandleFunc("POST /users/{name}/enable", h.admin(h.setDisabled(false)))
	m.HandleFunc("POST /users/{name}/password", h.admin(h.resetPassword))
	m.HandleFunc("POST /users/{name}/app-passwords", h.admin(h.addAppPassword))
	m.HandleFunc("POST /users/{name}/app-passwords/revoke", h.admin(h.revokeAppPassword))
	m.HandleFunc("POST /invitations", h.admin(h.addInvitation))
	m.HandleFunc("POST /invitations/revoke", h.admin(h.revokeInvitation))
	m.HandleFunc("GET /invite/{token}", h.invitePage)
	m.HandleFunc("POST /invite/{token}", h.acceptInvite)
	m.HandleFunc("GET /account", h.authed(h.account))
	m.HandleFunc("POST /account/password", h.authed(h.changeOwnPassword))
	m.HandleFunc("POST /account/app-passwords", h.authed(h.addOwnAppPassword))
	m.HandleFunc("POST /account/app-passwords/revoke", h.authed(h.revokeOwnAppPassword))
	m.HandleFunc("GET /setup", h.authed(h.setup))
	m.HandleFunc("GET "+MobileconfigPath, h.authed(h.mobileconfig))
	m.HandleFunc("POST "+MobileconfigPath, h.authed(h.mobileconfig))
	m.HandleFunc("GET /ca.pem", h.caPEM)
	if h.met.handler != nil {
		m.HandleFunc("GET /metrics", h.metricsPage)
	}
	h.mux = m
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.met.csrfRejected.Inc()
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	h.h = h.met.instrument(securityHeaders(cop.Handler(m)), m)
}

// securityHeaders sets the headers every answer carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// request is what a handler of a logged-in user gets.
type request struct {
	*http.Request
	sess *session
}

// admin reports whether the session's user is the admin.
func (r request) admin() bool { return r.sess.user == AdminUser }

// authed wraps a handler that needs a session: without one, GETs are sent to the login
// page and other methods get 401; a POST must carry the session's CSRF token.
func (h *Handler) authed(fn func(http.ResponseWriter, request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := h.sessionOf(r)
		if sess == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			h.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended: log in again.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, MaxFormSize)
			if err := r.ParseForm(); err != nil {
				h.fail(w, r, sess, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !tokenEqual(r.PostForm.Get("csrf"), sess.csrf) {
				h.met.csrfRejected.Inc()
				h.fail(w, r, sess, http.StatusForbidden, "The form's security token is missing or stale: reload the page and try again.")
				return
			}
		}
		fn(w, request{r, sess})
	}
}

// admin is authed for the admin only (403 for the others).
func (h *Handler) admin(fn func(http.ResponseWriter, request)) http.HandlerFunc {
	return h.authed(func(w http.ResponseWriter, r request) {
		if !r.admin() {
			h.fail(w, r.Request, r.sess, http.StatusForbidden, "Only the admin may do this.")
			return
		}
		fn(w, r)
	})
}

func tokenEqual(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// page is the data every page template gets.
type page struct {
	Title   string
	User    string
	Admin   bool
	CSRF    string
	Nav     string
	Flash   string
	Error   string
	Content any
}

// render executes template name into a buffer and sends it with status.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, sess *session, status int, name, title string, content any) {
	p := page{Title: title, Nav: name, Content: content}
	if sess != nil {
		p.User, p.Admin, p.CSRF = sess.user, sess.user == AdminUser, sess.csrf
		p.Flash = h.sessions.takeFlash(sess)
	}
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		h.logger.Error("dashboard: render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// fail answers with an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	if status >= 500 {
		h.met.errors.Inc()
	}
	h.render(w, r, sess, status, "error", http.StatusText(status), msg)
}

// internal logs err and answers 500 with a short message.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, sess *session, what string, err error) {
	h.logger.Error("dashboard: "+what, "err", err)
	h.fail(w, r, sess, http.StatusInternalServerError, "Something went wrong: "+what+": "+err.Error())
}

// redirect answers a successful POST: a flash message for the next page and 303.
func (h *Handler) redirect(w http.ResponseWriter, r request, to, flash string) {
	if flash != "" {
		h.sessions.setFlash(r.sess, flash)
	}
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
}

func (h *Handler) home(w http.ResponseWriter, r request) {
	http.Redirect(w, r.Request, "/appliances", http.StatusSeeOther)
}

// remoteHost is the client's address without its port.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// isLoopback reports whether the request came from this machine.
func isLoopback(r *http.Request) bool {
	ip := net.ParseIP(remoteHost(r))
	return ip != nil && ip.IsLoopback()
}
