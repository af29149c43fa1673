package storedav

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Repos opens store repositories by name ("owner/name"); *store.Repos implements it.
type Repos interface {
	Open(ctx context.Context, name string, create bool) (store.Store, error)
}

// Default limits (see Limits).
const (
	DefaultMaxResourceSize = 1 << 20
	DefaultMaxResources    = 20000
	DefaultMaxCollections  = 200
	// MaxNameLen is the longest collection or resource name, in bytes.
	MaxNameLen = 200
	// MaxDeadProps is how many dead properties one collection may carry, and
	// MaxDeadPropSize the bytes of each.
	MaxDeadProps    = 64
	MaxDeadPropSize = 4096
)

// Limits bound what Collections keeps. Zero fields take the defaults.
type Limits struct {
	MaxResourceSize int64 // bytes in one object (DefaultMaxResourceSize)
	MaxResources    int   // objects in one collection (DefaultMaxResources)
	MaxCollections  int   // collections per owner and kind (DefaultMaxCollections)
	// MaxSyncTokenCommits is how many commits back from the branch head a sync token may
	// point (DefaultMaxSyncTokenCommits); an older one gets DAV:valid-sync-token.
	MaxSyncTokenCommits int
	// MaxSyncTokenAge, when set, refuses sync tokens whose commit is older.
	MaxSyncTokenAge time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxResourceSize <= 0 {
		l.MaxResourceSize = DefaultMaxResourceSize
	}
	if l.MaxResources <= 0 {
		l.MaxResources = DefaultMaxResources
	}
	if l.MaxCollections <= 0 {
		l.MaxCollections = DefaultMaxCollections
	}
	if l.MaxSyncTokenCommits <= 0 {
		l.MaxSyncTokenCommits = DefaultMaxSyncTokenCommits
	}
	return l
}

// Meta is a collection's metadata, kept as JSON.
type Meta struct {
	DisplayName string   `json:"displayname,omitempty"`
	Description string   `json:"description,omitempty"`
	Color       string   `json:"color,omitempty"`
	Components  []string `json:"components,omitempty"`
	// Dead are other properties a client set with PROPPATCH or MKCOL: "{ns}local" →
	// the property element's inner XML.
	Dead    map[string]string `json:"dead,omitempty"`
	Created time.Time         `json:"created"`
}

// CollectionInfo names one collection and its state.
type CollectionInfo struct {
	Owner string
	Name  string
	Meta  Meta
}

// ObjectInfo is one object of a collection.
type ObjectInfo struct {
	Name string     // the resource name
	ETag store.Hash // the store version of its bytes
	Size int64
}

// Change is one object that changed since a sync token.
type Change struct {
	Name    string
	ETag    store.Hash // "" when Deleted
	Deleted bool
}

// Conditions are a write's HTTP preconditions.
type Conditions struct {
	IfMatch     store.Hash // the object must have this version ("" : no condition)
	IfNoneMatch bool       // If-None-Match: * — the object must not exist
}

// Collections is the model behind the Handler, without HTTP: a kind's collections in its
// owners' repositories. It is safe for concurrent use.
type Collections struct {
	repos  Repos
	kind   *Kind
	limits Limits
	log    *slog.Logger
	now    func() time.Time

	// counts caches how many objects a collection holds at a commit, so that Put need
	// not list the collection to enforce MaxResources. Under concurrent writes to one
	// collection it may lag by the writes of one group commit: the limit is soft by that.
	countMu sync.Mutex
	counts  map[string]countAt

	cacheMu   sync.Mutex
	lists     map[string]listing // OWNER/COLLECTION → its objects at a commit
	listed    int                // entries in lists
	blobs     map[store.Hash][]byte
	blobBytes int
}

type countAt struct {
	head store.Hash
	n    int
}

const maxCounts = 4096

// Bounds of the listing and object caches.
const (
	maxCachedEntries = 200000
	maxCachedBytes   = 8 << 20
)

