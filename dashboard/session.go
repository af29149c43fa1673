package dashboard

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
const (
	sessionCookie = "__Host-hearth_session"
	loginCookie   = "__Host-hearth_login"
)

// session is one logged-in browser.
type session struct {
	id       string // the cookie's value; "" for a session loaded from the session file
	key      string // hex SHA-256 of id: what sessions are kept by (and saved under)
	user     string
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    string
}

// sessions are the logged-in browsers, in memory, bounded.
type sessions struct {
	now       func() time.Time
	idle, max time.Duration
	limit     int

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(now func() time.Time, idle, max time.Duration, limit int) *sessions {
	return &sessions{now: now, idle: idle, max: max, limit: limit, byID: map[string]*session{}}
}

// randomToken returns 32 random bytes in base64url.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics only if the OS has no randomness)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create makes a new session for user, dropping expired ones and, when full, the oldest.
func (s *sessions) create(user string) *session {
	now := s.now()
	id := randomToken()
	sess := &session{id: id, key: hashToken(id), user: user, csrf: randomToken(), created: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.limit {
		var oldest *session
		for id, o := range s.byID {
			if s.expired(o, now) {
				delete(s.byID, id)
				continue
			}
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		if len(s.byID) >= s.limit && oldest != nil {
			delete(s.byID, oldest.key)
		}
	}
	s.byID[sess.key] = sess
	return sess
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.lastSeen) > s.idle || now.Sub(sess.created) > s.max
}

// get returns the live session of a cookie value and marks it used, or nil.
func (s *sessions) get(id string) *session {
	now := s.now()
	key := hashToken(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byID[key]
	if sess == nil {
		return nil
	}
	if s.expired(sess, now) {
		delete(s.byID, key)
		return nil
	}
	sess.lastSeen = now
	return sess
}

// drop ends one session.
func (s *sessions) drop(sess *session) {
	s.mu.Lock()
	delete(s.byID, sess.key)
	s.mu.Unlock()
}

// dropUser ends every session of user (after a password reset or disabling).
func (s *sessions) dropUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, sess := range s.byID {
		if sess.user == user {
			delete(s.byID, key)
		}
	}
}

func (s *sessions) setFlash(sess *session, msg string) {
	s.mu.Lock()
	sess.flash = msg
	s.mu.Unlock()
}

func (s *sessions) takeFlash(sess *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.flash
	sess.flash = ""
	return f
}

// sessionOf returns the request's live session, or nil.
func (h *Handler) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) != 43 {
		return nil
	}
	return h.sessions.get(c.Value)
}

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: name, Value: value, Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	}
	if maxAge < 0 {
		c.MaxAge = -1
	} else if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

// loginData is the login template's content.
type loginData struct {
	Token string
	Name  string
	Error string
}

// loginPage shows the login form with a fresh pre-login token, bound to a cookie.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.sessionOf(r) != nil {
		http.Redirect(w, r, "/appliances", http.StatusSeeOther)
		return
	}
	h.showLogin(w, r, http.StatusOK, "", "")
}

func (h *Handler) showLogin(w http.ResponseWriter, r *http.Request, status int, name, msg string) {
	tok := randomToken()
	setCookie(w, loginCookie, tok, 30*time.Minute)
	h.render(w, r, nil, status, "login", "Log in", loginData{Token: tok, Name: name, Error: msg})
}

// login checks the form's credentials with signpost (throttled by its Limiter) and
// starts a session.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormSize)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if !secureTransport(r) {
		h.fail(w, r, nil, http.StatusForbidden, "Passwords are accepted only over HTTPS: use https://.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !tokenEqual(r.PostForm.Get("csrf"), c.Value) {
		h.met.csrfRejected.Inc()
		h.showLogin(w, r, http.StatusForbidden, "", "The login form was stale: try again.")
		return
	}
	name, password := r.PostForm.Get("user"), r.PostForm.Get("password")
	if len(name) > signpost.MaxNameLen {
		name = name[:signpost.MaxNameLen]
	}
	err = h.opts.Accounts.CheckPassword(r.Context(), r.RemoteAddr, name, password)
	var th *signpost.ThrottledError
	switch {
	case errors.As(err, &th):
		h.met.logins.WithLabelValues("throttled").Inc()
		w.Header().Set("Retry-After", retryAfter(th.RetryAfter()))
		h.showLogin(w, r, http.StatusTooManyRequests, name, "Too many failed logins: try again later.")
		return
	case errors.Is(err, signpost.ErrThrottled):
		h.met.logins.WithLabelValues("throttled").Inc()
		h.showLogin(w, r, http.StatusTooManyRequests, name, "Too many failed logins: try again later.")
		return
	case errors.Is(err, signpost.ErrBadCredentials) || errors.Is(err, signpost.ErrInvalid):
		h.met.logins.WithLabelValues("failed").Inc()
		h.showLogin(w, r, http.StatusUnauthorized, name, "Wrong user name or password.")
		return
	case err != nil:
		h.internal(w, r, nil, "check the password", err)
		return
	}
	h.met.logins.WithLabelValues("ok").Inc()
	if old := h.sessionOf(r); old != nil {
		h.sessions.drop(old)
	}
	sess := h.sessions.create(name)
	setCookie(w, sessionCookie, sess.id, 0)
	setCookie(w, loginCookie, "", -1)
	h.logger.Info("dashboard: login", "user", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/appliances", http.StatusSeeOther)
}

func retryAfter(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return itoa(s)
}

func (h *Handler) logout(w http.ResponseWriter, r request) {
	h.sessions.drop(r.sess)
	setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r.Request, "/login", http.StatusSeeOther)
}

// secureTransport reports whether a password may travel in r: over TLS, from loopback, or
// over a signpost.TrustedListener.
func secureTransport(r *http.Request) bool {
	return r.TLS != nil || isLoopback(r) || signpost.OverTrustedTransport(r.Context())
}
