package calendar

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

const utcFormat = "20060102T150405Z"

// Expand returns obj's calendar with its recurring components replaced by one component
// per instance overlapping [start, end) (CALDAV:expand, RFC 4791 §9.6.5): each carries a
// RECURRENCE-ID, date-times are in UTC, RRULE, RDATE and EXDATE are gone, and so are the
// VTIMEZONEs.
func (m *Matcher) Expand(obj *Object, start, end time.Time) (*ical.Calendar, error) {
	oz := newObjZones(obj.Cal, m.zones(), m.floating())
	out := ical.NewCalendar()
	out.Props = maps.Clone(obj.Cal.Props)
	var insts []instance
	err := oz.group(obj.Cal, obj.Kind).each(start, end, func(in instance) bool {
		if in.overlaps(start, end) {
			insts = append(insts, in)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(insts, func(a, b instance) int { return instTime(a).Compare(instTime(b)) })
	for _, in := range insts {
		out.Children = append(out.Children, expandOne(oz, in))
	}
	for _, c := range obj.Cal.Children {
		if c.Name != obj.Kind && c.Name != ical.CompTimezone {
			out.Children = append(out.Children, c)
		}
	}
	return out, nil
}

func instTime(in instance) time.Time {
	if in.hasStart {
		return in.start
	}
	return in.end
}

// expandOne is the component of one instance with its times rewritten in UTC.
func expandOne(oz *objZones, in instance) *ical.Component {
	c := &ical.Component{Name: in.comp.Name, Props: make(ical.Props, len(in.comp.Props)), Children: in.comp.Children}
	for k, v := range in.comp.Props {
		c.Props[k] = slices.Clone(v)
	}
	for _, k := range []string{ical.PropRecurrenceRule, ical.PropRecurrenceDates, ical.PropExceptionDates, "EXRULE"} {
		delete(c.Props, k)
	}
	recurring := in.comp.Props.Get(ical.PropRecurrenceRule) != nil || in.comp.Props.Get(ical.PropRecurrenceDates) != nil ||
		in.comp.Props.Get(ical.PropRecurrenceID) != nil
	setTime := func(name string, t time.Time, date bool) {
		p := ical.NewProp(name)
		if date {
			p.SetValueType(ical.ValueDate)
			p.Value = t.Format("20060102")
		} else {
			p.Value = t.UTC().Format(utcFormat)
		}
		c.Props.Set(p)
	}
	if recurring && !in.recurID.IsZero() {
		date := false
		if p := in.comp.Props.Get(ical.PropDateTimeStart); p != nil {
			_, date, _ = parseWall(p)
		}
		setTime(ical.PropRecurrenceID, dateOrUTC(oz, in.recurID, date), date)
	}
	endName := ical.PropDateTimeEnd
	if in.kind == ical.CompToDo {
		endName = ical.PropDue
	}
	if in.hasStart && c.Props.Get(ical.PropDateTimeStart) != nil {
		setTime(ical.PropDateTimeStart, dateOrUTC(oz, in.start, in.isDate), in.isDate)
	}
	if in.hasEnd && c.Props.Get(endName) != nil {
		setTime(endName, dateOrUTC(oz, in.end, in.isDate), in.isDate)
	}
	return c
}

// dateOrUTC is an instant for a date-time, or its floating wall date for a DATE.
func dateOrUTC(oz *objZones, t time.Time, date bool) time.Time {
	if date {
		return oz.floating.wall(t)
	}
	return t.UTC()
}

// LimitRecurrenceSet returns obj's calendar without the overridden instances that do not
// overlap [start, end) (CALDAV:limit-recurrence-set): the master stays.
func (m *Matcher) LimitRecurrenceSet(obj *Object, start, end time.Time) (*ical.Calendar, error) {
	oz := newObjZones(obj.Cal, m.zones(), m.floating())
	keep := map[*ical.Component]bool{}
	err := oz.group(obj.Cal, obj.Kind).each(start, end, func(in instance) bool {
		if in.comp.Props.Get(ical.PropRecurrenceID) != nil && (in.overlaps(start, end) ||
			(!in.recurID.IsZero() && (start.IsZero() || !in.recurID.Before(start)) && (end.IsZero() || in.recurID.Before(end)))) {
			keep[in.comp] = true
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	out := ical.NewCalendar()
	out.Props = obj.Cal.Props
	for _, c := range obj.Cal.Children {
		if c.Name == obj.Kind && c.Props.Get(ical.PropRecurrenceID) != nil && !keep[c] {
			continue
		}
		out.Children = append(out.Children, c)
	}
	return out, nil
}

// Encode writes a calendar as iCalendar text. The library's encoder insists on
// properties some clients leave out (DTSTAMP); this one writes what is there.
func Encode(cal *ical.Calendar) []byte {
	var b bytes.Buffer
	writeComp(&b, cal.Component)
	return b.Bytes()
}

func writeComp(b *bytes.Buffer, c *ical.Component) {
	b.WriteString("BEGIN:" + c.Name + "\r\n")
	names := slices.Sorted(maps.Keys(c.Props))
	// keep the usual leading properties first for readability
	order := func(n string) int {
		switch n {
		case "VERSION":
			return 0
		case "PRODID":
			return 1
		case "UID":
			return 2
		}
		return 3
	}
	slices.SortStableFunc(names, func(x, y string) int { return order(x) - order(y) })
	for _, n := range names {
		for i := range c.Props[n] {
			writeProp(b, &c.Props[n][i])
		}
	}
	for _, child := range c.Children {
		writeComp(b, child)
	}
	b.WriteString("END:" + c.Name + "\r\n")
}

func writeProp(b *bytes.Buffer, p *ical.Prop) {
	var line strings.Builder
	line.WriteString(p.Name)
	for _, k := range slices.Sorted(maps.Keys(p.Params)) {
		line.WriteString(";" + k + "=")
		for i, v := range p.Params[k] {
			if i > 0 {
				line.WriteByte(',')
			}
			if strings.ContainsAny(v, ";:,") {
				line.WriteString(`"` + strings.ReplaceAll(v, `"`, "") + `"`)
			} else {
				line.WriteString(v)
			}
		}
	}
	line.WriteByte(':')
	line.WriteString(strings.NewReplacer("\r\n", `\n`, "\n", `\n`).Replace(p.Value))
	s := line.String()
	// fold at 75 octets, not inside a UTF-8 sequence
	for len(s) > 75 {
		cut := 75
		for cut > 1 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		b.WriteString(s[:cut] + "\r\n ")
		s = s[cut:]
	}
	b.WriteString(s + "\r\n")
}
