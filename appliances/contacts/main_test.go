package main

import (
	"bufio"
	"context"
	"crypto/tls"
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

const pw = "alice-password"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// build compiles the appliance once for the package's tests.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "contacts-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "contacts")
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
	if err := a.Add(context.Background(), "alice", pw); err != nil {
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

var addrRE = regexp.MustCompile(`contacts listening"? addr=(\S+)`)

// start runs the appliance and waits for it to log where it listens.
func start(t *testing.T, bin string, args, env []string, files ...*os.File) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
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
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	select {
	case p.addr = <-found:
	case <-p.done:
		t.Fatalf("appliance exited before listening:\n%s", p.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("appliance did not start:\n%s", p.logText())
	}
	return p
}

func request(t *testing.T, c *http.Client, method, url, body string, auth bool) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("alice", pw)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header
}

func vcf(uid string) string {
	return "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + uid + "\r\nFN:" + uid + "\r\nEND:VCARD\r\n"
}

func TestFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"no data", nil, 2},
		{"negative idle", []string{"-data", t.TempDir(), "-idle-exit", "-1s"}, 2},
		{"insecure off loopback", []string{"-data", t.TempDir(), "-insecure-loopback", "-listen", "0.0.0.0:0"}, 2},
		{"extra args", []string{"-data", t.TempDir(), "x"}, 2},
		{"help", []string{"-h"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(context.Background(), c.args, func(string) string { return "" }, io.Discard); got != c.want {
				t.Fatalf("exit %d, want %d", got, c.want)
			}
		})
	}
}

func TestServeTLSAndLoopback(t *testing.T) {
	bin := build(t)
	data := dataDir(t)
	p := start(t, bin, []string{"-data", data, "-listen", "127.0.0.1:0"}, nil)
	ca, _, err := signpost.OpenHomeCA(data, signpost.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.CertPool(), ServerName: "localhost"}}}
	base := "https://" + p.addr
	if code, h := request(t, tc, "PROPFIND", base+"/alice/", "", false); code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("anonymous: %d %v", code, h)
	}
	if code, _ := request(t, tc, "PROPFIND", base+"/alice/", "", true); code != 207 {
		t.Fatalf("PROPFIND: %d", code)
	}
	// Plain HTTP is not served on the TLS port.
	if resp, err := http.Get("http://" + p.addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatal("plain HTTP answered on the TLS port")
		}
	}

	q := start(t, bin, []string{"-data", t.TempDir(), "-listen", "127.0.0.1:0", "-insecure-loopback"}, nil)
	if code, _ := request(t, http.DefaultClient, "PROPFIND", "http://"+q.addr+"/", "", false); code != 401 {
		t.Fatalf("plain loopback: %d", code)
	}
}

func TestSocketActivationIdleExit(t *testing.T) {
	bin := build(t)
	data := dataDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=http"}
	base := "http://" + ln.Addr().String()
	p := start(t, bin, []string{"-data", data, "-idle-exit", "300ms"}, env, f)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if code, _ := request(t, c, "MKCOL", base+"/alice/contacts/b/", "", true); code != 201 {
		t.Fatalf("MKCOL: %d", code)
	}
	if code, _ := request(t, c, "PUT", base+"/alice/contacts/b/a.vcf", vcf("a"), true); code != 201 {
		t.Fatalf("PUT: %d", code)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("no idle exit")
	}
	// Summoned again on the same socket, it has the data.
	start(t, bin, []string{"-data", data}, env, f)
	if code, _ := request(t, c, "GET", base+"/alice/contacts/b/a.vcf", "", true); code != 200 {
		t.Fatalf("GET after restart: %d", code)
	}
}

// TestCrash kills the appliance while clients PUT; every acknowledged object must be
// there, with its ETag, after a restart.
func TestCrash(t *testing.T) {
	bin := build(t)
	data := dataDir(t)
	p := start(t, bin, []string{"-data", data, "-listen", "127.0.0.1:0", "-insecure-loopback"}, nil)
	base := "http://" + p.addr
	if code, _ := request(t, http.DefaultClient, "MKCOL", base+"/alice/contacts/b/", "", true); code != 201 {
		t.Fatalf("MKCOL: %d", code)
	}
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				uid := fmt.Sprintf("w%d-%d", w, i)
				req, _ := http.NewRequest("PUT", base+"/alice/contacts/b/"+uid+".vcf", strings.NewReader(vcf(uid)))
				req.SetBasicAuth("alice", pw)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					return // killed
				}
				res.Body.Close()
				if res.StatusCode == 201 || res.StatusCode == 204 {
					mu.Lock()
					acked[uid] = res.Header.Get("ETag")
					mu.Unlock()
				}
			}
		})
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 60 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	close(stop)
	wg.Wait()
	q := start(t, bin, []string{"-data", data, "-listen", "127.0.0.1:0", "-insecure-loopback"}, nil)
	for uid, tag := range acked {
		code, h := request(t, http.DefaultClient, "GET", "http://"+q.addr+"/alice/contacts/b/"+uid+".vcf", "", true)
		if code != 200 || h.Get("ETag") != tag {
			t.Fatalf("%s after crash: %d %q, want %q", uid, code, h.Get("ETag"), tag)
		}
	}
	t.Logf("%d acknowledged PUTs survived SIGKILL", len(acked))
}
