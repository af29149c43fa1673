package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestMetricsAndLogFormat: CalDAV requests show in -metrics, logs are JSON with
// -log-format json, and bad values are refused.
func TestMetricsAndLogFormat(t *testing.T) {
	bin := build(t)
	data := newData(t)
	mln := listen(t)
	maddr := mln.Addr().String()
	mln.Close()
	ln := listen(t)
	p := launch(t, bin, ln, "http", "-data", data, "-metrics", maddr, "-log-format", "json")
	base := "http://" + ln.Addr().String()
	mk := `<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Home</D:displayname></D:prop></D:set></C:mkcalendar>`
	if resp, body := request(t, http.DefaultClient, "MKCALENDAR", base+"/alice/calendar/home/", mk, true); resp.StatusCode != 201 {
		t.Fatalf("MKCALENDAR: %d %s", resp.StatusCode, body)
	}
	if resp, body := request(t, http.DefaultClient, "PUT", base+"/alice/calendar/home/e1.ics", event("e1"), true, "Content-Type", "text/calendar"); resp.StatusCode != 201 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`hearth_http_requests_total{appliance="calendar",code="201",method="mkcalendar"} 1`,
		`hearth_http_requests_total{appliance="calendar",code="201",method="put"} 1`,
		`hearth_store_commits_total{appliance="calendar"} 2`,
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(p.log()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] == nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
	}
	for _, args := range [][]string{
		{"-data", t.TempDir(), "-log-format", "xml"},
		{"-data", t.TempDir(), "-listen", "127.0.0.1:0", "-metrics", "0.0.0.0:0"},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err == nil {
			t.Fatalf("%v accepted: %s", args, out)
		}
	}
}
