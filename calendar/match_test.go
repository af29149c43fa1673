package calendar

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teambition/rrule-go"
)

// ics wraps component lines in a VCALENDAR with CRLF line ends.
func ics(lines ...string) []byte {
	all := append([]string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"}, lines...)
	all = append(all, "END:VCALENDAR", "")
	return []byte(strings.Join(all, "\r\n"))
}

func ts(s string) time.Time {
	t, err := time.Parse("20060102T150405Z", s)
	if err != nil {
		panic(err)
	}
	return t
}

const berlinTZ = `BEGIN:VTIMEZONE
TZID:Custom/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE`

func lines(s string) []string { return strings.Split(s, "\n") }

func TestTimeRange(t *testing.T) {
	type rng struct {
		start, end string
		want       bool
	}
	event := func(props ...string) []string {
		return append(append([]string{"BEGIN:VEVENT", "UID:e1", "DTSTAMP:20250101T000000Z"}, props...), "END:VEVENT")
	}
	todo := func(props ...string) []string {
		return append(append([]string{"BEGIN:VTODO", "UID:t1", "DTSTAMP:20250101T000000Z"}, props...), "END:VTODO")
	}
	cases := []struct {
		name   string
		kind   string
		object []string
		ranges []rng
	}{
		{"event with DTEND", "VEVENT", event("DTSTART:20250301T100000Z", "DTEND:20250301T110000Z"), []rng{
			{"20250301T000000Z", "20250302T000000Z", true},
			{"20250301T110000Z", "20250302T000000Z", false}, // ends exactly at the start
			{"20250301T090000Z", "20250301T100000Z", false}, // starts exactly at the end
			{"20250301T103000Z", "20250301T104000Z", true},
		}},
		{"event with DURATION", "VEVENT", event("DTSTART:20250301T100000Z", "DURATION:PT1H"), []rng{
			{"20250301T105900Z", "20250301T110000Z", true},
			{"20250301T110000Z", "20250301T120000Z", false},
		}},
		{"event without end is a moment", "VEVENT", event("DTSTART:20250301T100000Z"), []rng{
			{"20250301T100000Z", "20250301T100001Z", true},
			{"20250301T090000Z", "20250301T100000Z", false},
		}},
		{"all-day event lasts the day", "VEVENT", event("DTSTART;VALUE=DATE:20250301"), []rng{
			{"20250301T230000Z", "20250302T000000Z", true},
			{"20250302T000000Z", "20250303T000000Z", false},
		}},
		{"multi-day all-day event", "VEVENT", event("DTSTART;VALUE=DATE:20250301", "DTEND;VALUE=DATE:20250304"), []rng{
			{"20250303T120000Z", "20250303T130000Z", true},
			{"20250304T000000Z", "20250305T000000Z", false},
		}},
		{"IANA TZID", "VEVENT", event("DTSTART;TZID=Europe/Berlin:20250701T100000", "DTEND;TZID=Europe/Berlin:20250701T110000"), []rng{
			{"20250701T080000Z", "20250701T083000Z", true}, // 10:00 CEST is 08:00Z
			{"20250701T090000Z", "20250701T100000Z", false},
		}},
		{"VTIMEZONE TZID in summer", "VEVENT", append(lines(berlinTZ), event("DTSTART;TZID=Custom/Berlin:20250701T100000", "DURATION:PT1H")...), []rng{
			{"20250701T080000Z", "20250701T083000Z", true},
			{"20250701T090000Z", "20250701T100000Z", false},
		}},
		{"VTIMEZONE TZID in winter", "VEVENT", append(lines(berlinTZ), event("DTSTART;TZID=Custom/Berlin:20250115T100000", "DURATION:PT1H")...), []rng{
			{"20250115T090000Z", "20250115T093000Z", true},
			{"20250115T080000Z", "20250115T090000Z", false},
		}},
		{"daily RRULE", "VEVENT", event("DTSTART:20250301T100000Z", "DTEND:20250301T110000Z", "RRULE:FREQ=DAILY"), []rng{
			{"20260101T103000Z", "20260101T104000Z", true},
			{"20260101T110000Z", "20260102T100000Z", false},
			{"20250228T000000Z", "20250301T000000Z", false},
		}},
		{"RRULE COUNT ends it", "VEVENT", event("DTSTART:20250301T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=3"), []rng{
			{"20250303T100000Z", "20250303T103000Z", true},
			{"20250304T000000Z", "20250310T000000Z", false},
		}},
		{"RRULE UNTIL ends it", "VEVENT", event("DTSTART:20250301T100000Z", "DURATION:PT1H", "RRULE:FREQ=WEEKLY;UNTIL=20250315T100000Z"), []rng{
			{"20250315T000000Z", "20250316T000000Z", true},
			{"20250316T000000Z", "20250401T000000Z", false},
		}},
		{"EXDATE removes an instance", "VEVENT", event("DTSTART:20250301T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20250302T100000Z,20250303T100000Z"), []rng{
			{"20250302T000000Z", "20250304T000000Z", false},
			{"20250304T000000Z", "20250305T000000Z", true},
		}},
		{"RDATE adds an instance", "VEVENT", event("DTSTART:20250301T100000Z", "DURATION:PT1H", "RDATE:20250401T150000Z"), []rng{
			{"20250401T150000Z", "20250401T153000Z", true},
			{"20250401T000000Z", "20250401T150000Z", false},
		}},
		{"RDATE PERIOD", "VEVENT", event("DTSTART:20250301T100000Z", "DURATION:PT1H", "RDATE;VALUE=PERIOD:20250401T150000Z/20250401T180000Z"), []rng{
			{"20250401T170000Z", "20250401T173000Z", true},
		}},
		{"override moves an instance", "VEVENT", append(
			event("DTSTART:20250301T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=5"),
			"BEGIN:VEVENT", "UID:e1", "DTSTAMP:20250101T000000Z", "RECURRENCE-ID:20250303T100000Z",
			"DTSTART:20250310T140000Z", "DURATION:PT1H", "END:VEVENT"), []rng{
			{"20250303T000000Z", "20250304T000000Z", false}, // moved away
			{"20250310T140000Z", "20250310T141500Z", true},  // to here
		}},
		{"override in a TZID zone", "VEVENT", append(
			event("DTSTART;TZID=Europe/Berlin:20250303T090000", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=5"),
			"BEGIN:VEVENT", "UID:e1", "DTSTAMP:20250101T000000Z", "RECURRENCE-ID;TZID=Europe/Berlin:20250304T090000",
			"DTSTART;TZID=Europe/Berlin:20250304T150000", "DURATION:PT1H", "END:VEVENT"), []rng{
			{"20250304T080000Z", "20250304T090000Z", false}, // 09:00 CET moved away
			{"20250304T140000Z", "20250304T141500Z", true},  // to 15:00 CET
			{"20250305T080000Z", "20250305T081500Z", true},
		}},
		{"EXDATE in UTC for a TZID series", "VEVENT", event("DTSTART;TZID=Europe/Berlin:20250303T090000", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20250304T080000Z"), []rng{
			{"20250304T000000Z", "20250305T000000Z", false},
			{"20250305T000000Z", "20250306T000000Z", true},
		}},
		{"weekly in a DST zone keeps wall time", "VEVENT", event("DTSTART;TZID=America/New_York:20250301T090000", "DURATION:PT30M", "RRULE:FREQ=WEEKLY"), []rng{
			{"20250301T140000Z", "20250301T141000Z", true}, // EST: 09:00 = 14:00Z
			{"20250315T130000Z", "20250315T131000Z", true}, // EDT: 09:00 = 13:00Z
			{"20250315T140000Z", "20250315T141000Z", false},
		}},
		{"all-day yearly birthday", "VEVENT", event("DTSTART;VALUE=DATE:19800704", "RRULE:FREQ=YEARLY"), []rng{
			{"20250704T120000Z", "20250704T130000Z", true},
			{"20250705T000000Z", "20250706T000000Z", false},
		}},
		{"all-day EXDATE", "VEVENT", event("DTSTART;VALUE=DATE:20250301", "RRULE:FREQ=DAILY;COUNT=3", "EXDATE;VALUE=DATE:20250302"), []rng{
			{"20250302T000000Z", "20250303T000000Z", false},
			{"20250303T000000Z", "20250304T000000Z", true},
		}},
		{"floating time is UTC", "VEVENT", event("DTSTART:20250301T100000", "DURATION:PT1H"), []rng{
			{"20250301T100000Z", "20250301T103000Z", true},
		}},
		{"todo DTSTART and DUE", "VTODO", todo("DTSTART:20250301T100000Z", "DUE:20250305T100000Z"), []rng{
			{"20250303T000000Z", "20250304T000000Z", true},
			{"20250306T000000Z", "20250307T000000Z", false},
			{"20250228T000000Z", "20250301T100000Z", false},
		}},
		{"todo DUE only", "VTODO", todo("DUE:20250305T100000Z"), []rng{
			{"20250305T000000Z", "20250305T100000Z", true}, // E >= DUE
			{"20250305T100000Z", "20250306T000000Z", false},
		}},
		{"todo DTSTART only", "VTODO", todo("DTSTART:20250305T100000Z"), []rng{
			{"20250305T100000Z", "20250306T000000Z", true},
			{"20250301T000000Z", "20250305T100000Z", false},
		}},
		{"todo DTSTART and DURATION", "VTODO", todo("DTSTART:20250305T100000Z", "DURATION:PT2H"), []rng{
			{"20250305T120000Z", "20250306T000000Z", true}, // S <= DTSTART+DURATION
			{"20250305T120001Z", "20250306T000000Z", false},
		}},
		{"todo COMPLETED only", "VTODO", todo("COMPLETED:20250305T100000Z"), []rng{
			{"20250305T100000Z", "20250305T100000Z", true},
			{"20250306T000000Z", "20250307T000000Z", false},
		}},
		{"todo CREATED only", "VTODO", todo("CREATED:20250305T100000Z"), []rng{
			{"20250101T000000Z", "20250305T100001Z", true},
			{"20250101T000000Z", "20250305T100000Z", false},
		}},
		{"todo with nothing matches any range", "VTODO", todo(), []rng{
			{"20250101T000000Z", "20250102T000000Z", true},
		}},
		{"recurring todo", "VTODO", todo("DTSTART:20250301T100000Z", "DUE:20250301T110000Z", "RRULE:FREQ=MONTHLY"), []rng{
			{"20250601T103000Z", "20250601T104000Z", true},
			{"20250615T000000Z", "20250616T000000Z", false},
		}},
		{"journal on a date", "VJOURNAL", []string{"BEGIN:VJOURNAL", "UID:j1", "DTSTAMP:20250101T000000Z", "DTSTART;VALUE=DATE:20250301", "END:VJOURNAL"}, []rng{
			{"20250301T120000Z", "20250301T130000Z", true},
			{"20250302T000000Z", "20250303T000000Z", false},
		}},
	}
	var m Matcher
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Validate(ics(tc.object...), ValidateOptions{})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			for _, r := range tc.ranges {
				f := CompFilter{Name: "VCALENDAR", Comps: []CompFilter{{Name: tc.kind, HasTimeRange: true, Start: ts(r.start), End: ts(r.end)}}}
				got, err := m.Match(obj, f)
				if err != nil {
					t.Fatalf("Match: %v", err)
				}
				if got != r.want {
					t.Errorf("range %s–%s: match %v, want %v", r.start, r.end, got, r.want)
				}
			}
		})
	}
}

