package signpost

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// scrape fetches /metrics from a real server and returns the text.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func hasLine(text, prefix string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestMetricsMiddleware(t *testing.T) {
	m := NewMetrics("contacts")
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusInternalServerError) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			http.Error(w, "no flusher", http.StatusTeapot)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := httptest.NewServer(m.Middleware(mux))
	defer srv.Close()
	do := func(method, path string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	do("GET", "/ok")
	do("GET", "/ok")
	do("PROPFIND", "/fail")
	do("BREW", "/ok") // an unknown method must not become a label
	if code := do("GET", "/stream"); code != http.StatusOK {
		t.Fatalf("the middleware hid http.Flusher: %d", code)
	}
	text := scrape(t, m)
	for _, want := range []string{
		`hearth_http_requests_total{appliance="contacts",code="200",method="get"} 3`,
		`hearth_http_requests_total{appliance="contacts",code="500",method="propfind"} 1`,
		`hearth_http_requests_total{appliance="contacts",code="200",method="unknown"} 1`,
		`hearth_http_request_duration_seconds_count{appliance="contacts",method="get"} 3`,
		`hearth_http_requests_in_flight{appliance="contacts"} 0`,
		`go_goroutines{appliance="contacts"}`,
	} {
		if !hasLine(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(text, "BREW") || strings.Contains(text, "brew") {
		t.Error("an unknown method became a label value")
	}
}

func TestMetricsStoreAndLogs(t *testing.T) {
	ctx := context.Background()
	m := NewMetrics("store")
	root := filepath.Join(t.TempDir(), "repos")
	repos, err := store.OpenRepos(root, &store.Options{Logger: slog.New(slog.DiscardHandler), OnCommit: m.OnCommit})
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	s, err := repos.Open(ctx, "alice/notes", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"12345", "123"} {
		if _, err := s.Commit(ctx, store.Change{Ops: []store.Op{{Key: "k", Value: []byte(v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	m.WatchRepoSizes(root, 0)
	log := slog.New(m.CountLogs(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	log.Debug("not enabled: not counted")
	log.Warn("one")
	log.With("a", 1).WithGroup("g").Error("two")
	text := scrape(t, m)
	for _, want := range []string{
		`hearth_store_commits_total{appliance="store"} 2`,
		`hearth_store_changes_total{appliance="store"} 2`,
		`hearth_store_written_bytes_total{appliance="store"} 8`,
		`hearth_store_repositories{appliance="store"} 1`,
		`hearth_log_records_total{appliance="store",level="WARN"} 1`,
		`hearth_log_records_total{appliance="store",level="ERROR"} 1`,
	} {
		if !hasLine(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if hasLine(text, `hearth_log_records_total{appliance="store",level="DEBUG"}`) {
		t.Error("a disabled record was counted")
	}
	if hasLine(text, `hearth_store_disk_bytes{appliance="store"} 0`) {
		t.Error("disk bytes are zero")
	}
}

func TestConnMetrics(t *testing.T) {
	m := NewMetrics("mail")
	cm := m.ConnMetrics()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	seenDone := make(chan struct{})
	ln := cm.Listener("imap", raw, func() func([]byte) { return func(b []byte) { seen.Write(b) } })
	defer ln.Close()
	go func() {
		defer close(seenDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "* OK hello\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "a1 OK "+line)
		c.Close()
		c.Close() // twice: the open gauge must not go negative
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	br.ReadString('\n')
	io.WriteString(c, "noop\r\n")
	br.ReadString('\n')
	c.Close()
	<-seenDone
	if seen.String() != "* OK hello\r\na1 OK noop\r\n" {
		t.Fatalf("observer saw %q", seen.String())
	}
	text := scrape(t, m)
	for _, want := range []string{
		`hearth_connections_total{appliance="mail",proto="imap"} 1`,
		`hearth_connections_open{appliance="mail",proto="imap"} 0`,
		`hearth_connection_bytes_total{appliance="mail",direction="in",proto="imap"} 6`,
		`hearth_connection_bytes_total{appliance="mail",direction="out",proto="imap"} 24`,
	} {
		if !hasLine(text, want) {
			t.Errorf("missing %s\n", want)
		}
	}
}

func TestMetricsListener(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"[::1]:0", true},
		{"0.0.0.0:0", false},
		{"192.0.2.1:0", false},
		{"nonsense", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			ln, err := MetricsListener(tc.addr)
			if ln != nil {
				ln.Close()
			}
			if tc.ok != (err == nil) {
				if tc.addr == "[::1]:0" && err != nil && strings.Contains(err.Error(), "cannot assign") {
					t.Skip("no IPv6 loopback here")
				}
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestServeMetrics(t *testing.T) {
	m := NewMetrics("calendar")
	ln, err := MetricsListener("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeMetrics(ctx, ln, slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `appliance="calendar"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMiddleware is the cost the metrics add to a request.
func BenchmarkMiddleware(b *testing.B) {
	m := NewMetrics("bench")
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	req := httptest.NewRequest("PROPFIND", "/alice/", nil)
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
