package calendar

import (
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// CompFilter is a CALDAV:comp-filter (RFC 4791 §9.7.1).
type CompFilter struct {
	Name         string
	IsNotDefined bool
	Start, End   time.Time // a time-range; zero bounds are open; both zero: none
	HasTimeRange bool
	Props        []PropFilter
	Comps        []CompFilter
}

// PropFilter is a CALDAV:prop-filter (RFC 4791 §9.7.2).
type PropFilter struct {
	Name         string
	IsNotDefined bool
	Start, End   time.Time
	HasTimeRange bool
	Text         *TextMatch
	Params       []ParamFilter
}

// ParamFilter is a CALDAV:param-filter (RFC 4791 §9.7.3).
type ParamFilter struct {
	Name         string
	IsNotDefined bool
	Text         *TextMatch
}

// TextMatch is a CALDAV:text-match (RFC 4791 §9.7.5): a substring test with a collation.
type TextMatch struct {
	Text      string
	Negate    bool
	Collation string // "i;ascii-casemap" (the default) or "i;octet"
}

// matchText applies a text-match to one value.
func (t *TextMatch) match(v string) bool {
	var ok bool
	if t.Collation == "i;octet" {
		ok = strings.Contains(v, t.Text)
	} else {
		ok = strings.Contains(asciiLower(v), asciiLower(t.Text))
	}
	return ok != t.Negate
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// Matcher evaluates filters against objects. Floating times and all-day values are taken
// in Floating (nil: UTC).
type Matcher struct {
	Zones    *Zones
	Floating *time.Location
	float    zone // a query's VTIMEZONE, before Floating
}

func (m *Matcher) floating() zone {
	if m != nil && m.float != nil {
		return m.float
	}
	if m == nil || m.Floating == nil {
		return utcZone
	}
	return locZone{m.Floating}
}

func (m *Matcher) zones() *Zones {
	if m == nil {
		return nil
	}
	return m.Zones
}

// Match says whether obj passes a calendar-query filter whose top comp-filter names
// VCALENDAR.
func (m *Matcher) Match(obj *Object, f CompFilter) (bool, error) {
	if !strings.EqualFold(f.Name, ical.CompCalendar) {
		return false, nil
	}
	if f.IsNotDefined {
		return false, nil
	}
	oz := newObjZones(obj.Cal, m.zones(), m.floating())
	return matchComp(oz, obj.Cal, obj.Cal.Component, nil, f)
}

// matchComp matches comp (already selected by name) against f. insts are its instances
// when it is a recurring component (nil for VCALENDAR).
func matchComp(oz *objZones, cal *ical.Calendar, comp *ical.Component, insts []instance, f CompFilter) (bool, error) {
	if f.HasTimeRange && comp.Name != ical.CompCalendar {
		hit := false
		for _, in := range insts {
			if in.overlaps(f.Start, f.End) {
				hit = true
				break
			}
		}
		if !hit {
			return false, nil
		}
	}
	for _, pf := range f.Props {
		ok, err := matchProp(oz, comp, pf)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, cf := range f.Comps {
		ok, err := matchChildren(oz, cal, comp, cf)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// matchChildren is true when some child of parent named cf.Name matches cf (or, with
// is-not-defined, when there is none).
func matchChildren(oz *objZones, cal *ical.Calendar, parent *ical.Component, cf CompFilter) (bool, error) {
	name := strings.ToUpper(cf.Name)
	var children []*ical.Component
	for _, c := range parent.Children {
		if c.Name == name {
			children = append(children, c)
		}
	}
	if cf.IsNotDefined {
		return len(children) == 0, nil
	}
	if len(children) == 0 {
		return false, nil
	}
	// instances of each child, computed once for the group when a time range asks
	var byComp map[*ical.Component][]instance
	if cf.HasTimeRange {
		byComp = map[*ical.Component][]instance{}
		if parent.Name == ical.CompCalendar {
			g := oz.group(cal, name)
			err := g.each(cf.Start, cf.End, func(in instance) bool {
				if in.overlaps(cf.Start, cf.End) {
					byComp[in.comp] = append(byComp[in.comp], in)
					// overrides come first: one hit of the master is all it needs
					return in.comp != g.master
				}
				return true
			})
			if err != nil {
				return false, err
			}
		} else if name == ical.CompAlarm {
			for _, c := range children {
				byComp[c] = alarmInstances(oz, cal, parent, c, cf.Start, cf.End)
			}
		}
	}
	for _, c := range children {
		ok, err := matchComp(oz, cal, c, byComp[c], cf)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// alarmInstances are the trigger times of an alarm, as zero-length events, for every
// instance of its parent in the range widened by a day on each side.
func alarmInstances(oz *objZones, cal *ical.Calendar, parent, alarm *ical.Component, S, E time.Time) []instance {
	tp := alarm.Props.Get(ical.PropTrigger)
	if tp == nil {
		return nil
	}
	var out []instance
	if w, _, err := parseWall(tp); err == nil && (tp.Params.Get(ical.ParamValue) == "DATE-TIME" || isUTC(tp)) {
		return []instance{{kind: ical.CompEvent, start: w, hasStart: true}}
	}
	d, err := parseDuration(tp.Value)
	if err != nil {
		return nil
	}
	fromEnd := strings.EqualFold(tp.Params.Get("RELATED"), "END")
	from, to := S, E
	if !from.IsZero() {
		from = from.AddDate(0, 0, -7)
	}
	if !to.IsZero() {
		to = to.AddDate(0, 0, 7)
	}
	_ = oz.group(cal, parent.Name).each(from, to, func(in instance) bool {
		if in.comp != parent {
			return true
		}
		base := in.start
		if fromEnd || !in.hasStart {
			base = in.end
		}
		at := base.AddDate(0, 0, d.days).Add(d.exact)
		out = append(out, instance{kind: ical.CompEvent, start: at, hasStart: true})
		return len(out) < MaxInstances
	})
	return out
}

func matchProp(oz *objZones, comp *ical.Component, pf PropFilter) (bool, error) {
	props := comp.Props.Values(strings.ToUpper(pf.Name))
	if pf.IsNotDefined {
		return len(props) == 0, nil
	}
	if len(props) == 0 {
		return false, nil
	}
	for i := range props {
		p := &props[i]
		if pf.HasTimeRange {
			w, err := oz.when(p)
			if err != nil {
				continue
			}
			S, E := pf.Start, pf.End
			if S.IsZero() {
				S = minTime
			}
			if E.IsZero() {
				E = maxTime
			}
			if w.at.Before(S) || !w.at.Before(E) {
				continue
			}
		}
		if pf.Text != nil && !pf.Text.match(p.Value) {
			continue
		}
		ok := true
		for _, prm := range pf.Params {
			vals := p.Params.Values(strings.ToUpper(prm.Name))
			switch {
			case prm.IsNotDefined:
				ok = len(vals) == 0
			case len(vals) == 0:
				ok = false
			case prm.Text != nil:
				ok = false
				for _, v := range vals {
					if prm.Text.match(v) {
						ok = true
					}
				}
			}
			if !ok {
				break
			}
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