// listing is a collection's objects at a commit.
type listing struct {
	head store.Hash
	objs []ObjectInfo
}

// NewCollections returns the collections of kind in repos. logger nil: slog.Default().
func NewCollections(repos Repos, kind *Kind, limits Limits, logger *slog.Logger) *Collections {
	if logger == nil {
		logger = slog.Default()
	}
	return &Collections{repos: repos, kind: kind, limits: limits.withDefaults(), log: logger, now: time.Now}
}

// Kind returns the kind the collections are of.
func (c *Collections) Kind() *Kind { return c.kind }

// Limits returns the limits in force.
func (c *Collections) Limits() Limits { return c.limits }

// Key layout.
func metaKey(coll string) string            { return "collections/" + coll + ".json" }
func objPrefix(coll string) string          { return "objects/" + coll }
func objKey(coll, res string) string        { return "objects/" + coll + "/" + res }
func uidPrefix(coll string) string          { return "uids/" + coll }
func uidKey(coll, uid string) string        { return "uids/" + coll + "/" + uidHash(uid) }
func uidHash(uid string) string             { s := sha256.Sum256([]byte(uid)); return hex.EncodeToString(s[:16]) }
func (c *Collections) repo(o string) string { return o + "/" + c.kind.Repo }

// CheckName reports whether s may name a collection or a resource: 1–MaxNameLen bytes
// of UTF-8 without control characters, '/', '\\' or '%', not starting with '.' and not
// ending in ".json" for collections... (the store's key rules hold too).
func CheckName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("storedav: name of %d bytes: %w: want 1–%d", len(s), ErrInvalid, MaxNameLen)
	}
	if s[0] == '.' {
		return fmt.Errorf("storedav: name %q: %w: starts with a dot", s, ErrInvalid)
	}
	if strings.ContainsAny(s, "/\\%") {
		return fmt.Errorf("storedav: name %q: %w: contains / \\ or %%", s, ErrInvalid)
	}
	if err := store.CheckKey(s); err != nil {
		return fmt.Errorf("storedav: name: %w: %v", ErrInvalid, err)
	}
	return nil
}

func author(ctx context.Context) store.Signature {
	u, _ := UserFromContext(ctx)
	if u == "" {
		u = "hearth"
	}
	return store.Signature{Name: u, Email: u + "@hearth.invalid"}
}

// open opens an owner's repository; for reads a missing one is (nil, nil).
func (c *Collections) open(ctx context.Context, owner string, create bool) (store.Store, error) {
	s, err := c.repos.Open(ctx, c.repo(owner), create)
	if !create && errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storedav: open %s: %w", c.repo(owner), err)
	}
	return s, nil
}

// Head returns the current commit of an owner's repository ("" if it has none): the
// sync token and ctag of all of their collections.
func (c *Collections) Head(ctx context.Context, owner string) (store.Hash, error) {
	s, err := c.open(ctx, owner, false)
	if s == nil || err != nil {
		return "", err
	}
	h, err := s.Resolve(ctx, "")
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return h, err
}

// List returns an owner's collections, sorted by name.
func (c *Collections) List(ctx context.Context, owner string) ([]CollectionInfo, error) {
	s, err := c.open(ctx, owner, false)
	if s == nil || err != nil {
		return nil, err
	}
	ents, err := s.List(ctx, "", "collections")
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storedav: list collections of %s: %w", owner, err)
	}
	out := make([]CollectionInfo, 0, len(ents))
	for _, e := range ents {
		name, ok := strings.CutSuffix(strings.TrimPrefix(e.Key, "collections/"), ".json")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		b, _, err := s.Get(ctx, "", e.Key)
		if err != nil {
			return nil, fmt.Errorf("storedav: list collections of %s: %w", owner, err)
		}
		var m Meta
		if err := json.Unmarshal(b, &m); err != nil {
			c.log.WarnContext(ctx, "storedav: damaged collection metadata", "owner", owner, "collection", name, "err", err)
			continue
		}
		out = append(out, CollectionInfo{Owner: owner, Name: name, Meta: m})
	}
	return out, nil
}

