// Package dashboard serves the owner's web dashboard.
//
// The dashboard is server-rendered HTML (html/template, no JavaScript) with these parts:
//
//   - Appliances: what jitsu reports at its status URL (state, summons, last summon
//     latency) with each running appliance's memory and open TCP connections read from
//     /proc, and, for the admin, a button that asks jitsu to stop one: a POST with a
//     bearer token to the endpoint jitsu.StopHandler serves beside jitsu's status (the token in
//     DATA/jitsu.token, signpost.EnsureControlToken).
//   - Data: the user's mail folders (repository USER/mail), address books (USER/contacts)
//     and calendars (USER/calendar); for each a paginated list of the commits that changed
//     it, a diff view of one commit, and "restore" for a message, contact or event deleted
//     there. A contact or event comes back under its old resource name together with its
//     UID index entry (the storedav layout); a message comes back with a new UID (its old
//     one must not be reused), its flags but \Deleted, and its internal date, written to
//     msg/ and the mailbox's index chunk and meta in one compare-and-swap commit, as the
//     mail service would.
//   - Users (the admin, user "admin", only): add, disable and enable, reset a password,
//     app passwords (made and shown once, revoked), and one-time invitation links with
//     which a new user picks their name and password. Invitations are kept in the store
//     repository system/dashboard, under the SHA-256 of their secret; they expire after
//     use or after InvitationLifetime.
//   - Setup: per-client instructions, the home CA certificate (/ca.pem), the
//     autodiscovery names, and an Apple configuration profile (/setup/hearth.mobileconfig:
//     the CA, mail, CardDAV and CalDAV accounts; optionally with a new app password).
//   - Account: the user's own app passwords and password.
//   - Metrics: logins, restores, CSRF refusals and requests by route, registered with
//     Options.Registerer or served at /metrics to loopback clients and the admin.
//
// # Security
//
// Logins are checked with signpost's accounts (CheckPassword, so failures are throttled by
// its Limiter: 429 when it refuses); passwords are accepted only over TLS, loopback or a
// trusted transport. Sessions live in memory and, with Options.SessionFile, are saved by
// Close and loaded by New, so they survive the appliance's idle exits (the file holds the
// cookies' SHA-256, not the cookies). The cookie is HttpOnly, Secure, SameSite=Strict and
// __Host- prefixed; a session ends after SessionIdle without a request and after
// SessionMax in any case, and a new one is made at every login. Every POST must
// carry the session's CSRF token (the login form a token bound to a pre-login cookie) and
// pass net/http's CrossOriginProtection (Sec-Fetch-Site, Origin). Pages are sent with a
// strict Content-Security-Policy, no-store caching and frame denial.
package dashboard
