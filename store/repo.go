package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/golang/groupcache/lru"
)

// Options configure a Repo. The zero value is usable.
type Options struct {
	// Logger receives background events (packing, index rebuilds). nil: slog.Default().
	Logger *slog.Logger
	// MergeRules resolve keys both sides of a merge or pull changed.
	MergeRules MergeRules
	// MaxValueSize is the largest value accepted (<= 0: MaxValueSize).
	MaxValueSize int64
	// PollInterval is how often watchers look for commits made by other processes
	// (<= 0: 500ms).
	PollInterval time.Duration
	// Now returns the current time (nil: time.Now); tests set it.
	Now func() time.Time
	// AutoPackBytes: once the packs hold more than this many bytes and twice what the
	// last Pack left, a Pack starts in the background (0: 32 MiB; < 0: never).
	AutoPackBytes int64
	// OnCommit, when set, is called after every commit this Repo writes (see CommitStats),
	// from the writer goroutine: it must be quick and must not call back into the Repo.
	OnCommit func(CommitStats)
}

// Repo is a versioned store in one bare git repository on disk. It is safe for concurrent
// use, and for use beside other processes and the git CLI on the same repository.
type Repo struct {
	dir  string
	opts Options
	log  *slog.Logger
	db   *odb
	hist *historyIndex

	cacheMu sync.Mutex
	trees   *treeCache // parsed trees, bounded by size
	commits *lru.Cache // plumbing.Hash → *commitInfo

	reqs   chan *request
	done   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	watch watchers

	packing     atomic.Bool  // a background Pack is running
	packedBytes atomic.Int64 // pack bytes the last Pack left
}

// commitInfo is a decoded commit.
type commitInfo struct {
	Commit
	tree plumbing.Hash
}

var _ Store = (*Repo)(nil)

// Init creates a bare git repository at dir with an initial empty commit on DefaultBranch
// and opens it. It fails with ErrConflict if dir already exists. The repository appears
// at dir atomically: it is built in a temporary directory beside it and renamed.
func Init(dir string, opts *Options) (*Repo, error) {
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("store: init %s: %w: it exists", dir, ErrConflict)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("store: init %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, ".init-"+filepath.Base(dir)+"-")
	if err != nil {
		return nil, fmt.Errorf("store: init %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"objects/pack", "objects/info", "refs/heads", "refs/tags", "hearth"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return nil, fmt.Errorf("store: init %s: %w", dir, err)
		}
	}
	files := map[string]string{
		"HEAD":        "ref: refs/heads/" + DefaultBranch + "\n",
		"config":      "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n",
		"description": "Hearth store repository\n",
	}
	for name, content := range files {
		if err := writeFileSync(filepath.Join(tmp, name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("store: init %s: %w", dir, err)
		}
	}
	r, err := open(tmp, opts)
	if err != nil {
		return nil, err
	}
	now := r.now().Truncate(time.Second)
	first, err := r.writeCommit(emptyTree.hash, []plumbing.Hash{}, Signature{Name: "hearth", Email: "hearth@localhost"}, "Initial commit", now, []rawObject{emptyTree})
	if err == nil {
		var l *refLock
		if l, err = r.lockRef(DefaultBranch); err == nil {
			err = l.commit(Hash(first.String()))
		}
	}
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("store: init %s: %w", dir, err)
	}
	for _, d := range []string{"refs/heads", "refs", "objects", "."} {
		if err := syncDir(filepath.Join(tmp, d)); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("store: init %s: %w", dir, err)
	}
	if err := syncDir(parent); err != nil {
		return nil, err
	}
	return Open(dir, opts)
}

// Open opens the existing git repository at dir. ErrNotFound if there is none.
func Open(dir string, opts *Options) (*Repo, error) {
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: open %s: %w", dir, ErrNotFound)
		}
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	r, err := open(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := r.hist.load(); err != nil {
		r.Close()
		return nil, err
	}
	r.wg.Go(r.hist.catchUp)
	return r, nil
}

func open(dir string, opts *Options) (*Repo, error) {
	r := &Repo{dir: dir, reqs: make(chan *request, 1024), done: make(chan struct{})}
	if opts != nil {
		r.opts = *opts
	}
	r.log = r.opts.Logger
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.opts.MaxValueSize <= 0 {
		r.opts.MaxValueSize = MaxValueSize
	}
	if r.opts.PollInterval <= 0 {
		r.opts.PollInterval = 500 * time.Millisecond
	}
	db, err := openODB(dir)
	if err != nil {
		return nil, err
	}
	r.db = db
	r.trees = newTreeCache(treeCacheBytes)
	r.commits = lru.New(4096)
	r.hist = newHistoryIndex(r)
	r.watch.r = r
	r.wg.Add(1)
	go r.writer()
	return r, nil
}

// Dir returns the repository's git directory.
func (r *Repo) Dir() string { return r.dir }

// Close stops the writer and the watchers. Calls after it return ErrClosed.
func (r *Repo) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		close(r.done)
		r.wg.Wait()
		r.hist.close()
		r.db.close()
	})
	return nil
}

