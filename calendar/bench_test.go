package calendar

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"net/http/httptest"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// benchServer serves a calendar of n generated events from an on-disk store.
func benchServer(b *testing.B, n int) (*httptest.Server, func(method, path, body string, hdr ...string) int) {
	b.Helper()
	ctx := context.Background()
	repos, err := store.OpenRepos(filepath.Join(b.TempDir(), "repos"), &store.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { repos.Close() })
	acct, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := acct.Add(ctx, "alice", testPassword); err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(Options{Repos: repos, Accounts: acct, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	do := func(method, path, body string, hdr ...string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth("alice", testPassword)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("MKCALENDAR", "/alice/calendar/home/", ""); code != 201 {
		b.Fatalf("MKCALENDAR: %d", code)
	}
	for i := range n {
		if code := do("PUT", fmt.Sprintf("/alice/calendar/home/e%d.ics", i), benchEvent(i), "Content-Type", "text/calendar"); code != 201 {
			b.Fatalf("PUT: %d", code)
		}
	}
	return srv, do
}

func benchEvent(i int) string {
	s := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(7*i) * time.Hour)
	return string(ics("BEGIN:VEVENT", fmt.Sprintf("UID:e%d", i), "DTSTAMP:20250101T000000Z", "DTSTART:"+s.Format(utcFormat),
		"DTEND:"+s.Add(time.Hour).Format(utcFormat), fmt.Sprintf("SUMMARY:Event %d", i), "END:VEVENT"))
}

// BenchmarkPut measures sequential PUTs of new events (each a durable commit).
func BenchmarkPut(b *testing.B) {
	_, do := benchServer(b, 0)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if code := do("PUT", fmt.Sprintf("/alice/calendar/home/p%d.ics", i), benchEvent(i), "Content-Type", "text/calendar"); code != 201 {
			b.Fatalf("PUT: %d", code)
		}
	}
}

// BenchmarkQueryWeek measures a one-week calendar-query over 500 events.
func BenchmarkQueryWeek(b *testing.B) {
	_, do := benchServer(b, 500)
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>
<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20250301T000000Z" end="20250308T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	b.ResetTimer()
	for b.Loop() {
		if code := do("REPORT", "/alice/calendar/home/", body, "Depth", "1"); code != 207 {
			b.Fatalf("REPORT: %d", code)
		}
	}
}