// Get returns one collection; store.ErrNotFound if it does not exist.
func (c *Collections) Get(ctx context.Context, owner, name string) (CollectionInfo, error) {
	m, _, err := c.getMeta(ctx, owner, name)
	if err != nil {
		return CollectionInfo{}, err
	}
	return CollectionInfo{Owner: owner, Name: name, Meta: m}, nil
}

func (c *Collections) getMeta(ctx context.Context, owner, name string) (Meta, store.Hash, error) {
	if err := CheckName(name); err != nil {
		return Meta{}, "", err
	}
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return Meta{}, "", err
	}
	if s == nil {
		return Meta{}, "", fmt.Errorf("storedav: collection %s/%s: %w", owner, name, store.ErrNotFound)
	}
	b, e, err := s.Get(ctx, "", metaKey(name))
	if err != nil {
		return Meta{}, "", fmt.Errorf("storedav: collection %s/%s: %w", owner, name, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, "", fmt.Errorf("storedav: collection %s/%s: damaged metadata: %w", owner, name, err)
	}
	return m, e.Version, nil
}

func (c *Collections) checkMeta(m *Meta) error {
	if len(m.DisplayName) > 1024 || len(m.Description) > 16<<10 || len(m.Color) > 64 {
		return fmt.Errorf("storedav: collection properties: %w: too long", ErrInvalid)
	}
	if len(m.Dead) > MaxDeadProps {
		return fmt.Errorf("storedav: collection properties: %w: more than %d", ErrLimit, MaxDeadProps)
	}
	for k, v := range m.Dead {
		if len(k)+len(v) > MaxDeadPropSize {
			return fmt.Errorf("storedav: property %q: %w: longer than %d bytes", k, ErrInvalid, MaxDeadPropSize)
		}
	}
	if c.kind.Components {
		if len(m.Components) == 0 {
			m.Components = slices.Clone(c.kind.DefaultComponents)
		}
		if c.kind.CheckComponents != nil {
			if err := c.kind.CheckComponents(m.Components); err != nil {
				return err
			}
		}
	} else {
		m.Components = nil
	}
	return nil
}

// Create makes a collection; ErrExists if it exists, ErrLimit if the owner has too many.
func (c *Collections) Create(ctx context.Context, owner, name string, m Meta) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := c.checkMeta(&m); err != nil {
		return err
	}
	if m.Created.IsZero() {
		m.Created = c.now().UTC().Truncate(time.Second)
	}
	list, err := c.List(ctx, owner)
	if err != nil {
		return err
	}
	if len(list) >= c.limits.MaxCollections {
		return fmt.Errorf("storedav: create %s/%s: %w: %d collections", owner, name, ErrLimit, len(list))
	}
	s, err := c.open(ctx, owner, true)
	if err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = s.Commit(ctx, store.Change{Author: author(ctx), Message: "create collection " + name,
		Ops: []store.Op{{Key: metaKey(name), Value: b, IfMatch: store.Missing}}})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("storedav: create %s/%s: %w", owner, name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storedav: create %s/%s: %w", owner, name, err)
	}
	return nil
}