func (r *Repo) now() time.Time {
	if r.opts.Now != nil {
		return r.opts.Now()
	}
	return time.Now()
}

func (r *Repo) check() error {
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// ---- reading ----

func toHash(h plumbing.Hash) Hash { return Hash(h.String()) }

// resolve turns a revision into a commit hash.
func (r *Repo) resolve(rev string) (plumbing.Hash, error) {
	if err := r.check(); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := CheckRev(rev); err != nil {
		return plumbing.ZeroHash, err
	}
	if rev == "" {
		rev = DefaultBranch
	}
	if IsHash(rev) {
		h := plumbing.NewHash(rev)
		if _, err := r.commit(h); err != nil {
			return plumbing.ZeroHash, err
		}
		return h, nil
	}
	h, err := r.readRef(rev)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return plumbing.NewHash(string(h)), nil
}

func (r *Repo) commit(h plumbing.Hash) (*commitInfo, error) {
	r.cacheMu.Lock()
	v, ok := r.commits.Get(h)
	r.cacheMu.Unlock()
	if ok {
		return v.(*commitInfo), nil
	}
	o, err := r.db.object(h)
	if err != nil {
		return nil, fmt.Errorf("store: commit %s: %w", h, ErrNotFound)
	}
	if o.Type() != plumbing.CommitObject {
		return nil, fmt.Errorf("store: %s is not a commit: %w", h, ErrNotFound)
	}
	var c object.Commit
	if err := c.Decode(o); err != nil {
		return nil, fmt.Errorf("store: commit %s: %w", h, err)
	}
	ci := &commitInfo{tree: c.TreeHash, Commit: Commit{
		ID:      toHash(h),
		Parents: make([]Hash, len(c.ParentHashes)),
		Author:  Signature{Name: c.Author.Name, Email: c.Author.Email},
		Message: c.Message,
		Time:    c.Author.When.UTC(),
	}}
	for i, p := range c.ParentHashes {
		ci.Parents[i] = toHash(p)
	}
	r.cacheMu.Lock()
	r.commits.Add(h, ci)
	r.cacheMu.Unlock()
	return ci, nil
}

func (r *Repo) tree(h plumbing.Hash) ([]treeEntry, error) {
	if h == emptyTree.hash {
		return nil, nil
	}
	r.cacheMu.Lock()
	v, ok := r.trees.get(h)
	r.cacheMu.Unlock()
	if ok {
		return v, nil
	}
	t, data, err := r.db.get(h)
	if err != nil {
		return nil, err
	}
	if t != plumbing.TreeObject {
		return nil, fmt.Errorf("store: %s is not a tree", h)
	}
	entries, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	r.cacheMu.Lock()
	r.trees.add(h, entries)
	r.cacheMu.Unlock()
	return entries, nil
}

func (r *Repo) cacheTree(h plumbing.Hash, entries []treeEntry) {
	r.cacheMu.Lock()
	r.trees.add(h, entries)
	r.cacheMu.Unlock()
}

// lookup finds path in the tree root: the entry, or ok false.
func (r *Repo) lookup(root plumbing.Hash, path string) (treeEntry, bool, error) {
	e := treeEntry{mode: 0o040000, hash: root}
	for seg := range strings.SplitSeq(path, "/") {
		if !e.isDir() {
			return treeEntry{}, false, nil
		}
		entries, err := r.tree(e.hash)
		if err != nil {
			return treeEntry{}, false, err
		}
		found := false
		for _, c := range entries {
			if c.name == seg {
				e, found = c, true
				break
			}
		}
		if !found {
			return treeEntry{}, false, nil
		}
	}
	return e, true, nil
}

// walk calls fn for every blob below the tree h, whose path is prefix.
func (r *Repo) walk(h plumbing.Hash, prefix string, fn func(key string, e treeEntry) error) error {
	entries, err := r.tree(h)
	if err != nil {
		return err
	}
	for _, e := range entries {
		key := e.name
		if prefix != "" {
			key = prefix + "/" + e.name
		}
		switch {
		case e.isDir():
			if err := r.walk(e.hash, key, fn); err != nil {
				return err
			}
		case e.isBlob():
			if err := fn(key, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Repo) blobSize(h plumbing.Hash) (int64, error) { return r.db.size(h) }

// Get implements Reader.
func (r *Repo) Get(ctx context.Context, rev, key string) ([]byte, Entry, error) {
	e, err := r.stat(rev, key)
	if err != nil {
		return nil, Entry{}, err
	}
	_, data, err := r.db.get(plumbing.NewHash(string(e.Version)))
	if err != nil {
		return nil, Entry{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	if data == nil {
		data = []byte{}
	}
	e.Size = int64(len(data))
	return data, e, nil
}

// Stat implements Reader.
func (r *Repo) Stat(ctx context.Context, rev, key string) (Entry, error) {
	e, err := r.stat(rev, key)
	if err != nil {
		return Entry{}, err
	}
	e.Size, err = r.blobSize(plumbing.NewHash(string(e.Version)))
	if err != nil {
		return Entry{}, fmt.Errorf("store: stat %q: %w", key, err)
	}
	return e, nil
}

func (r *Repo) stat(rev, key string) (Entry, error) {
	if err := CheckKey(key); err != nil {
		return Entry{}, err
	}
	h, err := r.resolve(rev)
	if err != nil {
		return Entry{}, err
	}
	c, err := r.commit(h)
	if err != nil {
		return Entry{}, err
	}
	e, ok, err := r.lookup(c.tree, key)
	if err != nil {
		return Entry{}, err
	}
	if !ok || !e.isBlob() {
		return Entry{}, fmt.Errorf("store: key %q: %w", key, ErrNotFound)
	}
	return Entry{Key: key, Version: toHash(e.hash)}, nil
}

// List implements Reader.
func (r *Repo) List(ctx context.Context, rev, prefix string) ([]Entry, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	h, err := r.resolve(rev)
	if err != nil {
		return nil, err
	}
	c, err := r.commit(h)
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	root := c.tree
	if prefix != "" {
		e, ok, err := r.lookup(root, prefix)
		if err != nil || !ok {
			return out, err
		}
		if e.isBlob() {
			size, err := r.blobSize(e.hash)
			if err != nil {
				return nil, err
			}
			return []Entry{{Key: prefix, Version: toHash(e.hash), Size: size}}, nil
		}
		if !e.isDir() {
			return out, nil
		}
		root = e.hash
	}
	err = r.walk(root, prefix, func(key string, e treeEntry) error {
		size, err := r.blobSize(e.hash)
		if err != nil {
			return err
		}
		out = append(out, Entry{Key: key, Version: toHash(e.hash), Size: size})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Git orders a directory "a" as "a/", so walk order is not plain string order.
	sortEntries(out)
	return out, nil
}

// Resolve implements Reader.
func (r *Repo) Resolve(ctx context.Context, rev string) (Hash, error) {
	h, err := r.resolve(rev)
	return toHash(h), err
}

// flatten returns every key below prefix in the tree of commit c.
func (r *Repo) flatten(root plumbing.Hash, prefix string) (map[string]Hash, error) {
	m := map[string]Hash{}
	if prefix != "" {
		e, ok, err := r.lookup(root, prefix)
		if err != nil || !ok {
			return m, err
		}
		if e.isBlob() {
			m[prefix] = toHash(e.hash)
			return m, nil
		}
		root = e.hash
	}
	err := r.walk(root, prefix, func(key string, e treeEntry) error {
		m[key] = toHash(e.hash)
		return nil
	})
	return m, err
}

// diffTrees lists the keys that differ between two trees, skipping equal subtrees. Both
// entry lists are in git's order, so it walks them side by side without maps.
func (r *Repo) diffTrees(a, b plumbing.Hash, prefix string, out *[]Diff) error {
	if a == b {
		return nil
	}
	var ea, eb []treeEntry
	var err error
	if a != plumbing.ZeroHash {
		if ea, err = r.tree(a); err != nil {
			return err
		}
	}
	if b != plumbing.ZeroHash {
		if eb, err = r.tree(b); err != nil {
			return err
		}
	}
	join := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "/" + name
	}
	// gone and came report an entry only one side has.
	gone := func(x treeEntry) error {
		switch {
		case x.isDir():
			return r.diffTrees(x.hash, plumbing.ZeroHash, join(x.name), out)
		case x.isBlob():
			*out = append(*out, Diff{Key: join(x.name), Kind: Deleted, Old: toHash(x.hash)})
		}
		return nil
	}
	came := func(y treeEntry) error {
		switch {
		case y.isDir():
			return r.diffTrees(plumbing.ZeroHash, y.hash, join(y.name), out)
		case y.isBlob():
			*out = append(*out, Diff{Key: join(y.name), Kind: Added, New: toHash(y.hash)})
		}
		return nil
	}
	i, j := 0, 0
	for i < len(ea) || j < len(eb) {
		c := 0
		switch {
		case i == len(ea):
			c = 1
		case j == len(eb):
			c = -1
		default:
			c = cmpGitOrder(ea[i], eb[j])
		}
		switch {
		case c < 0:
			err = gone(ea[i])
			i++
		case c > 0:
			err = came(eb[j])
			j++
		default:
			x, y := ea[i], eb[j]
			i, j = i+1, j+1
			switch {
			case x.hash == y.hash && x.mode == y.mode:
			case x.isDir(): // both directories (same sort name)
				err = r.diffTrees(x.hash, y.hash, join(y.name), out)
			case x.isBlob() && y.isBlob():
				*out = append(*out, Diff{Key: join(y.name), Kind: Modified, Old: toHash(x.hash), New: toHash(y.hash)})
			default: // a blob and a symlink or submodule: not keys on one side
				if err = gone(x); err == nil {
					err = came(y)
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// cmpGitOrder compares tree entries in git's order: by name, a directory's name as if
// it ended in "/".
func cmpGitOrder(a, b treeEntry) int {
	n := min(len(a.name), len(b.name))
	if c := strings.Compare(a.name[:n], b.name[:n]); c != 0 {
		return c
	}
	next := func(e treeEntry) int {
		switch {
		case len(e.name) > n:
			return int(e.name[n])
		case e.isDir():
			return '/'
		default:
			return -1 // the name ends here
		}
	}
	return next(a) - next(b)
}

// diffCommits lists the keys below prefix that differ between the trees of two commits
// (a zero from: the empty tree), sorted by key.
func (r *Repo) diffCommits(from, to plumbing.Hash, prefix string) ([]Diff, error) {
	sub := func(c plumbing.Hash) (plumbing.Hash, bool, error) {
		if c == plumbing.ZeroHash {
			return plumbing.ZeroHash, false, nil
		}
		ci, err := r.commit(c)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		if prefix == "" {
			return ci.tree, false, nil
		}
		e, ok, err := r.lookup(ci.tree, prefix)
		if err != nil || !ok {
			return plumbing.ZeroHash, false, err
		}
		if e.isBlob() {
			return e.hash, true, nil
		}
		if e.isDir() {
			return e.hash, false, nil
		}
		return plumbing.ZeroHash, false, nil
	}
	a, aBlob, err := sub(from)
	if err != nil {
		return nil, err
	}
	b, bBlob, err := sub(to)
	if err != nil {
		return nil, err
	}
	var out []Diff
	if aBlob || bBlob {
		// prefix names a key on at least one side.
		ma, mb := map[string]Hash{}, map[string]Hash{}
		if aBlob {
			ma[prefix] = toHash(a)
		} else if a != plumbing.ZeroHash {
			if ma, err = r.flatten(a, prefix); err != nil {
				return nil, err
			}
		}
		if bBlob {
			mb[prefix] = toHash(b)
		} else if b != plumbing.ZeroHash {
			if mb, err = r.flatten(b, prefix); err != nil {
				return nil, err
			}
		}
		return DiffMaps(ma, mb, prefix), nil
	}
	if err := r.diffTrees(a, b, prefix, &out); err != nil {
		return nil, err
	}
	sortDiffs(out)
	return out, nil
}

// Diff implements Historian.
func (r *Repo) Diff(ctx context.Context, from, to, prefix string) ([]Diff, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	var a plumbing.Hash
	if from != "" {
		var err error
		if a, err = r.resolve(from); err != nil {
			return nil, err
		}
	}
	b, err := r.resolve(to)
	if err != nil {
		return nil, err
	}
	out, err := r.diffCommits(a, b, prefix)
	if out == nil && err == nil {
		out = []Diff{}
	}
	return out, err
}

// ---- writing ----

// writeCommit writes objs plus a commit object as one durable pack and returns the
// commit's hash.
func (r *Repo) writeCommit(tree plumbing.Hash, parents []plumbing.Hash, author Signature, msg string, when time.Time, objs []rawObject) (plumbing.Hash, error) {
	sig := object.Signature{Name: author.Name, Email: author.Email, When: when.UTC()}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: parents}
	mo := &plumbing.MemoryObject{}
	if err := c.Encode(mo); err != nil {
		return plumbing.ZeroHash, err
	}
	var buf bytes.Buffer
	rd, _ := mo.Reader()
	buf.ReadFrom(rd)
	co := newObject(plumbing.CommitObject, buf.Bytes())
	objs = append(objs, co)
	// Skip objects that already exist (a value stored before, a tree seen before).
	fresh := objs[:0:0]
	seen := map[plumbing.Hash]bool{}
	for _, o := range objs {
		if seen[o.hash] {
			continue
		}
		seen[o.hash] = true
		if o.typ != plumbing.CommitObject && r.db.hasCached(o.hash) {
			continue
		}
		fresh = append(fresh, o)
	}
	if err := r.db.writePack(fresh); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store: write objects: %w", err)
	}
	return co.hash, nil
}
