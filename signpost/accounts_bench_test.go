package signpost

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// BenchmarkLogin measures a login: one argon2id verification with the current parameters
// (aimed at 20–60 ms), and a login answered from the verified-credentials cache, over an
// in-memory store and over a git repository on disk.
func BenchmarkLogin(b *testing.B) {
	ctx := context.Background()
	b.Run("argon2id", func(b *testing.B) {
		hash := hashPassword("correct horse")
		for b.Loop() {
			if !verifyPassword(hash, "correct horse") {
				b.Fatal("no match")
			}
		}
	})
	b.Run("uncached/memstore", func(b *testing.B) {
		a, _ := newMem(b)
		mustAdd(b, a, "alice", "correct horse")
		for b.Loop() {
			a.mu.Lock()
			clear(a.verified)
			a.mu.Unlock()
			if err := a.CheckPassword(ctx, "192.0.2.1", "alice", "correct horse"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached/memstore", func(b *testing.B) {
		a, _ := newMem(b)
		mustAdd(b, a, "alice", "correct horse")
		for b.Loop() {
			if err := a.CheckPassword(ctx, "192.0.2.1", "alice", "correct horse"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached/git", func(b *testing.B) {
		r, err := store.Init(filepath.Join(b.TempDir(), "a.git"), &store.Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		a := NewAccounts(r, AccountsOptions{Logger: quiet, Limits: lenient})
		mustAdd(b, a, "alice", "correct horse")
		for b.Loop() {
			if err := a.CheckPassword(ctx, "192.0.2.1", "alice", "correct horse"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("token/git", func(b *testing.B) {
		r, err := store.Init(filepath.Join(b.TempDir(), "a.git"), &store.Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		a := NewAccounts(r, AccountsOptions{Logger: quiet, Limits: lenient})
		mustAdd(b, a, "alice", "correct horse")
		tok, err := a.AddAppPassword(ctx, "alice", "bench")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := a.CheckToken(ctx, "192.0.2.1", tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
