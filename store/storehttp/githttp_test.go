package storehttp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/store"
)

// gitTestAuth accepts alice and bob with the password "pw".
type gitTestAuth struct{}

func (gitTestAuth) CheckPassword(ctx context.Context, remote, user, password string) error {
	if (user == "alice" || user == "bob") && password == "pw" {
		return nil
	}
	return errors.New("bad credentials")
}

func (gitTestAuth) CheckToken(ctx context.Context, remote, token string) (string, error) {
	return "", errors.New("no tokens")
}

// gitServer is a handler over git repositories behind a real HTTP server; it records
// the object count of every pack upload-pack sends.
type gitServer struct {
	repos *store.Repos
	srv   *httptest.Server
	home  string // HOME of the git commands

	mu    sync.Mutex
	packs []uint32
}

func newGitServer(t *testing.T) *gitServer {
	t.Helper()
	repos, err := store.OpenRepos(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repos.Close() })
	s := &gitServer{repos: repos, home: t.TempDir()}
	h := NewHandler(repos, Options{Auth: gitTestAuth{}})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			h.ServeHTTP(w, r)
			return
		}
		tw := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tw, r)
		if n, ok := packObjectCount(tw.buf.Bytes()); ok {
			s.mu.Lock()
			s.packs = append(s.packs, n)
			s.mu.Unlock()
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// teeWriter keeps a copy of the answer.
type teeWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.buf.Write(p)
	return t.ResponseWriter.Write(p)
}

// packObjectCount finds the pack in an upload-pack answer (side-band or not) and returns
// the object count in its header.
func packObjectCount(answer []byte) (uint32, bool) {
	var data []byte
	s := pktline.NewScanner(bytes.NewReader(answer))
	for s.Scan() {
		if b := s.Bytes(); len(b) > 0 && b[0] == 1 {
			data = append(data, b[1:]...)
		}
	}
	if data == nil {
		if i := bytes.Index(answer, []byte("PACK")); i >= 0 {
			data = answer[i:]
		}
	}
	if len(data) < 12 || string(data[:4]) != "PACK" {
		return 0, false
	}
	return binary.BigEndian.Uint32(data[8:12]), true
}

// lastPack returns the object count of the last pack sent.
func (s *gitServer) lastPack(t *testing.T) uint32 {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.packs) == 0 {
		t.Fatal("no pack was sent")
	}
	return s.packs[len(s.packs)-1]
}

// url is the git URL of repository name with user's credentials.
func (s *gitServer) url(user, name string) string {
	return strings.Replace(s.srv.URL, "http://", "http://"+user+":pw@", 1) + "/" + name + ".git"
}

// repo opens (creating) a repository directly.
func (s *gitServer) repo(t *testing.T, name string) *store.Repo {
	t.Helper()
	r, err := s.repos.Repo(context.Background(), name, true)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return r
}

// put commits key=value pairs on main directly.
func gitPut(t *testing.T, r *store.Repo, kv ...string) store.Commit {
	t.Helper()
	var ops []store.Op
	for i := 0; i+1 < len(kv); i += 2 {
		ops = append(ops, store.Op{Key: kv[i], Value: []byte(kv[i+1])})
	}
	c, err := r.Commit(context.Background(), store.Change{Author: store.Signature{Name: "store", Email: "store@localhost"}, Message: "put", Ops: ops})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return c
}

