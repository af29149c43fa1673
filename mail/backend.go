package mail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// RepoOpener opens store repositories by name; *store.Repos and *memstore.Repos implement it.
type RepoOpener interface {
	Open(ctx context.Context, name string, create bool) (store.Store, error)
}

// RepoName is the name of a user's mail repository.
func RepoName(user string) string { return user + "/mail" }

// Default limits.
const (
	// DefaultAppendLimit is the largest message APPEND and Deliver accept unless
	// Options.AppendLimit says otherwise.
	DefaultAppendLimit = 50 << 20
	// maxBatch is how many messages one commit copies, moves or expunges; bigger
	// requests are split into several commits (each one consistent).
	maxBatch = 3000
	// maxRetries bounds how often a write is retried after losing a race with
	// another writer of the same repository.
	maxRetries = 20
)

// Errors returned by the Backend; test them with errors.Is.
var (
	// ErrNoMailbox: the mailbox does not exist.
	ErrNoMailbox = errors.New("mail: no such mailbox")
	// ErrExists: the mailbox already exists.
	ErrExists = errors.New("mail: mailbox exists")
	// ErrInvalid: a name, flag or message is malformed.
	ErrInvalid = errors.New("mail: invalid argument")
	// ErrTooBig: the message is larger than the append limit.
	ErrTooBig = errors.New("mail: message too big")
)

// Options configure a Backend.
type Options struct {
	// Accounts checks passwords for IMAP logins. Required by the Server (a Backend used
	// only for delivery may leave it nil).
	Accounts *signpost.Accounts
	// Logger receives errors and notable events; nil: slog.Default().
	Logger *slog.Logger
	// AppendLimit is the largest message accepted, in bytes (0: DefaultAppendLimit;
	// at most store.MaxValueSize).
	AppendLimit int64
	// Now returns the current time (nil: time.Now); tests set it.
	Now func() time.Time
}

// Backend serves every user's mailboxes from the store. Each user's mail lives in the
// repository USER/mail (RepoName) in the layout described in the package doc; it keeps an
// in-memory index per user, loaded on first use and kept current from its own commits
// and from the store's watch. It is safe for concurrent use.
type Backend struct {
	repos RepoOpener
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	limit int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	users  map[string]*userState
	closed bool

	cache *parseCache
}

