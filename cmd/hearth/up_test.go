package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for the server's logger and the test at once.
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

// upServer is a running "hearth up".
type upServer struct {
	base     string // http://127.0.0.1:PORT
	secure   string // https://localhost:PORT
	password string // of admin, when this run created it
	cancel   context.CancelFunc
	finished chan struct{} // closed when run has returned and its output is read
	code     int           // run's exit status, once finished
	rest     string        // standard output after the welcome, once finished
	stderr   *syncBuffer
}

// startUp runs "hearth up" on a free port and reads its welcome.
func startUp(t *testing.T, data string) *upServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	u := &upServer{cancel: cancel, finished: make(chan struct{}), stderr: &syncBuffer{}}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"up", "-data", data, "-listen", "127.0.0.1:0", "-https", "127.0.0.1:0"}, strings.NewReader(""), pw, u.stderr)
		pw.Close()
	}()
	t.Cleanup(func() { u.stop() })
	sc := bufio.NewScanner(pr)
	var welcome []string
	for sc.Scan() {
		line := sc.Text()
		welcome = append(welcome, line)
		if m := regexp.MustCompile(`^Created user admin with password (\S+)$`).FindStringSubmatch(line); m != nil {
			u.password = m[1]
		}
		if m := regexp.MustCompile(`store REST API +(http://127\.0\.0\.1:\d+)/api/repos$`).FindStringSubmatch(line); m != nil {
			u.base = m[1]
		}
		if m := regexp.MustCompile(`store REST API \(TLS\) +(https://localhost:\d+)/api/repos$`).FindStringSubmatch(line); m != nil {
			u.secure = m[1]
		}
		if strings.Contains(line, "git clone http://admin@127.0.0.1:") {
			break
		}
	}
	go func() {
		b, _ := io.ReadAll(pr)
		u.code, u.rest = <-code, string(b)
		close(u.finished)
	}()
	if u.base == "" {
		cancel()
		t.Fatalf("no address in the welcome:\n%s\nstderr:\n%s", strings.Join(welcome, "\n"), u.stderr)
	}
	return u
}

// stop cancels the server's context and returns its exit status and remaining output.
func (u *upServer) stop() (int, string) {
	u.cancel()
	<-u.finished
	return u.code, u.rest
}

func request(t *testing.T, method, url, body string, auth func(*http.Request)) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func basic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func TestUp(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	u := startUp(t, data)
	if u.password == "" {
		t.Fatal("first run printed no admin password")
	}
	repos := u.base + "/api/repos"

	// An app password (a token) made by the CLI while the server runs works at once.
	code, stdout, stderr := runCmd(t, "", "user", "app-password", "add", "-data", data, "admin", "test")
	if code != 0 {
		t.Fatalf("user app-password add: %s", stderr)
	}
	token := strings.TrimSpace(stdout)

	for _, tc := range []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"wrong password", basic("admin", u.password+"x"), http.StatusUnauthorized},
		{"unknown user", basic("root", u.password), http.StatusUnauthorized},
		{"bad token", bearer(strings.Repeat("A", 43)), http.StatusUnauthorized},
		{"admin's password", basic("admin", u.password), http.StatusOK},
		{"admin's token", bearer(token), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, header := request(t, "GET", repos, "", tc.auth)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("401 without a Basic challenge: %q", header.Get("WWW-Authenticate"))
			}
			if status == http.StatusOK {
				var got struct{ Repos []string }
				if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Repos) != 0 {
					t.Fatalf("body %q (%v), want no repositories", body, err)
				}
			}
		})
	}

	// The README's walk-through: create a repository, see it, clone it with git.
	if status, body, _ := request(t, "POST", repos, `{"name":"admin/notes"}`, basic("admin", u.password)); status != http.StatusCreated {
		t.Fatalf("create admin/notes: %d %s", status, body)
	}
	if _, body, _ := request(t, "GET", repos, "", bearer(token)); !strings.Contains(body, `"admin/notes"`) {
		t.Fatalf("repositories after create: %s", body)
	}
	t.Run("git clone", func(t *testing.T) {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skip("git is not installed (test.sh installs it)")
		}
		dir := filepath.Join(t.TempDir(), "notes")
		url := strings.Replace(u.base, "http://", "http://admin:"+u.password+"@", 1) + "/admin/notes.git"
		cmd := exec.Command("git", "clone", "-q", url, dir)
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
			t.Fatal(err)
		}
	})

	code, rest := u.stop()
	if code != 0 || !strings.Contains(rest, "hearth: stopped") {
		t.Fatalf("after cancel: exit %d, output %q, stderr:\n%s", code, rest, u.stderr)
	}
	if _, err := http.Get(repos); err == nil {
		t.Fatal("still answering after it stopped")
	}

	// A second run keeps the accounts and makes no new admin.
	u2 := startUp(t, data)
	if u2.password != "" {
		t.Fatal("second run made a new admin password")
	}
	if status, body, _ := request(t, "GET", u2.base+"/api/repos", "", basic("admin", u.password)); status != http.StatusOK || !strings.Contains(body, "admin/notes") {
		t.Fatalf("second run: %d %s", status, body)
	}
	if code, _ := u2.stop(); code != 0 {
		t.Fatalf("second run: exit %d, stderr:\n%s", code, u2.stderr)
	}
}

func TestUpErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		text string
	}{
		{"bad address", []string{"-data", t.TempDir(), "-listen", "nowhere"}, 1, "nowhere"},
		{"data is a file", []string{"-data", file}, 1, "file"},
		{"extra argument", []string{"now"}, 2, "want 0 arguments"},
		{"bad flag", []string{"-port", "80"}, 2, "-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, "", append([]string{"up"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.text) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, stderr, tc.text)
			}
			if len(tc.args) > 1 && tc.args[0] == "-data" {
				// No admin whose password nobody saw.
				_, users, _ := runCmd(t, "", "user", "list", "-data", tc.args[1])
				if users != "" {
					t.Fatalf("a failed start left users %q", users)
				}
			}
		})
	}
}

// TestUpServesHTTPS: "hearth up" serves the store over TLS with a certificate that a client
// trusting only the CA from "hearth ca export" accepts.
func TestUpServesHTTPS(t *testing.T) {
	data := t.TempDir()
	u := startUp(t, data)
	if u.secure == "" {
		t.Fatal("the welcome shows no HTTPS address")
	}
	var pemOut, errOut bytes.Buffer
	if code := run(context.Background(), []string{"ca", "export", "-data", data}, nil, &pemOut, &errOut); code != 0 {
		t.Fatalf("hearth ca export: %d %s", code, errOut.String())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemOut.Bytes()) {
		t.Fatalf("hearth ca export printed no certificate: %q", pemOut.String())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", u.secure+"/api/repos", nil)
	req.SetBasicAuth("admin", u.password)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("https with the exported CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("https: %s", resp.Status)
	}
	if _, err := http.Get(u.secure + "/api/repos"); err == nil {
		t.Fatal("a client that does not trust the home CA connected")
	}
}
