package dashboard

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
)

const jitsuToken = "test-token-0123456789"

// startJitsu runs a real jitsu with one appliance, "sleeper" (/bin/sleep holding a
// socket), and serves its status JSON with the stop endpoint (StopHandler) beside it, as
// jitsu's status server would.
func startJitsu(t *testing.T) (*jitsu.Jitsu, string) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	ctx := context.Background()
	names := signpost.Names{Domain: "home.arpa", Appliances: []signpost.Appliance{
		{Name: "sleeper", Ports: []signpost.Port{{Name: "http", Proto: "tcp", Port: 1}}},
	}}
	j, err := jitsu.Start(ctx, jitsu.Config{
		Names:     names,
		Manifests: []jitsu.Manifest{{Name: "sleeper", Exec: []string{sleep, "300"}, Sockets: []jitsu.Socket{{Name: "http", Proto: "tcp", Addr: "127.0.0.1:0"}}}},
		DNSAddr:   "127.0.0.1:0",
		Summon:    jitsu.SummonOptions{Logger: quiet, StopGrace: 2 * time.Second},
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j.Close(cctx)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /status", j.StatusHandler())
	mux.Handle("POST /appliances/{name}/stop", jitsu.StopHandler(jitsuToken, j.Summoner().Stop))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return j, srv.URL + "/status"
}

func TestAppliancesFromJitsu(t *testing.T) {
	j, statusURL := startJitsu(t)
	if err := j.Summoner().Summon(context.Background(), "sleeper"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{JitsuStatusURL: statusURL, JitsuToken: jitsuToken, Now: time.Now})
	a := e.client(t)
	a.login("admin", adminPW)
	_, body := a.get("/appliances")
	row := regexp.MustCompile(`(?s)<tr id="app-sleeper">.*?</tr>`).FindString(body)
	if row == "" {
		t.Fatalf("no row for sleeper:\n%s", body)
	}
	if !strings.Contains(row, `class="running">running<`) {
		t.Errorf("sleeper is not shown running: %s", row)
	}
	if !regexp.MustCompile(`<td>1</td><td>[0-9.]+[µnm]?s</td><td>[0-9.]+ [KM]iB</td><td>0</td>`).MatchString(row) {
		t.Errorf("row lacks summons, latency, memory or connections: %s", row)
	}
	// alice sees the appliances but no stop button, and may not stop one.
	alice := e.client(t)
	alice.login("alice", alicePW)
	_, ab := alice.get("/appliances")
	if !strings.Contains(ab, `id="app-sleeper"`) || strings.Contains(ab, "/appliances/sleeper/stop") {
		t.Errorf("alice's view: %s", ab)
	}
	if code, _ := alice.post("/appliances/sleeper/stop", nil); code != http.StatusForbidden {
		t.Errorf("alice stops an appliance: %d, want 403", code)
	}
	// The admin stops it.
	a.get("/appliances")
	code, body := a.post("/appliances/sleeper/stop", nil)
	if code != http.StatusOK || !strings.Contains(body, "Stopped sleeper.") || !strings.Contains(body, `class="stopped">stopped<`) {
		t.Fatalf("stop: %d %s", code, body)
	}
	if st := j.Status(); st[0].State != jitsu.StateStopped {
		t.Fatalf("jitsu says %s", st[0].State)
	}
	if code, _ := a.post("/appliances/BAD!/stop", nil); code != http.StatusBadRequest && code != http.StatusNotFound {
		t.Errorf("bad name: %d", code)
	}

	// A wrong token: jitsu refuses, the dashboard says so.
	e2 := newEnv(t, Options{JitsuStatusURL: statusURL, JitsuToken: "wrong", Now: time.Now})
	b := e2.client(t)
	b.login("admin", adminPW)
	b.get("/appliances")
	if code, body := b.post("/appliances/sleeper/stop", nil); code != http.StatusBadGateway || !strings.Contains(body, "401") {
		t.Fatalf("stop with a wrong token: %d %s", code, body)
	}
}

func TestAppliancesJitsuDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cases := []struct {
		name, url, want string
	}{
		{"not configured", "", "not configured"},
		{"down", "http://" + addr + "/status", "Jitsu did not answer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{JitsuStatusURL: tc.url})
			c := e.client(t)
			c.login("admin", adminPW)
			if _, body := c.get("/appliances"); !strings.Contains(body, tc.want) {
				t.Fatalf("page lacks %q:\n%s", tc.want, body)
			}
		})
	}
}