// Update changes a collection's metadata with fn, retrying on concurrent changes.
func (c *Collections) Update(ctx context.Context, owner, name string, fn func(m *Meta) error) error {
	for range 10 {
		m, ver, err := c.getMeta(ctx, owner, name)
		if err != nil {
			return err
		}
		comps := slices.Clone(m.Components)
		if err := fn(&m); err != nil {
			return err
		}
		if c.kind.Components && !slices.Equal(comps, m.Components) && len(m.Components) > 0 && c.kind.CheckComponents != nil {
			if err := c.kind.CheckComponents(m.Components); err != nil {
				return err
			}
		}
		if err := c.checkMeta(&m); err != nil {
			return err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		s, err := c.open(ctx, owner, false)
		if err != nil {
			return err
		}
		_, err = s.Commit(ctx, store.Change{Author: author(ctx), Message: "update collection " + name,
			Ops: []store.Op{{Key: metaKey(name), Value: b, IfMatch: ver}}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("storedav: update %s/%s: %w", owner, name, err)
		}
		return nil
	}
	return fmt.Errorf("storedav: update %s/%s: %w", owner, name, store.ErrConflict)
}

// Delete removes a collection with its objects (they stay in history; see Restore).
func (c *Collections) Delete(ctx context.Context, owner, name string) error {
	_, ver, err := c.getMeta(ctx, owner, name)
	if err != nil {
		return err
	}
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return err
	}
	ops := []store.Op{{Key: metaKey(name), Delete: true, IfMatch: ver}}
	for _, p := range []string{objPrefix(name), uidPrefix(name)} {
		ents, err := s.List(ctx, "", p)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("storedav: delete %s/%s: %w", owner, name, err)
		}
		for _, e := range ents {
			ops = append(ops, store.Op{Key: e.Key, Delete: true})
		}
	}
	// The first commit removes the metadata, so the collection is gone at once; a
	// collection too large for one commit loses its remaining keys in the next ones.
	for len(ops) > 0 {
		n := min(len(ops), store.MaxOps)
		if _, err := s.Commit(ctx, store.Change{Author: author(ctx), Message: "delete collection " + name, Ops: ops[:n]}); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("storedav: delete %s/%s: %w", owner, name, ErrPrecondition)
			}
			return fmt.Errorf("storedav: delete %s/%s: %w", owner, name, err)
		}
		ops = ops[n:]
	}
	return nil
}

// Objects lists a collection's objects, sorted by name, and the commit they were read at.
// The slice is shared with a cache: callers must not modify it. Listings are cached per
// collection and brought up to date with the store's diff, so listing a large collection
// that changed a little costs the change, not the collection.
func (c *Collections) Objects(ctx context.Context, owner, name string) ([]ObjectInfo, store.Hash, error) {
	if err := CheckName(name); err != nil {
		return nil, "", err
	}
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return nil, "", err
	}
	if s == nil {
		return nil, "", fmt.Errorf("storedav: collection %s/%s: %w", owner, name, store.ErrNotFound)
	}
	head, err := s.Resolve(ctx, "")
	if err != nil {
		return nil, "", fmt.Errorf("storedav: collection %s/%s: %w", owner, name, err)
	}
	ck := owner + "/" + name
	c.cacheMu.Lock()
	cached, ok := c.lists[ck]
	c.cacheMu.Unlock()
	if ok && cached.head == head {
		return cached.objs, head, nil // the same commit: the metadata is there too
	}
	if _, err := s.Stat(ctx, string(head), metaKey(name)); err != nil {
		return nil, "", fmt.Errorf("storedav: collection %s/%s: %w", owner, name, err)
	}
	var objs []ObjectInfo
	if ok {
		objs, ok = c.patch(ctx, s, cached, head, name)
	}
	if !ok {
		ents, err := s.List(ctx, string(head), objPrefix(name))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, "", fmt.Errorf("storedav: collection %s/%s: %w", owner, name, err)
		}
		objs = make([]ObjectInfo, 0, len(ents))
		p := objPrefix(name) + "/"
		for _, e := range ents {
			objs = append(objs, ObjectInfo{Name: strings.TrimPrefix(e.Key, p), ETag: e.Version, Size: e.Size})
		}
	}
	c.cacheMu.Lock()
	if c.lists == nil || c.listed+len(objs) > maxCachedEntries {
		c.lists, c.listed = map[string]listing{}, 0
	}
	if old, had := c.lists[ck]; had {
		c.listed -= len(old.objs)
	}
	c.lists[ck] = listing{head: head, objs: objs}
	c.listed += len(objs)
	c.cacheMu.Unlock()
	return objs, head, nil
}

