package contacts

import (
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
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// counter counts requests by method (and REPORT kind).
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.Method]++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (c *counter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// gitServer serves the contacts handler over a git-backed store in a temporary
// directory, with user alice.
func gitServer(t *testing.T) (*httptest.Server, *storedav.Handler, *counter) {
	t.Helper()
	ctx := context.Background()
	repos, err := store.OpenRepos(filepath.Join(t.TempDir(), "repos"), &store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repos.Close() })
	acct, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := acct.Add(ctx, "alice", pw); err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Options{Repos: repos, Accounts: acct, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cnt := &counter{n: map[string]int{}}
	srv := httptest.NewServer(cnt.wrap(h))
	t.Cleanup(srv.Close)
	return srv, h, cnt
}

func genCard(i int, fn string) string {
	return fmt.Sprintf("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:person-%04d\r\nFN:%s\r\nN:%s;;;;\r\nEMAIL;TYPE=INTERNET:p%d@example.org\r\nTEL;TYPE=CELL:+1555%07d\r\nEND:VCARD\r\n", i, fn, fn, i, i)
}

func runTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestVdirsyncerKhard syncs 500 contacts both ways with vdirsyncer, edits both sides,
// syncs again, checks that a further sync transfers nothing, and reads the result with
// khard.
func TestVdirsyncerKhard(t *testing.T) {
	vds := testtool.Path(t, "/usr/bin/vdirsyncer", "vdirsyncer")
	khard := testtool.Path(t, "/usr/bin/khard", "khard")
	srv, h, cnt := gitServer(t)
	ctx := storedav.WithUser(context.Background(), "alice")
	c := h.Collections()
	if err := c.Create(ctx, "alice", "book", storedav.Meta{DisplayName: "Book"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	if err := os.MkdirAll(local, 0o700); err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		if err := os.WriteFile(filepath.Join(local, fmt.Sprintf("person-%04d.vcf", i)), []byte(genCard(i, fmt.Sprintf("Person %d", i))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "config")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`[general]
status_path = "%s/status/"

[pair contacts]
a = "local"
b = "remote"
collections = null
conflict_resolution = "a wins"

[storage local]
type = "filesystem"
path = "%s/"
fileext = ".vcf"

[storage remote]
type = "carddav"
url = "%s/alice/contacts/book/"
username = "alice"
password = "%s"
`, dir, local, srv.URL, pw)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"VDIRSYNCER_CONFIG=" + conf, "HOME=" + dir}
	runTool(t, env, vds, "discover", "contacts")
	start := time.Now()
	runTool(t, env, vds, "sync")
	t.Logf("vdirsyncer uploaded %d contacts in %v", n, time.Since(start).Round(time.Millisecond))
	objs, _, err := c.Objects(ctx, "alice", "book")
	if err != nil || len(objs) != n {
		t.Fatalf("server has %d objects, %v", len(objs), err)
	}
	// The server keeps the exact bytes.
	b, _, err := c.Object(ctx, "alice", "book", objs[7].Name)
	if err != nil || !strings.HasPrefix(string(b), "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:person-") {
		t.Fatalf("stored bytes %q %v", b, err)
	}

	// Edits on both sides: 5 local edits, 2 local deletions; 5 server edits, 2 server
	// deletions, 1 server addition.
	for i := 0; i < 5; i++ {
		p := filepath.Join(local, fmt.Sprintf("person-%04d.vcf", i))
		if err := os.WriteFile(p, []byte(genCard(i, fmt.Sprintf("Person %d edited-local", i))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < 12; i++ {
		if err := os.Remove(filepath.Join(local, fmt.Sprintf("person-%04d.vcf", i))); err != nil {
			t.Fatal(err)
		}
	}
	byUID := map[string]string{}
	for _, o := range objs {
		b, _, err := c.Object(ctx, "alice", "book", o.Name)
		if err != nil {
			t.Fatal(err)
		}
		card, _ := Parse(b)
		byUID[card.Value("UID")] = o.Name
	}
	for i := 20; i < 25; i++ {
		name := byUID[fmt.Sprintf("person-%04d", i)]
		if _, err := c.Put(ctx, "alice", "book", name, []byte(genCard(i, fmt.Sprintf("Person %d edited-server", i))), storedav.Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 30; i < 32; i++ {
		if err := c.DeleteObject(ctx, "alice", "book", byUID[fmt.Sprintf("person-%04d", i)], ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, "alice", "book", "new-one.vcf", []byte(genCard(9999, "Newcomer Server")), storedav.Conditions{}); err != nil {
		t.Fatal(err)
	}
	runTool(t, env, vds, "sync")
	objs, _, err = c.Objects(ctx, "alice", "book")
	if err != nil || len(objs) != n-4+1 {
		t.Fatalf("server has %d objects after two-way sync, want %d (%v)", len(objs), n-3, err)
	}
	b, _, _ = c.Object(ctx, "alice", "book", byUID["person-0003"])
	if !strings.Contains(string(b), "Person 3 edited-local") {
		t.Fatalf("local edit not on the server: %q", b)
	}
	// Server-side edits arrive with the exact bytes the server keeps.
	found := false
	files, _ := filepath.Glob(filepath.Join(local, "*.vcf"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && string(b) == genCard(21, "Person 21 edited-server") {
			found = true
		}
	}
	if !found {
		t.Fatal("server edit of person 21 not downloaded byte for byte")
	}
	if len(files) != n-4+1 {
		t.Fatalf("local has %d files, want %d", len(files), n-3)
	}
	// The no-op sync transfers nothing: no GET, PUT, DELETE or multiget.
	cnt.reset()
	runTool(t, env, vds, "sync")
	got := cnt.reset()
	if got["GET"]+got["PUT"]+got["DELETE"]+got["REPORT"] != 0 {
		t.Fatalf("no-op sync made requests %v", got)
	}
	t.Logf("no-op sync requests: %v", got)

	// khard reads what vdirsyncer synced.
	kconf := filepath.Join(dir, "khard.conf")
	err = os.WriteFile(kconf, []byte(fmt.Sprintf(`[addressbooks]
[[book]]
path = %s

[general]
debug = no
default_action = list
editor = /bin/true
merge_editor = /bin/true
`, local)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out := runTool(t, []string{"HOME=" + dir}, khard, "-c", kconf, "list", "edited")
	if strings.Count(out, "edited-server") != 5 || strings.Count(out, "edited-local") != 5 {
		t.Fatalf("khard list:\n%s", out)
	}
	out = runTool(t, []string{"HOME=" + dir}, khard, "-c", kconf, "list", "Newcomer")
	if !strings.Contains(out, "Newcomer Server") {
		t.Fatalf("khard list Newcomer:\n%s", out)
	}
}
