// Package storebench measures the store side by side with git: the workloads behind
// "hearth bench store" and the store's Go benchmarks.
package storebench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-home/hearth/store"
)

// ErrNoGit is returned by the git workloads when no git binary is installed.
var ErrNoGit = errors.New("storebench: git is not installed")

// Rate is a count of operations done in a time.
type Rate struct {
	N       int
	Elapsed time.Duration
}

// PerSecond is the rate in operations per second.
func (r Rate) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.N) / r.Elapsed.Seconds()
}

// DurableWrites makes n acknowledged commits of one small key each into a new repository
// at dir, from the given number of concurrent writers on one branch.
func DurableWrites(ctx context.Context, dir string, writers, n int) (Rate, error) {
	r, err := store.Init(dir, quiet())
	if err != nil {
		return Rate{}, err
	}
	defer r.Close()
	return Writes(ctx, r, writers, n)
}

// Writes makes n commits of one small key each into s from concurrent writers. Writer g
// puts keys w<g>/<i>.
func Writes(ctx context.Context, s store.Store, writers, n int) (Rate, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for g := range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				key := fmt.Sprintf("w%d/%d", g, i)
				if _, err := s.Commit(ctx, store.Change{Message: "bench", Ops: []store.Op{{Key: key, Value: []byte("small value " + key)}}}); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return Rate{N: n, Elapsed: time.Since(start)}, firstErr
}

// GitFastImport makes n commits of one blob each with git fast-import into a new bare
// repository at dir: the reference the store's writes are held against.
func GitFastImport(ctx context.Context, dir string, n int) (Rate, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return Rate{}, ErrNoGit
	}
	if out, err := exec.CommandContext(ctx, git, "init", "--bare", "-q", dir).CombinedOutput(); err != nil {
		return Rate{}, fmt.Errorf("storebench: git init: %v: %s", err, out)
	}
	start := time.Now()
	if err := FastImport(ctx, dir, n, n); err != nil {
		return Rate{}, err
	}
	return Rate{N: n, Elapsed: time.Since(start)}, nil
}

// FastImport appends n commits to branch main of the git repository at dir with git
// fast-import, commit i setting key k/(i % keys).
func FastImport(ctx context.Context, dir string, n, keys int) error {
	git, err := exec.LookPath("git")
	if err != nil {
		return ErrNoGit
	}
	cmd := exec.CommandContext(ctx, git, "fast-import", "--quiet", "--done")
	cmd.Env = append(os.Environ(), "GIT_DIR="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<16)
	for i := range n {
		data := fmt.Sprintf("value %d", i)
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter b <b@x> %d +0000\ndata 3\nc%d\n", 1700000000+i, i%10)
		fmt.Fprintf(w, "M 100644 inline k/%d\ndata %d\n%s\n", i%keys, len(data), data)
	}
	fmt.Fprintf(w, "done\n")
	w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("storebench: git fast-import: %v: %s", err, stderr.String())
	}
	return nil
}

// HistoryRepo makes a store repository at dir whose main branch has commits commits
// (made with git fast-import, commit i changing key k/(i % keys)) and opens it, which
// indexes them. It returns the repository and how long opening and indexing took.
func HistoryRepo(ctx context.Context, dir string, commits, keys int) (*store.Repo, time.Duration, error) {
	r, err := store.Init(dir, quiet())
	if err != nil {
		return nil, 0, err
	}
	r.Close()
	// fast-import starts main afresh; the initial commit stays as an unreferenced object.
	if err := os.Remove(filepath.Join(dir, "refs", "heads", "main")); err != nil {
		return nil, 0, err
	}
	if err := FastImport(ctx, dir, commits, keys); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	r, err = store.Open(dir, quiet())
	if err != nil {
		return nil, 0, err
	}
	// Open indexes the outside history in the background; the first question about
	// history waits for it. Time both.
	if _, err := r.Log(ctx, "main", 1); err != nil {
		r.Close()
		return nil, 0, err
	}
	return r, time.Since(start), nil
}

// History asks rounds times for the whole history of a key of a HistoryRepo and returns
// the mean time per call.
func History(ctx context.Context, r *store.Repo, keys, rounds, want int) (time.Duration, error) {
	start := time.Now()
	for i := range rounds {
		h, err := r.History(ctx, "main", fmt.Sprintf("k/%d", i%keys), 0)
		if err != nil {
			return 0, err
		}
		if len(h) != want {
			return 0, fmt.Errorf("storebench: history of k/%d has %d commits, want %d", i%keys, len(h), want)
		}
	}
	return time.Since(start) / time.Duration(rounds), nil
}

// GitLogPath times "git log --format=%H main -- k/0" in the git repository at dir: what
// git itself takes for the history of one key.
func GitLogPath(ctx context.Context, dir string) (time.Duration, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return 0, ErrNoGit
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, git, "--git-dir", dir, "log", "--format=%H", "main", "--", "k/0").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("storebench: git log: %v: %s", err, out)
	}
	return time.Since(start), nil
}

// quiet is the store options of the workloads: logs (background packs) would garble the
// benchmark output.
func quiet() *store.Options {
	return &store.Options{Logger: slog.New(slog.DiscardHandler)}
}
