package storehttp

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// TestRepoSyncOverHTTP: a local repository pushes its branch to a new repository on a
// Hearth server (a backup), another pulls it from there, and the two exchange changes
// through the server with go-git's HTTP transport.
func TestRepoSyncOverHTTP(t *testing.T) {
	ctx := context.Background()
	s := newGitServer(t)
	remote := store.Remote{URL: s.srv.URL + "/alice/backup.git", User: "alice", Password: "pw"}

	a, err := store.Init(filepath.Join(t.TempDir(), "a.git"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i, v := range []string{"one", "two", "three"} {
		if _, err := a.Commit(ctx, store.Change{Message: v, Ops: []store.Op{{Key: "notes/" + v, Value: []byte(v)}, {Key: "count", Value: []byte{byte('0' + i)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The first push creates alice/backup and replaces its empty initial commit.
	if err := a.Push(ctx, remote, "main"); err != nil {
		t.Fatalf("first push: %v", err)
	}
	srvRepo, err := s.repos.Repo(ctx, "alice/backup", false)
	if err != nil {
		t.Fatal(err)
	}
	aHead, _ := a.Resolve(ctx, "main")
	if h, _ := srvRepo.Resolve(ctx, "main"); h != aHead {
		t.Fatalf("server main = %s, want %s", h, aHead)
	}

	b, err := store.Init(filepath.Join(t.TempDir(), "b.git"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Pull(ctx, remote, "main", store.Signature{Name: "b"}); err != nil {
		t.Fatalf("pull into a new repository: %v", err)
	}
	if h, _ := b.Resolve(ctx, "main"); h != aHead {
		t.Fatalf("b main = %s after pull, want a fast-forward to %s", h, aHead)
	}
	// b changes and pushes; a is now behind and its push is refused until it pulls.
	if _, err := b.Commit(ctx, store.Change{Message: "b", Ops: []store.Op{{Key: "notes/b", Value: []byte("from b")}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, remote, "main"); err != nil {
		t.Fatalf("push from b: %v", err)
	}
	if _, err := a.Commit(ctx, store.Change{Message: "a", Ops: []store.Op{{Key: "notes/a", Value: []byte("from a")}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, remote, "main"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("push from a behind: %v, want ErrConflict", err)
	}
	if _, err := a.Pull(ctx, remote, "main", store.Signature{Name: "a"}); err != nil {
		t.Fatalf("pull into a: %v", err)
	}
	if err := a.Push(ctx, remote, "main"); err != nil {
		t.Fatalf("push after pull: %v", err)
	}
	for _, key := range []string{"notes/a", "notes/b", "notes/three"} {
		if _, _, err := srvRepo.Get(ctx, "main", key); err != nil {
			t.Errorf("server lacks %s: %v", key, err)
		}
	}
	// Wrong credentials are refused.
	bad := store.Remote{URL: remote.URL, User: "alice", Password: "wrong"}
	if _, err := b.Fetch(ctx, bad, "main"); err == nil {
		t.Error("fetch with a wrong password succeeded")
	}
}
