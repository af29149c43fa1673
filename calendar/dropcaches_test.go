package calendar

import (
	"fmt"
	"net/http"
	"testing"
)

// TestDropCaches: an idle appliance empties the parsed-object cache; queries answer the
// same afterwards (and fill it again).
func TestDropCaches(t *testing.T) {
	e := newTestEnv(t, "alice")
	e.mkcalendar(t, "alice", "/alice/calendar/home/")
	for i := range 5 {
		if code, b, _ := e.do(t, "alice", "PUT", fmt.Sprintf("/alice/calendar/home/e%d.ics", i), benchEvent(i), "Content-Type", "text/calendar"); code != http.StatusCreated {
			t.Fatalf("PUT: %d %s", code, b)
		}
	}
	query := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20250101T000000Z" end="20250102T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	code, before, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", query, "Depth", "1")
	if code != http.StatusMultiStatus {
		t.Fatalf("query: %d %s", code, before)
	}
	cached := func() int {
		e.h.cache.mu.Lock()
		defer e.h.cache.mu.Unlock()
		return len(e.h.cache.m)
	}
	if cached() == 0 {
		t.Fatal("query cached nothing")
	}
	e.h.DropCaches()
	if n := cached(); n != 0 {
		t.Fatalf("%d objects cached after DropCaches", n)
	}
	if _, after, _ := e.do(t, "alice", "REPORT", "/alice/calendar/home/", query, "Depth", "1"); after != before {
		t.Fatalf("answer changed after DropCaches:\n%s\n%s", before, after)
	}
	if cached() == 0 {
		t.Fatal("the cache did not fill again")
	}
}
