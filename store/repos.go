package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Repos opens the git repositories below a root directory, one per name "owner/name",
// kept at ROOT/owner/name.git. Opened repositories are cached and shared; Close closes them.
type Repos struct {
	root string
	opts Options

	mu     sync.Mutex
	open   map[string]*Repo
	closed bool
}

// OpenRepos returns the repositories below root, creating root if needed.
// opts applies to every repository opened through it.
func OpenRepos(root string, opts *Options) (*Repos, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("store: repos %s: %w", root, err)
	}
	r := &Repos{root: root, open: map[string]*Repo{}}
	if opts != nil {
		r.opts = *opts
	}
	return r, nil
}

// Root returns the directory the repositories live in.
func (r *Repos) Root() string { return r.root }

// Path returns the git directory of the named repository (which may not exist).
func (r *Repos) Path(name string) string {
	return filepath.Join(r.root, filepath.FromSlash(name)+".git")
}

// List returns the names of all repositories, sorted.
func (r *Repos) List(ctx context.Context) ([]string, error) {
	owners, err := os.ReadDir(r.root)
	if err != nil {
		return nil, fmt.Errorf("store: list repos: %w", err)
	}
	var names []string
	for _, o := range owners {
		if !o.IsDir() {
			continue
		}
		repos, err := os.ReadDir(filepath.Join(r.root, o.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: list repos: %w", err)
		}
		for _, e := range repos {
			n, ok := strings.CutSuffix(e.Name(), ".git")
			name := o.Name() + "/" + n
			if ok && e.IsDir() && CheckRepoName(name) == nil {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// Open returns the named repository. If it does not exist, Open creates it when create is
// true and returns ErrNotFound otherwise.
func (r *Repos) Open(ctx context.Context, name string, create bool) (Store, error) {
	return r.Repo(ctx, name, create)
}

// Repo is Open returning the concrete *Repo.
func (r *Repos) Repo(ctx context.Context, name string, create bool) (*Repo, error) {
	if err := CheckRepoName(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if repo, ok := r.open[name]; ok {
		return repo, nil
	}
	dir := r.Path(name)
	repo, err := Open(dir, &r.opts)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotFound) {
		if !create {
			return nil, fmt.Errorf("store: repository %q: %w", name, ErrNotFound)
		}
		repo, err = Init(dir, &r.opts)
	}
	if err != nil {
		return nil, err
	}
	r.open[name] = repo
	return repo, nil
}

// Close closes every repository opened through r.
func (r *Repos) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for _, repo := range r.open {
		errs = append(errs, repo.Close())
	}
	r.open = nil
	return errors.Join(errs...)
}
