package dashboard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// Repo is the store repository the dashboard keeps its own records in (invitations).
const Repo = signpost.ReservedName + "/dashboard"

// MaxInvitations bounds the pending invitations.
const MaxInvitations = 100

const invitationPrefix = "invitations/"

// invitation is what is stored at invitations/SHA256HEX for one invitation.
type invitation struct {
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	By      string    `json:"by"`
	Note    string    `json:"note,omitempty"`
}

// userRow is one user on the users page.
type userRow struct {
	signpost.User
	AppPasswords []signpost.AppPassword
}

// invitationRow is one pending invitation.
type invitationRow struct {
	ID      string // the hash: what revoke names
	Short   string
	Note    string
	By      string
	Expires string
}

// usersData is the users template's content.
type usersData struct {
	Users       []userRow
	Invitations []invitationRow
	// Secret is an app password or invitation link just made, shown once.
	Secret      string
	SecretLabel string
}

func (h *Handler) users(w http.ResponseWriter, r request) {
	h.showUsers(w, r, http.StatusOK, "", "")
}

func (h *Handler) showUsers(w http.ResponseWriter, r request, status int, label, secret string) {
	ctx := r.Context()
	list, err := h.opts.Accounts.List(ctx)
	if err != nil {
		h.internal(w, r.Request, r.sess, "list users", err)
		return
	}
	d := usersData{Secret: secret, SecretLabel: label}
	for _, u := range list {
		row := userRow{User: u}
		if u.AppPasswords > 0 {
			row.AppPasswords, _ = h.opts.Accounts.AppPasswords(ctx, u.Name)
		}
		d.Users = append(d.Users, row)
	}
	invs, err := h.invitations(ctx)
	if err != nil {
		h.internal(w, r.Request, r.sess, "list invitations", err)
		return
	}
	d.Invitations = invs
	h.render(w, r.Request, r.sess, status, "users", "Users", d)
}

// accountError answers a failed account change: the user's mistakes with 400/404/409,
// anything else with 500.
func (h *Handler) accountError(w http.ResponseWriter, r request, what string, err error) {
	switch {
	case errors.Is(err, signpost.ErrInvalid):
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, what+": "+err.Error())
	case errors.Is(err, signpost.ErrNotFound):
		h.fail(w, r.Request, r.sess, http.StatusNotFound, what+": no such user or label")
	case errors.Is(err, signpost.ErrExists):
		h.fail(w, r.Request, r.sess, http.StatusConflict, what+": it exists already")
	case errors.Is(err, signpost.ErrLimit):
		h.fail(w, r.Request, r.sess, http.StatusConflict, what+": "+err.Error())
	default:
		h.internal(w, r.Request, r.sess, what, err)
	}
}

func (h *Handler) addUser(w http.ResponseWriter, r request) {
	name, pw := r.PostForm.Get("name"), r.PostForm.Get("password")
	if err := h.opts.Accounts.Add(r.Context(), name, pw); err != nil {
		h.accountError(w, r, "add user", err)
		return
	}
	h.logger.Info("dashboard: user added", "user", name, "by", r.sess.user)
	h.redirect(w, r, "/users", "Added user "+name+".")
}

func (h *Handler) setDisabled(disabled bool) func(http.ResponseWriter, request) {
	return func(w http.ResponseWriter, r request) {
		name := r.PathValue("name")
		if disabled && name == r.sess.user {
			h.fail(w, r.Request, r.sess, http.StatusBadRequest, "You cannot disable yourself.")
			return
		}
		if err := h.opts.Accounts.SetDisabled(r.Context(), name, disabled); err != nil {
			h.accountError(w, r, "disable user", err)
			return
		}
		word := "Enabled"
		if disabled {
			word = "Disabled"
			h.sessions.dropUser(name)
		}
		h.logger.Info("dashboard: user "+strings.ToLower(word), "user", name, "by", r.sess.user)
		h.redirect(w, r, "/users", word+" "+name+".")
	}
}

func (h *Handler) resetPassword(w http.ResponseWriter, r request) {
	name := r.PathValue("name")
	if err := h.opts.Accounts.SetPassword(r.Context(), name, r.PostForm.Get("password")); err != nil {
		h.accountError(w, r, "set password", err)
		return
	}
	if name != r.sess.user {
		h.sessions.dropUser(name)
	}
	h.logger.Info("dashboard: password reset", "user", name, "by", r.sess.user)
	h.redirect(w, r, "/users", "Set a new password for "+name+".")
}

func (h *Handler) addAppPassword(w http.ResponseWriter, r request) {
	name, label := r.PathValue("name"), r.PostForm.Get("label")
	secret, err := h.opts.Accounts.AddAppPassword(r.Context(), name, label)
	if err != nil {
		h.accountError(w, r, "add app password", err)
		return
	}
	h.logger.Info("dashboard: app password added", "user", name, "label", label, "by", r.sess.user)
	h.showUsers(w, r, http.StatusOK, "App password "+label+" for "+name+" (shown only now):", secret)
}

