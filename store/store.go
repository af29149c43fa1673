// Package store keeps Hearth's data as a versioned key-value store in bare git repositories.
//
// # Model
//
// A repository holds branches; a branch points at a commit; a commit holds a tree of keys.
// Keys are slash-separated paths ("INBOX/42", "calendars/home/abc.ics"); values are bytes.
// Every write is an atomic commit of many puts and deletes. Reads name a revision: a branch
// name ("main") or a commit id (40 hex digits). A key's Version is the git blob hash of its
// value, so it changes exactly when the value changes and can be used as a strong ETag.
//
// # Interfaces
//
// Store is composed of small interfaces (Reader, Writer, Historian, Brancher, Merger,
// Watcher). The git implementation is *Repo (Open, Init); store/memstore is an in-memory
// twin for tests; store/storehttp.Client speaks to a remote store over REST. All three pass
// the conformance suite in store/storetest.
//
// # On disk
//
// A Repo is an ordinary bare git repository that the git CLI can read, clone, fsck and gc.
// Writes go through one writer goroutine per repository that batches concurrent commits on a
// branch into one git commit (group commit). Each batch's new objects are written as one
// pack file, fsynced, then the branch ref is updated with git's own locking protocol
// (refs/heads/NAME.lock created exclusively, written, fsynced, renamed, directory fsynced).
// A Commit call returns only after that, so every acknowledged write survives a crash.
// Small packs are merged in the background so their number stays logarithmic; Pack
// consolidates everything into one pack (a pure-Go gc). Key history is served from an index
// kept beside the repository (hearth/ inside the git directory) and rebuilt from git when it
// is missing or stale.
package store

import (
	"context"
	"errors"
	"time"
)

// Hash is a git object id in lowercase hex: a value's Version or a commit's ID.
type Hash string

// Missing is the zero hash. As Op.IfMatch it means "the key must not exist";
// as Change.Parent it means "the branch must not exist yet".
const Missing Hash = "0000000000000000000000000000000000000000"

// DefaultBranch is the branch a new repository starts with and that an empty revision names.
const DefaultBranch = "main"

// Limits that every implementation enforces.
const (
	MaxKeyLen     = 1024     // bytes in a key
	MaxSegmentLen = 255      // bytes in one path segment of a key
	MaxBranchLen  = 200      // bytes in a branch name
	MaxOps        = 10000    // operations in one Change
	MaxValueSize  = 64 << 20 // bytes in one value (implementations may be configured lower)
	MaxMessageLen = 64 << 10 // bytes in a commit message
)

