package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
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
	table     upTable
	base      string // http://127.0.0.1:PORT, the store's plain HTTP socket
	secure    string // https://localhost:PORT, the store's HTTPS socket
	httpsPort string
	dns       string // 127.0.0.1:PORT
	status    string // 127.0.0.1:PORT
	welcome   string
	password  string // of admin, when this run created it
	cancel    context.CancelFunc
	finished  chan struct{} // closed when run has returned and its output is read
	code      int           // run's exit status, once finished
	rest      string        // standard output after the welcome, once finished
	stderr    *syncBuffer
}

// startUp runs "hearth up" on free ports (DNS, status and every appliance socket) with
// extra flags and reads its welcome.
func startUp(t *testing.T, data string, flags ...string) *upServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	u := &upServer{cancel: cancel, finished: make(chan struct{}), stderr: &syncBuffer{}}
	code := make(chan int, 1)
	args := append([]string{"up", "-data", data, "-dns", "127.0.0.1:0", "-status", "127.0.0.1:0", "-free-ports"}, flags...)
	go func() {
		code <- run(ctx, args, strings.NewReader(""), pw, u.stderr)
		pw.Close()
	}()
	t.Cleanup(func() { u.stop() })
	tab, err := readWelcome(pr)
	u.welcome = strings.Join(tab.lines, "\n")
	go func() {
		b, _ := io.ReadAll(pr)
		u.code, u.rest = <-code, string(b)
		close(u.finished)
	}()
	if err != nil {
		cancel()
		t.Fatalf("welcome: %v\n%s\nstderr:\n%s", err, u.welcome, u.stderr)
	}
	u.table, u.password, u.status, u.dns = tab, tab.password, tab.status, tab.dns.String()
	for _, sv := range tab.services {
		switch {
		case sv.appliance == "store" && sv.socket == "http":
			u.base = "http://" + sv.addr.String()
		case sv.appliance == "store" && sv.socket == "https":
			u.httpsPort = strconv.Itoa(int(sv.addr.Port()))
			u.secure = "https://localhost:" + u.httpsPort
		}
	}
	if u.base == "" || u.secure == "" || u.status == "" {
		cancel()
		t.Fatalf("addresses missing in the welcome:\n%s\nstderr:\n%s", u.welcome, u.stderr)
	}
	return u
}

// stop cancels the server's context and returns its exit status and remaining output.
func (u *upServer) stop() (int, string) {
	u.cancel()
	<-u.finished
	return u.code, u.rest
}

