package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

const password = "alice-password"

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "calendar")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func newData(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(context.Background(), "alice", password); err != nil {
		t.Fatal(err)
	}
	return data
}

// proc is a running appliance.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	mu     sync.Mutex
	stderr strings.Builder
}

// launch starts bin with a socket handed over as fd 3 named name, and waits until it says
// it listens.
func launch(t *testing.T, bin string, ln *net.TCPListener, name string, args ...string) *proc {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") }),
		"LISTEN_FDS=1", "LISTEN_FDNAMES="+name)
	cmd.ExtraFiles = []*os.File{f}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(errPipe)
		once := sync.Once{}
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if strings.Contains(sc.Text(), "calendar listening") {
				once.Do(func() { close(ready) })
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("appliance exited at start: %v\n%s", p.err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("appliance did not start:\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("appliance still running after %v:\n%s", d, p.log())
	}
}

func listen(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func request(t *testing.T, c *http.Client, method, url, body string, auth bool, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("alice", password)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const mkcal = `<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Home</D:displayname></D:prop></D:set></C:mkcalendar>`

func event(uid string) string {
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
		"\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250301T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
}

func TestFlags(t *testing.T) {
	bin := build(t)
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"no data", nil, 2},
		{"negative idle", []string{"-data", t.TempDir(), "-idle-exit", "-1s"}, 2},
		{"insecure off loopback", []string{"-data", t.TempDir(), "-listen", "192.0.2.1:8445", "-insecure-loopback"}, 2},
		{"insecure without listen", []string{"-data", t.TempDir(), "-insecure-loopback"}, 2},
		{"stray argument", []string{"-data", t.TempDir(), "extra"}, 2},
		{"help", []string{"-h"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := exec.Command(bin, tc.args...).Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("exit %d, want %d", code, tc.want)
			}
		})
	}
}

// TestInsecureLoopbackAndSIGTERM serves plain HTTP on a loopback -listen address and
// stops cleanly on SIGTERM.
func TestInsecureLoopbackAndSIGTERM(t *testing.T) {
	bin := build(t)
	data := newData(t)
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // the appliance opens the address itself
	cmd := exec.Command(bin, "-data", data, "-listen", addr, "-insecure-loopback")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") })
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "calendar listening") {
	}
	go io.Copy(io.Discard, out)
	base := "http://" + addr
	resp, _ := request(t, http.DefaultClient, "PROPFIND", base+"/alice/", "", false, "Depth", "0")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
		t.Fatalf("anonymous: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, body := request(t, http.DefaultClient, "MKCALENDAR", base+"/alice/calendar/home/", mkcal, true)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("MKCALENDAR: %d %s", resp.StatusCode, body)
	}
	resp, body = request(t, http.DefaultClient, "PUT", base+"/alice/calendar/home/a.ics", event("a"), true, "Content-Type", "text/calendar")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestSocketActivationTLSAndIdleExit hands the appliance a socket named "https" as
// jitsu does, talks TLS to it trusting the home CA, and watches it exit when idle.
func TestSocketActivationTLSAndIdleExit(t *testing.T) {
	bin := build(t)
	data := newData(t)
	ca, _, err := signpost.OpenHomeCA(data, signpost.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	ln := listen(t)
	p := launch(t, bin, ln, "https", "-data", data, "-idle-exit", "2s")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	c := &http.Client{Transport: tr}
	url := fmt.Sprintf("https://%s/alice/", ln.Addr())
	resp, body := request(t, c, "PROPFIND", url, "", true, "Depth", "0")
	if resp.StatusCode != http.StatusMultiStatus || !strings.Contains(body, "calendar-home-set") {
		t.Fatalf("PROPFIND principal: %d %s", resp.StatusCode, body)
	}
	tr.CloseIdleConnections()
	p.wait(t, 60*time.Second)
	if p.err != nil {
		t.Fatalf("idle exit: %v\n%s", p.err, p.log())
	}
}

// TestCrashDurability PUTs events while the appliance is killed with SIGKILL; after a
// restart every PUT that was answered 201 is there.
func TestCrashDurability(t *testing.T) {
	bin := build(t)
	data := newData(t)
	ln := listen(t)
	p := launch(t, bin, ln, "http", "-data", data)
	base := "http://" + ln.Addr().String()
	c := &http.Client{Timeout: 20 * time.Second}
	if resp, body := request(t, c, "MKCALENDAR", base+"/alice/calendar/home/", mkcal, true); resp.StatusCode != http.StatusCreated {
		t.Fatalf("MKCALENDAR: %d %s", resp.StatusCode, body)
	}
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				uid := fmt.Sprintf("w%d-%d", w, i)
				req, _ := http.NewRequest("PUT", base+"/alice/calendar/home/"+uid+".ics", strings.NewReader(event(uid)))
				req.SetBasicAuth("alice", password)
				req.Header.Set("Content-Type", "text/calendar")
				resp, err := c.Do(req)
				if err != nil {
					return // killed
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					mu.Lock()
					acked = append(acked, uid)
					mu.Unlock()
				}
			}
		}()
	}
	// kill once some writes have been acknowledged
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 40 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	wg.Wait()
	p.wait(t, 30*time.Second)
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before the kill")
	}
	launch(t, bin, ln, "http", "-data", data)
	for _, uid := range acked {
		resp, body := request(t, c, "GET", base+"/alice/calendar/home/"+uid+".ics", "", true)
		if resp.StatusCode != http.StatusOK || body != event(uid) {
			t.Fatalf("acknowledged %s lost after SIGKILL: %d %q", uid, resp.StatusCode, body)
		}
	}
	t.Logf("%d acknowledged writes all survived SIGKILL", len(acked))
}