// patch brings a cached listing up to head with the store's diff; ok false when a fresh
// listing is cheaper or the diff failed.
func (c *Collections) patch(ctx context.Context, s store.Store, l listing, head store.Hash, name string) ([]ObjectInfo, bool) {
	diffs, err := s.Diff(ctx, string(l.head), string(head), objPrefix(name))
	if err != nil || len(diffs) > len(l.objs)/4+16 {
		return nil, false
	}
	p := objPrefix(name) + "/"
	changed := make(map[string]*ObjectInfo, len(diffs))
	for _, d := range diffs {
		n := strings.TrimPrefix(d.Key, p)
		if d.Kind == store.Deleted {
			changed[n] = nil
			continue
		}
		e, err := s.Stat(ctx, string(head), d.Key)
		if err != nil {
			return nil, false
		}
		changed[n] = &ObjectInfo{Name: n, ETag: e.Version, Size: e.Size}
	}
	out := make([]ObjectInfo, 0, len(l.objs)+len(diffs))
	for _, o := range l.objs {
		if ch, ok := changed[o.Name]; ok {
			if ch != nil {
				out = append(out, *ch)
			}
			delete(changed, o.Name)
			continue
		}
		out = append(out, o)
	}
	added := false
	for _, ch := range changed {
		if ch != nil {
			out = append(out, *ch)
			added = true
		}
	}
	if added {
		slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	}
	return out, true
}

// Data returns an object's bytes as listed by Objects at head, from a cache of recent
// objects keyed by their version (so it is never stale) or from the store.
func (c *Collections) Data(ctx context.Context, owner string, head store.Hash, coll string, o ObjectInfo) ([]byte, error) {
	c.cacheMu.Lock()
	b, ok := c.blobs[o.ETag]
	c.cacheMu.Unlock()
	if ok {
		return b, nil
	}
	b, _, err := c.ObjectAt(ctx, owner, head, coll, o.Name)
	if err != nil {
		return nil, err
	}
	c.cacheMu.Lock()
	if c.blobs == nil || c.blobBytes+len(b) > maxCachedBytes {
		c.blobs, c.blobBytes = map[store.Hash][]byte{}, 0
	}
	if _, had := c.blobs[o.ETag]; !had {
		c.blobs[o.ETag] = b
		c.blobBytes += len(b)
	}
	c.cacheMu.Unlock()
	return b, nil
}

// Object returns one object's bytes; store.ErrNotFound if it does not exist.
func (c *Collections) Object(ctx context.Context, owner, coll, res string) ([]byte, ObjectInfo, error) {
	if err := errors.Join(CheckName(coll), CheckName(res)); err != nil {
		return nil, ObjectInfo{}, err
	}
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if s == nil {
		return nil, ObjectInfo{}, fmt.Errorf("storedav: object %s/%s/%s: %w", owner, coll, res, store.ErrNotFound)
	}
	b, e, err := s.Get(ctx, "", objKey(coll, res))
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("storedav: object %s/%s/%s: %w", owner, coll, res, err)
	}
	return b, ObjectInfo{Name: res, ETag: e.Version, Size: e.Size}, nil
}

// ObjectAt is Object at a commit (as returned by Objects), for consistent reads.
func (c *Collections) ObjectAt(ctx context.Context, owner string, rev store.Hash, coll, res string) ([]byte, ObjectInfo, error) {
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if s == nil {
		return nil, ObjectInfo{}, fmt.Errorf("storedav: object %s/%s/%s: %w", owner, coll, res, store.ErrNotFound)
	}
	b, e, err := s.Get(ctx, string(rev), objKey(coll, res))
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("storedav: object %s/%s/%s: %w", owner, coll, res, err)
	}
	return b, ObjectInfo{Name: res, ETag: e.Version, Size: e.Size}, nil
}

