package backup

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storehttp"
)

// TestBackupRestoreHTTP backs alice's repositories up to another Hearth's store appliance
// (its REST and smart-HTTP handler) with her credentials, and restores them from there.
func TestBackupRestoreHTTP(t *testing.T) {
	ctx := context.Background()
	remote := newHTTPRemote(t, &store.Options{Logger: quiet}, nil)
	srv, creds := remote.srv, remote.creds
	badCreds := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(badCreds, []byte("alice:wrong password!\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	data := t.TempDir()
	r := openRunner(t, data)
	put(t, r.Repos(), "alice/notes", "todo", "milk")
	put(t, r.Repos(), "alice/contacts", "objects/family/c.vcf", "card")
	put(t, r.Repos(), "bob/notes", "todo", "not alice's")
	if err := SaveConfig(data, Config{Backups: []Remote{
		{URL: srv.URL, CredentialsFile: creds, Repos: []string{"alice/*"}},
	}}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs := st.Backups[srv.URL]
	if len(rs.Repos) != 2 || rs.Repos["alice/notes"].LastError != "" || rs.Repos["alice/contacts"].LastSuccess.IsZero() {
		t.Fatalf("state %+v", rs)
	}
	// Wrong credentials are an error recorded per repository.
	if err := SaveConfig(data, Config{Backups: []Remote{{URL: srv.URL, CredentialsFile: badCreds, Repos: []string{"alice/*"}}}}); err != nil {
		t.Fatal(err)
	}
	put(t, r.Repos(), "alice/notes", "todo", "eggs")
	st, err = r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Backups[srv.URL].Repos["alice/notes"]; s.LastError == "" || s.LastSuccess.IsZero() {
		t.Fatalf("bad credentials: %+v (want the error and the earlier success)", s)
	}

	fresh := t.TempDir()
	names, err := Restore(ctx, fresh, srv.URL, RestoreOptions{CredentialsFile: creds, Logger: quiet})
	if err != nil || strings.Join(names, ",") != "alice/contacts,alice/notes" {
		t.Fatalf("restore: %v, %v", names, err)
	}
	if got := get(t, filepath.Join(fresh, "repos"), "alice/notes", "todo"); got != "milk" {
		t.Fatalf("restored %q", got)
	}
	if _, err := Restore(ctx, t.TempDir(), srv.URL, RestoreOptions{CredentialsFile: badCreds, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("restore with bad credentials: %v", err)
	}
}

// TestReplicaHTTP syncs alice's contacts with another Hearth's store appliance both ways:
// the repository is created over there on the first sync, and edits on both sides meet.
func TestReplicaHTTP(t *testing.T) {
	ctx := context.Background()
	hr := newHTTPRemote(t, &store.Options{Logger: quiet, MergeRules: MergeRules()}, nil)
	srv, creds, serverRepos := hr.srv, hr.creds, hr.repos
	r := openRunner(t, t.TempDir())
	const repo = "alice/contacts"
	put(t, r.Repos(), repo, "objects/family/here.vcf", "local")
	if _, err := r.SyncRepo(ctx, srv.URL, creds, repo); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	remote, err := serverRepos.Open(ctx, repo, false)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := remote.Get(ctx, "", "objects/family/here.vcf"); err != nil || string(v) != "local" {
		t.Fatalf("over there: %q, %v", v, err)
	}
	// Both sides edit.
	if _, err := remote.Commit(ctx, store.Change{Ops: []store.Op{{Key: "objects/family/there.vcf", Value: []byte("remote")}}}); err != nil {
		t.Fatal(err)
	}
	put(t, r.Repos(), repo, "objects/family/here2.vcf", "local2")
	head, err := r.SyncRepo(ctx, srv.URL, creds, repo)
	if err != nil {
		t.Fatalf("second sync: %v", err)
	}
	if rh, _ := remote.Resolve(ctx, "main"); rh != head {
		t.Fatalf("heads differ: %s %s", rh, head)
	}
	for _, k := range []string{"here.vcf", "here2.vcf", "there.vcf"} {
		if _, _, err := remote.Get(ctx, "", "objects/family/"+k); err != nil {
			t.Fatalf("over there, %s: %v", k, err)
		}
		if got := getRepo(t, r, repo, "objects/family/"+k); got == "" {
			t.Fatalf("here, %s missing", k)
		}
	}
}

func getRepo(t *testing.T, r *Runner, name, key string) string {
	t.Helper()
	s, err := r.Repos().Open(context.Background(), name, false)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Get(context.Background(), "", key)
	if err != nil {
		return ""
	}
	return string(v)
}

// httpRemote is another Hearth's store appliance for the tests: its repositories, with
// user alice (password alicePassword) and a credentials file for her; wrap, if set,
// wraps its handler (to watch the requests).
type httpRemote struct {
	srv   *httptest.Server
	repos *store.Repos
	creds string // "alice:alicePassword"
}

const alicePassword = "alice backup password"

func newHTTPRemote(t *testing.T, opts *store.Options, wrap func(http.Handler) http.Handler) *httpRemote {
	t.Helper()
	repos, err := store.OpenRepos(filepath.Join(t.TempDir(), "repos"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repos.Close() })
	acct, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := acct.Add(context.Background(), "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	var h http.Handler = storehttp.NewHandler(repos, storehttp.Options{Auth: acct, Logger: quiet})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	creds := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(creds, []byte("alice:"+alicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &httpRemote{srv: srv, repos: repos, creds: creds}
}