// Errors returned by every implementation; test them with errors.Is.
var (
	// ErrNotFound: the key, branch, commit or repository does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a compare-and-swap failed (branch head or a key's IfMatch), a merge has
	// conflicting keys, a branch already exists, or a key would be both a value and a directory.
	ErrConflict = errors.New("store: conflict")
	// ErrInvalid: a key, branch name, revision or argument is malformed.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrTooLarge: a value, message or change is over its limit.
	ErrTooLarge = errors.New("store: too large")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Signature names who made a commit.
type Signature struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Entry describes one key at one revision.
type Entry struct {
	Key     string `json:"key"`
	Version Hash   `json:"version"` // git blob hash of the value
	Size    int64  `json:"size"`
}

// Op is one put or delete inside a Change.
type Op struct {
	Key string `json:"key"`
	// Value is the new content. A nil Value with Delete false stores an empty value.
	Value []byte `json:"value,omitempty"`
	// Copy, when set, makes the key's new value the existing value with this version
	// (no bytes are sent or stored again). ErrNotFound if no such value exists.
	Copy Hash `json:"copy,omitempty"`
	// Delete removes the key. Deleting a missing key is not an error unless IfMatch says so.
	Delete bool `json:"delete,omitempty"`
	// IfMatch, when set, makes the whole Change fail with ErrConflict unless the key's
	// current version equals it; Missing requires the key to be absent.
	IfMatch Hash `json:"ifMatch,omitempty"`
}

// Change is an atomic write: all of its Ops are committed together or none is.
type Change struct {
	Branch string `json:"branch"` // "" means DefaultBranch
	// Parent, when set, is a compare-and-swap on the branch head: the change fails with
	// ErrConflict unless the head is Parent. Missing means the branch must not exist yet
	// (the change then creates it). "" commits on whatever the head is.
	Parent  Hash      `json:"parent,omitempty"`
	Author  Signature `json:"author"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"` // zero means now
	Ops     []Op      `json:"ops"`
}

// Commit describes one commit. Times have one-second precision, as in git.
type Commit struct {
	ID      Hash      `json:"id"`
	Parents []Hash    `json:"parents"`
	Author  Signature `json:"author"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// DiffKind says how a key changed between two commits.
type DiffKind string

// The kinds of Diff.
const (
	Added    DiffKind = "added"
	Modified DiffKind = "modified"
	Deleted  DiffKind = "deleted"
)

// Diff is one key that differs between two commits. Old is "" for Added, New is "" for Deleted.
type Diff struct {
	Key  string   `json:"key"`
	Kind DiffKind `json:"kind"`
	Old  Hash     `json:"old,omitempty"`
	New  Hash     `json:"new,omitempty"`
}

// Branch is a branch name and its head commit.
type Branch struct {
	Name string `json:"name"`
	Head Hash   `json:"head"`
}

// Event reports a commit that changed keys under a watched prefix.
type Event struct {
	Branch string `json:"branch"`
	Commit Commit `json:"commit"`
	// Diffs are the keys under the prefix that changed since the previous event
	// (or since the watch started), sorted by key.
	Diffs []Diff `json:"diffs"`
}

// Reader reads keys at a revision: a branch name, a commit id, or "" for DefaultBranch.
type Reader interface {
	// Get returns a key's value and entry. ErrNotFound if the key does not exist.
	Get(ctx context.Context, rev, key string) ([]byte, Entry, error)
	// Stat returns a key's entry without its value.
	Stat(ctx context.Context, rev, key string) (Entry, error)
	// List returns every key below prefix (a key path on segment boundaries; "" lists all),
	// sorted by key. A prefix naming a key itself lists just that key.
	List(ctx context.Context, rev, prefix string) ([]Entry, error)
	// Resolve returns the commit a revision names.
	Resolve(ctx context.Context, rev string) (Hash, error)
}

// Writer makes commits.
type Writer interface {
	// Commit applies c atomically and returns the commit that holds it. Concurrent changes
	// may share one commit (group commit). It returns only once the commit is durable.
	Commit(ctx context.Context, c Change) (Commit, error)
	// Revert makes a new commit on a branch that restores everything below a prefix to its
	// state at an older commit: keys that existed then get their old values back and keys
	// that did not are deleted. The prefix may name one key.
	Revert(ctx context.Context, r RevertRequest) (Commit, error)
}

// RevertRequest says what Revert restores.
type RevertRequest struct {
	Branch  string    `json:"branch"`
	Prefix  string    `json:"prefix"`
	To      Hash      `json:"to"` // the commit whose state is restored
	Author  Signature `json:"author"`
	Message string    `json:"message"`
	// Rules, if set, decide the keys they match among those the revert changes: a rule
	// sees Ours (the value at the head), Theirs (the value at To; nil where To lacks the
	// key), OursTime (the head commit's time) and TheirsTime (now), and returns what the
	// key becomes (nil: deleted). A rule's ErrConflict takes the value at To. This keeps
	// what must never go back from going back (see RevertOps). Not sent over the wire:
	// the server's own rules apply there.
	Rules MergeRules `json:"-"`
}

// Historian answers questions about history.
type Historian interface {
	// Log lists the commits reachable from rev, newest first, at most limit (<= 0: all).
	Log(ctx context.Context, rev string, limit int) ([]Commit, error)
	// History lists the commits reachable from rev that changed key (compared with their
	// first parent), newest first, at most limit (<= 0: all).
	History(ctx context.Context, rev, key string, limit int) ([]Commit, error)
	// Diff lists the keys below prefix that differ between two revisions, sorted by key.
	// An empty from means the empty tree.
	Diff(ctx context.Context, from, to, prefix string) ([]Diff, error)
}

// Brancher manages branches.
type Brancher interface {
	// Branches lists all branches sorted by name.
	Branches(ctx context.Context) ([]Branch, error)
	// CreateBranch makes a branch at the commit rev names. ErrConflict if it exists.
	CreateBranch(ctx context.Context, name, rev string) (Branch, error)
	// DeleteBranch removes a branch. ErrNotFound if it does not exist.
	DeleteBranch(ctx context.Context, name string) error
	// FastForward moves a branch to a commit that descends from its head;
	// ErrConflict if it does not. A branch whose head is an empty root commit (no
	// parents, no keys: what a new store starts with) may move to any commit.
	FastForward(ctx context.Context, name string, to Hash) error
}

// Merger merges branches.
type Merger interface {
	// Merge merges branch From into branch Into with a three-way merge against their merge
	// base, resolving keys changed on both sides with the store's merge rules. It
	// fast-forwards when Into has not moved, or is an empty root commit. A conflict is a
	// *MergeConflictError.
	Merge(ctx context.Context, m MergeRequest) (Commit, error)
}

// MergeRequest says what Merge merges.
type MergeRequest struct {
	Into    string    `json:"into"`
	From    string    `json:"from"` // a branch or a commit id
	Author  Signature `json:"author"`
	Message string    `json:"message"`
}

// Watcher delivers change notifications.
type Watcher interface {
	// Watch reports commits on branch that change keys below prefix, after they are
	// committed, including commits made by other processes. The channel is closed when ctx
	// ends or the store closes. A slow receiver gets coalesced events, never stale ones.
	Watch(ctx context.Context, branch, prefix string) (<-chan Event, error)
}

// Store is the whole versioned store.
type Store interface {
	Reader
	Writer
	Historian
	Brancher
	Merger
	Watcher
	// Close releases the store. Blocked calls return ErrClosed.
	Close() error
}

// PreconditionError reports a failed compare-and-swap: an Op's IfMatch (Key set) or a
// Change's Parent (Key empty) did not hold. It matches ErrConflict; protocol edges map it
// to "412 Precondition Failed".
type PreconditionError struct {
	Branch string
	Key    string // "" when the branch head was compared
	Want   Hash   // what the caller required (Missing: absent)
	Have   Hash   // what was there (Missing: absent)
}

func (e *PreconditionError) Error() string {
	if e.Key == "" {
		return "store: branch " + e.Branch + ": head is " + string(e.Have) + ", not " + string(e.Want)
	}
	return "store: key " + e.Key + ": version is " + string(e.Have) + ", not " + string(e.Want)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *PreconditionError) Is(target error) bool { return target == ErrConflict }