// PutResult says what Put did.
type PutResult struct {
	ETag    store.Hash
	Created bool // the object did not exist before
}

// Put stores an object's exact bytes after Kind.Validate accepts them: a
// *PreconditionError for malformed data, a UID already used by another resource of the
// collection (no-uid-conflict), a component the collection does not support, or a
// resource over the size limit (max-resource-size, 413); ErrPrecondition when cond does
// not hold; store.ErrNotFound when the collection does not exist.
func (c *Collections) Put(ctx context.Context, owner, coll, res string, data []byte, cond Conditions) (PutResult, error) {
	if err := errors.Join(CheckName(coll), CheckName(res)); err != nil {
		return PutResult{}, err
	}
	if int64(len(data)) > c.limits.MaxResourceSize {
		return PutResult{}, &PreconditionError{Status: http.StatusRequestEntityTooLarge, Name: xml.Name{Space: c.kind.NS, Local: "max-resource-size"},
			Reason: fmt.Sprintf("larger than %d bytes", c.limits.MaxResourceSize)}
	}
	obj, err := c.kind.Validate(data)
	if err != nil {
		var pe *PreconditionError
		if errors.As(err, &pe) {
			return PutResult{}, err
		}
		return PutResult{}, validDataError(c.kind, http.StatusBadRequest, err.Error())
	}
	if obj.UID == "" {
		return PutResult{}, validDataError(c.kind, http.StatusBadRequest, "no UID")
	}
	for range 10 {
		meta, metaVer, err := c.getMeta(ctx, owner, coll)
		if err != nil {
			return PutResult{}, err
		}
		if c.kind.Components && obj.Component != "" && len(meta.Components) > 0 && !slices.Contains(meta.Components, obj.Component) {
			return PutResult{}, &PreconditionError{Status: http.StatusForbidden, Name: xml.Name{Space: c.kind.NS, Local: "supported-calendar-component"},
				Reason: obj.Component + " is not supported by this collection"}
		}
		s, err := c.open(ctx, owner, false)
		if err != nil {
			return PutResult{}, err
		}
		head, err := s.Resolve(ctx, "")
		if err != nil {
			return PutResult{}, fmt.Errorf("storedav: put %s/%s/%s: %w", owner, coll, res, err)
		}
		rev := string(head)
		key := objKey(coll, res)
		old, oldEnt, err := s.Get(ctx, rev, key)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return PutResult{}, fmt.Errorf("storedav: put %s/%s/%s: %w", owner, coll, res, err)
		}
		if cond.IfNoneMatch && exists || cond.IfMatch != "" && (!exists || oldEnt.Version != cond.IfMatch) {
			return PutResult{}, fmt.Errorf("storedav: put %s/%s/%s: %w", owner, coll, res, ErrPrecondition)
		}
		ops := []store.Op{{Key: metaKey(coll), Copy: metaVer, IfMatch: metaVer}}
		var n int
		if !exists {
			n, err = c.count(ctx, s, owner, head, coll)
			if err != nil {
				return PutResult{}, err
			}
			if n >= c.limits.MaxResources {
				return PutResult{}, &PreconditionError{Status: http.StatusInsufficientStorage, Name: xml.Name{Space: NSDAV, Local: "quota-not-exceeded"},
					Reason: fmt.Sprintf("the collection holds %d objects, the most allowed", n)}
			}
		}
		ukey := uidKey(coll, obj.UID)
		holder, uent, err := s.Get(ctx, rev, ukey)
		switch {
		case err == nil && string(holder) != res:
			// Another resource claims the UID; it holds unless that resource is gone.
			if _, serr := s.Stat(ctx, rev, objKey(coll, string(holder))); serr == nil {
				return PutResult{}, &PreconditionError{Status: http.StatusConflict, Name: xml.Name{Space: c.kind.NS, Local: "no-uid-conflict"},
					Reason: fmt.Sprintf("UID %q is already used by %s", obj.UID, holder), Href: string(holder)}
			}
			ops = append(ops, store.Op{Key: ukey, Value: []byte(res), IfMatch: uent.Version})
		case err == nil:
			ops = append(ops, store.Op{Key: ukey, Copy: uent.Version, IfMatch: uent.Version})
		case errors.Is(err, store.ErrNotFound):
			ops = append(ops, store.Op{Key: ukey, Value: []byte(res), IfMatch: store.Missing})
		default:
			return PutResult{}, fmt.Errorf("storedav: put %s/%s/%s: %w", owner, coll, res, err)
		}
		if exists {
			// The UID may change on overwrite: drop the old index entry.
			if prev, perr := c.kind.Validate(old); perr == nil && prev.UID != obj.UID {
				ops = append(ops, store.Op{Key: uidKey(coll, prev.UID), Delete: true})
			}
			ops = append(ops, store.Op{Key: key, Value: data, IfMatch: oldEnt.Version})
		} else {
			ops = append(ops, store.Op{Key: key, Value: data, IfMatch: store.Missing})
		}
		cm, err := s.Commit(ctx, store.Change{Author: author(ctx), Message: "put " + coll + "/" + res, Ops: ops})
		if errors.Is(err, store.ErrConflict) {
			continue // someone wrote meanwhile: look again
		}
		if err != nil {
			return PutResult{}, fmt.Errorf("storedav: put %s/%s/%s: %w", owner, coll, res, err)
		}
		if !exists {
			c.setCount(owner, coll, cm.ID, n+1)
		}
		return PutResult{ETag: store.BlobHash(data), Created: !exists}, nil
	}
	return PutResult{}, fmt.Errorf("storedav: put %s/%s/%s: %w", owner, coll, res, store.ErrConflict)
}

