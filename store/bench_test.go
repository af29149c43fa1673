package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

// BenchmarkDurableWrites measures acknowledged (fsynced) commits of one small key each,
// with 1, 4 and 16 concurrent writers on one branch. Compare with BenchmarkGitFastImport
// in the same run: go test -bench 'DurableWrites|GitFastImport' ./store
func BenchmarkDurableWrites(b *testing.B) {
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			r := newRepo(b, &store.Options{Logger: nil})
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range writers {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						key := fmt.Sprintf("w%d/%d", g, i)
						if _, err := r.Commit(ctx, store.Change{Message: "bench", Ops: []store.Op{{Key: key, Value: []byte("small value " + key)}}}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

// BenchmarkGitFastImport measures git fast-import making commits of one blob each, the
// reference the store's durable writes are held against.
func BenchmarkGitFastImport(b *testing.B) {
	git := needGit(b)
	dir := filepath.Join(b.TempDir(), "fi.git")
	gitCmd(b, "", "init", "--bare", "-q", dir)
	b.ResetTimer()
	start := time.Now()
	if err := fastImport(git, dir, b.N, 1); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}

// fastImport makes n commits on main with git fast-import, commit i changing key
// k/(i % keys). It ends with a checkpoint, so the pack and ref are written.
func fastImport(git, dir string, n, keys int) error {
	cmd := exec.Command(git, "fast-import", "--quiet", "--done")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_DIR="+dir)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
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
	return cmd.Wait()
}

// BenchmarkHistory100k asks for the whole history of one key in a repository of 100 000
// commits (made with git fast-import; the store indexes them when it opens the repo).
// Target: at most 5 ms an op.
func BenchmarkHistory100k(b *testing.B) {
	git := needGit(b)
	const commits, keys = 100_000, 1000
	dir := filepath.Join(b.TempDir(), "h.git")
	r, err := store.Init(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Close()
	os.Remove(filepath.Join(dir, "refs", "heads", "main"))
	if err := fastImport(git, dir, commits, keys); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	r, err = store.Open(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.Logf("indexing %d commits on open took %v", commits, time.Since(t0))
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := r.History(ctx, "main", fmt.Sprintf("k/%d", i%keys), 0)
		if err != nil || len(h) != commits/keys {
			b.Fatalf("history: %d commits, %v", len(h), err)
		}
	}
}
