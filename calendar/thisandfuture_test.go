package calendar

import (
	"slices"
	"strings"
	"testing"
)

func TestThisAndFuture(t *testing.T) {
	comp := func(props ...string) []string {
		return append(append([]string{"BEGIN:VEVENT", "UID:r", "DTSTAMP:20250101T000000Z"}, props...), "END:VEVENT")
	}
	daily := comp("DTSTART:20250301T100000Z", "DTEND:20250301T110000Z", "SUMMARY:Standup", "RRULE:FREQ=DAILY")
	cases := []struct {
		name       string
		object     [][]string
		start, end string
		// each instance: RECURRENCE-ID DTSTART DTEND SUMMARY ("-": absent; DURATION stays)
		want []string
	}{
		{
			name: "moves and renames this and later instances",
			object: [][]string{daily, comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250305T100000Z",
				"DTSTART:20250305T140000Z", "DTEND:20250305T153000Z", "SUMMARY:Moved")},
			start: "20250303T000000Z", end: "20250308T000000Z",
			want: []string{
				"20250303T100000Z 20250303T100000Z 20250303T110000Z Standup",
				"20250304T100000Z 20250304T100000Z 20250304T110000Z Standup",
				"20250305T100000Z 20250305T140000Z 20250305T153000Z Moved",
				"20250306T100000Z 20250306T140000Z 20250306T153000Z Moved",
				"20250307T100000Z 20250307T140000Z 20250307T153000Z Moved",
			},
		},
		{
			name: "a single override wins over a range",
			object: [][]string{daily,
				comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250305T100000Z", "DTSTART:20250305T140000Z", "DTEND:20250305T150000Z", "SUMMARY:Moved"),
				comp("RECURRENCE-ID:20250306T100000Z", "DTSTART:20250306T160000Z", "DTEND:20250306T170000Z", "SUMMARY:Single")},
			start: "20250305T000000Z", end: "20250308T000000Z",
			want: []string{
				"20250305T100000Z 20250305T140000Z 20250305T150000Z Moved",
				"20250306T100000Z 20250306T160000Z 20250306T170000Z Single",
				"20250307T100000Z 20250307T140000Z 20250307T150000Z Moved",
			},
		},
		{
			name: "a later range takes over from an earlier one",
			object: [][]string{daily,
				comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250304T100000Z", "DTSTART:20250304T140000Z", "DTEND:20250304T150000Z", "SUMMARY:Afternoon"),
				comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250306T100000Z", "DTSTART:20250306T090000Z", "DTEND:20250306T093000Z", "SUMMARY:Early")},
			start: "20250303T000000Z", end: "20250308T000000Z",
			want: []string{
				"20250303T100000Z 20250303T100000Z 20250303T110000Z Standup",
				"20250304T100000Z 20250304T140000Z 20250304T150000Z Afternoon",
				"20250305T100000Z 20250305T140000Z 20250305T150000Z Afternoon",
				"20250306T100000Z 20250306T090000Z 20250306T093000Z Early",
				"20250307T100000Z 20250307T090000Z 20250307T093000Z Early",
			},
		},
		{
			name: "the shift keeps local time across a DST change",
			object: [][]string{
				comp("DTSTART;TZID=Europe/Berlin:20250310T100000", "DURATION:PT1H", "SUMMARY:Weekly", "RRULE:FREQ=WEEKLY"),
				comp("RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Berlin:20250324T100000", "DTSTART;TZID=Europe/Berlin:20250324T110000",
					"DURATION:PT1H", "SUMMARY:Later")},
			start: "20250317T000000Z", end: "20250408T000000Z",
			want: []string{
				"20250317T090000Z 20250317T090000Z - Weekly",
				"20250324T090000Z 20250324T100000Z - Later", // 11:00 CET
				"20250331T080000Z 20250331T090000Z - Later", // 11:00 CEST
				"20250407T080000Z 20250407T090000Z - Later",
			},
		},
		{
			name: "all-day instances move by whole days",
			object: [][]string{
				comp("DTSTART;VALUE=DATE:20250301", "SUMMARY:Bins", "RRULE:FREQ=WEEKLY"),
				comp("RECURRENCE-ID;RANGE=THISANDFUTURE;VALUE=DATE:20250315", "DTSTART;VALUE=DATE:20250316", "SUMMARY:Bins on Sunday")},
			start: "20250307T000000Z", end: "20250325T000000Z",
			want: []string{
				"20250308 20250308 - Bins",
				"20250315 20250316 - Bins on Sunday",
				"20250322 20250323 - Bins on Sunday",
			},
		},
		{
			name: "an instance moved earlier comes in from after the range",
			object: [][]string{daily, comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250305T100000Z",
				"DTSTART:20250304T200000Z", "DTEND:20250304T210000Z", "SUMMARY:Evening before")},
			start: "20250305T120000Z", end: "20250305T230000Z",
			want: []string{
				"20250306T100000Z 20250305T200000Z 20250305T210000Z Evening before",
			},
		},
		{
			name: "an instance moved later comes in from before the range",
			object: [][]string{daily, comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250305T100000Z",
				"DTSTART:20250306T080000Z", "DTEND:20250306T090000Z", "SUMMARY:Next morning")},
			start: "20260101T000000Z", end: "20260101T120000Z",
			want: []string{
				"20251231T100000Z 20260101T080000Z 20260101T090000Z Next morning",
			},
		},
		{
			name: "RDATE instances follow the range too",
			object: [][]string{
				comp("DTSTART:20250301T100000Z", "DURATION:PT1H", "SUMMARY:Talk", "RDATE:20250310T100000Z,20250320T100000Z"),
				comp("RECURRENCE-ID;RANGE=THISANDFUTURE:20250310T100000Z", "DTSTART:20250310T120000Z", "DURATION:PT2H", "SUMMARY:Long talk")},
			start: "20250301T000000Z", end: "20250401T000000Z",
			want: []string{
				"20250301T100000Z 20250301T100000Z - Talk",
				"20250310T100000Z 20250310T120000Z - Long talk",
				"20250320T100000Z 20250320T120000Z - Long talk",
			},
		},
	}
	var m Matcher
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Validate(ics(slices.Concat(tc.object...)...), ValidateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cal, err := m.Expand(obj, ts(tc.start), ts(tc.end))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cal.Children {
				if c.Name != "VEVENT" {
					continue
				}
				v := func(name string) string {
					if p := c.Props.Get(name); p != nil {
						return p.Value
					}
					return "-"
				}
				if p := c.Props.Get("RECURRENCE-ID"); p != nil && p.Params.Get("RANGE") != "" {
					t.Errorf("expanded instance keeps RANGE: %v", p)
				}
				got = append(got, strings.Join([]string{v("RECURRENCE-ID"), v("DTSTART"), v("DTEND"), v("SUMMARY")}, " "))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("instances\n got %q\nwant %q", got, tc.want)
			}
			// A time-range query agrees with the expansion.
			f := CompFilter{Name: "VCALENDAR", Comps: []CompFilter{{Name: "VEVENT", HasTimeRange: true, Start: ts(tc.start), End: ts(tc.end)}}}
			if ok, err := m.Match(obj, f); err != nil || ok != (len(tc.want) > 0) {
				t.Errorf("Match = %v, %v", ok, err)
			}
		})
	}
}

// TestThisAndFutureFreeBusy: free-busy sees the instances a THISANDFUTURE override moved
// and lengthened.
func TestThisAndFutureFreeBusy(t *testing.T) {
	obj, err := Validate(ics(
		"BEGIN:VEVENT", "UID:r", "DTSTAMP:20250101T000000Z", "DTSTART:20250301T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY", "END:VEVENT",
		"BEGIN:VEVENT", "UID:r", "DTSTAMP:20250101T000000Z", "RECURRENCE-ID;RANGE=THISANDFUTURE:20250303T100000Z",
		"DTSTART:20250303T150000Z", "DURATION:PT2H", "END:VEVENT"), ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var m Matcher
	fb := m.NewFreeBusy(ts("20250302T000000Z"), ts("20250305T000000Z"))
	if err := fb.Add(obj); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range fb.Periods() {
		got = append(got, p.Start.Format(utcFormat)+"/"+p.End.Format(utcFormat))
	}
	want := []string{"20250302T100000Z/20250302T110000Z", "20250303T150000Z/20250303T170000Z", "20250304T150000Z/20250304T170000Z"}
	if !slices.Equal(got, want) {
		t.Errorf("busy %q, want %q", got, want)
	}
}
