// Package storedav serves collections of store keys over WebDAV, adding what go-webdav lacks.
//
// # Layout
//
// A service (contacts, calendar) keeps each user's data in the store repository
// OWNER/REPO (Kind.Repo: "contacts", "calendar"). Inside it a collection NAME is
//
//	collections/NAME.json   its metadata (Meta: displayname, description, color, components, dead properties)
//	objects/NAME/RESOURCE   one object: the exact bytes the client sent
//	uids/NAME/HASH          the index of UIDs (HASH = hex SHA-256 of the UID) → RESOURCE
//
// so listing collections does not walk objects, and an object's store version is its
// strong ETag. Collections (the type) is this model without HTTP: create, list, patch and
// delete collections, put and delete objects with compare-and-swap, changes since a commit,
// restore from history. Commands such as "hearth contacts import" use it directly.
//
// # URLs
//
//	/.well-known/carddav|caldav  → 308 to the user's principal
//	/OWNER/                      the principal (current-user-principal, the home set)
//	/OWNER/REPO/                 the home set: the owner's collections, and for the user
//	                             themselves also the collections other users shared with them
//	/OWNER/REPO/NAME/            a collection
//	/OWNER/REPO/NAME/RESOURCE    an object
//
// These depths are the ones go-webdav's carddav and caldav handlers expect with an empty
// prefix, so the library's REPORT code (multiget, query) can run behind Handler unchanged.
//
// # Plugging a service in
//
// A service describes itself with a Kind (repository name, XML namespace and element
// names, content type, a Validate function that checks an object and returns its UID) and
// builds a Handler with NewHandler(Options{Kind, Repos, Accounts, Next}). Handler
// authenticates every request (HTTP Basic or Bearer against signpost accounts; 401 with
// WWW-Authenticate, 429 with Retry-After when throttled), validates the path strictly, checks
// access (owner, or a signpost grant; read-only grants refuse writes with 403), and answers
// itself: OPTIONS, PROPFIND (with getctag, sync-token, the home sets, dead properties),
// PROPPATCH, MKCOL (extended, RFC 5689), MKCALENDAR (when Kind.MkcolMethod says so),
// GET/HEAD (the stored bytes), PUT (raw body, Validate, no-uid-conflict, max-resource-size
// 413, If-Match / If-None-Match 412, 201 on create and 204 on overwrite), DELETE (objects
// and collections), and REPORT sync-collection (RFC 6578; the sync token is a store commit,
// the answer the store's diff). When the Kind names them, it also answers the multiget
// REPORT (Kind.Multiget) and the query REPORT (Kind.Query, filtering with Kind.Match on
// the parsed request Element) with the stored bytes, which go-webdav would re-encode.
// Every other REPORT (free-busy, calendar-query with expansion, a multiget asking for
// parts of the data) goes to Options.Next, normally a go-webdav carddav.Handler or
// caldav.Handler whose Backend reads through Handler.Object and Handler.Objects (which
// check access for the user in the request's context, see UserFromContext); a service
// may answer a REPORT itself in Next before delegating the rest to the library.
//
// # Sync tokens
//
// A sync token is DefaultSyncTokenBase (Options.SyncTokenBase) followed by a store commit
// id: the client has seen the collection as of that commit, and the answer is the diff
// from it to the branch head. A sync-collection with DAV:limit (RFC 6578 §3.7) returns at
// most that many changes in resource-name order; when more remain it adds a 507 response
// for the request URI and a token "SINCE/TARGET/AFTER" (see SyncPoint) that continues
// after the last name sent — the rest of the diff to TARGET, then what changed after
// TARGET. A token whose commit is unknown, not in the branch's history any more (history
// rewritten), more than Limits.MaxSyncTokenCommits commits back or older than
// Limits.MaxSyncTokenAge gets 403 DAV:valid-sync-token, and the client syncs afresh.
//
// Listings are cached per collection and kept current with the store's diff, and object
// bytes by version (Collections.Data), so PROPFIND Depth 1, sync-collection and queries
// over large collections cost little store I/O; both caches are bounded.
package storedav
