package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/store/storebench"
)

// BenchmarkDurableWrites measures acknowledged (fsynced) commits of one small key each,
// with 1, 4 and 16 concurrent writers on one branch. Compare with BenchmarkGitFastImport
// in the same run: go test -bench 'DurableWrites|GitFastImport' ./store
// (hearth bench store prints both side by side.)
func BenchmarkDurableWrites(b *testing.B) {
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			rate, err := storebench.DurableWrites(context.Background(), filepath.Join(b.TempDir(), "w.git"), writers, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(rate.PerSecond(), "writes/s")
		})
	}
}

// BenchmarkGitFastImport measures git fast-import making commits of one blob each.
func BenchmarkGitFastImport(b *testing.B) {
	testtool.Path(b, "git", "git")
	rate, err := storebench.GitFastImport(context.Background(), filepath.Join(b.TempDir(), "fi.git"), b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(rate.PerSecond(), "commits/s")
}

// BenchmarkHistory100k asks for the whole history of one key in a repository of 100 000
// commits (made with git fast-import; the store indexes them when it opens the repo).
// Target: at most 5 ms an op.
func BenchmarkHistory100k(b *testing.B) {
	testtool.Path(b, "git", "git")
	const commits, keys = 100_000, 1000
	ctx := context.Background()
	r, took, err := storebench.HistoryRepo(ctx, filepath.Join(b.TempDir(), "h.git"), commits, keys)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.Logf("indexing %d commits on open took %v", commits, took)
	b.ResetTimer()
	if _, err := storebench.History(ctx, r, keys, b.N, commits/keys); err != nil {
		b.Fatal(err)
	}
}