// count returns how many objects a collection holds at commit head.
func (c *Collections) count(ctx context.Context, s store.Store, owner string, head store.Hash, coll string) (int, error) {
	c.countMu.Lock()
	e, ok := c.counts[owner+"/"+coll]
	c.countMu.Unlock()
	if ok && e.head == head {
		return e.n, nil
	}
	ents, err := s.List(ctx, string(head), uidPrefix(coll))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	c.setCount(owner, coll, head, len(ents))
	return len(ents), nil
}

func (c *Collections) setCount(owner, coll string, head store.Hash, n int) {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	if c.counts == nil || len(c.counts) >= maxCounts {
		c.counts = map[string]countAt{}
	}
	c.counts[owner+"/"+coll] = countAt{head, n}
}

// DeleteObject removes an object; store.ErrNotFound if it does not exist, ErrPrecondition
// if ifMatch is set and differs.
func (c *Collections) DeleteObject(ctx context.Context, owner, coll, res string, ifMatch store.Hash) error {
	if err := errors.Join(CheckName(coll), CheckName(res)); err != nil {
		return err
	}
	for range 10 {
		s, err := c.open(ctx, owner, false)
		if err != nil {
			return err
		}
		if s == nil {
			return fmt.Errorf("storedav: delete %s/%s/%s: %w", owner, coll, res, store.ErrNotFound)
		}
		old, e, err := s.Get(ctx, "", objKey(coll, res))
		if err != nil {
			return fmt.Errorf("storedav: delete %s/%s/%s: %w", owner, coll, res, err)
		}
		if ifMatch != "" && e.Version != ifMatch {
			return fmt.Errorf("storedav: delete %s/%s/%s: %w", owner, coll, res, ErrPrecondition)
		}
		ops := []store.Op{{Key: objKey(coll, res), Delete: true, IfMatch: e.Version}}
		if prev, perr := c.kind.Validate(old); perr == nil {
			if holder, uent, err := s.Get(ctx, "", uidKey(coll, prev.UID)); err == nil && string(holder) == res {
				ops = append(ops, store.Op{Key: uidKey(coll, prev.UID), Delete: true, IfMatch: uent.Version})
			}
		}
		_, err = s.Commit(ctx, store.Change{Author: author(ctx), Message: "delete " + coll + "/" + res, Ops: ops})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("storedav: delete %s/%s/%s: %w", owner, coll, res, err)
		}
		return nil
	}
	return fmt.Errorf("storedav: delete %s/%s/%s: %w", owner, coll, res, store.ErrConflict)
}