// NewBackend returns a Backend over repos. Close it when done.
func NewBackend(repos RepoOpener, opts Options) (*Backend, error) {
	if repos == nil {
		return nil, fmt.Errorf("mail: new backend: %w: nil repos", ErrInvalid)
	}
	if opts.AppendLimit < 0 || opts.AppendLimit > store.MaxValueSize {
		return nil, fmt.Errorf("mail: new backend: %w: append limit %d", ErrInvalid, opts.AppendLimit)
	}
	b := &Backend{repos: repos, opts: opts, log: opts.Logger, now: opts.Now, limit: opts.AppendLimit,
		users: map[string]*userState{}, cache: newParseCache(4096)}
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.limit == 0 {
		b.limit = DefaultAppendLimit
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// AppendLimit is the largest message the Backend accepts, in bytes.
func (b *Backend) AppendLimit() int64 { return b.limit }

// Close stops the Backend's watches. It does not close the repositories.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

var author = store.Signature{Name: "hearth-mail", Email: "mail@hearth.invalid"}

// userState is one user's mail index in memory. mu guards everything in it and is held
// for every change (so UIDs are handed out once); writes are compare-and-swap commits on
// the branch head, so another process writing the same repository makes them retry.
type userState struct {
	b    *Backend
	name string

	mu       sync.Mutex
	loaded   bool
	st       store.Store
	head     store.Hash
	boxes    map[string]*mailbox // by id
	byName   map[string]*mailbox
	subs     map[string]bool
	modseq   uint64
	notify   chan struct{} // closed and replaced on every change
	validity uint32        // highest UIDVALIDITY handed out
	// pendingRepair lists messages sync indexed that the stored index lacks.
	pendingRepair map[string][]imap.UID
}

// mailbox is one mailbox in memory.
type mailbox struct {
	id          string
	meta        mailboxMeta
	msgs        []entry // sorted by UID
	changed     uint64  // the highest modseq of any change (including expunges)
	keywords    []imap.Flag
	kwVersion   uint64
	recentFloor imap.UID // UIDs at or above it have not been seen by any session yet
}

func (m *mailbox) find(uid imap.UID) (int, bool) {
	return slices.BinarySearchFunc(m.msgs, uid, func(e entry, u imap.UID) int { return cmpUID(e.UID, u) })
}

func cmpUID(a, b imap.UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// chunkRange returns the index range of m.msgs holding chunk's UIDs.
func (m *mailbox) chunkRange(chunk uint32) (int, int) {
	lo, _ := m.find(imap.UID(chunk) * indexChunk)
	hi, _ := m.find(imap.UID(chunk+1) * indexChunk)
	return lo, hi
}

// noteKeywords adds flags' keywords to the mailbox's keyword list.
func (m *mailbox) noteKeywords(us *userState, flags []imap.Flag) {
	for _, f := range flags {
		if strings.HasPrefix(string(f), `\`) || hasFlag(m.keywords, f) || len(m.keywords) >= maxKeywords {
			continue
		}
		m.keywords = append(m.keywords, f)
		us.modseq++
		m.kwVersion = us.modseq
	}
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// user returns the loaded state of user, loading it on first use. The returned state is
// not locked.
func (b *Backend) user(ctx context.Context, user string) (*userState, error) {
	if err := store.CheckRepoName(RepoName(user)); err != nil {
		return nil, fmt.Errorf("mail: user %q: %w", user, ErrInvalid)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("mail: user %q: %w", user, store.ErrClosed)
	}
	us, ok := b.users[user]
	if !ok {
		us = &userState{b: b, name: user, notify: make(chan struct{})}
		b.users[user] = us
	}
	b.mu.Unlock()
	us.mu.Lock()
	defer us.mu.Unlock()
	if err := us.loadLocked(ctx); err != nil {
		return nil, err
	}
	return us, nil
}

// lock locks us, loading it again if an earlier failure left it unloaded.
func (us *userState) lock(ctx context.Context) error {
	us.mu.Lock()
	if err := us.loadLocked(ctx); err != nil {
		us.mu.Unlock()
		return err
	}
	return nil
}

func (us *userState) loadLocked(ctx context.Context) error {
	if us.loaded {
		return nil
	}
	if us.st == nil {
		st, err := us.b.repos.Open(ctx, RepoName(us.name), true)
		if err != nil {
			return fmt.Errorf("mail: open %s: %w", RepoName(us.name), err)
		}
		us.st = st
		us.b.wg.Add(1)
		go us.watch()
	}
	head, err := us.st.Resolve(ctx, store.DefaultBranch)
	switch {
	case errors.Is(err, store.ErrNotFound):
		head = ""
	case err != nil:
		return fmt.Errorf("mail: load %s: %w", us.name, err)
	}
	us.head = head
	us.boxes = map[string]*mailbox{}
	us.byName = map[string]*mailbox{}
	us.subs = map[string]bool{}
	if head != "" {
		metas, err := us.st.List(ctx, string(head), strings.TrimSuffix(metaPrefix, "/"))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("mail: load %s: %w", us.name, err)
		}
		for _, e := range metas {
			id := strings.TrimPrefix(e.Key, metaPrefix)
			if err := us.loadMailbox(ctx, string(head), id); err != nil {
				return err
			}
		}
		if err := us.reloadSubs(ctx, string(head)); err != nil {
			return err
		}
	}
	us.loaded = true
	return nil
}

// loadMailbox (re)reads mailbox id completely at rev.
func (us *userState) loadMailbox(ctx context.Context, rev, id string) error {
	if !validMailboxID(id) {
		us.b.log.Warn("mail: ignoring bad mailbox id", "user", us.name, "id", id)
		return nil
	}
	b, _, err := us.st.Get(ctx, rev, metaKey(id))
	if errors.Is(err, store.ErrNotFound) {
		us.dropMailbox(id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mail: load %s mailbox %s: %w", us.name, id, err)
	}
	meta, err := decodeMeta(b)
	if err != nil {
		us.b.log.Warn("mail: ignoring damaged mailbox", "user", us.name, "id", id, "err", err)
		return nil
	}
	chunks, err := us.st.List(ctx, rev, indexPrefix+id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("mail: load %s mailbox %s: %w", us.name, id, err)
	}
	m := &mailbox{id: id, meta: meta}
	for _, c := range chunks {
		n, err := strconv.ParseUint(strings.TrimPrefix(c.Key, indexPrefix+id+"/"), 10, 32)
		if err != nil {
			us.b.log.Warn("mail: ignoring bad index key", "user", us.name, "key", c.Key)
			continue
		}
		es, err := us.readChunk(ctx, rev, id, uint32(n))
		if err != nil {
			return err
		}
		m.msgs = append(m.msgs, es...)
	}
	slices.SortFunc(m.msgs, func(a, b entry) int { return cmpUID(a.UID, b.UID) })
	us.modseq++
	for i := range m.msgs {
		m.msgs[i].modseq = us.modseq
		m.noteKeywords(us, m.msgs[i].Flags)
	}
	m.changed = us.modseq
	if n := len(m.msgs); n > 0 && m.msgs[n-1].UID >= m.meta.UIDNext {
		m.meta.UIDNext = m.msgs[n-1].UID + 1
	}
	m.recentFloor = m.meta.UIDNext
	if old := us.boxes[id]; old != nil {
		// Keep what sessions already know.
		delete(us.byName, old.meta.Name)
		m.recentFloor = max(old.recentFloor, 1)
	}
	us.boxes[id] = m
	us.byName[meta.Name] = m
	us.validity = max(us.validity, meta.UIDValidity)
	return nil
}

func (us *userState) dropMailbox(id string) {
	if old := us.boxes[id]; old != nil {
		delete(us.byName, old.meta.Name)
		delete(us.boxes, id)
	}
}

func (us *userState) readChunk(ctx context.Context, rev, id string, chunk uint32) ([]entry, error) {
	b, _, err := us.st.Get(ctx, rev, indexKey(id, chunk))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mail: load %s index %s/%d: %w", us.name, id, chunk, err)
	}
	es, err := decodeChunk(b, chunk)
	if err != nil {
		us.b.log.Warn("mail: ignoring damaged index chunk", "user", us.name, "id", id, "chunk", chunk, "err", err)
		return nil, nil
	}
	return es, nil
}

// reloadChunk replaces chunk's entries in mailbox id with the ones stored at rev,
// keeping the modseq of entries that did not change.
func (us *userState) reloadChunk(ctx context.Context, rev, id string, chunk uint32) error {
	m := us.boxes[id]
	if m == nil {
		return nil
	}
	es, err := us.readChunk(ctx, rev, id, chunk)
	if err != nil {
		return err
	}
	lo, hi := m.chunkRange(chunk)
	old := m.msgs[lo:hi]
	changed := len(old) != len(es)
	for i := range es {
		j, ok := slices.BinarySearchFunc(old, es[i].UID, func(e entry, u imap.UID) int { return cmpUID(e.UID, u) })
		if ok && old[j].Version == es[i].Version && slices.Equal(old[j].Flags, es[i].Flags) && old[j].Date.Equal(es[i].Date) {
			es[i] = old[j]
			continue
		}
		changed = true
		us.modseq++
		es[i].modseq = us.modseq
		m.noteKeywords(us, es[i].Flags)
	}
	if !changed {
		return nil
	}
	m.msgs = slices.Concat(m.msgs[:lo], es, m.msgs[hi:])
	us.modseq++
	m.changed = us.modseq
	if n := len(m.msgs); n > 0 && m.msgs[n-1].UID >= m.meta.UIDNext {
		m.meta.UIDNext = m.msgs[n-1].UID + 1
	}
	return nil
}

func (us *userState) reloadMeta(ctx context.Context, rev, id string) error {
	m := us.boxes[id]
	if m == nil {
		return us.loadMailbox(ctx, rev, id)
	}
	b, _, err := us.st.Get(ctx, rev, metaKey(id))
	if errors.Is(err, store.ErrNotFound) {
		us.dropMailbox(id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mail: load %s mailbox %s: %w", us.name, id, err)
	}
	meta, err := decodeMeta(b)
	if err != nil {
		us.b.log.Warn("mail: ignoring damaged mailbox", "user", us.name, "id", id, "err", err)
		return nil
	}
	delete(us.byName, m.meta.Name)
	next := max(meta.UIDNext, m.meta.UIDNext)
	if meta.UIDValidity != m.meta.UIDValidity {
		next = meta.UIDNext
	}
	m.meta = meta
	m.meta.UIDNext = next
	us.byName[meta.Name] = m
	us.validity = max(us.validity, meta.UIDValidity)
	return nil
}

func (us *userState) reloadSubs(ctx context.Context, rev string) error {
	b, _, err := us.st.Get(ctx, rev, subscriptionsKey)
	us.subs = map[string]bool{}
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mail: load %s subscriptions: %w", us.name, err)
	}
	subs, err := decodeSubscriptions(b)
	if err != nil {
		us.b.log.Warn("mail: ignoring damaged subscriptions", "user", us.name, "err", err)
		return nil
	}
	for _, s := range subs {
		us.subs[s] = true
	}
	return nil
}

// watch follows commits made by others (delivery in another process, REST writes).
func (us *userState) watch() {
	defer us.b.wg.Done()
	ctx := us.b.ctx
	for ctx.Err() == nil {
		ch, err := us.st.Watch(ctx, store.DefaultBranch, "")
		if err != nil {
			us.b.log.Warn("mail: watch", "user", us.name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for range ch {
			if err := us.lock(ctx); err != nil {
				us.b.log.Warn("mail: watch", "user", us.name, "err", err)
				continue
			}
			if err := us.syncLocked(ctx); err != nil {
				us.b.log.Warn("mail: sync", "user", us.name, "err", err)
			}
			us.repairLocked(ctx)
			us.mu.Unlock()
		}
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// syncLocked brings the in-memory index to the branch head, applying the tree diff from
// the commit it reflects.
func (us *userState) syncLocked(ctx context.Context) error {
	h, err := us.st.Resolve(ctx, store.DefaultBranch)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("mail: sync %s: %w", us.name, err)
	}
	if h == us.head {
		return nil
	}
	diffs, err := us.st.Diff(ctx, string(us.head), string(h), "")
	if err != nil {
		return fmt.Errorf("mail: sync %s: %w", us.name, err)
	}
	if err := us.applyDiffs(ctx, string(h), diffs); err != nil {
		// Start over from the store on next use rather than serve a half-applied diff.
		us.loaded = false
		return err
	}
	us.head = h
	us.signal()
	return nil
}

// applyDiffs updates the in-memory index for changes between us.head and rev.
func (us *userState) applyDiffs(ctx context.Context, rev string, diffs []store.Diff) error {
	fresh := map[string]bool{}
	type chunkRef struct {
		id    string
		chunk uint32
	}
	chunks := map[chunkRef]bool{}
	var blobs []store.Diff
	for _, d := range diffs {
		switch {
		case d.Key == subscriptionsKey:
			if err := us.reloadSubs(ctx, rev); err != nil {
				return err
			}
		case strings.HasPrefix(d.Key, metaPrefix):
			id := strings.TrimPrefix(d.Key, metaPrefix)
			if us.boxes[id] == nil {
				fresh[id] = true
			}
			if err := us.reloadMeta(ctx, rev, id); err != nil {
				return err
			}
		case strings.HasPrefix(d.Key, indexPrefix):
			id, n, ok := strings.Cut(strings.TrimPrefix(d.Key, indexPrefix), "/")
			c, err := strconv.ParseUint(n, 10, 32)
			if ok && err == nil {
				chunks[chunkRef{id, uint32(c)}] = true
			}
		case strings.HasPrefix(d.Key, msgPrefix):
			blobs = append(blobs, d)
		}
	}
	for c := range chunks {
		if fresh[c.id] {
			continue
		}
		if err := us.reloadChunk(ctx, rev, c.id, c.chunk); err != nil {
			return err
		}
	}
	// Message blobs written without an index entry (a REST client following the
	// layout only halfway) are indexed here, and the index written back.
	repair := map[string][]imap.UID{}
	for _, d := range blobs {
		parts := strings.Split(strings.TrimPrefix(d.Key, msgPrefix), "/")
		if len(parts) != 3 {
			continue
		}
		m := us.boxes[parts[0]]
		uid, err := strconv.ParseUint(parts[2], 10, 32)
		if m == nil || fresh[m.id] || err != nil || uid == 0 || msgKey(m.id, imap.UID(uid)) != d.Key {
			continue
		}
		i, ok := m.find(imap.UID(uid))
		switch d.Kind {
		case store.Deleted:
			if ok && m.msgs[i].Version == d.Old {
				m.msgs = slices.Delete(m.msgs, i, i+1)
				us.modseq++
				m.changed = us.modseq
				repair[m.id] = append(repair[m.id], imap.UID(uid))
			}
		default:
			if ok {
				continue
			}
			e, err := us.st.Stat(ctx, rev, d.Key)
			if err != nil {
				return fmt.Errorf("mail: sync %s: %w", us.name, err)
			}
			us.modseq++
			m.msgs = slices.Insert(m.msgs, i, entry{UID: imap.UID(uid), Version: e.Version, Size: e.Size,
				Date: us.b.now().UTC().Truncate(time.Second), modseq: us.modseq})
			m.changed = us.modseq
			if imap.UID(uid) >= m.meta.UIDNext {
				m.meta.UIDNext = imap.UID(uid) + 1
			}
			repair[m.id] = append(repair[m.id], imap.UID(uid))
		}
	}
	if len(repair) > 0 {
		us.pendingRepair = repair
	}
	return nil
}

// signal wakes every session waiting for changes (IDLE).
func (us *userState) signal() {
	close(us.notify)
	us.notify = make(chan struct{})
}

// tx collects the changes one update makes to the in-memory index, so that they can be
// written to the store as one commit and taken back if that commit fails.
type tx struct {
	us      *userState
	chunks  map[string]map[uint32]bool // mailbox id -> dirty chunks
	metas   map[string]bool
	dropped map[string]*mailbox // mailboxes deleted by this tx
	subs    bool
	ops     []store.Op // blob puts, copies and deletes
	touched map[*mailbox]bool
}

func (t *tx) dirtyChunk(m *mailbox, uid imap.UID) {
	if t.chunks[m.id] == nil {
		t.chunks[m.id] = map[uint32]bool{}
	}
	t.chunks[m.id][chunkOf(uid)] = true
	t.touch(m)
}

func (t *tx) touch(m *mailbox) {
	t.us.modseq++
	m.changed = t.us.modseq
	t.touched[m] = true
}

// insert adds a message with a new UID to m; blob is its content (put) or, if version
// is set and blob nil, an existing blob (copied).
func (t *tx) insert(m *mailbox, blob []byte, version store.Hash, size int64, flags []imap.Flag, date time.Time) imap.UID {
	uid := m.meta.UIDNext
	m.meta.UIDNext++
	t.metas[m.id] = true
	if blob != nil {
		version = store.BlobHash(blob)
		size = int64(len(blob))
		t.ops = append(t.ops, store.Op{Key: msgKey(m.id, uid), Value: blob})
	} else {
		t.ops = append(t.ops, store.Op{Key: msgKey(m.id, uid), Copy: version})
	}
	t.us.modseq++
	m.msgs = append(m.msgs, entry{UID: uid, Version: version, Size: size, Date: date.Truncate(time.Second), Flags: flags, modseq: t.us.modseq})
	m.noteKeywords(t.us, flags)
	t.dirtyChunk(m, uid)
	return uid
}

// setFlags replaces the flags of m.msgs[i].
func (t *tx) setFlags(m *mailbox, i int, flags []imap.Flag) {
	t.us.modseq++
	m.msgs[i].Flags = flags
	m.msgs[i].modseq = t.us.modseq
	m.noteKeywords(t.us, flags)
	t.dirtyChunk(m, m.msgs[i].UID)
}

// remove expunges the messages of m with the given UIDs (sorted).
func (t *tx) remove(m *mailbox, uids []imap.UID) {
	if len(uids) == 0 {
		return
	}
	set := make(map[imap.UID]bool, len(uids))
	for _, u := range uids {
		set[u] = true
	}
	m.msgs = slices.DeleteFunc(m.msgs, func(e entry) bool {
		if !set[e.UID] {
			return false
		}
		t.ops = append(t.ops, store.Op{Key: msgKey(m.id, e.UID), Delete: true})
		t.dirtyChunk(m, e.UID)
		return true
	})
}

// ops returns every store operation of the tx.
func (t *tx) allOps() []store.Op {
	ops := slices.Clone(t.ops)
	for id, chunks := range t.chunks {
		m := t.us.boxes[id]
		if m == nil {
			continue
		}
		for c := range chunks {
			lo, hi := m.chunkRange(c)
			if lo == hi {
				ops = append(ops, store.Op{Key: indexKey(id, c), Delete: true})
			} else {
				ops = append(ops, store.Op{Key: indexKey(id, c), Value: encodeChunk(m.msgs[lo:hi])})
			}
		}
	}
	for id := range t.metas {
		if m := t.us.boxes[id]; m != nil {
			ops = append(ops, store.Op{Key: metaKey(id), Value: encodeMeta(m.meta)})
		}
	}
	if t.subs {
		var names []string
		for n := range t.us.subs {
			names = append(names, n)
		}
		ops = append(ops, store.Op{Key: subscriptionsKey, Value: encodeSubscriptions(names)})
	}
	return ops
}

// rollback restores what the tx changed from the store at us.head.
func (t *tx) rollback(ctx context.Context) error {
	us := t.us
	rev := string(us.head)
	for id, m := range t.dropped {
		us.boxes[id] = m
		us.byName[m.meta.Name] = m
	}
	if rev == "" {
		us.loaded = false
		return nil
	}
	for id := range t.metas {
		if err := us.reloadMeta(ctx, rev, id); err != nil {
			us.loaded = false
			return err
		}
	}
	for id, chunks := range t.chunks {
		for c := range chunks {
			if err := us.reloadChunk(ctx, rev, id, c); err != nil {
				us.loaded = false
				return err
			}
		}
	}
	if t.subs {
		if err := us.reloadSubs(ctx, rev); err != nil {
			us.loaded = false
			return err
		}
	}
	return nil
}

// update runs fn on the locked user state and commits what it changed, retrying (after
// catching up with the store) when another writer got there first. fn must be
// re-runnable: it sees the current state on every attempt.
func (us *userState) update(ctx context.Context, message string, fn func(t *tx) error) error {
	for attempt := 0; ; attempt++ {
		t := &tx{us: us, chunks: map[string]map[uint32]bool{}, metas: map[string]bool{},
			dropped: map[string]*mailbox{}, touched: map[*mailbox]bool{}}
		if err := fn(t); err != nil {
			if rerr := t.rollback(ctx); rerr != nil {
				return errors.Join(err, rerr)
			}
			return err
		}
		ops := t.allOps()
		if len(ops) == 0 {
			return nil
		}
		parent := us.head
		if parent == "" {
			parent = store.Missing
		}
		c, err := us.st.Commit(ctx, store.Change{Parent: parent, Author: author, Message: message, Ops: ops})
		if err == nil {
			us.head = c.ID
			us.signal()
			return nil
		}
		if rerr := t.rollback(ctx); rerr != nil {
			return fmt.Errorf("mail: %s: %w", message, errors.Join(err, rerr))
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= maxRetries {
			return fmt.Errorf("mail: %s: %w", message, err)
		}
		if err := us.syncLocked(ctx); err != nil {
			return err
		}
		if err := us.loadLocked(ctx); err != nil {
			return err
		}
	}
}

// repairLocked writes back index entries that sync made up for message blobs written
// without them.
func (us *userState) repairLocked(ctx context.Context) {
	repair := us.pendingRepair
	if repair == nil {
		return
	}
	us.pendingRepair = nil
	err := us.update(ctx, "index messages added without an index entry", func(t *tx) error {
		for id, uids := range repair {
			m := us.boxes[id]
			if m == nil {
				continue
			}
			for _, u := range uids {
				t.dirtyChunk(m, u)
			}
			t.metas[id] = true
		}
		return nil
	})
	if err != nil {
		us.b.log.Warn("mail: repair index", "user", us.name, "err", err)
	}
}

func newMailboxID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// createLocked adds a mailbox (and any missing parents) inside t.
func (us *userState) createLocked(t *tx, name string, special imap.MailboxAttr) (*mailbox, error) {
	name = normalizeName(strings.TrimSuffix(name, delimStr))
	if err := checkMailboxName(name); err != nil {
		return nil, fmt.Errorf("mail: create %q: %w: %v", name, ErrInvalid, err)
	}
	if special != "" && !knownSpecialUse(special) {
		return nil, fmt.Errorf("mail: create %q: %w: special-use %s", name, ErrInvalid, special)
	}
	if us.byName[name] != nil {
		return nil, fmt.Errorf("mail: create %q: %w", name, ErrExists)
	}
	if len(us.boxes) >= maxMailboxes {
		return nil, fmt.Errorf("mail: create %q: %w: too many mailboxes", name, ErrInvalid)
	}
	if i := strings.LastIndex(name, delimStr); i > 0 && us.byName[name[:i]] == nil {
		if _, err := us.createLocked(t, name[:i], ""); err != nil {
			return nil, err
		}
	}
	validity := max(uint32(us.b.now().Unix()), us.validity+1)
	us.validity = validity
	m := &mailbox{id: newMailboxID(), meta: mailboxMeta{Name: name, UIDValidity: validity, UIDNext: 1,
		SpecialUse: special, Created: us.b.now().UTC().Truncate(time.Second)}, recentFloor: 1}
	us.boxes[m.id] = m
	us.byName[name] = m
	t.metas[m.id] = true
	t.touch(m)
	return m, nil
}

// deleteLocked removes mailbox m's meta and index inside t. The message blobs are
// deleted by the caller in later commits (see Backend.DeleteMailbox).
func (us *userState) deleteLocked(t *tx, m *mailbox) {
	delete(us.boxes, m.id)
	delete(us.byName, m.meta.Name)
	t.dropped[m.id] = m
	t.ops = append(t.ops, store.Op{Key: metaKey(m.id), Delete: true})
	seen := map[uint32]bool{}
	for _, e := range m.msgs {
		if c := chunkOf(e.UID); !seen[c] {
			seen[c] = true
			t.ops = append(t.ops, store.Op{Key: indexKey(m.id, c), Delete: true})
		}
	}
	t.touched[m] = true
}

// DefaultMailboxes are the mailboxes EnsureUser creates, with their special use.
var DefaultMailboxes = []struct {
	Name       string
	SpecialUse imap.MailboxAttr
}{
	{"INBOX", ""},
	{"Sent", imap.MailboxAttrSent},
	{"Drafts", imap.MailboxAttrDrafts},
	{"Trash", imap.MailboxAttrTrash},
	{"Junk", imap.MailboxAttrJunk},
	{"Archive", imap.MailboxAttrArchive},
}

// EnsureUser creates user's default mailboxes (INBOX, Sent, Drafts, Trash, Junk,
// Archive, with their special-use attributes) the first time; later it only makes sure
// INBOX exists.
func (b *Backend) EnsureUser(ctx context.Context, user string) error {
	us, err := b.user(ctx, user)
	if err != nil {
		return err
	}
	if err := us.lock(ctx); err != nil {
		return err
	}
	defer us.mu.Unlock()
	return us.ensureLocked(ctx)
}

func (us *userState) ensureLocked(ctx context.Context) error {
	if us.byName["INBOX"] != nil {
		return nil
	}
	fresh := len(us.boxes) == 0
	return us.update(ctx, "create default mailboxes", func(t *tx) error {
		for _, d := range DefaultMailboxes {
			if us.byName[d.Name] != nil || (!fresh && d.Name != "INBOX") {
				continue
			}
			if _, err := us.createLocked(t, d.Name, d.SpecialUse); err != nil {
				return err
			}
			us.subs[d.Name] = true
			t.subs = true
		}
		return nil
	})
}

// checkFlags validates and canonicalizes flags for storing: \Recent is dropped,
// duplicates removed.
func checkFlags(flags []imap.Flag) ([]imap.Flag, error) {
	var out []imap.Flag
	for _, f := range flags {
		if !validFlag(string(f)) {
			return nil, fmt.Errorf("%w: flag %q", ErrInvalid, f)
		}
		f = canonicalFlag(f)
		if f == `\Recent` || hasFlag(out, f) {
			continue
		}
		if strings.HasPrefix(string(f), `\`) && !systemFlag(f) {
			return nil, fmt.Errorf("%w: unknown system flag %q", ErrInvalid, f)
		}
		out = append(out, f)
	}
	if len(out) > maxFlagsPerMsg {
		return nil, fmt.Errorf("%w: more than %d flags", ErrInvalid, maxFlagsPerMsg)
	}
	return out, nil
}

func systemFlag(f imap.Flag) bool {
	switch f {
	case imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft:
		return true
	}
	return false
}

// Deliver stores msg in user's mailbox with the given flags and internal date (zero:
// now), and returns its UID. A missing INBOX is created (with the default mailboxes for a
// new user); any other missing mailbox is ErrNoMailbox. The message is durable when
// Deliver returns. It is used by SMTP/LMTP delivery and submission (Sent); import stores
// many messages per commit with DeliverBatch.
func (b *Backend) Deliver(ctx context.Context, user, mailbox string, msg []byte, flags []imap.Flag, date time.Time) (imap.UID, error) {
	in, err := b.checkIncoming(Incoming{Body: msg, Flags: flags, Date: date})
	if err != nil {
		return 0, fmt.Errorf("mail: deliver to %s: %w", user, err)
	}
	uids, err := b.deliver(ctx, user, mailbox, []Incoming{in})
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}