// run runs git in dir with a clean environment and returns its combined output.
func (s *gitServer) run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testtool.Path(t, "git", "git"), args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.home,
		"LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Clone User",
		"GIT_AUTHOR_EMAIL=clone@localhost",
		"GIT_COMMITTER_NAME=Clone User",
		"GIT_COMMITTER_EMAIL=clone@localhost",
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// git runs git and fails the test if it fails.
func (s *gitServer) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := s.run(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// gitFails runs git, fails the test if git succeeds, and returns its output.
func (s *gitServer) gitFails(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := s.run(t, dir, args...)
	if err == nil {
		t.Fatalf("git %s succeeded, want failure\n%s", strings.Join(args, " "), out)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// storeValue reads key on main through Repos.Open, as a user of the store would.
func (s *gitServer) storeValue(t *testing.T, name, rev, key string) (string, error) {
	t.Helper()
	st, err := s.repos.Open(context.Background(), name, false)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := st.Get(context.Background(), rev, key)
	return string(v), err
}

func (s *gitServer) head(t *testing.T, name, branch string) store.Hash {
	t.Helper()
	h, err := s.repo(t, name).Resolve(context.Background(), branch)
	if err != nil {
		t.Fatalf("resolve %s: %v", branch, err)
	}
	return h
}

func TestGitCloneFetchPush(t *testing.T) {
	testtool.Path(t, "git", "git")
	s := newGitServer(t)
	repo := s.repo(t, "alice/notes")
	gitPut(t, repo, "readme.txt", "hello\n", "notes/a.txt", "first note\n")

	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	s.git(t, work, "clone", s.url("alice", "alice/notes"), clone)
	if got := readFile(t, filepath.Join(clone, "readme.txt")); got != "hello\n" {
		t.Errorf("readme.txt = %q", got)
	}
	if got := readFile(t, filepath.Join(clone, "notes/a.txt")); got != "first note\n" {
		t.Errorf("notes/a.txt = %q", got)
	}
	if got := strings.TrimSpace(s.git(t, clone, "rev-parse", "--abbrev-ref", "HEAD")); got != "main" {
		t.Errorf("clone is on %q, want main", got)
	}

	// Push a commit made in the clone.
	writeFile(t, filepath.Join(clone, "notes/b.txt"), "from git\n")
	s.git(t, clone, "add", ".")
	s.git(t, clone, "commit", "-q", "-m", "add b")
	s.git(t, clone, "push", "origin", "main")
	if v, err := s.storeValue(t, "alice/notes", "main", "notes/b.txt"); err != nil || v != "from git\n" {
		t.Errorf("store notes/b.txt = %q, %v", v, err)
	}
	if local := strings.TrimSpace(s.git(t, clone, "rev-parse", "HEAD")); string(s.head(t, "alice/notes", "main")) != local {
		t.Errorf("store main is not the pushed commit %s", local)
	}

	// Incremental fetch: two store commits are 8 new objects (commit, root tree, notes
	// tree, blob each), and only they are sent.
	gitPut(t, repo, "notes/c.txt", "third\n")
	gitPut(t, repo, "notes/d.txt", "fourth\n")
	s.git(t, clone, "fetch", "origin")
	if n := s.lastPack(t); n != 8 {
		t.Errorf("incremental fetch sent %d objects, want 8", n)
	}
	s.git(t, clone, "merge", "-q", "--ff-only", "origin/main")
	if got := readFile(t, filepath.Join(clone, "notes/d.txt")); got != "fourth\n" {
		t.Errorf("after fetch notes/d.txt = %q", got)
	}

	// Many commits on each side: several negotiation rounds, gzip-compressed requests.
	for i := range 40 {
		writeFile(t, filepath.Join(clone, "local", fmt.Sprint(i)), fmt.Sprintln("local", i))
		s.git(t, clone, "add", ".")
		s.git(t, clone, "commit", "-q", "-m", fmt.Sprint("local ", i))
	}
	gitPut(t, repo, "notes/e.txt", "fifth\n")
	s.git(t, clone, "fetch", "origin")
	if n := s.lastPack(t); n != 4 {
		t.Errorf("fetch with 40 local commits sent %d objects, want 4", n)
	}

	// Non-fast-forward: the clone's main does not contain the store's latest commit.
	before := s.head(t, "alice/notes", "main")
	out := s.gitFails(t, clone, "push", "origin", "main")
	if !strings.Contains(out, "rejected") {
		t.Errorf("push behind the store: %s", out)
	}
	out = s.gitFails(t, clone, "push", "--force", "origin", "main")
	if !strings.Contains(out, "non-fast-forward") {
		t.Errorf("forced non-fast-forward push: %s", out)
	}
	if after := s.head(t, "alice/notes", "main"); after != before {
		t.Errorf("store main moved from %s to %s on a rejected push", before, after)
	}
	if _, err := s.storeValue(t, "alice/notes", "main", "local/0"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rejected push's key is in the store: %v", err)
	}
	// Merging first makes the push a fast-forward (a merge commit with two parents).
	s.git(t, clone, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
	s.git(t, clone, "push", "origin", "main")
	if v, err := s.storeValue(t, "alice/notes", "main", "local/39"); err != nil || v != "local 39\n" {
		t.Errorf("store local/39 = %q, %v", v, err)
	}
	if v, err := s.storeValue(t, "alice/notes", "main", "notes/e.txt"); err != nil || v != "fifth\n" {
		t.Errorf("store notes/e.txt = %q, %v", v, err)
	}

	// A new branch, then its deletion; main cannot be deleted; tags are refused.
	s.git(t, clone, "push", "origin", "HEAD:refs/heads/feature/x")
	if h := s.head(t, "alice/notes", "feature/x"); h != s.head(t, "alice/notes", "main") {
		t.Errorf("feature/x = %s", h)
	}
	if out := s.git(t, clone, "ls-remote", "origin"); !strings.Contains(out, "refs/heads/feature/x") || !strings.Contains(out, "HEAD") {
		t.Errorf("ls-remote:\n%s", out)
	}
	s.git(t, clone, "push", "origin", "--delete", "feature/x")
	if _, err := s.repo(t, "alice/notes").Resolve(context.Background(), "feature/x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("feature/x after delete: %v", err)
	}
	if out := s.gitFails(t, clone, "push", "origin", "--delete", "main"); !strings.Contains(out, "default branch") {
		t.Errorf("deleting main: %s", out)
	}
	s.git(t, clone, "tag", "v1")
	if out := s.gitFails(t, clone, "push", "origin", "v1"); !strings.Contains(out, "only branches") {
		t.Errorf("pushing a tag: %s", out)
	}

	// A second clone sees everything; the server repository is clean for git fsck.
	clone2 := filepath.Join(work, "clone2")
	s.git(t, work, "clone", "-q", s.url("alice", "alice/notes"), clone2)
	if a, b := s.git(t, clone, "rev-parse", "HEAD"), s.git(t, clone2, "rev-parse", "HEAD"); a != b {
		t.Errorf("second clone at %s, first at %s", b, a)
	}
	s.git(t, work, "--git-dir", s.repos.Path("alice/notes"), "fsck", "--strict", "--no-dangling")
}

func TestGitOtherUsersRepo(t *testing.T) {
	testtool.Path(t, "git", "git")
	s := newGitServer(t)
	gitPut(t, s.repo(t, "bob/notes"), "secret", "bob's\n")
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	s.git(t, work, "init", "-q", "-b", "main", clone)
	writeFile(t, filepath.Join(clone, "x"), "x\n")
	s.git(t, clone, "add", ".")
	s.git(t, clone, "commit", "-q", "-m", "x")

	for _, name := range []string{"bob/notes", "bob/new"} {
		out := s.gitFails(t, clone, "push", s.url("alice", name), "main:refs/heads/alice")
		if !strings.Contains(out, "not found") {
			t.Errorf("push to %s: %s", name, out)
		}
		out = s.gitFails(t, work, "clone", s.url("alice", name), filepath.Join(work, "stolen"))
		if !strings.Contains(out, "not found") {
			t.Errorf("clone of %s: %s", name, out)
		}
	}
	if _, err := s.repo(t, "bob/notes").Resolve(context.Background(), "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice's push reached bob's repository: %v", err)
	}
	if names, _ := s.repos.List(context.Background()); slices.Contains(names, "bob/new") {
		t.Errorf("alice's push created bob/new: %v", names)
	}
	// A wrong password is refused too.
	bad := strings.Replace(s.url("alice", "alice/notes"), "alice:pw@", "alice:nope@", 1)
	if out := s.gitFails(t, work, "ls-remote", bad); !strings.Contains(out, "Authentication failed") {
		t.Errorf("ls-remote with a bad password: %s", out)
	}
	// Pushing a new branch to a new repository of one's own creates it.
	s.git(t, clone, "push", s.url("alice", "alice/fresh"), "main:refs/heads/imported")
	if v, err := s.storeValue(t, "alice/fresh", "imported", "x"); err != nil || v != "x\n" {
		t.Errorf("alice/fresh imported:x = %q, %v", v, err)
	}
}

func TestGitLargePush(t *testing.T) {
	testtool.Path(t, "git", "git")
	s := newGitServer(t)
	s.repo(t, "alice/big")
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	s.git(t, work, "clone", "-q", s.url("alice", "alice/big"), clone)
	// Over http.postBuffer (1 MiB): the client probes, then streams the pack chunked.
	big := make([]byte, 3<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(clone, "blob.bin"), string(big))
	s.git(t, clone, "add", ".")
	s.git(t, clone, "commit", "-q", "-m", "big")
	s.git(t, clone, "push", "origin", "main")
	if v, err := s.storeValue(t, "alice/big", "main", "blob.bin"); err != nil || v != string(big) {
		t.Fatalf("store blob.bin: %d bytes, %v", len(v), err)
	}
	// And it comes back through a fetch (the pack is more than one side-band packet).
	clone2 := filepath.Join(work, "clone2")
	s.git(t, work, "clone", "-q", s.url("alice", "alice/big"), clone2)
	if got := readFile(t, filepath.Join(clone2, "blob.bin")); got != string(big) {
		t.Errorf("cloned blob.bin differs (%d bytes)", len(got))
	}
	s.git(t, work, "--git-dir", s.repos.Path("alice/big"), "fsck", "--strict", "--no-dangling")
}

// pkt encodes pkt-lines; "" is a flush-pkt.
func pkt(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			b.WriteString("0000")
			continue
		}
		fmt.Fprintf(&b, "%04x%s", len(l)+4, l)
	}
	return b.String()
}

// pktLines decodes pkt-lines, "" for a flush; side-band packets keep their channel byte.
func pktLines(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	s := pktline.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		out = append(out, string(s.Bytes()))
	}
	var el *pktline.ErrorLine
	if err := s.Err(); errors.As(err, &el) {
		out = append(out, "ERR "+el.Text+"\n")
	} else if err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return out
}

