package dashboard

import (
	"errors"
	"net/http"

	"github.com/hearth-home/hearth/signpost"
)

// accountData is the account template's content: the user's own app passwords.
type accountData struct {
	AppPasswords []signpost.AppPassword
	Secret       string
	SecretLabel  string
}

// account shows the user's own app passwords and the password form.
func (h *Handler) account(w http.ResponseWriter, r request) {
	h.showAccount(w, r, "", "")
}

func (h *Handler) showAccount(w http.ResponseWriter, r request, label, secret string) {
	aps, err := h.opts.Accounts.AppPasswords(r.Context(), r.sess.user)
	if err != nil {
		h.internal(w, r.Request, r.sess, "list app passwords", err)
		return
	}
	h.render(w, r.Request, r.sess, http.StatusOK, "account", "Your account", accountData{AppPasswords: aps, Secret: secret, SecretLabel: label})
}

// changeOwnPassword sets the user's password after checking the current one (throttled
// like a login).
func (h *Handler) changeOwnPassword(w http.ResponseWriter, r request) {
	f := r.PostForm
	err := h.opts.Accounts.CheckPassword(r.Context(), r.RemoteAddr, r.sess.user, f.Get("current"))
	switch {
	case errors.Is(err, signpost.ErrThrottled):
		h.fail(w, r.Request, r.sess, http.StatusTooManyRequests, "Too many wrong passwords: try again later.")
		return
	case err != nil:
		h.fail(w, r.Request, r.sess, http.StatusForbidden, "The current password is wrong.")
		return
	}
	if f.Get("password") != f.Get("password2") {
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, "The new passwords differ.")
		return
	}
	if err := h.opts.Accounts.SetPassword(r.Context(), r.sess.user, f.Get("password")); err != nil {
		h.accountError(w, r, "set password", err)
		return
	}
	h.logger.Info("dashboard: password changed", "user", r.sess.user)
	h.redirect(w, r, "/account", "Your password is changed.")
}

func (h *Handler) addOwnAppPassword(w http.ResponseWriter, r request) {
	label := r.PostForm.Get("label")
	secret, err := h.opts.Accounts.AddAppPassword(r.Context(), r.sess.user, label)
	if err != nil {
		h.accountError(w, r, "add app password", err)
		return
	}
	h.logger.Info("dashboard: app password added", "user", r.sess.user, "label", label)
	h.showAccount(w, r, "App password "+label+" (shown only now):", secret)
}

func (h *Handler) revokeOwnAppPassword(w http.ResponseWriter, r request) {
	label := r.PostForm.Get("label")
	if err := h.opts.Accounts.RevokeAppPassword(r.Context(), r.sess.user, label); err != nil {
		h.accountError(w, r, "revoke app password", err)
		return
	}
	h.logger.Info("dashboard: app password revoked", "user", r.sess.user, "label", label)
	h.redirect(w, r, "/account", "Revoked app password "+label+".")
}
