package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkPass measures a backup pass over 50 repositories to a directory remote: with
// one repository changed since the last pass (the common case) and with all unchanged.
func BenchmarkPass(b *testing.B) {
	ctx := context.Background()
	data := b.TempDir()
	remote := filepath.Join(b.TempDir(), "b")
	r, err := Open(data, Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for i := range 50 {
		put(b, r.Repos(), fmt.Sprintf("user%d/notes", i), "k", "v")
	}
	if err := AddBackup(data, Remote{URL: remote}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Pass(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("one-changed", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			put(b, r.Repos(), "user0/notes", "k", fmt.Sprint(i))
			if _, err := r.Pass(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Pass(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
