package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// buildAppliance compiles this package into a temporary directory.
func buildAppliance(t *testing.T, tags ...string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "store")
	out, err := exec.Command(gobin, "build", "-tags", strings.Join(tags, ","), "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// dataWithUser makes a data directory with user alice.
func dataWithUser(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(context.Background(), "alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	return data
}

// appliance is a running store binary.
type appliance struct {
	cmd  *exec.Cmd
	addr string        // where it serves, from its log
	done chan struct{} // closed when it has exited
	err  error         // cmd.Wait's result, once done
	log  []string      // its whole stderr, once done
}

// start runs bin with args and env (added to a LISTEN_*-free environment) and files as
// descriptors 3…, and waits for it to log the address it serves on.
func start(t *testing.T, bin string, args, env []string, files ...*os.File) *appliance {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") })
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &appliance{cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-a.done
	})
	sc := bufio.NewScanner(stderr)
	var lines []string
	serving := regexp.MustCompile(`msg=serving addr=(\S+)`)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if m := serving.FindStringSubmatch(sc.Text()); m != nil {
			a.addr = m[1]
			break
		}
	}
	go func() {
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		a.err, a.log = cmd.Wait(), lines
		close(a.done)
	}()
	if a.addr == "" {
		<-a.done
		t.Fatalf("the appliance logged no address:\n%s", strings.Join(a.log, "\n"))
	}
	return a
}

// wait returns the appliance's log and exit error; it fails the test if the appliance
// has not exited within a minute (a guard against hanging, not a timing assertion).
func (a *appliance) wait(t *testing.T) (string, error) {
	t.Helper()
	select {
	case <-a.done:
		return strings.Join(a.log, "\n"), a.err
	case <-time.After(time.Minute):
		t.Fatal("the appliance did not exit")
		return "", nil
	}
}

// get requests /api/repos with or without alice's credentials, on a connection of its own.
func get(t *testing.T, addr string, auth bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/api/repos", nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("alice", "alice-password")
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func checkServes(t *testing.T, addr string) {
	t.Helper()
	if code, body := get(t, addr, false); code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d %s", code, body)
	}
	code, body := get(t, addr, true)
	var got struct{ Repos []string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("with credentials: %d %s", code, body)
	}
}

func TestAppliance(t *testing.T) {
	bin := buildAppliance(t)

	t.Run("listen flag, stops on SIGTERM", func(t *testing.T) {
		a := start(t, bin, []string{"-data", dataWithUser(t), "-listen", "127.0.0.1:0", "-https", ""}, nil)
		checkServes(t, a.addr)
		if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if log, err := a.wait(t); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, log)
		}
	})

	t.Run("socket activation and idle exit", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // the appliance holds the socket now
		data := dataWithUser(t)
		// -listen names a port that is in use, so serving anywhere but on the passed
		// socket would fail.
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		a := start(t, bin, []string{"-data", data, "-listen", busy.Addr().String(), "-idle-exit", "300ms"}, []string{"LISTEN_FDS=1"}, f)
		f.Close()
		if a.addr != addr {
			t.Fatalf("serving on %s, want the passed socket %s", a.addr, addr)
		}
		checkServes(t, addr)
		log, err := a.wait(t)
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, log)
		}
		if !strings.Contains(log, "idle, exiting") {
			t.Fatalf("exited, but not for idleness:\n%s", log)
		}
		if _, err := os.Stat(filepath.Join(data, "repos")); err != nil {
			t.Fatalf("repos directory: %v", err)
		}
	})

	t.Run("https with the home CA beside plain http on loopback", func(t *testing.T) {
		var files []*os.File
		var addrs []string
		for range 2 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f, err := l.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			files, addrs = append(files, f), append(addrs, l.Addr().String())
			l.Close()
		}
		data := dataWithUser(t)
		start(t, bin, []string{"-data", data}, []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=http:https"}, files...)
		for _, f := range files {
			f.Close()
		}
		checkServes(t, addrs[0]) // plain HTTP from loopback may carry credentials
		pem, err := os.ReadFile(filepath.Join(data, "ca", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatal("ca.crt holds no certificate")
		}
		for _, name := range []string{"store.home.arpa", "localhost"} {
			client := &http.Client{Transport: &http.Transport{
				DisableKeepAlives: true,
				TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: name},
			}}
			req, _ := http.NewRequest("GET", "https://"+addrs[1]+"/api/repos", nil)
			req.SetBasicAuth("alice", "alice-password")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("https as %s, trusting only the home CA: %v", name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("https as %s: %s", name, resp.Status)
			}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "store.home.arpa"}}}
		if _, err := client.Get("https://" + addrs[1] + "/api/repos"); err == nil {
			t.Fatal("a client that does not trust the home CA connected")
		}
	})

	t.Run("idle exit waits for open connections", func(t *testing.T) {
		a := start(t, bin, []string{"-data", dataWithUser(t), "-listen", "127.0.0.1:0", "-https", "", "-idle-exit", "200ms"}, nil)
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		// While the connection is open the appliance stays; after each request it still
		// answers on the same connection.
		r := bufio.NewReader(c)
		for range 3 {
			if _, err := io.WriteString(c, "GET /api/repos HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d", resp.StatusCode)
			}
			select {
			case <-a.done:
				t.Fatalf("exited with a connection open: %v", a.err)
			case <-time.After(300 * time.Millisecond):
			}
		}
		c.Close()
		if log, err := a.wait(t); err != nil || !strings.Contains(log, "idle, exiting") {
			t.Fatalf("exit %v:\n%s", err, log)
		}
	})
}

func TestApplianceUsage(t *testing.T) {
	bin := buildAppliance(t)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		code int
		text string
	}{
		{"no data", nil, nil, 2, "-data DIR is required"},
		{"negative idle", []string{"-data", t.TempDir(), "-idle-exit", "-1s"}, nil, 2, "negative"},
		{"bad duration", []string{"-data", t.TempDir(), "-idle-exit", "soon"}, nil, 2, "idle-exit"},
		{"extra argument", []string{"-data", t.TempDir(), "now"}, nil, 2, "unexpected"},
		{"bad address", []string{"-data", t.TempDir(), "-listen", "nowhere"}, nil, 1, "nowhere"},
		{"bad LISTEN_FDS", []string{"-data", t.TempDir()}, []string{"LISTEN_FDS=x"}, 1, "LISTEN_FDS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") }), tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.text) {
				t.Fatalf("exit %v (want %d), output %q (want %q)", err, tc.code, out, tc.text)
			}
		})
	}
}
