package calendar

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/internal/testtool"
)

func needPythonCaldav(t *testing.T) string {
	t.Helper()
	py := testtool.Path(t, "/usr/bin/python3", "python3")
	if err := exec.Command(py, "-c", "import caldav").Run(); err != nil {
		testtool.Missing(t, "python3-caldav is missing (Debian package python3-caldav)")
	}
	return py
}

// TestPythonCaldav drives the server with Debian's python3-caldav.
func TestPythonCaldav(t *testing.T) {
	py := needPythonCaldav(t)
	e := newTestEnv(t, "alice")
	cmd := exec.Command(py, "testdata/pycaldav.py", e.srv.URL+"/", "alice", testPassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pycaldav.py: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, " ")
		got[k] = v
	}
	want := map[string]string{
		"principal": "/alice/",
		"calendar":  "/alice/calendar/py/",
		"calendars": "/alice/calendar/py/",
		// the daily event on the 4th and 5th, each its own instance, and the dentist
		"expanded":     "Daily review@20250304T090000Z,Daily review@20250305T090000Z,Dentist@-",
		"todos":        "Call plumber",
		"after-delete": "py-later,py-weekly",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q\n%s", k, got[k], v, out)
		}
	}
	if _, ok := got["ok"]; !ok {
		t.Errorf("script did not finish:\n%s", out)
	}
}

// TestVdirsyncerAndKhal syncs 500 events both ways with vdirsyncer, edits on both sides,
// checks that a sync after that is a no-op, and reads the result with khal.
func TestVdirsyncerAndKhal(t *testing.T) {
	vds := testtool.Path(t, "vdirsyncer", "vdirsyncer")
	khal := testtool.Path(t, "khal", "khal")
	e := newTestEnv(t, "alice")
	e.mkcalendar(t, "alice", "/alice/calendar/home/")
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	os.MkdirAll(local, 0o700)
	const n = 500
	start := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		s := start.Add(time.Duration(7*i) * time.Hour)
		data := fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:ev-%d\r\nDTSTAMP:20250101T000000Z\r\n"+
			"DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Event %d\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
			i, s.Format(utcFormat), s.Add(45*time.Minute).Format(utcFormat), i)
		os.WriteFile(filepath.Join(local, fmt.Sprintf("ev-%d.ics", i)), []byte(data), 0o600)
	}
	conf := filepath.Join(dir, "config")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[general]
status_path = %q

[pair cal]
a = "cal_local"
b = "cal_remote"
collections = null
conflict_resolution = "a wins"

[storage cal_local]
type = "filesystem"
path = %q
fileext = ".ics"

[storage cal_remote]
type = "caldav"
url = %q
username = "alice"
password = %q
`, filepath.Join(dir, "status")+"/", local+"/", e.srv.URL+"/alice/calendar/home/", testPassword)), 0o600)
	sync := func(step string) string {
		t.Helper()
		cmd := exec.Command(vds, "-c", conf, "-v", "debug", "sync")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: vdirsyncer sync: %v\n%s", step, err, lastLinesT(out, 30))
		}
		return string(out)
	}
	if out, err := exec.Command(vds, "-c", conf, "discover").CombinedOutput(); err != nil {
		t.Fatalf("discover: %v\n%s", err, out)
	}
	if out := sync("upload"); !strings.Contains(out, "Copying (uploading)") {
		t.Fatalf("upload sync did not say what it copied (has vdirsyncer's output changed?):\n%s", lastLinesT([]byte(out), 20))
	}
	remote := e.objectCount(t, "alice", "home")
	if remote != n {
		t.Fatalf("%d objects on the server after upload, want %d", remote, n)
	}
	// edit on both sides: a local change and deletion, a server change and addition
	p := filepath.Join(local, "ev-1.ics")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "SUMMARY:Event 1", "SUMMARY:Event one, edited locally", 1)), 0o600)
	os.Remove(filepath.Join(local, "ev-2.ics"))
	code, body, _ := e.do(t, "alice", "GET", "/alice/calendar/home/ev-3.ics", "")
	if code != 200 {
		t.Fatalf("GET ev-3: %d", code)
	}
	if code, body, _ := e.do(t, "alice", "PUT", "/alice/calendar/home/ev-3.ics", strings.Replace(body, "SUMMARY:Event 3", "SUMMARY:Event three, edited on the server", 1), "Content-Type", "text/calendar"); code != 204 {
		t.Fatalf("PUT ev-3: %d %s", code, body)
	}
	if code, body, _ := e.do(t, "alice", "PUT", "/alice/calendar/home/new.ics", string(ics("BEGIN:VEVENT", "UID:new", "DTSTAMP:20250101T000000Z", "DTSTART:20250102T100000Z", "SUMMARY:Made on the server", "END:VEVENT")), "Content-Type", "text/calendar"); code != 201 {
		t.Fatalf("PUT new: %d %s", code, body)
	}
	sync("edits")
	if c, b, _ := e.do(t, "alice", "GET", "/alice/calendar/home/ev-1.ics", ""); c != 200 || !strings.Contains(b, "edited locally") {
		t.Errorf("local edit not uploaded: %d", c)
	}
	if c, _, _ := e.do(t, "alice", "GET", "/alice/calendar/home/ev-2.ics", ""); c != 404 {
		t.Errorf("local deletion not propagated: %d", c)
	}
	if b, err := os.ReadFile(filepath.Join(local, "ev-3.ics")); err != nil || !strings.Contains(string(b), "edited on the server") {
		t.Errorf("server edit not downloaded: %v", err)
	}
	var newLocal bool
	ents, _ := os.ReadDir(local)
	for _, en := range ents {
		if b, _ := os.ReadFile(filepath.Join(local, en.Name())); strings.Contains(string(b), "Made on the server") {
			newLocal = true
		}
	}
	if !newLocal {
		t.Errorf("server addition not downloaded")
	}
	// nothing changed: the next sync transfers nothing
	out := sync("no-op")
	for _, verb := range []string{"Copying (uploading)", "Copying (downloading)", "Updating", "Deleting"} {
		if strings.Contains(out, verb) {
			t.Errorf("no-op sync did %q:\n%s", verb, lastLinesT([]byte(out), 20))
		}
	}

	// khal reads the synced vdir
	kconf := filepath.Join(dir, "khal.conf")
	os.WriteFile(kconf, []byte(fmt.Sprintf(`[calendars]
[[home]]
path = %s
type = calendar

[locale]
timeformat = %%H:%%M
dateformat = %%Y-%%m-%%d
longdateformat = %%Y-%%m-%%d
datetimeformat = %%Y-%%m-%%d %%H:%%M
longdatetimeformat = %%Y-%%m-%%d %%H:%%M
local_timezone = UTC
default_timezone = UTC

[default]
default_calendar = home
`, local)), 0o600)
	cmd := exec.Command(khal, "-c", kconf, "list", "--format", "{start} {title}", "2025-01-01", "2d")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg"), "TZ=UTC")
	kout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("khal list: %v\n%s", err, kout)
	}
	for _, want := range []string{"Event 0", "Event one, edited locally", "Event three, edited on the server", "Made on the server"} {
		if !strings.Contains(string(kout), want) {
			t.Errorf("khal list lacks %q:\n%s", want, kout)
		}
	}
}

func lastLinesT(b []byte, n int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// objectCount is how many objects a calendar holds.
func (e *testEnv) objectCount(t *testing.T, owner, coll string) int {
	t.Helper()
	infos, _, err := e.h.Collections().Objects(t.Context(), owner, coll)
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}
