package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// benchCommits is the history the benchmark's repository has.
const benchCommits = 10000

var (
	benchOnce  sync.Once
	benchRepos *store.Repos
	benchErr   error
)

// benchRepo makes (with git fast-import, as the store's own writes fsync every commit and
// take minutes for this many), once per run, alice's contacts repository with benchCommits commits:
// address book "family" changed by 90 % of them (a contact added or edited), "work" by
// the others but one, and "old" only by the very first.
func benchRepo(b *testing.B) *store.Repos {
	benchOnce.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			benchErr = err
			return
		}
		benchRepos, benchErr = store.OpenRepos(filepath.Join(dir, "repos"), &store.Options{Logger: quiet})
		if benchErr != nil {
			return
		}
		benchErr = fastImport(benchRepos.Path("alice/contacts"))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchRepos
}

var benchDir string

func mkdirTemp() (string, error) {
	var err error
	benchDir, err = os.MkdirTemp("", "dashboard-bench")
	return benchDir, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRepos != nil {
		benchRepos.Close()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// BenchmarkPages measures the server time of a history page (25 commits, their
// changes, the first items' names) in a repository of 10 000 commits: an address book
// changed by most commits, one changed by every tenth, and one changed only by the first
// (the page looks through HistoryScan commits, finds none, and links on).
// It also times a commit's diff view and the data page (which looks through the last
// deletedScan commits for deleted address books).
func BenchmarkPages(b *testing.B) {
	repos := benchRepo(b)
	ctx := context.Background()
	as, err := repos.Open(ctx, signpost.AccountsRepo, true)
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Options{Repos: repos, Accounts: signpost.NewAccounts(as, signpost.AccountsOptions{Logger: quiet}), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	sess := h.sessions.create("alice")
	// The store builds its history index on first use: not part of a page load.
	if _, err := as.Log(ctx, "", 1); err != nil {
		b.Fatal(err)
	}
	st, err := repos.Open(ctx, "alice/contacts", false)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Log(ctx, "", 0); err != nil {
		b.Fatal(err)
	}
	log, err := st.Log(ctx, "", 2)
	if err != nil {
		b.Fatal(err)
	}
	pages := []struct{ name, path, want string }{
		{"history/family", "/history/contacts/family", "Older changes"},
		{"history/work", "/history/contacts/work", "Older changes"},
		{"history/old", "/history/contacts/old", "Older changes"},
		{"commit", "/history/contacts/family/" + string(log[1].ID), "Person"},
		{"data", "/data", "/history/contacts/old"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, p.path, nil)
				r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.id})
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), p.want) {
					b.Fatalf("%d %s", w.Code, w.Body.String())
				}
			}
		})
	}
}

// fastImport writes the benchmark's history into a new bare git repository at dir.
func fastImport(dir string) error {
	if out, err := exec.Command("git", "init", "-q", "--bare", "-b", "main", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
	var in bytes.Buffer
	blob := func(path, data string) {
		fmt.Fprintf(&in, "M 100644 inline %s\ndata %d\n%s\n", path, len(data), data)
	}
	meta := `{"displayname":"x","created":"2026-01-01T00:00:00Z"}`
	for i := 0; i < benchCommits; i++ {
		msg := "PUT"
		fmt.Fprintf(&in, "commit refs/heads/main\ncommitter alice <alice@hearth.invalid> %d +0000\ndata %d\n%s\n", 1767225600+i, len(msg), msg)
		if i == 0 {
			for _, b := range []string{"family", "work", "old"} {
				blob("collections/"+b+".json", meta)
			}
			blob("objects/old/o.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:o\r\nFN:Old\r\nEND:VCARD\r\n")
			continue
		}
		book := "family"
		if i%10 == 0 {
			book = "work"
		}
		n := i % 500
		blob(fmt.Sprintf("objects/%s/%d.vcf", book, n), fmt.Sprintf("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:%s-%d\r\nFN:Person %d\r\nNOTE:edit %d\r\nEND:VCARD\r\n", book, n, n, i))
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, out)
	}
	return nil
}
