package storehttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
)

// testAuth accepts user U with password "U-pw" and token "token-U" for the users it knows.
type testAuth struct{ users []string }

var errBadCredentials = errors.New("bad credentials")

func (a testAuth) known(user string) bool {
	for _, u := range a.users {
		if u == user {
			return true
		}
	}
	return false
}

func (a testAuth) CheckPassword(ctx context.Context, remote, user, password string) error {
	if a.known(user) && password == user+"-pw" {
		return nil
	}
	return errBadCredentials
}

func (a testAuth) CheckToken(ctx context.Context, remote, token string) (string, error) {
	user, ok := strings.CutPrefix(token, "token-")
	if ok && a.known(user) {
		return user, nil
	}
	return "", errBadCredentials
}

var users = testAuth{users: []string{"alice", "bob", "storetest"}}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// failingRepos is memstore repositories, except that "alice/broken" fails with an
// unexpected error.
type failingRepos struct{ *memstore.Repos }

var errDiskOnFire = errors.New("disk on fire")

func (f failingRepos) Open(ctx context.Context, name string, create bool) (store.Store, error) {
	if name == "alice/broken" {
		return nil, errDiskOnFire
	}
	return f.Repos.Open(ctx, name, create)
}

// env is a handler over memstore repositories behind a real HTTP server.
type env struct {
	t     *testing.T
	h     *Handler
	srv   *httptest.Server
	repos *memstore.Repos
	logs  *syncBuffer
}

func newEnv(t *testing.T, opts Options, tweaks ...func(*Handler)) *env {
	t.Helper()
	e := &env{t: t, repos: memstore.NewRepos(&memstore.Options{MergeRules: store.MergeRules{{Pattern: "lww/*", Rule: store.LastWriterWins}}}), logs: &syncBuffer{}}
	if opts.Auth == nil {
		opts.Auth = users
	}
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	e.h = NewHandler(failingRepos{e.repos}, opts)
	for _, tweak := range tweaks {
		tweak(e.h) // before the server starts, so no request races with it
	}
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(func() { e.repos.Close() })
	t.Cleanup(e.srv.Close)
	return e
}

// store opens (creating) a repository directly.
func (e *env) store(name string) store.Store {
	e.t.Helper()
	s, err := e.repos.Open(context.Background(), name, true)
	if err != nil {
		e.t.Fatalf("open %s: %v", name, err)
	}
	return s
}

// commit puts key=value pairs on branch of repository name directly.
func (e *env) commit(name, branch string, kv ...string) store.Commit {
	e.t.Helper()
	var ops []store.Op
	for i := 0; i+1 < len(kv); i += 2 {
		ops = append(ops, store.Op{Key: kv[i], Value: []byte(kv[i+1])})
	}
	c, err := e.store(name).Commit(context.Background(), store.Change{Branch: branch, Author: store.Signature{Name: "setup", Email: "setup@localhost"}, Message: "setup", Ops: ops})
	if err != nil {
		e.t.Fatalf("commit: %v", err)
	}
	return c
}

// call is one raw HTTP request.
type call struct {
	method string
	path   string // appended to the server URL as is
	body   string
	user   string // "" alice with Basic; "-" no credentials; "token:X" a bearer token
	header map[string]string
}

// answer is a response with its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %q is not JSON: %v", a.status, a.body, err)
	}
}

func (a answer) errorMessage(t *testing.T) errorAnswer {
	t.Helper()
	var ea errorAnswer
	a.json(t, &ea)
	if ea.Error == "" {
		t.Errorf("error answer %q has no message", a.body)
	}
	return ea
}

func (e *env) do(t *testing.T, c call) answer {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), c.method, e.srv.URL+c.path, body)
	if err != nil {
		t.Fatalf("request %s %s: %v", c.method, c.path, err)
	}
	switch {
	case c.user == "":
		req.SetBasicAuth("alice", "alice-pw")
	case c.user == "-":
	case strings.HasPrefix(c.user, "token:"):
		req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(c.user, "token:"))
	default:
		req.SetBasicAuth(c.user, c.user+"-pw")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", c.method, c.path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// client returns a Client for repository name as user (password auth).
func (e *env) client(user, name string) *Client {
	c := NewClient(e.srv.URL, name, ClientOptions{User: user, Password: user + "-pw"})
	e.t.Cleanup(func() { c.Close() })
	return c
}

// rawStatus sends a request line the net/http client would refuse to send, as alice, and
// returns the status code of the answer.
func (e *env) rawStatus(t *testing.T, method, target string) int {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:alice-pw"))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: test\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n", method, target, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