func (h *Handler) revokeAppPassword(w http.ResponseWriter, r request) {
	name, label := r.PathValue("name"), r.PostForm.Get("label")
	if err := h.opts.Accounts.RevokeAppPassword(r.Context(), name, label); err != nil {
		h.accountError(w, r, "revoke app password", err)
		return
	}
	h.logger.Info("dashboard: app password revoked", "user", name, "label", label, "by", r.sess.user)
	h.redirect(w, r, "/users", "Revoked app password "+label+" of "+name+".")
}

// invitationsRepo opens system/dashboard.
func (h *Handler) invitationsRepo(ctx context.Context) (store.Store, error) {
	return h.opts.Repos.Open(ctx, Repo, true)
}

func hashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// invitations lists the pending, unexpired invitations.
func (h *Handler) invitations(ctx context.Context) ([]invitationRow, error) {
	st, err := h.invitationsRepo(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := st.List(ctx, "", strings.TrimSuffix(invitationPrefix, "/"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := h.now()
	var out []invitationRow
	for _, e := range entries {
		inv, err := readInvitation(ctx, st, e.Key)
		if err != nil || !now.Before(inv.Expires) {
			continue
		}
		id := strings.TrimPrefix(e.Key, invitationPrefix)
		out = append(out, invitationRow{ID: id, Short: id[:min(8, len(id))], Note: inv.Note, By: inv.By, Expires: inv.Expires.Local().Format("2006-01-02 15:04")})
	}
	slices.SortFunc(out, func(a, b invitationRow) int { return strings.Compare(a.Expires, b.Expires) })
	return out, nil
}

func readInvitation(ctx context.Context, st store.Store, key string) (invitation, error) {
	var inv invitation
	b, _, err := st.Get(ctx, "", key)
	if err != nil {
		return inv, err
	}
	if len(b) > 4096 {
		return inv, fmt.Errorf("dashboard: invitation %s: too large", key)
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		return inv, fmt.Errorf("dashboard: invitation %s: %w", key, err)
	}
	return inv, nil
}

// addInvitation makes an invitation link and shows it once.
func (h *Handler) addInvitation(w http.ResponseWriter, r request) {
	ctx := r.Context()
	note := strings.TrimSpace(r.PostForm.Get("note"))
	if len(note) > 200 {
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, "The note is too long (200 bytes at most).")
		return
	}
	st, err := h.invitationsRepo(ctx)
	if err != nil {
		h.internal(w, r.Request, r.sess, "open invitations", err)
		return
	}
	// Drop expired invitations on the way, and enforce the limit.
	entries, err := st.List(ctx, "", strings.TrimSuffix(invitationPrefix, "/"))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.internal(w, r.Request, r.sess, "list invitations", err)
		return
	}
	now := h.now()
	var ops []store.Op
	live := 0
	for _, e := range entries {
		if inv, err := readInvitation(ctx, st, e.Key); err == nil && now.Before(inv.Expires) {
			live++
		} else {
			ops = append(ops, store.Op{Key: e.Key, Delete: true, IfMatch: e.Version})
		}
	}
	if live >= MaxInvitations {
		h.fail(w, r.Request, r.sess, http.StatusConflict, fmt.Sprintf("There are %d pending invitations already: revoke some first.", live))
		return
	}
	token := randomToken()
	inv, _ := json.Marshal(invitation{Created: now, Expires: now.Add(InvitationLifetime), By: r.sess.user, Note: note})
	ops = append(ops, store.Op{Key: invitationPrefix + hashToken(token), Value: inv, IfMatch: store.Missing})
	if _, err := st.Commit(ctx, store.Change{Author: signature(r.sess.user), Message: "invitation", Ops: ops}); err != nil {
		h.internal(w, r.Request, r.sess, "store the invitation", err)
		return
	}
	h.logger.Info("dashboard: invitation made", "by", r.sess.user)
	link := "https://" + r.Host + "/invite/" + token
	h.showUsers(w, r, http.StatusOK, "Invitation link (shown only now; valid once, for 7 days):", link)
}

func signature(user string) store.Signature {
	return store.Signature{Name: user, Email: user + "@hearth.invalid"}
}

func (h *Handler) revokeInvitation(w http.ResponseWriter, r request) {
	id := r.PostForm.Get("id")
	if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, "No such invitation.")
		return
	}
	st, err := h.invitationsRepo(r.Context())
	if err != nil {
		h.internal(w, r.Request, r.sess, "open invitations", err)
		return
	}
	if _, err := st.Stat(r.Context(), "", invitationPrefix+id); err != nil {
		h.fail(w, r.Request, r.sess, http.StatusNotFound, "No such invitation.")
		return
	}
	if _, err := st.Commit(r.Context(), store.Change{Author: signature(r.sess.user), Message: "revoke invitation", Ops: []store.Op{{Key: invitationPrefix + id, Delete: true}}}); err != nil {
		h.internal(w, r.Request, r.sess, "revoke invitation", err)
		return
	}
	h.redirect(w, r, "/users", "Revoked the invitation.")
}

