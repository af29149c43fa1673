package calendar

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
)

// TestCurlErrorPaths checks the answers to bad requests with curl, as a client would see them.
func TestCurlErrorPaths(t *testing.T) {
	curl := testtool.Path(t, "curl", "curl")
	e := newTestEnv(t, "alice")
	e.mkcalendar(t, "alice", "/alice/calendar/events/", "VEVENT")
	dir := t.TempDir()
	file := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good.ics", string(ics("BEGIN:VEVENT", "UID:one", "DTSTAMP:20250101T000000Z", "DTSTART:20250301T100000Z", "END:VEVENT")))
	good2 := file("good2.ics", string(ics("BEGIN:VEVENT", "UID:one", "DTSTAMP:20250101T000000Z", "DTSTART:20250302T100000Z", "END:VEVENT")))
	malformed := file("bad.ics", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:someday\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
	todo := file("todo.ics", string(ics("BEGIN:VTODO", "UID:t", "END:VTODO")))
	huge := file("huge.ics", string(ics("BEGIN:VEVENT", "UID:big", "DTSTART:20250301T100000Z", "DESCRIPTION:"+strings.Repeat("x", 2<<20), "END:VEVENT")))
	badToken := file("sync.xml", `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>http://hearth.home.arpa/sync/0123456789abcdef0123456789abcdef01234567</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`)

	// curl runs curl and returns the status and body.
	run := func(args ...string) (int, string) {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		s := strings.TrimRight(string(out), "\n")
		i := strings.LastIndexByte(s, '\n')
		code, _ := strconv.Atoi(s[i+1:])
		return code, s[:max(i, 0)]
	}
	u := e.srv.URL
	auth := "alice:" + testPassword
	put := []string{"-u", auth, "-X", "PUT", "-H", "Content-Type: text/calendar"}
	cases := []struct {
		name     string
		args     []string
		code     int
		inBody   string
		inHeader string
	}{
		{"create answers 201", append(put, "--data-binary", "@"+good, u+"/alice/calendar/events/one.ics"), 201, "", ""},
		{"overwrite answers 204", append(put, "--data-binary", "@"+good2, u+"/alice/calendar/events/one.ics"), 204, "", ""},
		{"malformed data", append(put, "--data-binary", "@"+malformed, u+"/alice/calendar/events/bad.ics"), 400, "valid-calendar-data", ""},
		{"UID conflict", append(put, "--data-binary", "@"+good, u+"/alice/calendar/events/other.ics"), 409, "no-uid-conflict", ""},
		{"If-Match mismatch", append(put, "-H", `If-Match: "0000000000000000000000000000000000000001"`, "--data-binary", "@"+good, u+"/alice/calendar/events/one.ics"), 412, "", ""},
		{"If-None-Match on existing", append(put, "-H", "If-None-Match: *", "--data-binary", "@"+good, u+"/alice/calendar/events/one.ics"), 412, "", ""},
		{"component not supported", append(put, "--data-binary", "@"+todo, u+"/alice/calendar/events/todo.ics"), 403, "supported-calendar-component", ""},
		{"oversize body", append(put, "--data-binary", "@"+huge, u+"/alice/calendar/events/huge.ics"), 413, "max-resource-size", ""},
		{"unknown sync token", []string{"-u", auth, "-X", "REPORT", "-H", "Depth: 0", "-H", "Content-Type: application/xml", "--data-binary", "@" + badToken, u + "/alice/calendar/events/"}, 403, "valid-sync-token", ""},
		{"path traversal", []string{"-u", auth, "--path-as-is", u + "/alice/calendar/../../etc/passwd"}, 400, "", ""},
		{"encoded slash", []string{"-u", auth, u + "/alice/calendar/events%2F..%2Fx/one.ics"}, 400, "", ""},
		{"anonymous", []string{u + "/alice/calendar/events/one.ics"}, 401, "", ""},
		{"wrong password", []string{"-u", "alice:wrong-password", u + "/alice/calendar/events/one.ics"}, 401, "", ""},
		{"GET keeps the exact bytes", []string{"-u", auth, u + "/alice/calendar/events/one.ics"}, 200, "DTSTART:20250302T100000Z\r\nEND:VEVENT", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := run(tc.args...)
			if code != tc.code || !strings.Contains(body, tc.inBody) {
				t.Fatalf("got %d %q, want %d with %q", code, body, tc.code, tc.inBody)
			}
		})
	}
	if n := e.objectCount(t, "alice", "events"); n != 1 {
		t.Fatalf("%d objects stored, want only the one accepted", n)
	}
}
