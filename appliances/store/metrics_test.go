package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// freeLoopbackAddr returns a loopback address with a port that was free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestMetricsAndLogFormat: -metrics serves the request and store counters of real requests;
// -log-format json writes JSON lines; bad values are refused.
func TestMetricsAndLogFormat(t *testing.T) {
	bin := buildAppliance(t)
	data := dataWithUser(t)
	maddr := freeLoopbackAddr(t)
	a := start(t, bin, []string{"-data", data, "-listen", "127.0.0.1:0", "-https", "", "-metrics", maddr}, nil)
	checkServes(t, a.addr)
	req, _ := http.NewRequest("PUT", "http://"+a.addr+"/api/repos/alice/notes/keys/todo", strings.NewReader("milk"))
	req.SetBasicAuth("alice", "alice-password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	text := scrapeMetrics(t, maddr)
	for _, want := range []string{
		`hearth_http_requests_total{appliance="store",code="401",method="get"} 1`,
		`hearth_http_requests_total{appliance="store",code="200",method="get"} 1`,
		`hearth_store_commits_total{appliance="store"} 1`,
		`hearth_store_written_bytes_total{appliance="store"} 4`,
		`hearth_store_repositories{appliance="store"} 2`, // system/accounts and alice/notes
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}

	// JSON logs: the error of a data directory that cannot be made is one JSON object.
	out, err := exec.Command(bin, "-data", "/dev/null/x", "-log-format", "json").CombinedOutput()
	if err == nil {
		t.Fatal("a bad data directory was accepted")
	}
	var rec map[string]any
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if json.Unmarshal([]byte(lines[len(lines)-1]), &rec) != nil || rec["msg"] != "store stopped" || rec["level"] != "ERROR" {
		t.Fatalf("not a JSON log line: %s", out)
	}
	for _, args := range [][]string{
		{"-data", data, "-log-format", "xml"},
		{"-data", data, "-listen", "127.0.0.1:0", "-https", "", "-metrics", "0.0.0.0:0"},
	} {
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%v accepted:\n%s", args, out)
		}
	}
}