// inviteData is the invite template's content.
type inviteData struct {
	Token string
	CSRF  string
	Name  string
	Error string
}

// validInviteToken reports whether s looks like a token randomToken makes.
func validInviteToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// liveInvitation returns the stored invitation of token and its version, or an error.
func (h *Handler) liveInvitation(ctx context.Context, token string) (store.Store, store.Entry, error) {
	if !validInviteToken(token) {
		return nil, store.Entry{}, store.ErrNotFound
	}
	st, err := h.invitationsRepo(ctx)
	if err != nil {
		return nil, store.Entry{}, err
	}
	key := invitationPrefix + hashToken(token)
	e, err := st.Stat(ctx, "", key)
	if err != nil {
		return nil, e, err
	}
	inv, err := readInvitation(ctx, st, key)
	if err != nil {
		return nil, e, err
	}
	if !h.now().Before(inv.Expires) {
		return nil, e, store.ErrNotFound
	}
	return st, e, nil
}

// invitePage shows the form where an invited person picks a name and password.
func (h *Handler) invitePage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if _, _, err := h.liveInvitation(r.Context(), token); err != nil {
		h.fail(w, r, nil, http.StatusNotFound, "This invitation is used, expired or unknown.")
		return
	}
	h.showInvite(w, r, http.StatusOK, token, "", "")
}

func (h *Handler) showInvite(w http.ResponseWriter, r *http.Request, status int, token, name, msg string) {
	csrf := randomToken()
	setCookie(w, loginCookie, csrf, 30*time.Minute)
	h.render(w, r, nil, status, "invite", "Welcome to Hearth", inviteData{Token: token, CSRF: csrf, Name: name, Error: msg})
}

// acceptInvite uses up the invitation (compare-and-swap delete: only one use wins) and
// makes the account; if making it fails, the invitation is put back.
func (h *Handler) acceptInvite(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := r.PathValue("token")
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
		h.showInvite(w, r, http.StatusForbidden, token, "", "The form was stale: try again.")
		return
	}
	name, pw := r.PostForm.Get("name"), r.PostForm.Get("password")
	if pw != r.PostForm.Get("password2") {
		h.showInvite(w, r, http.StatusBadRequest, token, name, "The passwords differ.")
		return
	}
	if err := signpost.CheckName(name); err != nil {
		h.showInvite(w, r, http.StatusBadRequest, token, name, "That name cannot be used: lowercase letters, digits, '.', '_' and '-', up to 64.")
		return
	}
	if len(pw) < signpost.MinPasswordLen || len(pw) > signpost.MaxPasswordLen {
		h.showInvite(w, r, http.StatusBadRequest, token, name, fmt.Sprintf("The password must have %d to %d characters.", signpost.MinPasswordLen, signpost.MaxPasswordLen))
		return
	}
	st, e, err := h.liveInvitation(ctx, token)
	if err != nil {
		h.fail(w, r, nil, http.StatusNotFound, "This invitation is used, expired or unknown.")
		return
	}
	old, cur, err := st.Get(ctx, "", e.Key)
	if err != nil || cur.Version != e.Version {
		h.fail(w, r, nil, http.StatusNotFound, "This invitation is used, expired or unknown.")
		return
	}
	if _, err := st.Commit(ctx, store.Change{Author: signature(name), Message: "invitation used",
		Ops: []store.Op{{Key: e.Key, Delete: true, IfMatch: e.Version}}}); err != nil {
		h.fail(w, r, nil, http.StatusNotFound, "This invitation is used, expired or unknown.")
		return
	}
	if err := h.opts.Accounts.Add(ctx, name, pw); err != nil {
		// Put the invitation back so the person can try another name.
		_, perr := st.Commit(context.WithoutCancel(ctx), store.Change{Author: signature(name), Message: "invitation put back",
			Ops: []store.Op{{Key: e.Key, Value: old, IfMatch: store.Missing}}})
		if perr != nil {
			h.logger.Error("dashboard: put back invitation", "err", perr)
		}
		if errors.Is(err, signpost.ErrExists) {
			h.showInvite(w, r, http.StatusConflict, token, name, "That name is taken: pick another.")
			return
		}
		if errors.Is(err, signpost.ErrInvalid) || errors.Is(err, signpost.ErrLimit) {
			h.showInvite(w, r, http.StatusBadRequest, token, name, err.Error())
			return
		}
		h.internal(w, r, nil, "add user", err)
		return
	}
	h.logger.Info("dashboard: invitation accepted", "user", name)
	sess := h.sessions.create(name)
	setCookie(w, sessionCookie, sess.id, 0)
	setCookie(w, loginCookie, "", -1)
	h.sessions.setFlash(sess, "Welcome, "+name+". Your account is ready: see Setup for your devices.")
	http.Redirect(w, r, "/setup", http.StatusSeeOther)
}
