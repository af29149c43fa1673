package calendar

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/memstore"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const testPassword = "correct horse battery"

type testEnv struct {
	srv  *httptest.Server
	acct *signpost.Accounts
	h    *Handler
}

func newTestEnv(t *testing.T, users ...string) *testEnv {
	t.Helper()
	ctx := context.Background()
	repos := memstore.NewRepos(nil)
	as, err := repos.Open(ctx, signpost.AccountsRepo, true)
	if err != nil {
		t.Fatal(err)
	}
	acct := signpost.NewAccounts(as, signpost.AccountsOptions{Logger: quiet,
		Limits: signpost.LimitOptions{FreeFailures: 1000, LockoutAfter: 2000}})
	for _, u := range users {
		if err := acct.Add(ctx, u, testPassword); err != nil {
			t.Fatal(err)
		}
	}
	h, err := NewHandler(Options{Repos: repos, Accounts: acct, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testEnv{srv: srv, acct: acct, h: h}
}

// do sends one request as user and returns the status and body.
func (e *testEnv) do(t *testing.T, user, method, path, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, testPassword)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/xml; charset=utf-8")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (e *testEnv) mkcalendar(t *testing.T, user, path string, comps ...string) {
	t.Helper()
	var set string
	for _, c := range comps {
		set += `<C:comp name="` + c + `"/>`
	}
	if set != "" {
		set = "<C:supported-calendar-component-set>" + set + "</C:supported-calendar-component-set>"
	}
	body := `<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Work</D:displayname>` + set + `</D:prop></D:set></C:mkcalendar>`
	if code, b, _ := e.do(t, user, "MKCALENDAR", path, body); code != http.StatusCreated {
		t.Fatalf("MKCALENDAR %s: %d %s", path, code, b)
	}
}

func (e *testEnv) client(t *testing.T, user string) *caldav.Client {
	t.Helper()
	c, err := caldav.NewClient(webdav.HTTPClientWithBasicAuth(nil, user, testPassword), e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustDecode(t *testing.T, s string) *ical.Calendar {
	t.Helper()
	cal, err := ical.NewDecoder(strings.NewReader(s)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	return cal
}

func paths(cos []caldav.CalendarObject) []string {
	var out []string
	for _, co := range cos {
		out = append(out, co.Path)
	}
	slices.Sort(out)
	return out
}

// TestGoClient drives the server with go-webdav's CalDAV client end to end.
func TestGoClient(t *testing.T) {
	e := newTestEnv(t, "alice")
	ctx := context.Background()
	c := e.client(t, "alice")

	// discovery: the well-known URL redirects to the principal
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/.well-known/caldav", nil)
	req.SetBasicAuth("alice", testPassword)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/alice/" {
		t.Fatalf("well-known: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	principal, err := c.FindCurrentUserPrincipal(ctx)
	if err != nil || principal != "/alice/" {
		t.Fatalf("principal %q, %v", principal, err)
	}
	home, err := c.FindCalendarHomeSet(ctx, principal)
	if err != nil || home != "/alice/calendar/" {
		t.Fatalf("home set %q, %v", home, err)
	}
	e.mkcalendar(t, "alice", "/alice/calendar/work/", "VEVENT", "VTODO")
	cals, err := c.FindCalendars(ctx, home)
	if err != nil || len(cals) != 1 || cals[0].Path != "/alice/calendar/work/" || cals[0].Name != "Work" {
		t.Fatalf("calendars %+v, %v", cals, err)
	}

	objects := map[string]string{
		"weekly.ics": string(ics("BEGIN:VEVENT", "UID:weekly", "DTSTAMP:20250101T000000Z", "SUMMARY:Standup",
			"DTSTART;TZID=Europe/Berlin:20250106T093000", "DURATION:PT15M", "RRULE:FREQ=WEEKLY;BYDAY=MO",
			"EXDATE;TZID=Europe/Berlin:20250113T093000", "END:VEVENT")),
		"once.ics": string(ics("BEGIN:VEVENT", "UID:once", "DTSTAMP:20250101T000000Z", "SUMMARY:Dentist",
			"DTSTART:20250305T140000Z", "DTEND:20250305T150000Z", "END:VEVENT")),
		"todo.ics": string(ics("BEGIN:VTODO", "UID:todo", "DTSTAMP:20250101T000000Z", "SUMMARY:Taxes",
			"DUE;VALUE=DATE:20250315", "END:VTODO")),
	}
	for name, data := range objects {
		if _, err := c.PutCalendarObject(ctx, "/alice/calendar/work/"+name, mustDecode(t, data)); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	got, err := c.GetCalendarObject(ctx, "/alice/calendar/work/once.ics")
	if err != nil || got.ETag == "" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if s, _ := got.Data.Children[0].Props.Text(ical.PropSummary); s != "Dentist" {
		t.Fatalf("summary %q", s)
	}

	mg, err := c.MultiGetCalendar(ctx, "/alice/calendar/work/", &caldav.CalendarMultiGet{
		Paths:       []string{"/alice/calendar/work/once.ics", "/alice/calendar/work/todo.ics"},
		CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true}})
	if err != nil || len(mg) != 2 {
		t.Fatalf("multiget: %d objects, %v", len(mg), err)
	}

	query := func(comp string, start, end string) []string {
		t.Helper()
		q := &caldav.CalendarQuery{
			CompRequest: caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
			CompFilter: caldav.CompFilter{Name: "VCALENDAR", Comps: []caldav.CompFilter{{Name: comp,
				Start: ts(start), End: ts(end)}}},
		}
		cos, err := c.QueryCalendar(ctx, "/alice/calendar/work/", q)
		if err != nil {
			t.Fatalf("query %s %s–%s: %v", comp, start, end, err)
		}
		return paths(cos)
	}
	cases := []struct {
		name, comp, start, end string
		want                   []string
	}{
		{"a Monday far ahead has the standup", "VEVENT", "20260105T080000Z", "20260105T090000Z", []string{"/alice/calendar/work/weekly.ics"}},
		{"the excluded Monday has none", "VEVENT", "20250113T000000Z", "20250114T000000Z", nil},
		{"a Tuesday has none", "VEVENT", "20250107T000000Z", "20250108T000000Z", nil},
		{"March week has both events", "VEVENT", "20250303T000000Z", "20250310T000000Z", []string{"/alice/calendar/work/once.ics", "/alice/calendar/work/weekly.ics"}},
		{"todo due in range", "VTODO", "20250314T000000Z", "20250316T000000Z", []string{"/alice/calendar/work/todo.ics"}},
		{"todo due later", "VTODO", "20250301T000000Z", "20250302T000000Z", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := query(tc.comp, tc.start, tc.end); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	if err := c.RemoveAll(ctx, "/alice/calendar/work/once.ics"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.GetCalendarObject(ctx, "/alice/calendar/work/once.ics"); err == nil {
		t.Fatal("deleted object still there")
	}
	if got := query("VEVENT", "20250305T000000Z", "20250306T000000Z"); len(got) != 0 {
		t.Fatalf("deleted object still matches: %v", got)
	}
}

// TestReports checks the REPORTs the library lacks, over raw HTTP.
func TestReports(t *testing.T) {
	e := newTestEnv(t, "alice", "bob")
	e.mkcalendar(t, "alice", "/alice/calendar/home/")
	put := func(name, data string) {
		t.Helper()
		code, b, _ := e.do(t, "alice", "PUT", "/alice/calendar/home/"+name, data, "Content-Type", "text/calendar")
		if code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", name, code, b)
		}
	}
	put("r.ics", string(ics("BEGIN:VEVENT", "UID:r", "DTSTAMP:20250101T000000Z", "SUMMARY:Gym",
		"DTSTART:20250301T180000Z", "DTEND:20250301T190000Z", "RRULE:FREQ=DAILY;COUNT=10", "END:VEVENT",
		"BEGIN:VEVENT", "UID:r", "DTSTAMP:20250101T000000Z", "SUMMARY:Gym late", "RECURRENCE-ID:20250303T180000Z",
		"DTSTART:20250303T200000Z", "DTEND:20250303T210000Z", "END:VEVENT",
		"BEGIN:VEVENT", "UID:r", "DTSTAMP:20250101T000000Z", "SUMMARY:Gym moved away", "RECURRENCE-ID:20250308T180000Z",
		"DTSTART:20250408T180000Z", "DTEND:20250408T190000Z", "END:VEVENT")))
	put("t.ics", string(ics("BEGIN:VEVENT", "UID:t", "DTSTAMP:20250101T000000Z", "SUMMARY:Maybe",
		"STATUS:TENTATIVE", "DTSTART:20250302T100000Z", "DTEND:20250302T110000Z", "END:VEVENT")))
	put("free.ics", string(ics("BEGIN:VEVENT", "UID:free", "DTSTAMP:20250101T000000Z", "SUMMARY:Reminder",
		"TRANSP:TRANSPARENT", "DTSTART:20250302T120000Z", "DTEND:20250302T130000Z", "END:VEVENT")))

	const pre = `<?xml version="1.0" encoding="utf-8"?>`
	t.Run("expand", func(t *testing.T) {
		body := pre + `<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/>
<C:calendar-data><C:expand start="20250302T000000Z" end="20250304T000000Z"/></C:calendar-data></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20250302T000000Z" end="20250304T000000Z"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`
		code, b, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", body, "Depth", "1")
		if code != http.StatusMultiStatus {
			t.Fatalf("%d %s", code, b)
		}
		for _, want := range []string{"RECURRENCE-ID:20250302T180000Z", "RECURRENCE-ID:20250303T180000Z", "DTSTART:20250303T200000Z", "SUMMARY:Gym late", "/alice/calendar/home/t.ics"} {
			if !strings.Contains(b, want) {
				t.Errorf("expanded answer lacks %q:\n%s", want, b)
			}
		}
		for _, bad := range []string{"RRULE", "20250301T180000Z", "Gym moved away"} {
			if strings.Contains(b, bad) {
				t.Errorf("expanded answer has %q:\n%s", bad, b)
			}
		}
	})
	t.Run("limit-recurrence-set", func(t *testing.T) {
		body := pre + `<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>
<C:calendar-data><C:limit-recurrence-set start="20250303T000000Z" end="20250304T000000Z"/></C:calendar-data></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20250303T000000Z" end="20250304T000000Z"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`
		code, b, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", body, "Depth", "1")
		if code != http.StatusMultiStatus || !strings.Contains(b, "RRULE:FREQ=DAILY;COUNT=10") || !strings.Contains(b, "Gym late") || strings.Contains(b, "Gym moved away") {
			t.Fatalf("%d %s", code, b)
		}
	})
	t.Run("exact bytes in query", func(t *testing.T) {
		body := pre + `<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data/></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match>maybe</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`
		code, b, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", body, "Depth", "1")
		if code != http.StatusMultiStatus || !strings.Contains(b, "PRODID:-//test//EN&#13;\nBEGIN:VEVENT") || strings.Contains(b, "Gym") {
			t.Fatalf("%d %s", code, b)
		}
	})
	t.Run("partial calendar-data", func(t *testing.T) {
		body := pre + `<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data>
<C:comp name="VCALENDAR"><C:prop name="VERSION"/><C:comp name="VEVENT"><C:prop name="SUMMARY"/><C:prop name="UID"/></C:comp></C:comp>
</C:calendar-data></D:prop><D:href>/alice/calendar/home/t.ics</D:href></C:calendar-multiget>`
		code, b, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", body, "Depth", "1")
		if code != http.StatusMultiStatus || !strings.Contains(b, "SUMMARY:Maybe") || !strings.Contains(b, "UID:t") || !strings.Contains(b, "VERSION:2.0") {
			t.Fatalf("%d %s", code, b)
		}
		for _, gone := range []string{"DTSTART", "PRODID", "STATUS"} {
			if strings.Contains(b, gone) {
				t.Errorf("partial data has %s:\n%s", gone, b)
			}
		}
	})
	t.Run("free-busy", func(t *testing.T) {
		body := pre + `<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20250302T000000Z" end="20250304T000000Z"/></C:free-busy-query>`
		code, b, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", body, "Depth", "1")
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, b)
		}
		for _, want := range []string{"BEGIN:VFREEBUSY", "FREEBUSY;FBTYPE=BUSY:20250302T180000Z/20250302T190000Z",
			"FREEBUSY;FBTYPE=BUSY:20250303T200000Z/20250303T210000Z", "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20250302T100000Z/20250302T110000Z"} {
			if !strings.Contains(b, want) {
				t.Errorf("free-busy lacks %q:\n%s", want, b)
			}
		}
		if strings.Contains(b, "20250302T120000Z") || strings.Contains(b, "20250303T180000Z/") {
			t.Errorf("free-busy has transparent or overridden time:\n%s", b)
		}
	})
	t.Run("floating times in the query's time zone", func(t *testing.T) {
		put("day.ics", string(ics("BEGIN:VEVENT", "UID:day", "DTSTAMP:20250101T000000Z", "SUMMARY:All day",
			"DTSTART;VALUE=DATE:20250310", "END:VEVENT")))
		// 2025-03-11 02:00–03:00Z is still March 10 in New York, not in UTC
		q := func(tz string) string {
			return pre + `<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20250311T020000Z" end="20250311T030000Z"/></C:comp-filter></C:comp-filter></C:filter>` + tz + `</C:calendar-query>`
		}
		cases := []struct {
			name, tz string
			want     bool
		}{
			{"UTC by default", "", false},
			{"timezone-id", "<C:timezone-id>America/New_York</C:timezone-id>", true},
			{"timezone VTIMEZONE", "<C:timezone>BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:Eastern\r\nBEGIN:STANDARD\r\nDTSTART:19701101T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700308T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n</C:timezone>", true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, b, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", strings.ReplaceAll(q(tc.tz), `\r\n`, "\r\n"), "Depth", "1")
				if code != http.StatusMultiStatus || strings.Contains(b, "day.ics") != tc.want {
					t.Fatalf("%d, day.ics listed: %v, want %v\n%s", code, strings.Contains(b, "day.ics"), tc.want, b)
				}
			})
		}
	})
	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name, user, body string
			want             int
			wantBody         string
		}{
			{"no filter", "alice", pre + `<C:calendar-query xmlns:C="urn:ietf:params:xml:ns:caldav"/>`, 400, "valid-filter"},
			{"bad time", "alice", pre + `<C:calendar-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="yesterday"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`, 400, "valid-filter"},
			{"bad collation", "alice", pre + `<C:calendar-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match collation="i;klingon">x</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`, 403, "supported-collation"},
			{"not XML", "alice", "<<<", 400, ""},
			{"free-busy without range", "alice", pre + `<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"/>`, 400, ""},
			{"someone else's calendar", "bob", pre + `<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20250302T000000Z" end="20250304T000000Z"/></C:free-busy-query>`, 403, ""},
			{"anonymous", "", pre + `<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20250302T000000Z" end="20250304T000000Z"/></C:free-busy-query>`, 401, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, b, _ := e.do(t, tc.user, "REPORT", "/alice/calendar/home/", tc.body, "Depth", "1")
				if code != tc.want || !strings.Contains(b, tc.wantBody) {
					t.Fatalf("%d %s, want %d with %q", code, b, tc.want, tc.wantBody)
				}
			})
		}
	})
	t.Run("shared read-only", func(t *testing.T) {
		ctx := context.Background()
		if err := e.acct.Grant(ctx, signpost.Collection{Owner: "alice", Repo: Repo, Path: "home"}, "bob", signpost.ReadOnly); err != nil {
			t.Fatal(err)
		}
		body := pre + `<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><D:href>/alice/calendar/home/t.ics</D:href><D:href>/alice/calendar/home/gone.ics</D:href></C:calendar-multiget>`
		code, b, _ := e.do(t, "bob", "REPORT", "/alice/calendar/home/", body, "Depth", "1")
		if code != http.StatusMultiStatus || !strings.Contains(b, "SUMMARY:Maybe") || !strings.Contains(b, "404 Not Found") {
			t.Fatalf("%d %s", code, b)
		}
		code, b, _ = e.do(t, "bob", "PUT", "/alice/calendar/home/bob.ics", string(ics("BEGIN:VEVENT", "UID:bob", "DTSTART:20250302T100000Z", "END:VEVENT")), "Content-Type", "text/calendar")
		if code != http.StatusForbidden {
			t.Fatalf("read-only PUT: %d %s", code, b)
		}
	})
	_ = time.Now
}
