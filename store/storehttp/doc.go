// Package storehttp serves the versioned store over REST and speaks to it as a store.Store client.
//
// NewHandler returns an http.Handler over a set of repositories (Repos); NewClient returns a
// *Client that implements store.Store against such a handler, so code written for a local
// store runs unchanged against a remote one.
//
// # Authentication and authorisation
//
// Every request needs credentials: HTTP Basic (checked with Authenticator.CheckPassword) or
// "Authorization: Bearer TOKEN" (Authenticator.CheckToken). Missing or bad credentials get
// 401 with `WWW-Authenticate: Basic realm="hearth"`, or 429 with `Retry-After` while the
// authenticator throttles failed logins. A user may use only the repositories
// they own (REPO is "owner/name" and owner is the user name); any other repository answers
// 404, whether it exists or not. Writes to a missing repository of one's own (PUT or DELETE
// of a key, POST commits, git push) create it; reads of a missing repository answer 404.
// Commits made through the API are authored by the authenticated user
// (Name=user, Email=user@localhost), unless Options.TrustAuthors keeps the author a
// POST commits, merge or revert body names.
//
// # Endpoints
//
// REPO is "owner/name"; KEY and PREFIX are store keys with their slashes, segments
// percent-encoded where needed; R, A, B are revisions (a branch name or a commit id; empty
// means "main"). Bodies and answers are JSON unless stated.
//
//	GET    /api/repos                                  {"repos":["alice/mail",...]} (the user's own)
//	POST   /api/repos               {"name":"alice/notes"}  201 created, 200 if it existed
//	GET    /api/repos/REPO/branches                    {"branches":[{"name","head"}]}
//	POST   /api/repos/REPO/branches {"name","from"}    201 {"name","head"}
//	DELETE /api/repos/REPO/branches/NAME               204
//	POST   /api/repos/REPO/branches/NAME/fast-forward {"to"}  200 {"name","head"}
//	GET    /api/repos/REPO/resolve?rev=R               {"commit":"<hash>"}
//	GET    /api/repos/REPO/keys/KEY?rev=R              raw value (application/octet-stream),
//	                                                   ETag: "<version>", X-Hearth-Commit: <hash>;
//	                                                   If-None-Match with the ETag → 304
//	HEAD   /api/repos/REPO/keys/KEY?rev=R              the same headers without the value (Stat)
//	PUT    /api/repos/REPO/keys/KEY?branch=B           body = raw value; optional If-Match: "<version>"
//	                                                   or If-None-Match: * (412 when it fails), optional
//	                                                   X-Hearth-Message; 201 (created) or 200 with the
//	                                                   commit, ETag of the new version
//	DELETE /api/repos/REPO/keys/KEY?branch=B           If-Match honoured; 200 with the commit
//	GET    /api/repos/REPO/list?rev=R                  {"entries":[{"key","version","size"}]} (all keys)
//	GET    /api/repos/REPO/list/PREFIX?rev=R           the same, keys below PREFIX
//	POST   /api/repos/REPO/commits  store.Change       the commit (values base64, as encoding/json does)
//	GET    /api/repos/REPO/log?rev=R&limit=N           {"commits":[...]}
//	GET    /api/repos/REPO/history/KEY?rev=R&limit=N   {"commits":[...]}
//	GET    /api/repos/REPO/diff?from=A&to=B&prefix=P   {"diffs":[...]}
//	POST   /api/repos/REPO/merge    store.MergeRequest the commit; conflict → 409 {"error","keys":[...]}
//	POST   /api/repos/REPO/revert   store.RevertRequest the commit
//	GET    /api/repos/REPO/watch?branch=B&prefix=P     text/event-stream: one "data: <store.Event>"
//	                                                   per event, a comment line every 15 s
//	*      /OWNER/NAME.git/...                         git smart HTTP (info/refs, git-upload-pack,
//	                                                   git-receive-pack)
//
// # Errors
//
// Errors are {"error":"<message>"} with the status: store.ErrInvalid and malformed requests
// (bad paths, "..", empty segments, NUL, over-long keys, bad JSON) 400; store.ErrNotFound 404;
// *store.PreconditionError 412 (with "branch", "key", "want", "have"); other
// store.ErrConflict 409 (a *store.MergeConflictError adds "keys"); store.ErrTooLarge or a body
// over the limit 413; store.ErrClosed 503; anything else 500 with a generic message (the
// cause is logged). The Client maps them back to the same sentinels and typed errors.
//
// # Limits
//
// A raw value body (PUT) is at most Options.MaxBody bytes. JSON bodies carry values in
// base64, so a POST commits body may be 4/3 of MaxBody plus 1 MiB; other JSON bodies are at
// most 1 MiB. URL paths are at most 8 KiB. JSON bodies are decoded strictly: unknown fields,
// trailing data and malformed values are 400.
package storehttp