// post sends a git request to the server as alice.
func (s *gitServer) post(t *testing.T, path, ctype, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", "pw")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.do(t, req)
}

func (s *gitServer) get(t *testing.T, path string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", "pw")
	return s.do(t, req)
}

func (s *gitServer) do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

const (
	ctUpload  = "application/x-git-upload-pack-request"
	ctReceive = "application/x-git-receive-pack-request"
)

func TestGitEndpoints(t *testing.T) {
	s := newGitServer(t)
	s.repo(t, "alice/notes")

	status, hd, body := s.get(t, "/alice/notes.git/info/refs?service=git-upload-pack")
	if status != http.StatusOK || hd.Get("Content-Type") != "application/x-git-upload-pack-advertisement" || hd.Get("Cache-Control") != "no-cache" {
		t.Fatalf("upload-pack advertisement: %d %v", status, hd)
	}
	lines := pktLines(t, body)
	if len(lines) < 4 || lines[0] != "# service=git-upload-pack\n" || lines[1] != "" || lines[len(lines)-1] != "" {
		t.Fatalf("upload-pack advertisement lines %q", lines)
	}
	first := lines[2]
	for _, want := range []string{" HEAD\x00", "multi_ack_detailed", "side-band-64k", "ofs-delta", "symref=HEAD:refs/heads/main", "agent="} {
		if !strings.Contains(first, want) {
			t.Errorf("first line %q lacks %q", first, want)
		}
	}
	for _, not := range []string{"shallow", "thin-pack", "no-done"} {
		if strings.Contains(first, not) {
			t.Errorf("first line %q advertises %q", first, not)
		}
	}
	if lines[3] != string(s.head(t, "alice/notes", "main"))+" refs/heads/main\n" {
		t.Errorf("second line %q", lines[3])
	}

	status, hd, body = s.get(t, "/alice/notes.git/info/refs?service=git-receive-pack")
	if status != http.StatusOK || hd.Get("Content-Type") != "application/x-git-receive-pack-advertisement" {
		t.Fatalf("receive-pack advertisement: %d %v", status, hd)
	}
	lines = pktLines(t, body)
	if len(lines) < 3 || !strings.Contains(lines[2], " refs/heads/main\x00") || !strings.Contains(lines[2], "report-status") || !strings.Contains(lines[2], "delete-refs") || strings.Contains(string(body), "HEAD") {
		t.Errorf("receive-pack advertisement %q", lines)
	}

	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"dumb info/refs", "GET", "/alice/notes.git/info/refs", "", "", http.StatusForbidden},
		{"unknown service", "GET", "/alice/notes.git/info/refs?service=git-archive", "", "", http.StatusForbidden},
		{"dumb object", "GET", "/alice/notes.git/HEAD", "", "", http.StatusNotFound},
		{"POST info/refs", "POST", "/alice/notes.git/info/refs?service=git-upload-pack", "", "", http.StatusMethodNotAllowed},
		{"GET upload-pack", "GET", "/alice/notes.git/git-upload-pack", "", "", http.StatusMethodNotAllowed},
		{"wrong content type", "POST", "/alice/notes.git/git-upload-pack", "text/plain", pkt("want "+strings.Repeat("a", 40)+"\n", "", "done\n"), http.StatusUnsupportedMediaType},
		{"garbage upload-pack", "POST", "/alice/notes.git/git-upload-pack", ctUpload, "\x00\x01garbage that is not pkt-lines", http.StatusBadRequest},
		{"empty upload-pack", "POST", "/alice/notes.git/git-upload-pack", ctUpload, "", http.StatusBadRequest},
		{"truncated upload-pack", "POST", "/alice/notes.git/git-upload-pack", ctUpload, "0032want 12", http.StatusBadRequest},
		{"bad have", "POST", "/alice/notes.git/git-upload-pack", ctUpload, pkt("want "+string(s.head(t, "alice/notes", "main"))+"\n", "", "have xyz\n", "done\n"), http.StatusBadRequest},
		{"garbage receive-pack", "POST", "/alice/notes.git/git-receive-pack", ctReceive, "garbage", http.StatusBadRequest},
		{"receive-pack without caps", "POST", "/alice/notes.git/git-receive-pack", ctReceive, pkt("x y z\n", ""), http.StatusBadRequest},
		{"invalid command", "POST", "/alice/notes.git/git-receive-pack", ctReceive, pkt(string(store.Missing)+" "+string(store.Missing)+" refs/heads/x\x00report-status", ""), http.StatusBadRequest},
		{"receive-pack content type", "POST", "/alice/notes.git/git-receive-pack", ctUpload, pkt(""), http.StatusUnsupportedMediaType},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, s.srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("alice", "pw")
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		if status, _, body := s.do(t, req); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
		}
	}
	status, _, body = s.post(t, "/alice/notes.git/git-upload-pack", ctUpload, "not gzip", "Content-Encoding", "gzip")
	if status != http.StatusBadRequest {
		t.Errorf("bad gzip: %d %s", status, body)
	}
	// A gzip bomb: over the limit once decompressed.
	head := string(s.head(t, "alice/notes", "main"))
	bomb := pkt("want "+head+" multi_ack_detailed\n", "") + strings.Repeat(pkt("have "+head+"\n"), maxUploadRequest/50+1) + pkt("done\n")
	status, _, body = s.post(t, "/alice/notes.git/git-upload-pack", ctUpload, gzipped(t, bomb), "Content-Encoding", "gzip")
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip bomb: %d %.100s", status, body)
	}
	// The server is fine afterwards.
	if status, _, _ := s.get(t, "/alice/notes.git/info/refs?service=git-upload-pack"); status != http.StatusOK {
		t.Errorf("advertisement after bad requests: %d", status)
	}
	// Other stores answer 501 (see handler_test); other users' repositories 404.
	if status, _, _ := s.get(t, "/bob/notes.git/info/refs?service=git-upload-pack"); status != http.StatusNotFound {
		t.Errorf("bob's repository: %d", status)
	}
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestGitUploadPackNegotiation(t *testing.T) {
	s := newGitServer(t)
	repo := s.repo(t, "alice/notes")
	h1 := string(gitPut(t, repo, "a", "1").ID)
	h2 := string(gitPut(t, repo, "dir/b", "2").ID) // commit, root tree, dir tree, blob
	unknown := strings.Repeat("ab", 20)

	upload := func(body string, header ...string) []string {
		t.Helper()
		status, hd, b := s.post(t, "/alice/notes.git/git-upload-pack", ctUpload, body, header...)
		if status != http.StatusOK || hd.Get("Content-Type") != "application/x-git-upload-pack-result" {
			t.Fatalf("upload-pack: %d %v %q", status, hd, b)
		}
		return pktLines(t, b)
	}
	wants := pkt("want "+h2+" multi_ack_detailed side-band-64k ofs-delta agent=git/test\n", "")
	for _, tc := range []struct {
		name string
		body string
		want []string
	}{
		{"common then ready", wants + pkt("have "+h1+"\n", ""), []string{"ACK " + h1 + " common\n", "ACK " + h1 + " ready\n", "NAK\n"}},
		{"nothing common", wants + pkt("have "+unknown+"\n", ""), []string{"NAK\n"}},
		{"no haves", wants + pkt(""), []string{"NAK\n"}},
		{"end of request is a flush", wants, []string{"NAK\n"}},
		{"ready on an unknown have", wants + pkt("have "+h1+"\n", "have "+unknown+"\n", ""), []string{"ACK " + h1 + " common\n", "ACK " + unknown + " ready\n", "NAK\n"}},
		{"want already had", wants + pkt("have "+h2+"\n", ""), []string{"ACK " + h2 + " common\n", "ACK " + h2 + " ready\n", "NAK\n"}},
		{"multi_ack", pkt("want "+h2+" multi_ack\n", "", "have "+h1+"\n", "have "+unknown+"\n", ""), []string{"ACK " + h1 + " continue\n", "ACK " + unknown + " continue\n", "NAK\n"}},
		{"single ack", pkt("want "+h2+"\n", "", "have "+unknown+"\n", "have "+h1+"\n", ""), []string{"ACK " + h1 + "\n"}},
		{"shallow", pkt("want "+h2+" shallow\n", "deepen 1\n", ""), []string{"ERR upload-pack: shallow clones and fetches are not supported by this server\n"}},
		{"not our ref", pkt("want "+unknown+" multi_ack_detailed\n", "", "done\n"), []string{"ERR upload-pack: not our ref " + unknown + "\n"}},
	} {
		if got := upload(tc.body); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}

	// done: the final ACK, then the pack of what h1 lacks, in side-band channel 1; the
	// request gzip-encoded as git sends large ones.
	got := upload(gzipped(t, wants+pkt("have "+h1+"\n", "done\n")), "Content-Encoding", "gzip")
	if len(got) < 3 || got[0] != "ACK "+h1+" common\n" || got[1] != "ACK "+h1+"\n" || got[len(got)-1] != "" {
		t.Fatalf("done: %q", got)
	}
	var pack []byte
	for _, l := range got[2 : len(got)-1] {
		switch l[0] {
		case 1:
			pack = append(pack, l[1:]...)
		case 2: // progress
		default:
			t.Fatalf("unexpected packet %q", l)
		}
	}
	checkPack(t, pack, 4)

	// Without side-band the pack follows the ACK lines raw; a fresh clone (no haves)
	// gets everything: 2 store commits plus the initial one, 3 root trees, 1 dir tree,
	// 2 blobs.
	status, _, b := s.post(t, "/alice/notes.git/git-upload-pack", ctUpload, pkt("want "+h2+"\n", "", "done\n"))
	if status != http.StatusOK || !bytes.HasPrefix(b, []byte(pkt("NAK\n"))) {
		t.Fatalf("no side-band: %d %q", status, b)
	}
	checkPack(t, b[len(pkt("NAK\n")):], 9)
}