// ErrBadToken: a sync token names no commit of the repository (RFC 6578's
// DAV:valid-sync-token, 403).
var ErrBadToken = errors.New("storedav: invalid sync token")

// Changes returns the objects of a collection that changed between commit since and now,
// and the current commit (the next sync token). since "" lists every object as changed.
// ErrBadToken if since is not a recent commit of the owner's repository's history (see
// Sync).
func (c *Collections) Changes(ctx context.Context, owner, coll string, since store.Hash) (store.Hash, []Change, error) {
	r, err := c.Sync(ctx, owner, coll, SyncPoint{Since: since}, -1)
	if err != nil {
		return "", nil, err
	}
	return r.Next.Since, r.Changes, nil
}

// Restore brings back what was deleted from an owner's collections since a time: every
// collection (coll "") or one collection, with the objects it held then that are gone
// now. Objects that still exist keep their current content. It returns the keys brought
// back as "COLLECTION/RESOURCE" (and "COLLECTION/" for a collection).
func (c *Collections) Restore(ctx context.Context, owner, coll string, since time.Time) ([]string, error) {
	if coll != "" {
		if err := CheckName(coll); err != nil {
			return nil, err
		}
	}
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("storedav: restore %s: %w", c.repo(owner), store.ErrNotFound)
	}
	log, err := s.Log(ctx, "", 0)
	if err != nil {
		return nil, fmt.Errorf("storedav: restore %s: %w", c.repo(owner), err)
	}
	// The state just before since: the newest commit older than since.
	var base store.Hash
	for _, cm := range log {
		if cm.Time.Before(since) {
			base = cm.ID
			break
		}
	}
	if base == "" {
		return nil, fmt.Errorf("storedav: restore %s: no commit before %s: %w", c.repo(owner), since.Format(time.RFC3339), store.ErrNotFound)
	}
	prefixes := []string{"collections", "objects", "uids"}
	if coll != "" {
		prefixes = []string{metaKey(coll), objPrefix(coll), uidPrefix(coll)}
	}
	var ops []store.Op
	var restored []string
	for _, p := range prefixes {
		diffs, err := s.Diff(ctx, string(base), "", p)
		if err != nil {
			return nil, fmt.Errorf("storedav: restore %s: %w", c.repo(owner), err)
		}
		for _, d := range diffs {
			if d.Kind != store.Deleted {
				continue
			}
			ops = append(ops, store.Op{Key: d.Key, Copy: d.Old, IfMatch: store.Missing})
			switch {
			case strings.HasPrefix(d.Key, "collections/"):
				restored = append(restored, strings.TrimSuffix(strings.TrimPrefix(d.Key, "collections/"), ".json")+"/")
			case strings.HasPrefix(d.Key, "objects/"):
				restored = append(restored, strings.TrimPrefix(d.Key, "objects/"))
			}
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	if len(ops) > store.MaxOps {
		return nil, fmt.Errorf("storedav: restore %s: %w: %d keys", c.repo(owner), ErrLimit, len(ops))
	}
	if _, err := s.Commit(ctx, store.Change{Author: author(ctx), Message: "restore since " + since.UTC().Format(time.RFC3339), Ops: ops}); err != nil {
		return nil, fmt.Errorf("storedav: restore %s: %w", c.repo(owner), err)
	}
	slices.Sort(restored)
	return restored, nil
}
