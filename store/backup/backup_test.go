package backup

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

var quiet = slog.New(slog.DiscardHandler)

// put writes key=value into repository name of a data directory.
func put(t testing.TB, repos *store.Repos, name, key, value string) {
	t.Helper()
	s, err := repos.Open(context.Background(), name, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), store.Change{Message: "put " + key, Ops: []store.Op{{Key: key, Value: []byte(value)}}}); err != nil {
		t.Fatal(err)
	}
}

// get reads a key from repository name below root ("" when absent).
func get(t *testing.T, root, name, key string) string {
	t.Helper()
	repos, err := store.OpenRepos(root, &store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	s, err := repos.Open(context.Background(), name, false)
	if err != nil {
		t.Fatalf("open %s in %s: %v", name, root, err)
	}
	v, _, err := s.Get(context.Background(), "", key)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func openRunner(t *testing.T, data string) *Runner {
	t.Helper()
	r, err := Open(data, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, true},
		{"directory", Config{Backups: []Remote{{URL: dir}}}, true},
		{"http", Config{Backups: []Remote{{URL: "https://store.home.arpa:8443"}}}, true},
		{"relative path", Config{Backups: []Remote{{URL: "backups"}}}, false},
		{"other scheme", Config{Backups: []Remote{{URL: "ssh://host/x"}}}, false},
		{"password in URL", Config{Backups: []Remote{{URL: "https://a:b@host/"}}}, false},
		{"twice", Config{Backups: []Remote{{URL: dir}, {URL: dir}}}, false},
		{"period too short", Config{Backups: []Remote{{URL: dir, Every: Duration(time.Millisecond)}}}, false},
		{"bad pattern", Config{Backups: []Remote{{URL: dir, Repos: []string{"alice"}}}}, false},
		{"replica without repos", Config{Replicas: []Replica{{URL: dir}}}, false},
		{"replica", Config{Replicas: []Replica{{URL: dir, Repos: []string{"alice/*"}}}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Check()
			if (err == nil) != tc.ok {
				t.Fatalf("Check() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
		})
	}
}

func TestConfigFiles(t *testing.T) {
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "b")
	if err := AddBackup(data, Remote{URL: remote, Every: Duration(time.Hour), AfterCommits: 5}); err != nil {
		t.Fatal(err)
	}
	if err := AddBackup(data, Remote{URL: remote, AfterCommits: 7}); err != nil { // replaces
		t.Fatal(err)
	}
	c, err := LoadConfig(data)
	if err != nil || len(c.Backups) != 1 || c.Backups[0].AfterCommits != 7 {
		t.Fatalf("config %+v, %v", c, err)
	}
	if err := os.WriteFile(filepath.Join(data, ConfigFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(data); err == nil {
		t.Fatal("damaged config accepted")
	}
	if err := os.WriteFile(filepath.Join(data, ConfigFile), []byte(`{"backups":[{"url":"rel"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(data); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("invalid config: %v", err)
	}
	if err := os.WriteFile(filepath.Join(data, ConfigFile), make([]byte, maxConfigBytes+10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(data); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("huge config: %v", err)
	}
}

func TestBackupAndRestoreDirectory(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "backup")
	r := openRunner(t, data)
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	put(t, r.Repos(), "system/accounts", "users/alice", "{}")
	s, _ := r.Repos().Open(ctx, "alice/notes", false)
	if _, err := s.CreateBranch(ctx, "draft", "main"); err != nil {
		t.Fatal(err)
	}
	if err := AddBackup(data, Remote{URL: remote}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs := st.Backups[remote]
	if rs == nil || len(rs.Repos) != 2 {
		t.Fatalf("state %+v", rs)
	}
	for name, s := range rs.Repos {
		if s.LastSuccess.IsZero() || s.LastError != "" || s.Heads["main"] == "" {
			t.Fatalf("%s: %+v", name, s)
		}
	}
	if got := get(t, remote, "alice/notes", "todo"); got != "milk" {
		t.Fatalf("backup holds %q", got)
	}
	// A second write is pushed by the next pass; the unchanged repository keeps its head.
	put(t, r.Repos(), "alice/notes", "todo", "eggs")
	st, err = r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, remote, "alice/notes", "todo"); got != "eggs" {
		t.Fatalf("backup holds %q after the second pass", got)
	}
	// The state survives on disk.
	disk, err := LoadState(data)
	if err != nil || disk.Backups[remote].Repos["alice/notes"].Heads["draft"] == "" {
		t.Fatalf("state on disk %+v, %v", disk.Backups[remote], err)
	}

	fresh := filepath.Join(t.TempDir(), "restored")
	names, err := Restore(ctx, fresh, remote, RestoreOptions{Logger: quiet})
	if err != nil || strings.Join(names, ",") != "alice/notes,system/accounts" {
		t.Fatalf("restore: %v, %v", names, err)
	}
	if got := get(t, filepath.Join(fresh, "repos"), "alice/notes", "todo"); got != "eggs" {
		t.Fatalf("restored %q", got)
	}
	if got := get(t, filepath.Join(fresh, "repos"), "system/accounts", "users/alice"); got != "{}" {
		t.Fatalf("restored accounts %q", got)
	}
	rr, _ := store.OpenRepos(filepath.Join(fresh, "repos"), &store.Options{Logger: quiet})
	defer rr.Close()
	rs2, _ := rr.Open(ctx, "alice/notes", false)
	if bs, err := rs2.Branches(ctx); err != nil || len(bs) != 2 {
		t.Fatalf("restored branches %+v, %v", bs, err)
	}
	// Restoring over live data is refused.
	if _, err := Restore(ctx, fresh, remote, RestoreOptions{Logger: quiet}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("restore into a used directory: %v", err)
	}
}

func TestBackupErrorRecorded(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	r := openRunner(t, data)
	put(t, r.Repos(), "alice/notes", "a", "1")
	// The remote's place for the repository is taken by a file: the push must fail.
	remote := t.TempDir()
	if err := os.MkdirAll(filepath.Join(remote, "alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(remote, "alice", "notes.git"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := AddBackup(data, Remote{URL: remote, Repos: []string{"alice/*"}}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Backups[remote].Repos["alice/notes"]
	if s.LastError == "" || !s.LastSuccess.IsZero() {
		t.Fatalf("state %+v", s)
	}
	// Fixed: the next pass succeeds and clears the error.
	os.Remove(filepath.Join(remote, "alice", "notes.git"))
	st, err = r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Backups[remote].Repos["alice/notes"]; s.LastError != "" || s.LastSuccess.IsZero() {
		t.Fatalf("state after the fix %+v", s)
	}
}

// TestRunAfterCommits: Run pushes once AfterCommits commits were made, long before the period.
func TestRunAfterCommits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "b")
	r, err := Open(data, Options{Logger: quiet, Rescan: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	put(t, r.Repos(), "alice/notes", "n", "0")
	if err := AddBackup(data, Remote{URL: remote, Every: Duration(24 * time.Hour), AfterCommits: 3}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// The first pass runs at once (never passed before).
	waitFor(t, func() bool {
		return exists(filepath.Join(remote, "alice", "notes.git")) && getQuiet(remote, "alice/notes", "n") == "0"
	})
	// Give the watch time to start, as the pass's rescan does, then make 3 commits.
	waitFor(t, func() bool { r.watchMu.Lock(); defer r.watchMu.Unlock(); return r.watching["alice/notes"] })
	for i := 1; i <= 3; i++ {
		put(t, r.Repos(), "alice/notes", "n", string(rune('0'+i)))
	}
	waitFor(t, func() bool { return getQuiet(remote, "alice/notes", "n") == "3" })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func getQuiet(root, name, key string) string {
	repos, err := store.OpenRepos(root, &store.Options{Logger: quiet})
	if err != nil {
		return ""
	}
	defer repos.Close()
	s, err := repos.Open(context.Background(), name, false)
	if err != nil {
		return ""
	}
	v, _, err := s.Get(context.Background(), "", key)
	if err != nil {
		return ""
	}
	return string(v)
}

// waitFor polls cond until it holds; it fails the test after a generous deadline (a hang,
// not a timing assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBackupRemoteReplaced: a directory remote that lost a repository gets it again on the
// next pass, even though nothing changed here.
func TestBackupRemoteReplaced(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	remote := filepath.Join(t.TempDir(), "b")
	r := openRunner(t, data)
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	if err := AddBackup(data, Remote{URL: remote}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(remote); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, remote, "alice/notes", "todo"); got != "milk" {
		t.Fatalf("the replaced remote holds %q", got)
	}
}
