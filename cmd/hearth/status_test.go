package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/jitsu"
)

// TestStatus: "hearth status" reads jitsu's /status over a socket and prints a row per
// appliance; with nothing listening it says so and fails.
func TestStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(jitsuStatus{
			Appliances: []jitsu.ApplianceStatus{
				{Name: "store", State: jitsu.StateRunning, PID: 4242, Since: time.Now(), Summons: 3, LastSummonLatency: 1500 * time.Microsecond},
				{Name: "mail", State: jitsu.StateStopped},
			},
			DNS: jitsu.DNSStats{Queries: map[string]uint64{"A": 7, "SRV": 2}},
		})
	}))
	defer srv.Close()
	code, out, errOut := runCmd(t, "", "status", "-status", strings.TrimPrefix(srv.URL, "http://"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"store", "running", "4242", "1.5ms", "mail", "stopped", "DNS: 9 queries"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	srv.Close()
	if code, _, errOut := runCmd(t, "", "status", "-status", strings.TrimPrefix(srv.URL, "http://")); code != 1 || !strings.Contains(errOut, "is jitsu running") {
		t.Fatalf("with jitsu gone: exit %d, %q", code, errOut)
	}
}
