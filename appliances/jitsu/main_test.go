package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestJitsuSummonsTheStore builds jitsu and the store appliance into one directory, runs
// jitsu, and checks: the store's name resolves over DNS (and the lookup summons it), a
// connection to its socket is served by the summoned store (401 without credentials), the
// status shows it running, and SIGTERM stops jitsu and the store.
func TestJitsuSummonsTheStore(t *testing.T) {
	bin := t.TempDir()
	for pkg, name := range map[string]string{".": "jitsu", "../store": "store"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	names := signpost.DefaultNames("")
	httpPort, httpsPort := freePort(t), freePort(t)
	for i, a := range names.Appliances {
		if a.Name != "store" {
			continue
		}
		for j, p := range a.Ports {
			switch p.Name {
			case "http":
				names.Appliances[i].Ports[j].Port = httpPort
			case "https":
				names.Appliances[i].Ports[j].Port = httpsPort
			}
		}
	}
	if err := signpost.WriteNames(data, names); err != nil {
		t.Fatal(err)
	}
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	repos.Close()

	dnsAddr := net.JoinHostPort("127.0.0.1", itoa(freePort(t)))
	statusAddr := net.JoinHostPort("127.0.0.1", itoa(freePort(t)))
	cmd := exec.Command(filepath.Join(bin, "jitsu"), "-data", data, "-dns", dnsAddr, "-status", statusAddr)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	up := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "jitsu up") {
			up = true
			break
		}
	}
	if !up {
		t.Fatal("jitsu did not come up")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	c := &dns.Client{Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("store.home.arpa.", dns.TypeA)
	r, _, err := c.Exchange(m, dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok && a.A.Equal(net.ParseIP("127.0.0.1")) {
			found = true
		}
	}
	if r.Rcode != dns.RcodeSuccess || !found {
		t.Fatalf("store.home.arpa A: %v", r)
	}

	resp, err := http.Get("http://127.0.0.1:" + itoa(httpPort) + "/api/repos")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the summoned store answered %s, want 401", resp.Status)
	}

	// A connection held open to the store shows in its status and metrics (the store
	// accepts it a moment later: wait for it).
	held, err := net.Dial("tcp", "127.0.0.1:"+itoa(httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var st struct {
		Appliances []struct {
			Name, State string
			Summons     int
			RSS         int64
			Conns       int
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err = http.Get("http://" + statusAddr + "/status")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || len(st.Appliances) == 0 || st.Appliances[0].Name != "store" || st.Appliances[0].State != "running" || st.Appliances[0].Summons < 1 {
			t.Fatalf("status %+v, %v", st, err)
		}
		if st.Appliances[0].Conns >= 1 || time.Now().After(deadline) {
			break
		}
	}
	if a := st.Appliances[0]; a.Conns < 1 || a.RSS < 1<<20 {
		t.Fatalf("store status: %d connections (want at least the one held), RSS %d", a.Conns, a.RSS)
	}

	resp, err = http.Get("http://" + statusAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`jitsu_summons_total{appliance="store"} 1`, `jitsu_dns_queries_total{type="A"} 1`,
		`jitsu_summon_latency_seconds_count{appliance="store"} 1`, `jitsu_appliance_running{appliance="store"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	if !regexp.MustCompile(`(?m)^jitsu_appliance_open_connections\{appliance="store"\} [1-9]`).Match(metrics) {
		t.Errorf("/metrics does not count the store's open connection:\n%s", metrics)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("jitsu after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("jitsu did not stop")
	}
	if _, err := http.Get("http://127.0.0.1:" + itoa(httpPort) + "/api/repos"); err == nil {
		t.Error("the store still answers after jitsu stopped")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestServeManifestsFile: extra manifests are loaded (a bad file stops jitsu with the
// reason) and served beside the built-in ones.
func TestServeManifestsFile(t *testing.T) {
	data, bin := t.TempDir(), t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"appliances":[{"name":"Bad!"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(t.TempDir(), "missing.json"), bad} {
		err := serve(t.Context(), logger, data, "127.0.0.1:0", "", bin, "", file)
		if err == nil || !strings.Contains(err.Error(), filepath.Base(file)) {
			t.Errorf("manifests %s: %v", file, err)
		}
	}

	// A process appliance from the file (the store appliance under another name) is
	// summoned by a connection to its socket.
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "store-extra"), "../store").CombinedOutput(); err != nil {
		t.Fatalf("go build ../store: %v\n%s", err, out)
	}
	good := filepath.Join(t.TempDir(), "good.json")
	addr := "127.0.0.1:" + itoa(freePort(t))
	ms := []jitsu.Manifest{{Name: "extra", Exec: []string{filepath.Join(bin, "store-extra"), "-data", data},
		Sockets: []jitsu.Socket{{Name: "http", Proto: "tcp", Addr: addr}}}}
	if err := jitsu.SaveManifests(good, ms); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, logger, data, "127.0.0.1:0", "", bin, "", good) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/api/repos"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the extra appliance answered %s, want 401", resp.Status)
	}
}