// checkPack checks a pack's header count and trailing checksum.
func checkPack(t *testing.T, pack []byte, objects uint32) {
	t.Helper()
	if len(pack) < 32 || string(pack[:4]) != "PACK" {
		t.Fatalf("not a pack: %q", pack)
	}
	if n := binary.BigEndian.Uint32(pack[8:12]); n != objects {
		t.Errorf("pack has %d objects, want %d", n, objects)
	}
	if sum := sha1.Sum(pack[:len(pack)-20]); !bytes.Equal(sum[:], pack[len(pack)-20:]) {
		t.Errorf("pack checksum is wrong")
	}
}

// encodePack builds a pack of the given objects.
func encodePack(t *testing.T, objs ...plumbing.EncodedObject) string {
	t.Helper()
	sto := memory.NewStorage()
	var hashes []plumbing.Hash
	for _, o := range objs {
		h, err := sto.SetEncodedObject(o)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	var b bytes.Buffer
	if _, err := packfile.NewEncoder(&b, sto, false).Encode(hashes, 0); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestGitReceivePackCommands(t *testing.T) {
	s := newGitServer(t)
	repo := s.repo(t, "alice/notes")
	h1 := string(gitPut(t, repo, "a", "1").ID)
	h2 := string(gitPut(t, repo, "a", "2").ID)
	if _, err := repo.CreateBranch(context.Background(), "old", h1); err != nil {
		t.Fatal(err)
	}
	zero := string(store.Missing)

	// A commit whose tree the pack lacks.
	broken := &object.Commit{
		Author:    object.Signature{Name: "x", Email: "x@x", When: time.Unix(1700000000, 0)},
		Committer: object.Signature{Name: "x", Email: "x@x", When: time.Unix(1700000000, 0)},
		Message:   "broken\n",
		TreeHash:  plumbing.NewHash(strings.Repeat("12", 20)),
	}
	mo := &plumbing.MemoryObject{}
	if err := broken.Encode(mo); err != nil {
		t.Fatal(err)
	}
	emptyPack := encodePack(t)

	receive := func(body string) []string {
		t.Helper()
		status, hd, b := s.post(t, "/alice/notes.git/git-receive-pack", ctReceive, body)
		if status != http.StatusOK || hd.Get("Content-Type") != "application/x-git-receive-pack-result" {
			t.Fatalf("receive-pack: %d %v %q", status, hd, b)
		}
		return pktLines(t, b)
	}
	for _, tc := range []struct {
		name string
		body string
		want []string
	}{
		{"probe", pkt(""), nil},
		{"tag", pkt(zero+" "+h2+" refs/tags/v1\x00report-status", "") + emptyPack,
			[]string{"unpack ok\n", "ng refs/tags/v1 only branches (refs/heads/*) can be pushed to this server\n", ""}},
		{"stale old", pkt(h2+" "+zero+" refs/heads/old\x00report-status delete-refs", ""),
			[]string{"unpack ok\n", "ng refs/heads/old fetch first\n", ""}},
		{"non-fast-forward", pkt(h2+" "+h1+" refs/heads/main\x00report-status", "") + emptyPack,
			[]string{"unpack ok\n", "ng refs/heads/main non-fast-forward\n", ""}},
		{"missing commit", pkt(zero+" "+strings.Repeat("34", 20)+" refs/heads/new\x00report-status", "") + emptyPack,
			[]string{"unpack ok\n", "ng refs/heads/new missing necessary objects\n", ""}},
		{"missing tree", pkt(zero+" "+mo.Hash().String()+" refs/heads/new\x00report-status", "") + encodePack(t, mo),
			[]string{"unpack ok\n", "ng refs/heads/new missing necessary objects\n", ""}},
		{"bad pack", pkt(zero+" "+h2+" refs/heads/new\x00report-status", "") + "PACK garbage",
			[]string{"ok"}}, // checked below: "unpack <reason>", "ng ... unpacker error"
		{"several", pkt(zero+" "+h2+" refs/heads/new\x00report-status", h1+" "+zero+" refs/heads/old\n", zero+" "+h1+" refs/heads/bad..name\n", zero+" "+h1+" refs/heads/new\n", "") + emptyPack,
			[]string{"unpack ok\n", "ok refs/heads/new\n", "ok refs/heads/old\n", "ng refs/heads/bad..name invalid branch name\n", "ng refs/heads/new duplicate ref update\n", ""}},
		{"delete main", pkt(h2+" "+zero+" refs/heads/main\x00report-status delete-refs", ""),
			[]string{"unpack ok\n", "ng refs/heads/main delete branch \"main\": invalid argument: it is the default branch\n", ""}},
	} {
		got := receive(tc.body)
		if tc.name == "bad pack" {
			if len(got) != 3 || !strings.HasPrefix(got[0], "unpack ") || got[0] == "unpack ok\n" || got[1] != "ng refs/heads/new unpacker error\n" {
				t.Errorf("%s: %q", tc.name, got)
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	branches, err := repo.Branches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Branch{{Name: "main", Head: store.Hash(h2)}, {Name: "new", Head: store.Hash(h2)}}; !slices.Equal(branches, want) {
		t.Errorf("branches %v, want %v", branches, want)
	}

	// With side-band-64k the report travels in channel 1, then a flush.
	got := receive(pkt(zero+" "+h1+" refs/heads/band\x00report-status side-band-64k", "") + emptyPack)
	if len(got) != 2 || got[1] != "" || got[0][0] != 1 {
		t.Fatalf("side-band report %q", got)
	}
	if inner := pktLines(t, []byte(got[0][1:])); !slices.Equal(inner, []string{"unpack ok\n", "ok refs/heads/band\n", ""}) {
		t.Errorf("side-band report %q", inner)
	}
	// Without report-status the answer is empty.
	if got := receive(pkt(zero+" "+h1+" refs/heads/quiet\x00", "") + emptyPack); len(got) != 0 {
		t.Errorf("no report-status: %q", got)
	}
	if h := s.head(t, "alice/notes", "quiet"); string(h) != h1 {
		t.Errorf("quiet = %s", h)
	}
}

func TestGitShallowRefused(t *testing.T) {
	testtool.Path(t, "git", "git")
	s := newGitServer(t)
	gitPut(t, s.repo(t, "alice/notes"), "a", "1")
	work := t.TempDir()
	out := s.gitFails(t, work, "clone", "--depth", "1", s.url("alice", "alice/notes"), filepath.Join(work, "shallow"))
	if !strings.Contains(out, "shallow") {
		t.Errorf("shallow clone: %s", out)
	}
}