// dig runs the real dig against the running jitsu and returns its short answer.
func dig(t *testing.T, dnsAddr string, args ...string) string {
	t.Helper()
	digBin := testtool.Path(t, "dig", "bind9-dnsutils")
	host, port, _ := net.SplitHostPort(dnsAddr)
	out, err := exec.Command(digBin, append([]string{"@" + host, "-p", port, "+short", "+time=5", "+tries=1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// storePID asks jitsu's status endpoint for the store's pid (0: not running).
func storePID(t *testing.T, statusAddr string) int {
	t.Helper()
	return appliancePID(t, statusAddr, "store")
}

// appliancePID asks jitsu's status endpoint for an appliance's pid (0: not running).
func appliancePID(t *testing.T, statusAddr, name string) int {
	t.Helper()
	st, err := fetchStatus(context.Background(), "http://"+statusAddr+"/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Appliances {
		if a.Name == name {
			return a.PID
		}
	}
	t.Fatalf("no %s in the status %+v", name, st)
	return 0
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

// TestUp runs "hearth up" from the module source (it builds the appliances into
// DATA/bin), resolves the store with dig, summons it with a connection, uses it with
// passwords, tokens and git, stops it with a cancel (the store process ends too) and
// starts it again.
func TestUp(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	u := startUp(t, data)
	if u.password == "" {
		t.Fatal("first run printed no admin password")
	}
	if _, err := os.Stat(filepath.Join(data, "bin", "store")); err != nil {
		t.Fatalf("the store appliance was not built into DATA/bin: %v", err)
	}
	if !strings.Contains(u.welcome, "dashboard") {
		t.Errorf("the welcome does not say the dashboard is missing:\n%s", u.welcome)
	}
	if pid := storePID(t, u.status); pid != 0 {
		t.Fatalf("store runs (pid %d) before anyone asked for it", pid)
	}

	t.Run("dig", func(t *testing.T) {
		if got := dig(t, u.dns, "store.home.arpa"); got != "127.0.0.1" {
			t.Errorf("store.home.arpa A: %q", got)
		}
		if got := dig(t, u.dns, "SRV", "_https._tcp.store.home.arpa"); got != "0 0 "+u.httpsPort+" store.home.arpa." {
			t.Errorf("_https._tcp.store.home.arpa SRV: %q, want port %s", got, u.httpsPort)
		}
		if got := dig(t, u.dns, "SRV", "_http._tcp.store.home.arpa"); got != "" {
			t.Errorf("the loopback-only HTTP port is published: %q", got)
		}
	})

	t.Run("every service answers", func(t *testing.T) {
		for _, want := range []string{"store https", "store http", "mail imaps", "mail imap", "mail submission", "mail smtp", "mail lmtp", "contacts https", "calendar https"} {
			if !slices.ContainsFunc(u.table.services, func(sv upService) bool { return sv.appliance+" "+sv.socket == want }) {
				t.Errorf("no %s in the service table:\n%s", want, u.welcome)
			}
		}
		for _, tc := range []struct{ name, service string }{
			{"_imaps._tcp.home.arpa", "mail imaps"},
			{"_submission._tcp.home.arpa", "mail submission"},
			{"_carddavs._tcp.home.arpa", "contacts https"},
			{"_caldavs._tcp.home.arpa", "calendar https"},
		} {
			i := slices.IndexFunc(u.table.services, func(sv upService) bool { return sv.appliance+" "+sv.socket == tc.service })
			if i < 0 {
				continue
			}
			sv := u.table.services[i]
			if got, want := dig(t, u.dns, "SRV", tc.name), fmt.Sprintf("0 0 %d %s.", sv.addr.Port(), sv.fqdn); got != want {
				t.Errorf("%s SRV: %q, want %q", tc.name, got, want)
			}
		}
		roots, err := loadRoots(filepath.Join(data, "ca", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := probeUp(ctx, u.table, roots); err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, u.stderr)
		}
		for _, name := range []string{"store", "mail", "contacts", "calendar"} {
			if pid := appliancePID(t, u.status, name); pid == 0 {
				t.Errorf("%s answered but the status shows it not running", name)
			}
		}
	})

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
	pid := storePID(t, u.status)
	if pid == 0 {
		t.Fatal("the store served requests but the status shows it not running")
	}
	var pids []int
	for _, name := range []string{"mail", "contacts", "calendar"} {
		if p := appliancePID(t, u.status, name); p != 0 {
			pids = append(pids, p)
		}
	}
	if code, out, _ := runCmd(t, "", "status", "-status", u.status); code != 0 || !regexp.MustCompile(`store +running +`+strconv.Itoa(pid)).MatchString(out) {
		t.Errorf("hearth status: %d\n%s", code, out)
	}

	// The README's walk-through: create a repository, see it, clone it with git.
	if status, body, _ := request(t, "POST", repos, `{"name":"admin/notes"}`, basic("admin", u.password)); status != http.StatusCreated {
		t.Fatalf("create admin/notes: %d %s", status, body)
	}
	if _, body, _ := request(t, "GET", repos, "", bearer(token)); !strings.Contains(body, `"admin/notes"`) {
		t.Fatalf("repositories after create: %s", body)
	}
	t.Run("git clone", func(t *testing.T) {
		testtool.Path(t, "git", "git")
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
	for _, p := range append(pids, pid) {
		if !processGone(p) {
			t.Fatalf("an appliance (pid %d) still runs after hearth up stopped", p)
		}
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

// processGone reports whether no process with pid exists any more.
func processGone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func TestUpErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
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
		{"bad DNS address", []string{"-data", t.TempDir(), "-dns", "nowhere"}, 1, "nowhere"},
		{"DNS port taken", []string{"-data", t.TempDir(), "-dns", taken.Addr().String(), "-free-ports", "-bin", t.TempDir()}, 1, "address already in use"},
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
	_, binDir := buildHearth(t)
	u := startUp(t, data, "-bin", binDir)
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

func TestGoModPath(t *testing.T) {
	for _, tc := range []struct{ name, gomod, want string }{
		{"plain", "module github.com/hearth-home/hearth\n\ngo 1.26\n", modulePath},
		{"quoted", "// c\nmodule \"example.org/x\"\n", "example.org/x"},
		{"none", "go 1.26\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := goModPath([]byte(tc.gomod)); got != tc.want {
				t.Fatalf("%q, want %q", got, tc.want)
			}
		})
	}
}

// TestApplianceBinaries: -bin wins; inside Hearth's source the appliances are built into
// DATA/bin (one that does not compile is left out, the others built); elsewhere the
// binaries are those next to the executable.
func TestApplianceBinaries(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	ctx := context.Background()
	data := t.TempDir()

	if got, err := applianceBinaries(ctx, logger, data, "rel/bin"); err != nil || !filepath.IsAbs(got) || !strings.HasSuffix(got, "rel/bin") {
		t.Fatalf("-bin rel/bin: %q %v", got, err)
	}

	src := t.TempDir()
	files := map[string]string{
		"go.mod":                    "module " + modulePath + "\n\ngo 1.26\n",
		"appliances/good/main.go":   "package main\n\nfunc main() {}\n",
		"appliances/broken/main.go": "package main\n\nfunc main() { undefined() }\n",
		"appliances/jitsu/main.go":  "package main\n\nfunc main() {}\n",
	}
	for name, body := range files {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(filepath.Join(src, "appliances", "good")) // below the module root
	got, err := applianceBinaries(ctx, logger, data, "")
	if err != nil || got != filepath.Join(data, "bin") {
		t.Fatalf("in the source: %q %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(got, "good")); err != nil {
		t.Errorf("good was not built: %v", err)
	}
	for _, absent := range []string{"broken", "jitsu"} {
		if _, err := os.Stat(filepath.Join(got, absent)); err == nil {
			t.Errorf("%s was built", absent)
		}
	}
	if !strings.Contains(logs.String(), "appliance=broken") {
		t.Errorf("no note about the broken appliance:\n%s", logs)
	}

	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.org/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if got, err := applianceBinaries(ctx, logger, data, ""); err != nil || got != filepath.Dir(exe) {
		t.Fatalf("outside Hearth's source: %q %v, want %q", got, err, filepath.Dir(exe))
	}
}

var (
	welcomeIncoming = regexp.MustCompile(`^  incoming +IMAP +server (\S+) +port (\d+) +SSL/TLS +Normal password +username (\S+)$`)
	welcomeOutgoing = regexp.MustCompile(`^  outgoing +SMTP +server (\S+) +port (\d+) +(SSL/TLS|STARTTLS) +Normal password +username (\S+)$`)
	welcomeDAVURL   = regexp.MustCompile(`https://[a-z0-9-]+\.home\.arpa:`)
)

// TestUpClientSettings types the settings the welcome prints into real clients: swaks
// sends a message through submissions (implicit TLS, AUTH PLAIN) with the outgoing settings,
// mbsync fetches it over IMAPS with the incoming settings, verifying the certificate with
// the CA file the welcome names, and vdirsyncer runs the printed configuration (the
// password given instead of prompted for) to upload a contact and an event and to fetch
// them again into an empty directory. This machine does not ask jitsu for names, so, as
// the welcome says, the names are replaced: by localhost for mbsync (1.4 checks only the
// certificate's DNS names) and by 127.0.0.1 for vdirsyncer; the certificates cover both.
func TestUpClientSettings(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	_, binDir := buildHearth(t)
	u := startUp(t, data, "-bin", binDir)
	lines := u.table.lines
	var in, out []string
	for _, l := range lines {
		if m := welcomeIncoming.FindStringSubmatch(l); m != nil {
			in = m[1:]
		}
		if m := welcomeOutgoing.FindStringSubmatch(l); m != nil {
			out = m[1:]
		}
	}
	if in == nil || out == nil || in[0] != "mail.home.arpa" || in[2] != "admin" || out[3] != "admin" || out[2] != "SSL/TLS" {
		t.Fatalf("no Thunderbird settings for admin@mail.home.arpa in the welcome:\n%s", u.welcome)
	}
	caFile := filepath.Join(data, "ca", "ca.crt")
	if !strings.Contains(u.welcome, caFile) {
		t.Fatalf("the welcome does not name the CA file %s", caFile)
	}

	t.Run("swaks and mbsync", func(t *testing.T) {
		swaks := testtool.Path(t, "swaks", "swaks")
		mbsync := testtool.Path(t, "mbsync", "isync")
		cmd := exec.Command(swaks, "--server", "127.0.0.1", "--port", out[1], "--tls-on-connect",
			"--auth", "PLAIN", "--auth-user", out[3],
			"--from", "admin@home.arpa", "--to", "admin@home.arpa",
			"--header", "Subject: hello from the welcome", "--body", "typed as printed")
		// swaks prompts for the password and reads it from stdin: a generated password may
		// begin with "-", which swaks would take for an option on its command line.
		cmd.Stdin = strings.NewReader(u.password + "\n")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("swaks: %v\n%s\nstderr:\n%s", err, b, u.stderr)
		}
		dir := t.TempDir()
		maildir := filepath.Join(dir, "mail")
		if err := os.MkdirAll(maildir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("IMAPAccount hearth\nHost localhost\nPort %s\nUser %s\nPass %s\nSSLType IMAPS\nCertificateFile %s\n\n"+
			"IMAPStore hearth-remote\nAccount hearth\n\nMaildirStore local\nPath %s/\nInbox %s/INBOX\n\n"+
			"Channel hearth\nFar :hearth-remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSyncState *\n",
			in[1], in[2], u.password, caFile, maildir, maildir)
		cfgFile := filepath.Join(dir, "mbsyncrc")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(mbsync, "-c", cfgFile, "hearth").CombinedOutput(); err != nil {
			t.Fatalf("mbsync: %v\n%s\nstderr:\n%s", err, b, u.stderr)
		}
		msgs, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "*", "*"))
		found := false
		for _, m := range msgs {
			if b, err := os.ReadFile(m); err == nil && strings.Contains(string(b), "hello from the welcome") {
				found = true
			}
		}
		if !found {
			t.Fatalf("mbsync fetched %d messages, none the one swaks sent", len(msgs))
		}
	})

	t.Run("vdirsyncer", func(t *testing.T) {
		vds := testtool.Path(t, "vdirsyncer", "vdirsyncer")
		var snippet []string
		inSnippet := false
		for _, l := range lines {
			switch {
			case l == "[general]":
				inSnippet = true
			case strings.HasPrefix(l, "Other devices"):
				inSnippet = false
			}
			if inSnippet {
				snippet = append(snippet, l)
			}
		}
		conf := strings.Join(snippet, "\n") + "\n"
		if !strings.Contains(conf, `password.fetch = ["prompt", "Hearth password of admin"]`) || !strings.Contains(conf, `verify = "`+caFile+`"`) {
			t.Fatalf("no vdirsyncer snippet with a password prompt and the CA in the welcome:\n%s", u.welcome)
		}
		conf = strings.ReplaceAll(conf, `password.fetch = ["prompt", "Hearth password of admin"]`, `password = "`+u.password+`"`)
		conf = welcomeDAVURL.ReplaceAllString(conf, "https://127.0.0.1:")
		sync := func(home string) {
			t.Helper()
			if err := os.MkdirAll(filepath.Join(home, ".config", "vdirsyncer"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, ".config", "vdirsyncer", "config"), []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"discover"}, {"sync"}} {
				cmd := exec.Command(vds, args...)
				cmd.Env = append(os.Environ(), "HOME="+home)
				cmd.Dir = home
				cmd.Stdin = strings.NewReader(strings.Repeat("y\n", 10)) // create the collections it asks about
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("vdirsyncer %s: %v\n%s\nstderr:\n%s", args[0], err, b, u.stderr)
				}
			}
		}
		files := map[string]string{
			"contacts/book/ann.vcf": "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann Example\r\nN:Example;Ann;;;\r\nEND:VCARD\r\n",
			"calendars/home/tea.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hearth//test//EN\r\nBEGIN:VEVENT\r\nUID:tea\r\n" +
				"DTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nDTEND:20260102T110000Z\r\nSUMMARY:Tea\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		}
		first := t.TempDir()
		for name, body := range files {
			path := filepath.Join(first, ".local", "share", "vdirsyncer", name)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		sync(first) // uploads both, creating the collections
		second := t.TempDir()
		for _, d := range []string{"contacts", "calendars"} {
			if err := os.MkdirAll(filepath.Join(second, ".local", "share", "vdirsyncer", d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		sync(second) // fetches them into an empty directory
		for name, body := range files {
			got, err := os.ReadFile(filepath.Join(second, ".local", "share", "vdirsyncer", name))
			if err != nil {
				t.Fatalf("not fetched back: %v", err)
			}
			if !strings.Contains(string(got), strings.Split(body, "\r\n")[2]) {
				t.Errorf("%s fetched back as %q", name, got)
			}
		}
	})
}

// TestUpWithoutStatus: with -status "" (no status endpoint) it keeps serving until
// cancelled, then exits with status 0.
func TestUpWithoutStatus(t *testing.T) {
	_, binDir := buildHearth(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	stderr := &syncBuffer{}
	go func() {
		code <- run(ctx, []string{"up", "-data", t.TempDir(), "-dns", "127.0.0.1:0", "-status", "", "-free-ports", "-bin", binDir}, strings.NewReader(""), pw, stderr)
		pw.Close()
	}()
	tab, err := readWelcome(pr)
	go io.Copy(io.Discard, pr)
	if err != nil {
		t.Fatalf("welcome: %v\nstderr:\n%s", err, stderr)
	}
	if tab.status != "" {
		t.Errorf("a status row without -status: %q", tab.status)
	}
	var store []upService
	for _, sv := range tab.services {
		if sv.appliance == "store" && sv.socket == "http" {
			store = append(store, sv)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	if err := probeUp(pctx, upTable{services: store, dns: tab.dns}, nil); err != nil {
		t.Fatalf("after the welcome: %v\nstderr:\n%s", err, stderr)
	}
	select {
	case c := <-code:
		t.Fatalf("hearth up returned %d before it was cancelled", c)
	default:
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("exit %d after cancel\nstderr:\n%s", c, stderr)
	}
}
