package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/calendar"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// A calendar file as clients export it: several events (one recurring with an override),
// a todo, and a VTIMEZONE two of them use.
const exportedICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\nMETHOD:PUBLISH\r\n" +
	"BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n" +
	"BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n" +
	"BEGIN:VEVENT\r\nUID:standup@example.org\r\nDTSTAMP:20250101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20250106T093000\r\nDURATION:PT15M\r\nRRULE:FREQ=WEEKLY\r\nSUMMARY:Standup\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:standup@example.org\r\nDTSTAMP:20250101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20250113T093000\r\nDTSTART;TZID=Europe/Berlin:20250113T110000\r\nDURATION:PT15M\r\nSUMMARY:Standup (late)\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:lunch with spaces\r\nDTSTAMP:20250101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20250107T120000\r\nDTEND;TZID=Europe/Berlin:20250107T130000\r\nSUMMARY:Lunch\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:holiday\r\nDTSTAMP:20250101T000000Z\r\nDTSTART;VALUE=DATE:20250101\r\nSUMMARY:New Year\r\nEND:VEVENT\r\n" +
	"BEGIN:VTODO\r\nUID:todo-1\r\nDTSTAMP:20250101T000000Z\r\nSUMMARY:File taxes\r\nDUE;VALUE=DATE:20250315\r\nEND:VTODO\r\n" +
	"END:VCALENDAR\r\n"

// newCalendarData makes a data directory with user alice.
func newCalendarData(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, "alice-password\n", "user", "add", "-data", data, "alice"); code != 0 {
		t.Fatalf("user add: %d %s", code, stderr)
	}
	return data
}

// objects reads what alice's calendar holds, by resource name.
func objects(t *testing.T, data, coll string) map[string]string {
	t.Helper()
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repos.Close()
	c := storedav.NewCollections(repos, calendar.Kind(), storedav.Limits{}, nil)
	ctx := context.Background()
	infos, head, err := c.Objects(ctx, "alice", coll)
	if err != nil {
		t.Fatalf("objects of %s: %v", coll, err)
	}
	out := map[string]string{}
	for _, o := range infos {
		b, _, err := c.ObjectAt(ctx, "alice", head, coll, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Name] = string(b)
	}
	return out
}

func TestCalendarImportExport(t *testing.T) {
	data := newCalendarData(t)
	file := filepath.Join(t.TempDir(), "in.ics")
	if err := os.WriteFile(file, []byte(exportedICS), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "", "calendar", "import", "-data", data, "alice", file)
	if code != 0 || !strings.Contains(out, "imported 4 objects") {
		t.Fatalf("import: %d %q %q", code, out, stderr)
	}
	objs := objects(t, data, "calendar")
	if len(objs) != 4 {
		t.Fatalf("%d objects: %v", len(objs), objs)
	}
	standup := objs["standup@example.org.ics"]
	for _, want := range []string{"BEGIN:VTIMEZONE", "TZID:Europe/Berlin", "RECURRENCE-ID;TZID=Europe/Berlin:20250113T093000", "SUMMARY:Standup (late)"} {
		if !strings.Contains(standup, want) {
			t.Errorf("standup object lacks %q:\n%s", want, standup)
		}
	}
	if strings.Contains(standup, "METHOD") {
		t.Errorf("METHOD kept:\n%s", standup)
	}
	if holiday := objs["holiday.ics"]; strings.Contains(holiday, "VTIMEZONE") {
		t.Errorf("an object without TZIDs got a VTIMEZONE:\n%s", holiday)
	}
	if _, ok := objs[calendar.ResourceName("lunch with spaces")]; !ok || strings.Contains(calendar.ResourceName("lunch with spaces"), " ") {
		t.Errorf("unsafe UID not hashed: %v", objs)
	}
	for name, o := range objs {
		if _, err := calendar.Validate([]byte(o), calendar.ValidateOptions{}); err != nil {
			t.Errorf("imported %s does not validate: %v", name, err)
		}
	}

	// importing again replaces, creating nothing new
	code, out, _ = runCmd(t, "", "calendar", "import", "-data", data, "-collection", "calendar", "alice", file)
	if code != 0 || !strings.Contains(out, "0 new, 4 replaced") {
		t.Fatalf("re-import: %d %q", code, out)
	}

	// export to standard output and to a file
	code, out, stderr = runCmd(t, "", "calendar", "export", "-data", data, "alice")
	if code != 0 {
		t.Fatalf("export: %d %s", code, stderr)
	}
	if n := strings.Count(out, "BEGIN:VTIMEZONE"); n != 1 {
		t.Errorf("export has %d VTIMEZONEs, want 1", n)
	}
	for _, want := range []string{"UID:standup@example.org", "UID:lunch with spaces", "UID:holiday", "UID:todo-1", "SUMMARY:Standup (late)"} {
		if !strings.Contains(out, want) {
			t.Errorf("export lacks %q", want)
		}
	}
	back, err := calendar.Split([]byte(out))
	if err != nil || len(back) != 4 {
		t.Fatalf("export does not split back into 4: %d %v", len(back), err)
	}
	outFile := filepath.Join(t.TempDir(), "out.ics")
	if code, _, stderr := runCmd(t, "", "calendar", "export", "-data", data, "alice", outFile); code != 0 {
		t.Fatalf("export to file: %s", stderr)
	}
	if b, err := os.ReadFile(outFile); err != nil || string(b) != out {
		t.Fatalf("file export differs from stdout export: %v", err)
	}
}

