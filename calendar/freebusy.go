package calendar

import (
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// MaxBusyPeriods bounds the periods one free-busy answer collects.
const MaxBusyPeriods = 50_000

// FreeBusy collects busy time in [start, end) from calendar objects
// (CALDAV:free-busy-query, RFC 4791 §7.10).
type FreeBusy struct {
	m          *Matcher
	start, end time.Time
	periods    []period
}

// NewFreeBusy starts collecting busy time in [start, end).
func (m *Matcher) NewFreeBusy(start, end time.Time) *FreeBusy {
	return &FreeBusy{m: m, start: start, end: end}
}

// Add adds the busy time of one object: the instances of its VEVENTs that are not
// TRANSPARENT or CANCELLED (TENTATIVE ones as BUSY-TENTATIVE), and the busy periods of its
// VFREEBUSY components.
func (fb *FreeBusy) Add(obj *Object) error {
	if len(fb.periods) >= MaxBusyPeriods {
		return nil
	}
	oz := newObjZones(obj.Cal, fb.m.zones(), fb.m.floating())
	switch obj.Kind {
	case ical.CompEvent:
		return oz.group(obj.Cal, obj.Kind).each(fb.start, fb.end, func(in instance) bool {
			c := in.comp
			if t, _ := c.Props.Text(ical.PropTransparency); strings.EqualFold(t, "TRANSPARENT") {
				return true
			}
			status, _ := c.Props.Text(ical.PropStatus)
			if strings.EqualFold(status, "CANCELLED") {
				return true
			}
			if !in.hasStart || !in.overlaps(fb.start, fb.end) {
				return true
			}
			end := in.end
			if !in.hasEnd || !end.After(in.start) {
				return true // a zero-length event takes no time
			}
			fbtype := "BUSY"
			if strings.EqualFold(status, "TENTATIVE") {
				fbtype = "BUSY-TENTATIVE"
			}
			fb.periods = append(fb.periods, period{in.start, end, fbtype})
			return len(fb.periods) < MaxBusyPeriods
		})
	case ical.CompFreeBusy:
		for _, c := range obj.Cal.Children {
			if c.Name != ical.CompFreeBusy {
				continue
			}
			for _, p := range freeBusyPeriods(c) {
				if p.fbtype != "FREE" && p.start.Before(fb.end) && p.end.After(fb.start) {
					fb.periods = append(fb.periods, p)
				}
			}
		}
	}
	return nil
}

// Periods returns the busy periods clipped to the range, merged per type and sorted.
func (fb *FreeBusy) Periods() []Period {
	byType := map[string][]period{}
	for _, p := range fb.periods {
		if p.start.Before(fb.start) {
			p.start = fb.start
		}
		if p.end.After(fb.end) {
			p.end = fb.end
		}
		byType[p.fbtype] = append(byType[p.fbtype], p)
	}
	var out []Period
	for t, ps := range byType {
		slices.SortFunc(ps, func(a, b period) int { return a.start.Compare(b.start) })
		cur := ps[0]
		for _, p := range ps[1:] {
			if !p.start.After(cur.end) {
				if p.end.After(cur.end) {
					cur.end = p.end
				}
				continue
			}
			out = append(out, Period{cur.start, cur.end, t})
			cur = p
		}
		out = append(out, Period{cur.start, cur.end, t})
	}
	slices.SortFunc(out, func(a, b Period) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	return out
}

// Period is a busy period of a free-busy answer.
type Period struct {
	Start, End time.Time
	Type       string // FBTYPE: BUSY, BUSY-TENTATIVE, BUSY-UNAVAILABLE
}

// Calendar renders the answer as a VCALENDAR with one VFREEBUSY (times in UTC).
func (fb *FreeBusy) Calendar(now time.Time) []byte {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Hearth//calendar//EN\r\nBEGIN:VFREEBUSY\r\n")
	b.WriteString("DTSTAMP:" + now.UTC().Format(utcFormat) + "\r\n")
	b.WriteString("DTSTART:" + fb.start.UTC().Format(utcFormat) + "\r\n")
	b.WriteString("DTEND:" + fb.end.UTC().Format(utcFormat) + "\r\n")
	for _, p := range fb.Periods() {
		b.WriteString("FREEBUSY;FBTYPE=" + p.Type + ":" + p.Start.UTC().Format(utcFormat) + "/" + p.End.UTC().Format(utcFormat) + "\r\n")
	}
	b.WriteString("END:VFREEBUSY\r\nEND:VCALENDAR\r\n")
	return []byte(b.String())
}