func TestFloatingInQueryZone(t *testing.T) {
	obj, err := Validate(ics("BEGIN:VEVENT", "UID:x", "DTSTART;VALUE=DATE:20250301", "END:VEVENT"), ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	m := Matcher{Floating: ny}
	// in New York the day runs 05:00Z to 05:00Z next day
	for _, c := range []struct {
		s, e string
		want bool
	}{{"20250302T030000Z", "20250302T040000Z", true}, {"20250301T000000Z", "20250301T040000Z", false}} {
		f := CompFilter{Name: "VCALENDAR", Comps: []CompFilter{{Name: "VEVENT", HasTimeRange: true, Start: ts(c.s), End: ts(c.e)}}}
		if got, _ := m.Match(obj, f); got != c.want {
			t.Errorf("%s–%s: %v, want %v", c.s, c.e, got, c.want)
		}
	}
}

func TestPropAndTextFilters(t *testing.T) {
	obj, err := Validate(ics("BEGIN:VEVENT", "UID:x", "DTSTART:20250301T100000Z", "SUMMARY:Team Meeting",
		"ATTENDEE;PARTSTAT=ACCEPTED:mailto:ann@example.org", "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "END:VALARM", "END:VEVENT"), ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(f CompFilter) CompFilter {
		f.Name = "VEVENT"
		return CompFilter{Name: "VCALENDAR", Comps: []CompFilter{f}}
	}
	cases := []struct {
		name string
		f    CompFilter
		want bool
	}{
		{"summary contains, any case", ev(CompFilter{Props: []PropFilter{{Name: "SUMMARY", Text: &TextMatch{Text: "meeting"}}}}), true},
		{"octet collation is case-sensitive", ev(CompFilter{Props: []PropFilter{{Name: "SUMMARY", Text: &TextMatch{Text: "meeting", Collation: "i;octet"}}}}), false},
		{"negate-condition", ev(CompFilter{Props: []PropFilter{{Name: "SUMMARY", Text: &TextMatch{Text: "lunch", Negate: true}}}}), true},
		{"is-not-defined prop present", ev(CompFilter{Props: []PropFilter{{Name: "LOCATION", IsNotDefined: true}}}), true},
		{"missing prop", ev(CompFilter{Props: []PropFilter{{Name: "LOCATION"}}}), false},
		{"param filter", ev(CompFilter{Props: []PropFilter{{Name: "ATTENDEE", Params: []ParamFilter{{Name: "PARTSTAT", Text: &TextMatch{Text: "accepted"}}}}}}), true},
		{"param filter mismatch", ev(CompFilter{Props: []PropFilter{{Name: "ATTENDEE", Params: []ParamFilter{{Name: "PARTSTAT", Text: &TextMatch{Text: "declined"}}}}}}), false},
		{"no VTODO", CompFilter{Name: "VCALENDAR", Comps: []CompFilter{{Name: "VTODO", IsNotDefined: true}}}, true},
		{"VTODO wanted", CompFilter{Name: "VCALENDAR", Comps: []CompFilter{{Name: "VTODO"}}}, false},
		{"alarm time range hits", ev(CompFilter{Comps: []CompFilter{{Name: "VALARM", HasTimeRange: true, Start: ts("20250301T094000Z"), End: ts("20250301T095000Z")}}}), true},
		{"alarm time range misses", ev(CompFilter{Comps: []CompFilter{{Name: "VALARM", HasTimeRange: true, Start: ts("20250301T100000Z"), End: ts("20250301T110000Z")}}}), false},
		{"prop time range", ev(CompFilter{Props: []PropFilter{{Name: "DTSTART", HasTimeRange: true, Start: ts("20250301T000000Z"), End: ts("20250302T000000Z")}}}), true},
		{"top filter not VCALENDAR", CompFilter{Name: "VEVENT"}, false},
	}
	var m Matcher
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Match(obj, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFastForwardAgrees checks that expanding a range far from DTSTART (where the rule's
// start is moved forward by whole periods) finds exactly the occurrences a walk from
// DTSTART finds.
func TestFastForwardAgrees(t *testing.T) {
	rules := []string{
		"FREQ=DAILY", "FREQ=DAILY;INTERVAL=3", "FREQ=WEEKLY;BYDAY=MO,WE,FR", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=SU",
		"FREQ=WEEKLY;INTERVAL=3", "FREQ=MONTHLY", "FREQ=MONTHLY;BYMONTHDAY=31;INTERVAL=2", "FREQ=MONTHLY;BYDAY=-1FR",
		"FREQ=MONTHLY;INTERVAL=5;BYDAY=2TU", "FREQ=YEARLY", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=YEARLY;INTERVAL=3;BYWEEKNO=20;BYDAY=MO",
		"FREQ=YEARLY;BYYEARDAY=100,200", "FREQ=HOURLY;INTERVAL=7", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
	}
	ranges := [][2]string{{"20300101T000000Z", "20300301T000000Z"}, {"20270615T000000Z", "20270622T000000Z"}, {"19950101T000000Z", "19950201T000000Z"}}
	for _, rule := range rules {
		for _, start := range []string{"19900131T173000Z", "19920229T080000Z"} {
			obj, err := Validate(ics("BEGIN:VEVENT", "UID:x", "DTSTART:"+start, "DURATION:PT30M", "RRULE:"+rule, "END:VEVENT"), ValidateOptions{})
			if err != nil {
				t.Fatalf("%s: %v", rule, err)
			}
			oz := newObjZones(obj.Cal, nil, utcZone)
			for _, r := range ranges {
				S, E := ts(r[0]), ts(r[1])
				var got []time.Time
				if err := oz.group(obj.Cal, "VEVENT").each(S, E, func(in instance) bool {
					if in.overlaps(S, E) {
						got = append(got, in.start)
					}
					return true
				}); err != nil {
					t.Fatal(err)
				}
				opt, _ := parseRRule(rule)
				opt.Dtstart = ts(start)
				rr, _ := rrule.NewRRule(*opt)
				want := rr.Between(S.Add(-30*time.Minute), E, false)
				want = slices.DeleteFunc(want, func(x time.Time) bool { return !x.Add(30 * time.Minute).After(S) })
				slices.SortFunc(got, time.Time.Compare)
				if !slices.EqualFunc(got, want, time.Time.Equal) {
					t.Errorf("%s from %s in %s–%s: got %d %v, want %d %v", rule, start, r[0], r[1], len(got), got, len(want), want)
				}
			}
		}
	}
}
