package store

import (
	"errors"
	"log/slog"
	"time"
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
}

// Repo is a versioned store in one bare git repository on disk. It is safe for concurrent
// use, and for use beside other processes and the git CLI on the same repository.
type Repo struct {
	Store // TEMPORARY: removed when the git implementation lands
	dir   string
	opts  Options
}

// Init creates a bare git repository at dir with an initial empty commit on DefaultBranch
// and opens it. It fails if dir already holds a repository.
func Init(dir string, opts *Options) (*Repo, error) {
	return nil, errors.New("store: not implemented yet")
}

// Open opens the existing git repository at dir.
func Open(dir string, opts *Options) (*Repo, error) {
	return nil, errors.New("store: not implemented yet")
}
