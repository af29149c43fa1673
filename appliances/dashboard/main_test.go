package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

const adminPW = "admin-password-1"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// build compiles the appliance once for the package's tests.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dashboard-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dashboard")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// dataDir makes a data directory with the user admin.
func dataDir(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(context.Background(), "admin", adminPW); err != nil {
		t.Fatal(err)
	}
	return data
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	mu   sync.Mutex
	log  []string
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// start runs the appliance with JSON logs and waits for it to log where it listens.
func start(t *testing.T, args, env []string, files ...*os.File) *proc {
	t.Helper()
	cmd := exec.Command(build(t), append([]string{"-log-format", "json"}, args...)...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") }), env...)
	cmd.ExtraFiles = files
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "dashboard listening" {
				select {
				case found <- rec.Addr:
				default:
				}
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.addr = <-found:
	case <-p.done:
		t.Fatalf("the appliance exited: %s", p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line: %s", p.logText())
	}
	return p
}

// httpsClient trusts the data directory's CA and keeps cookies.
func httpsClient(t *testing.T, data string) *http.Client {
	t.Helper()
	ca, _, err := signpost.OpenHomeCA(data, signpost.CAOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.CertPool(), ServerName: "dashboard.home.arpa"},
	}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs in as admin and returns the appliances page.
func login(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("login page without a token: %s", b)
	}
	resp, err = c.PostForm(base+"/login", url.Values{"user": {"admin"}, "password": {adminPW}, "csrf": {string(m[1])}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("<h1>Appliances</h1>")) {
		t.Fatalf("login: %s %s", resp.Status, b)
	}
	return string(b)
}

// fakeJitsu serves a status JSON with one running appliance.
func fakeJitsu(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"appliances":[{"Name":"store","State":"running","PID":%d,"Summons":3,"LastSummonLatency":1500000}],"dns":{}}`, os.Getpid())
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/status"
}

// TestListen: HTTPS with the home CA on -listen, the token file read, JSON logs, SIGTERM.
func TestListen(t *testing.T) {
	data := dataDir(t)
	if err := os.WriteFile(filepath.Join(data, "jitsu.token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := mln.Addr().String()
	mln.Close()
	p := start(t, []string{"-data", data, "-listen", "127.0.0.1:0", "-jitsu-status", fakeJitsu(t), "-metrics", maddr}, nil)
	c := httpsClient(t, data)
	page := login(t, c, "https://"+p.addr)
	if !strings.Contains(page, `id="app-store"`) || !strings.Contains(page, "1.5ms") || !strings.Contains(page, "/appliances/store/stop") {
		t.Fatalf("appliances page: %s", page)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`dashboard_logins_total{appliance="dashboard",result="ok"} 1`, `hearth_http_requests_total{appliance="dashboard"`} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %s:\n%s", want, mb)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d: %s", code, p.logText())
	}
}

// TestSocketActivation: the "https" socket from LISTEN_FDS serves TLS; -idle-exit ends it.
func TestSocketActivation(t *testing.T) {
	data := dataDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	defer f.Close()
	p := start(t, []string{"-data", data, "-idle-exit", "1s", "-jitsu-status", ""}, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=https"}, f)
	if p.addr != addr {
		t.Fatalf("listening on %s, want the passed socket %s", p.addr, addr)
	}
	c := httpsClient(t, data)
	page := login(t, c, "https://"+addr)
	if !strings.Contains(page, "not configured") {
		t.Fatalf("appliances page without jitsu: %s", page)
	}
	c.CloseIdleConnections()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("no idle exit")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d: %s", code, p.logText())
	}
	// The session was saved for the next start.
	var saved []map[string]any
	b, err := os.ReadFile(filepath.Join(data, "dashboard", "sessions.json"))
	if err != nil || json.Unmarshal(b, &saved) != nil || len(saved) != 1 || saved[0]["user"] != "admin" {
		t.Fatalf("saved sessions %s, %v", b, err)
	}
}

func TestFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no data", nil, "-data DIR is required"},
		{"negative idle", []string{"-data", "x", "-idle-exit", "-1s"}, "must not be negative"},
		{"insecure not loopback", []string{"-data", "x", "-insecure-loopback", "-listen", "0.0.0.0:1"}, "loopback"},
		{"bad log format", []string{"-data", "x", "-log-format", "xml"}, "text or json"},
		{"bad jitsu url", []string{"-data", "x", "-jitsu-status", "ftp://x"}, "http://"},
		{"extra args", []string{"-data", "x", "y"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), tc.args, func(string) string { return "" }, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
}
