package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// TestSyncLocal pushes and pulls between two repositories on the file system, merging
// concurrent changes with the merge rules, and pushes a backup to a plain git repository.
func TestSyncLocal(t *testing.T) {
	ctx := context.Background()
	rules := store.MergeRules{{Pattern: "flags", Rule: store.UnionLines}}
	a := newRepo(t, &store.Options{MergeRules: rules})
	b, err := store.Init(filepath.Join(t.TempDir(), "b.git"), &store.Options{MergeRules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	me := store.Signature{Name: "t", Email: "t@x"}

	// b starts from a's history: unrelated histories cannot be merged, so b takes a's
	// branch by fetching it and fast-forwarding a fresh branch.
	put(t, a, "m/1/flags", "\\Seen\n")
	put(t, a, "m/1/body", "hello")
	h, err := b.Fetch(ctx, store.Remote{URL: a.Dir()}, "main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateBranch(ctx, "from-a", string(h)); err != nil {
		t.Fatal(err)
	}
	if v, _, err := b.Get(ctx, "from-a", "m/1/body"); err != nil || string(v) != "hello" {
		t.Fatalf("fetched branch: %q, %v", v, err)
	}

	// Now a clone-like pair: c pulls a's main into a new branch and both go on.
	c, err := store.Init(filepath.Join(t.TempDir(), "c.git"), &store.Options{MergeRules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Pull(ctx, store.Remote{URL: a.Dir()}, "work", me); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pull of a missing remote branch: %v, want ErrNotFound", err)
	}
	if _, err := a.CreateBranch(ctx, "work", "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, store.Remote{URL: a.Dir()}, "work", me); err != nil {
		t.Fatal(err)
	}
	// Both sides change: a adds a flag and a key on work, c another flag and key.
	mustCommit(t, a, "work", store.Op{Key: "m/1/flags", Value: []byte("\\Seen\n\\Flagged\n")}, store.Op{Key: "m/2/body", Value: []byte("from a")})
	mustCommit(t, c, "work", store.Op{Key: "m/1/flags", Value: []byte("\\Answered\n\\Seen\n")}, store.Op{Key: "m/3/body", Value: []byte("from c")})
	// c cannot push: a moved on.
	if err := c.Push(ctx, store.Remote{URL: a.Dir()}, "work"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("push behind: %v, want ErrConflict", err)
	}
	if _, err := c.Pull(ctx, store.Remote{URL: a.Dir()}, "work", me); err != nil {
		t.Fatalf("pull with concurrent changes: %v", err)
	}
	if got := rev(t, c, "work", "m/1/flags"); got != "\\Answered\n\\Flagged\n\\Seen\n" {
		t.Errorf("merged flags = %q", got)
	}
	if err := c.Push(ctx, store.Remote{URL: a.Dir()}, "work"); err != nil {
		t.Fatalf("push after pull: %v", err)
	}
	for key, want := range map[string]string{"m/2/body": "from a", "m/3/body": "from c"} {
		if got := rev(t, a, "work", key); got != want {
			t.Errorf("a: %s = %q, want %q", key, got, want)
		}
	}
	if err := c.Push(ctx, store.Remote{URL: a.Dir()}, "work"); err != nil {
		t.Fatalf("pushing an unchanged branch: %v", err)
	}

	// A backup to a plain bare repository made by git.
	backup := filepath.Join(t.TempDir(), "backup.git")
	gitCmd(t, "", "init", "--bare", "-q", backup)
	if err := a.Push(ctx, store.Remote{URL: backup}, "work"); err != nil {
		t.Fatal(err)
	}
	if got := gitCmd(t, backup, "cat-file", "-p", "work:m/3/body"); got != "from c" {
		t.Errorf("backup has %q", got)
	}
	gitCmd(t, backup, "fsck", "--strict", "--no-dangling")
	if n := strings.Count(gitCmd(t, backup, "log", "--format=%H", "work"), "\n"); n < 5 {
		t.Errorf("backup log has %d commits", n)
	}
}

func rev(t *testing.T, s store.Store, branch, key string) string {
	t.Helper()
	v, _, err := s.Get(context.Background(), branch, key)
	if err != nil {
		t.Fatalf("get %s@%s: %v", key, branch, err)
	}
	return string(v)
}

func mustCommit(t *testing.T, s store.Store, branch string, ops ...store.Op) {
	t.Helper()
	if _, err := s.Commit(context.Background(), store.Change{Branch: branch, Message: "change", Ops: ops}); err != nil {
		t.Fatal(err)
	}
}