func TestCalendarCommandErrors(t *testing.T) {
	data := newCalendarData(t)
	bad := filepath.Join(t.TempDir(), "bad.ics")
	os.WriteFile(bad, []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:no uid\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"), 0o600)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"import without file", []string{"calendar", "import", "-data", data, "alice"}, 2, "want 2 to 2 arguments"},
		{"import missing file", []string{"calendar", "import", "-data", data, "alice", "/nonexistent.ics"}, 1, "no such file"},
		{"import without UID", []string{"calendar", "import", "-data", data, "alice", bad}, 1, "no UID"},
		{"bad user name", []string{"calendar", "export", "-data", data, "../alice"}, 2, ""},
		{"export of nothing", []string{"calendar", "export", "-data", data, "alice"}, 1, "not found"},
		{"restore without since", []string{"calendar", "restore", "-data", data, "alice"}, 1, "-since"},
		{"restore bad since", []string{"calendar", "restore", "-data", data, "-since", "soon", "alice"}, 1, "-since"},
		{"missing data dir", []string{"calendar", "export", "-data", "/nonexistent/dir", "alice"}, 1, "data directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d %q, want %d with %q", code, stderr, tc.code, tc.msg)
			}
		})
	}
}

func TestCalendarRestore(t *testing.T) {
	data := newCalendarData(t)
	file := filepath.Join(t.TempDir(), "in.ics")
	os.WriteFile(file, []byte(exportedICS), 0o600)
	if code, _, stderr := runCmd(t, "", "calendar", "import", "-data", data, "alice", file); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCmd(t, "", "calendar", "import", "-data", data, "-collection", "work", "alice", file); code != 0 {
		t.Fatal(stderr)
	}
	time.Sleep(1100 * time.Millisecond) // commit times have one-second precision
	since := time.Now()
	time.Sleep(1100 * time.Millisecond)
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := storedav.NewCollections(repos, calendar.Kind(), storedav.Limits{}, nil)
	ctx := context.Background()
	if err := c.DeleteObject(ctx, "alice", "calendar", "holiday.ics", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "alice", "work"); err != nil {
		t.Fatal(err)
	}
	repos.Close()

	// one calendar: only its object comes back; flags after the arguments work too
	code, out, stderr := runCmd(t, "", "calendar", "restore", "-data", data, "alice", "calendar", "--since", since.Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "calendar/holiday.ics") || strings.Contains(out, "work/") {
		t.Fatalf("restore calendar: %d %q %q", code, out, stderr)
	}
	if objs := objects(t, data, "calendar"); !strings.Contains(objs["holiday.ics"], "SUMMARY:New Year") {
		t.Fatalf("holiday not back: %v", objs)
	}
	// everything: the deleted calendar with its objects
	code, out, stderr = runCmd(t, "", "calendar", "restore", "-data", data, "-since", since.Format(time.RFC3339), "alice")
	if code != 0 || !strings.Contains(out, "work/") {
		t.Fatalf("restore all: %d %q %q", code, out, stderr)
	}
	if objs := objects(t, data, "work"); len(objs) != 4 {
		t.Fatalf("work calendar has %d objects after restore", len(objs))
	}
	code, out, _ = runCmd(t, "", "calendar", "restore", "-data", data, "-since", since.Format(time.RFC3339), "alice")
	if code != 0 || !strings.Contains(out, "nothing was deleted") {
		t.Fatalf("second restore: %d %q", code, out)
	}
}
