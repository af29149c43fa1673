package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchDAVHearthOnly runs the DAV benchmark briefly against Hearth's appliances alone
// and checks that every request type was answered and measured.
func TestBenchDAVHearthOnly(t *testing.T) {
	var out bytes.Buffer
	o := davBenchOptions{Duration: 200 * time.Millisecond, Conns: 4, N: 60, SyncItems: 100}
	if err := benchDAV(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log("\n" + text)
	for _, q := range davRequests {
		m := regexp.MustCompile(regexp.QuoteMeta(q.name) + `\s+(\S+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no row for %q", q.name)
		}
		if rate, err := strconv.ParseFloat(m[1], 64); err != nil || rate <= 0 {
			t.Errorf("%s: Hearth rate %q", q.name, m[1])
		}
	}
	if strings.Contains(text, "failed requests") || strings.Contains(text, "Hearth: ") {
		t.Errorf("errors in the run:\n%s", text)
	}
	if !regexp.MustCompile(`sync-collection after 1 change in a 100-event calendar: [0-9.]+ ms`).MatchString(text) {
		t.Errorf("no incremental sync-collection timing")
	}
	if !regexp.MustCompile(`idle RSS of the calendar appliance after the load: [0-9.]+ MiB`).MatchString(text) {
		t.Errorf("no idle RSS of the calendar appliance")
	}
}

func TestBenchDAVFlags(t *testing.T) {
	for _, args := range [][]string{{"-duration", "0s"}, {"-n", "0"}, {"extra"}} {
		if code, _, _ := runCmd(t, "", append([]string{"bench", "dav"}, args...)...); code != 2 {
			t.Errorf("bench dav %v: exit %d, want 2", args, code)
		}
	}
}
