package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ev := func(extra ...string) []string {
		return append(append([]string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20250101T000000Z", "DTSTART:20250301T100000Z"}, extra...), "END:VEVENT")
	}
	deep := "BEGIN:VCALENDAR\r\n" + strings.Repeat("BEGIN:X\r\n", 50) + strings.Repeat("END:X\r\n", 50) + "END:VCALENDAR\r\n"
	cases := []struct {
		name  string
		data  []byte
		opts  ValidateOptions
		pre   string // "" means valid
		kind  string
		uid   string
		state int
	}{
		{"simple event", ics(ev()...), ValidateOptions{}, "", "VEVENT", "a", 0},
		{"event with alarm", ics(ev("BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT5M", "END:VALARM")...), ValidateOptions{}, "", "VEVENT", "a", 0},
		{"todo", ics("BEGIN:VTODO", "UID:t", "END:VTODO"), ValidateOptions{}, "", "VTODO", "t", 0},
		{"journal", ics("BEGIN:VJOURNAL", "UID:j", "DTSTART;VALUE=DATE:20250101", "END:VJOURNAL"), ValidateOptions{}, "", "VJOURNAL", "j", 0},
		{"master and override", ics(append(ev("RRULE:FREQ=DAILY"), "BEGIN:VEVENT", "UID:a", "RECURRENCE-ID:20250302T100000Z", "DTSTART:20250302T120000Z", "END:VEVENT")...), ValidateOptions{}, "", "VEVENT", "a", 0},
		{"LF line ends", []byte(strings.ReplaceAll(string(ics(ev()...)), "\r\n", "\n")), ValidateOptions{}, "", "VEVENT", "a", 0},
		{"folded line", []byte(strings.Replace(string(ics(ev("SUMMARY:a very long summary")...)), "very long", "very\r\n  long", 1)), ValidateOptions{}, "", "VEVENT", "a", 0},
		{"VTIMEZONE TZID", ics(append(lines(berlinTZ), ev("DTEND;TZID=Custom/Berlin:20250301T120000")...)...), ValidateOptions{}, "", "VEVENT", "a", 0},
		{"vendor-prefixed IANA TZID", ics(ev("DTEND;TZID=/mozilla.org/20050126_1/Europe/Berlin:20250301T120000")...), ValidateOptions{}, "", "VEVENT", "a", 0},

		{"empty", nil, ValidateOptions{}, PreValidData, "", "", 400},
		{"not iCalendar", []byte("BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n"), ValidateOptions{}, PreValidData, "", "", 400},
		{"no END", []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n"), ValidateOptions{}, PreValidData, "", "", 400},
		{"mismatched END", []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"), ValidateOptions{}, PreValidData, "", "", 400},
		{"trailing object", append(ics(ev()...), ics(ev()...)...), ValidateOptions{}, PreValidData, "", "", 400},
		{"too deep", []byte(deep), ValidateOptions{}, PreValidData, "", "", 400},
		{"bad DTSTART", ics("BEGIN:VEVENT", "UID:a", "DTSTART:tomorrow", "END:VEVENT"), ValidateOptions{}, PreValidData, "", "", 400},
		{"bad RRULE", ics(ev("RRULE:FREQ=SOMETIMES")...), ValidateOptions{}, PreValidData, "", "", 400},
		{"bad DURATION", ics(ev("DURATION:1 hour")...), ValidateOptions{}, PreValidData, "", "", 400},
		{"DTEND and DURATION", ics(ev("DTEND:20250301T110000Z", "DURATION:PT1H")...), ValidateOptions{}, PreValidData, "", "", 400},
		{"DTEND before DTSTART", ics(ev("DTEND:20250301T090000Z")...), ValidateOptions{}, PreValidData, "", "", 400},
		{"unknown TZID", ics(ev("DTEND;TZID=Mars/Olympus:20250301T120000")...), ValidateOptions{}, PreValidData, "", "", 400},
		{"alarm without trigger", ics(ev("BEGIN:VALARM", "ACTION:DISPLAY", "END:VALARM")...), ValidateOptions{}, PreValidData, "", "", 400},
		{"METHOD", ics(append([]string{"METHOD:REQUEST"}, ev()...)...), ValidateOptions{}, PreValidObject, "", "", 403},
		{"no UID", ics("BEGIN:VEVENT", "DTSTART:20250301T100000Z", "END:VEVENT"), ValidateOptions{}, PreValidObject, "", "", 403},
		{"two UIDs", ics(append(ev(), "BEGIN:VEVENT", "UID:b", "DTSTART:20250301T100000Z", "END:VEVENT")...), ValidateOptions{}, PreValidObject, "", "", 403},
		{"two masters", ics(append(ev(), ev()...)...), ValidateOptions{}, PreValidObject, "", "", 403},
		{"event and todo", ics(append(ev(), "BEGIN:VTODO", "UID:a", "END:VTODO")...), ValidateOptions{}, PreValidObject, "", "", 403},
		{"only a timezone", ics(lines(berlinTZ)...), ValidateOptions{}, PreValidObject, "", "", 403},
		{"component not supported", ics("BEGIN:VTODO", "UID:t", "END:VTODO"), ValidateOptions{Components: []string{"VEVENT"}}, PreSupportedComponent, "", "", 403},
		{"too large", ics(ev("DESCRIPTION:" + strings.Repeat("x", 2000))...), ValidateOptions{MaxSize: 1000}, PreMaxResourceSize, "", "", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Validate(tc.data, tc.opts)
			if tc.pre == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if obj.Kind != tc.kind || obj.UID != tc.uid {
					t.Fatalf("kind %q uid %q, want %q %q", obj.Kind, obj.UID, tc.kind, tc.uid)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a %s refusal", err, tc.pre)
			}
			if ve.Precondition != tc.pre || ve.Status != tc.state || ve.Reason == "" {
				t.Fatalf("got %s %d %q, want %s %d", ve.Precondition, ve.Status, ve.Reason, tc.pre, tc.state)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	cases := []struct {
		in    string
		days  int
		exact time.Duration
		bad   bool
	}{
		{"PT1H", 0, time.Hour, false},
		{"P1W", 7, 0, false},
		{"-P1DT2H3M4S", -1, -(2*time.Hour + 3*time.Minute + 4*time.Second), false},
		{"+PT15M", 0, 15 * time.Minute, false},
		{"P", 0, 0, true},
		{"PT", 0, 0, true},
		{"P1H", 0, 0, true},
		{"PT1D", 0, 0, true},
		{"1H", 0, 0, true},
		{"P99999999999D", 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			d, err := parseDuration(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted: %+v", d)
				}
				return
			}
			if err != nil || d.days != tc.days || d.exact != tc.exact {
				t.Fatalf("got %+v %v", d, err)
			}
		})
	}
}

// FuzzValidate feeds arbitrary bytes through validation and, when they pass, through
// matching, expansion and free-busy: nothing may panic or run away.
func FuzzValidate(f *testing.F) {
	f.Add(ics("BEGIN:VEVENT", "UID:a", "DTSTART:20250301T100000Z", "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20250302T100000Z", "END:VEVENT"))
	f.Add(ics(append(lines(berlinTZ), "BEGIN:VEVENT", "UID:a", "DTSTART;TZID=Custom/Berlin:20250301T100000", "RRULE:FREQ=WEEKLY", "END:VEVENT")...))
	f.Add(ics("BEGIN:VTODO", "UID:t", "DUE;VALUE=DATE:20250301", "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "END:VTODO"))
	f.Add(ics("BEGIN:VEVENT", "UID:a", "DTSTART;VALUE=DATE:20250301", "RDATE;VALUE=PERIOD:20250401T100000Z/PT1H", "END:VEVENT"))
	f.Add([]byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n END:VEVENT\r\nEND:VCALENDAR"))
	m := &Matcher{}
	start, end := ts("20250301T000000Z"), ts("20250401T000000Z")
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := Validate(data, ValidateOptions{MaxSize: 64 << 10})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("refusal is not a ValidationError: %v", err)
			}
			return
		}
		f := CompFilter{Name: "VCALENDAR", Comps: []CompFilter{{Name: obj.Kind, HasTimeRange: true, Start: start, End: end}}}
		m.Match(obj, f)
		if cal, err := m.Expand(obj, start, end); err == nil {
			Encode(cal)
		}
		m.LimitRecurrenceSet(obj, start, end)
		fb := m.NewFreeBusy(start, end)
		fb.Add(obj)
		fb.Calendar(start)
	})
}

// FuzzReportXML feeds arbitrary REPORT bodies through the request parsers.
func FuzzReportXML(f *testing.F) {
	f.Add([]byte(`<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data><C:expand start="20250301T000000Z" end="20250302T000000Z"/><C:comp name="VCALENDAR"><C:prop name="VERSION"/><C:comp name="VEVENT"><C:allprop/></C:comp></C:comp></C:calendar-data></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20250301T000000Z"/><C:prop-filter name="SUMMARY"><C:text-match negate-condition="yes">x</C:text-match><C:param-filter name="X"><C:is-not-defined/></C:param-filter></C:prop-filter></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		root, err := parseXMLBody(body)
		if err != nil {
			return
		}
		if fn := root.Child(nsCalDAV, "filter"); fn != nil {
			if cf := fn.Child(nsCalDAV, "comp-filter"); cf != nil {
				parseCompFilter(cf)
			}
		}
		parsePropReq(root)
	})
}

// FuzzHref feeds arbitrary multiget hrefs through their parser: it must refuse or name
// an object without escaping its owner's calendars.
func FuzzHref(f *testing.F) {
	for _, s := range []string{"/alice/calendar/home/a.ics", "https://h/alice/calendar/home/a%20b.ics", "/alice/calendar/../x", "/alice/calendar/a%2fb/c", "//", "http://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, href string) {
		tg, err := hrefTarget(href)
		if err != nil {
			return
		}
		for _, part := range []string{tg.Owner, tg.Collection, tg.Resource} {
			if part == ".." || part == "." || strings.ContainsAny(part, "/\\") {
				t.Fatalf("%q parsed into %+v", href, tg)
			}
		}
	})
}
