// Package mail stores every user's mail in the versioned store and serves it over IMAP.
//
// # Storage layout
//
// A user's mail lives in the store repository USER/mail (RepoName), branch main:
//
//	subscriptions                  JSON list of subscribed mailbox names
//	meta/ID                        JSON: name, uidValidity, uidNext, specialUse, created
//	index/ID/N                     index chunk N: the messages with UID/256 == N
//	msg/ID/S/UID                   a message's bytes (RFC 5322), S = UID/256
//
// ID is a mailbox id (16 hex digits, random), stable across RENAME: the name lives only in
// meta, so renaming a mailbox rewrites one small value. An index chunk is text:
//
//	hearth-mail-index 1
//	UID VERSION SIZE INTERNALDATE FLAG...
//
// one line per message in increasing UID order: VERSION is the git blob id of the
// message (its msg key's version), SIZE its length, INTERNALDATE RFC 3339 with its zone,
// then the flags (system flags and keywords, as IMAP writes them). A flag change
// rewrites one chunk of at most 256 lines; appending a message adds its blob and rewrites
// the last chunk and meta. COPY, MOVE and restore add a key whose value is an existing
// version (store.Op Copy), so a message's bytes are stored once however often it is
// copied. UIDNEXT and UIDVALIDITY live in meta and are written in the same commit as the
// messages, so they survive restarts; a mailbox deleted and created again gets a new
// UIDVALIDITY (the larger of the current Unix time and the highest one seen + 1).
//
// Every change (APPEND, STORE, EXPUNGE, COPY, MOVE, CREATE, ...) is one commit (bulk
// operations over more than 3000 messages are split into several commits, each of them
// consistent), durable before the client hears OK. DeliverBatch (used by
// "hearth mail import") stores up to MaxBatchMessages messages in one commit. Commits are compare-and-swap on the
// branch head: a writer that lost the race (another process delivering, a REST client)
// catches up with the store and retries, so a UID is never handed out twice.
//
// # In memory
//
// The Backend loads a user's meta and index once (it never lists msg/) and keeps it
// current from its own commits and from the store's Watch, applying the tree diff
// between the commit it knows and the new head; that is how IDLE sees mail delivered by
// another process or written through REST. A message blob written to msg/ID/S/UID
// without an index line is indexed (no flags, internal date now) and the index written
// back. SELECT and FETCH FLAGS read only memory; message bytes are read from the store
// when a FETCH or SEARCH needs them, and parsed headers (envelope, body structure) are
// cached by blob version. \Recent is kept in memory only: after a restart, no message is
// recent.
//
// # IMAP
//
// Server serves IMAP4rev2 and IMAP4rev1 with go-imap's imapserver: IDLE, MOVE, UIDPLUS,
// NAMESPACE, LIST-EXTENDED, LIST-STATUS, STATUS=SIZE, SPECIAL-USE, CREATE-SPECIAL-USE,
// APPENDLIMIT, UNSELECT, UNAUTHENTICATE, ENABLE, LITERAL+/-, SASL-IR, ESEARCH, SEARCHRES,
// UTF8=ACCEPT, CHILDREN. Logins are checked with signpost's accounts (passwords and app
// passwords); passwords travel in plain text only over TLS, loopback or a
// signpost.TrustedListener. The mailbox hierarchy delimiter is "/". APPENDLIMIT is
// advertised without a value (STATUS ... (APPENDLIMIT) gives it) so that a too-large
// non-synchronizing literal is read and refused with NO [TOOBIG] rather than breaking the
// connection. Responses are coalesced into few writes (the library flushes after every
// line). Clients that stall (half a command, half a literal, silent too long) or flood
// are cut off with BYE by limits in ServerOptions, enforced under TLS too (guard.go). The
// keyword announcement (untagged FLAGS before a FETCH that uses a new
// keyword) needs an update writer from an earlier poll: a STORE that is the very first
// command after SELECT reports its own FETCH first and the FLAGS right after. CONDSTORE and
// QRESYNC are not offered (the library has no support): the in-memory modseq that drives
// untagged FETCH FLAGS updates is not persisted.
package mail
