package calendar

import (
	"errors"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// MaxInstances bounds how many occurrences of one recurring component are looked at.
const MaxInstances = 100_000

// errTooManyInstances is returned when a recurrence set has more than MaxInstances
// occurrences before the end of the range asked about.
var errTooManyInstances = errors.New("calendar: too many recurrence instances")

var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

// instance is one occurrence of a component.
type instance struct {
	comp     *ical.Component // the master or the override describing it
	kind     string
	start    time.Time // DTSTART instant (or DUE for a VTODO with no DTSTART)
	hasStart bool
	end      time.Time // VEVENT: end; VTODO: DUE or DTSTART+DURATION
	hasEnd   bool
	viaDur   bool // the end came from DURATION
	isDate   bool
	recurID  time.Time // the instant of its RECURRENCE-ID; zero if not recurring
	// exact copies for VTODO rules
	completed, created       time.Time
	hasCompleted, hasCreated bool
}

// span is the parsed timing of one component.
type span struct {
	base     when // DTSTART, or DUE for a VTODO without DTSTART
	hasBase  bool
	baseDue  bool // base is DUE
	length   dur  // from base to end
	hasEnd   bool
	viaDur   bool
	isDate   bool
	recurID  time.Time
	hasRecur bool
}

func (oz *objZones) span(c *ical.Component) (span, error) {
	var s span
	if p := c.Props.Get(ical.PropDateTimeStart); p != nil {
		w, err := oz.when(p)
		if err != nil {
			return s, err
		}
		s.base, s.hasBase, s.isDate = w, true, w.isDate
	}
	if p := c.Props.Get(ical.PropRecurrenceID); p != nil {
		w, err := oz.when(p)
		if err != nil {
			return s, err
		}
		s.recurID, s.hasRecur = w.at, true
	}
	endName := ical.PropDateTimeEnd
	if c.Name == ical.CompToDo {
		endName = ical.PropDue
	}
	if p := c.Props.Get(endName); p != nil {
		e, err := oz.when(p)
		if err != nil {
			return s, err
		}
		if !s.hasBase {
			s.base, s.hasBase, s.baseDue, s.isDate = e, true, true, e.isDate
			s.hasEnd = true
			return s, nil
		}
		s.hasEnd = true
		if s.isDate && e.isDate {
			s.length.days = int(e.wall.Sub(s.base.wall).Hours() / 24)
		} else {
			s.length.exact = e.at.Sub(s.base.at)
		}
	} else if p := c.Props.Get(ical.PropDuration); p != nil && s.hasBase {
		d, err := parseDuration(p.Value)
		if err != nil {
			return s, err
		}
		s.length, s.hasEnd, s.viaDur = d, true, true
	} else if c.Name == ical.CompEvent && s.isDate {
		s.length.days, s.hasEnd = 1, true
	}
	return s, nil
}

// at makes the instance of span s that starts at wall reading w in zone z.
func (s span) at(c *ical.Component, w time.Time, z zone, recurring bool) instance {
	in := instance{comp: c, kind: c.Name, isDate: s.isDate, viaDur: s.viaDur}
	start := z.utc(w)
	end := start
	if s.length.days != 0 {
		end = z.utc(w.AddDate(0, 0, s.length.days))
	}
	end = end.Add(s.length.exact)
	if s.baseDue {
		in.end, in.hasEnd = start, true
	} else {
		in.start, in.hasStart = start, true
		in.end, in.hasEnd = end, s.hasEnd
	}
	if recurring {
		in.recurID = start
	}
	return todoTimes(in)
}

// todoTimes fills in COMPLETED and CREATED of a VTODO instance (both UTC by definition).
func todoTimes(in instance) instance {
	if in.kind != ical.CompToDo {
		return in
	}
	if p := in.comp.Props.Get(ical.PropCompleted); p != nil {
		if w, _, err := parseWall(p); err == nil {
			in.completed, in.hasCompleted = w, true
		}
	}
	if p := in.comp.Props.Get(ical.PropCreated); p != nil {
		if w, _, err := parseWall(p); err == nil {
			in.created, in.hasCreated = w, true
		}
	}
	return in
}

// group is the components of one kind in an object: the master and its overrides.
type group struct {
	oz        *objZones
	master    *ical.Component
	overrides []*ical.Component
}

func (oz *objZones) group(cal *ical.Calendar, kind string) group {
	g := group{oz: oz}
	for _, c := range cal.Children {
		if c.Name != kind {
			continue
		}
		if c.Props.Get(ical.PropRecurrenceID) != nil {
			g.overrides = append(g.overrides, c)
		} else if g.master == nil {
			g.master = c
		}
	}
	return g
}

// future is an override with RANGE=THISANDFUTURE: it describes its own instance and
// every later one not overridden on its own (RFC 5545 §3.8.4.4).
type future struct {
	comp    *ical.Component
	span    span
	recurID time.Time // the instant it takes over from
	// shift moves a later instance's start: the override's DTSTART minus its
	// RECURRENCE-ID, in wall time of the override's zone (whole days for dates).
	shift     time.Duration
	shiftDays int
}

// isThisAndFuture reports whether an override's RECURRENCE-ID has RANGE=THISANDFUTURE.
func isThisAndFuture(c *ical.Component) bool {
	p := c.Props.Get(ical.PropRecurrenceID)
	return p != nil && strings.EqualFold(p.Params.Get("RANGE"), "THISANDFUTURE")
}

// futureFor returns the THISANDFUTURE override in force at instant at: the latest one
// taking over at or before it (futures sorted by recurID), or nil.
func futureFor(futures []future, at time.Time) *future {
	i := sort.Search(len(futures), func(i int) bool { return futures[i].recurID.After(at) })
	if i == 0 {
		return nil
	}
	return &futures[i-1]
}

// apply makes the instance of master instance in (an occurrence at in.recurID) as
// the override f describes it.
func (f *future) apply(in instance) instance {
	if !f.span.hasBase {
		out := todoTimes(instance{comp: f.comp, kind: f.comp.Name})
		out.recurID = in.recurID
		return out
	}
	z := f.span.base.z
	w := z.wall(in.recurID)
	if f.span.isDate {
		w = time.Date(w.Year(), w.Month(), w.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, f.shiftDays)
	} else {
		w = w.Add(f.shift)
	}
	out := f.span.at(f.comp, w, z, true)
	out.recurID = in.recurID
	return out
}

// each calls fn for every instance of the group that may overlap [from, to) (a zero
// bound is open), in no particular order, until fn returns false.
func (g group) each(from, to time.Time, fn func(instance) bool) error {
	overridden := map[int64]bool{}
	var futures []future
	var early, late time.Duration // how far THISANDFUTURE overrides move instances
	for _, o := range g.overrides {
		s, err := g.oz.span(o)
		if err != nil {
			return err
		}
		overridden[s.recurID.Unix()] = true
		in := s.at(o, s.base.wall, s.base.z, true)
		if !s.hasBase {
			in = todoTimes(instance{comp: o, kind: o.Name})
		}
		in.recurID = s.recurID
		if isThisAndFuture(o) {
			f := future{comp: o, span: s, recurID: s.recurID}
			if s.hasBase {
				rw := s.base.z.wall(s.recurID)
				if s.isDate {
					f.shiftDays = int(math.Round(s.base.wall.Sub(time.Date(rw.Year(), rw.Month(), rw.Day(), 0, 0, 0, 0, time.UTC)).Hours() / 24))
				} else {
					f.shift = s.base.wall.Sub(rw)
				}
				d := f.shift + time.Duration(f.shiftDays)*24*time.Hour
				early, late = max(early, -d), max(late, d)
			}
			futures = append(futures, f)
		}
		if !fn(in) {
			return nil
		}
	}
	slices.SortFunc(futures, func(a, b future) int { return a.recurID.Compare(b.recurID) })
	// A master instance, or the THISANDFUTURE override's version of it.
	master := func(in instance) instance {
		if f := futureFor(futures, in.recurID); f != nil {
			return f.apply(in)
		}
		return in
	}
	if g.master == nil {
		return nil
	}
	s, err := g.oz.span(g.master)
	if err != nil {
		return err
	}
	if !s.hasBase {
		fn(todoTimes(instance{comp: g.master, kind: g.master.Name}))
		return nil
	}
	rp := g.master.Props.Get(ical.PropRecurrenceRule)
	rdates := g.master.Props.Values(ical.PropRecurrenceDates)
	if rp == nil && len(rdates) == 0 {
		if !overridden[s.base.at.Unix()] {
			fn(s.at(g.master, s.base.wall, s.base.z, false))
		}
		return nil
	}
	// EXDATEs: instants, and wall dates for DATE values
	exAt := map[int64]bool{}
	exDay := map[time.Time]bool{}
	for i := range g.master.Props.Values(ical.PropExceptionDates) {
		p := &g.master.Props.Values(ical.PropExceptionDates)[i]
		items, err := parseDateList(p)
		if err != nil {
			return err
		}
		z := g.oz.zoneOf(p)
		for _, it := range items {
			if it.isDate {
				exDay[it.wall] = true
			} else {
				exAt[z.utc(it.wall).Unix()] = true
			}
		}
	}
	skip := func(w, at time.Time) bool {
		if overridden[at.Unix()] || exAt[at.Unix()] {
			return true
		}
		return len(exDay) > 0 && exDay[time.Date(w.Year(), w.Month(), w.Day(), 0, 0, 0, 0, time.UTC)]
	}
	z := s.base.z
	n := 0
	// With RDATE but no RRULE, DTSTART is the first instance (RFC 5545 §3.8.5.2); an
	// RRULE's iterator yields it itself.
	seen := map[int64]bool{}
	if rp == nil && !skip(s.base.wall, s.base.at) {
		seen[s.base.at.Unix()] = true
		if !fn(master(s.at(g.master, s.base.wall, z, true))) {
			return nil
		}
	}
	for i := range rdates {
		p := &rdates[i]
		items, err := parseDateList(p)
		if err != nil {
			return err
		}
		rz := z
		if !s.isDate {
			rz = g.oz.zoneOf(p)
		}
		for _, it := range items {
			w := z.wall(rz.utc(it.wall))
			if it.isDate {
				w = it.wall
			}
			at := z.utc(w)
			if skip(w, at) || seen[at.Unix()] {
				continue
			}
			seen[at.Unix()] = true
			in := s.at(g.master, w, z, true)
			if f := futureFor(futures, in.recurID); f != nil {
				in = f.apply(in)
			} else if it.period && in.hasStart {
				in.hasEnd, in.viaDur = true, false
				if it.hasEnd {
					in.end = rz.utc(it.end)
				} else {
					in.end = z.utc(w.AddDate(0, 0, it.duration.days)).Add(it.duration.exact)
				}
			}
			if n++; n > MaxInstances {
				return errTooManyInstances
			}
			if !fn(in) {
				return nil
			}
		}
	}
	if rp == nil {
		return nil
	}
	opt, err := parseRRule(rp.Value)
	if err != nil {
		return err
	}
	opt.Dtstart = s.base.wall
	if !opt.Until.IsZero() && strings.Contains(strings.ToUpper(rp.Value), "Z") && !s.isDate {
		opt.Until = z.wall(opt.Until) // an UTC UNTIL, compared in wall time
	}
	var limit time.Time
	if !to.IsZero() {
		to = to.Add(early) // an instance moved earlier may come from after the range
		limit = z.wall(to).AddDate(0, 0, 2)
		if opt.Until.IsZero() || opt.Until.After(limit) {
			opt.Until = limit
		}
	}
	if !from.IsZero() {
		// Instances that start before from may reach into the range: by their length, or
		// by a THISANDFUTURE override's length and shift.
		margin := time.Duration(s.length.days+2)*24*time.Hour + max(s.length.exact, 0) + late
		for _, f := range futures {
			margin = max(margin, late+time.Duration(f.span.length.days+2)*24*time.Hour+max(f.span.length.exact, 0))
		}
		fastForward(opt, z.wall(from).Add(-margin))
	}
	r, err := rrule.NewRRule(*opt)
	if err != nil {
		return err
	}
	next := safeNext(r.Iterator())
	for {
		w, ok, err := next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if n++; n > MaxInstances {
			return errTooManyInstances
		}
		at := z.utc(w)
		if !to.IsZero() && !at.Before(to) && !s.baseDue {
			return nil
		}
		if skip(w, at) {
			continue
		}
		if !fn(master(s.at(g.master, w, z, true))) {
			return nil
		}
	}
}

// overlaps applies the time-range rules of RFC 4791 §9.9 to an instance and [S, E).
func (in instance) overlaps(S, E time.Time) bool {
	if S.IsZero() {
		S = minTime
	}
	if E.IsZero() {
		E = maxTime
	}
	switch in.kind {
	case ical.CompEvent:
		if !in.hasStart {
			return false
		}
		if in.hasEnd && in.end.After(in.start) {
			return S.Before(in.end) && E.After(in.start)
		}
		return !S.After(in.start) && E.After(in.start)
	case ical.CompToDo:
		switch {
		case in.hasStart && in.hasEnd && in.viaDur:
			return !S.After(in.end) && (E.After(in.start) || !E.Before(in.end))
		case in.hasStart && in.hasEnd:
			return (S.Before(in.end) || !S.After(in.start)) && (E.After(in.start) || !E.Before(in.end))
		case in.hasStart:
			return !S.After(in.start) && E.After(in.start)
		case in.hasEnd:
			return S.Before(in.end) && !E.Before(in.end)
		case in.hasCompleted && in.hasCreated:
			return (!S.After(in.created) || !S.After(in.completed)) && (!E.Before(in.created) || !E.Before(in.completed))
		case in.hasCompleted:
			return !S.After(in.completed) && !E.Before(in.completed)
		case in.hasCreated:
			return E.After(in.created)
		}
		return true
	case ical.CompJournal:
		if !in.hasStart {
			return false
		}
		if in.isDate {
			return S.Before(in.start.AddDate(0, 0, 1)) && E.After(in.start)
		}
		return !S.After(in.start) && E.After(in.start)
	case ical.CompFreeBusy:
		if in.hasStart && in.hasEnd {
			return !S.After(in.end) && E.After(in.start)
		}
		for _, p := range freeBusyPeriods(in.comp) {
			if S.Before(p.end) && E.After(p.start) {
				return true
			}
		}
		return false
	}
	return false
}

// period is a span of absolute time.
type period struct {
	start, end time.Time
	fbtype     string
}

// freeBusyPeriods are the FREEBUSY periods of a VFREEBUSY component (always UTC).
func freeBusyPeriods(c *ical.Component) []period {
	var out []period
	for i := range c.Props.Values(ical.PropFreeBusy) {
		p := &c.Props.Values(ical.PropFreeBusy)[i]
		items, err := parseDateList(p)
		if err != nil {
			continue
		}
		fbtype := strings.ToUpper(p.Params.Get("FBTYPE"))
		if fbtype == "" {
			fbtype = "BUSY"
		}
		for _, it := range items {
			if !it.period {
				continue
			}
			end := it.end
			if !it.hasEnd {
				end = it.wall.AddDate(0, 0, it.duration.days).Add(it.duration.exact)
			}
			out = append(out, period{it.wall, end, fbtype})
		}
	}
	return out
}

// pyWeekdays are rrule's weekdays indexed by time.Weekday.
var pyWeekdays = [7]rrule.Weekday{rrule.SU, rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA}

// fastForward moves a rule's DTSTART forward by whole periods (multiples of INTERVAL) to
// the period holding target, so that expanding a range far from DTSTART does not walk
// every occurrence since. The parts of the rule that DTSTART implied are made explicit
// first, so the occurrences from the new start are exactly the old ones. Rules with
// COUNT are left alone (their count starts at DTSTART).
func fastForward(opt *rrule.ROption, target time.Time) {
	start := opt.Dtstart
	if opt.Count > 0 || !target.After(start) {
		return
	}
	iv := max(opt.Interval, 1)
	if len(opt.Byweekno) == 0 && len(opt.Byyearday) == 0 && len(opt.Bymonthday) == 0 && len(opt.Byweekday) == 0 && len(opt.Byeaster) == 0 {
		switch opt.Freq {
		case rrule.YEARLY:
			if len(opt.Bymonth) == 0 {
				opt.Bymonth = []int{int(start.Month())}
			}
			opt.Bymonthday = []int{start.Day()}
		case rrule.MONTHLY:
			opt.Bymonthday = []int{start.Day()}
		case rrule.WEEKLY:
			opt.Byweekday = []rrule.Weekday{pyWeekdays[start.Weekday()]}
		}
	}
	if opt.Freq < rrule.HOURLY && len(opt.Byhour) == 0 {
		opt.Byhour = []int{start.Hour()}
	}
	if opt.Freq < rrule.MINUTELY && len(opt.Byminute) == 0 {
		opt.Byminute = []int{start.Minute()}
	}
	if opt.Freq < rrule.SECONDLY && len(opt.Bysecond) == 0 {
		opt.Bysecond = []int{start.Second()}
	}
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	var ns time.Time
	switch opt.Freq {
	case rrule.YEARLY:
		ns = time.Date(start.Year()+(target.Year()-start.Year())/iv*iv, 1, 1, 0, 0, 0, 0, time.UTC)
	case rrule.MONTHLY:
		months := (target.Year()*12 + int(target.Month())) - (start.Year()*12 + int(start.Month()))
		ns = time.Date(start.Year(), start.Month()+time.Month(months/iv*iv), 1, 0, 0, 0, 0, time.UTC)
	case rrule.WEEKLY:
		weeks := int(target.Sub(start).Hours()/24/7) / iv * iv
		ns = day(start.AddDate(0, 0, 7*weeks))
		wkst := time.Weekday((opt.Wkst.Day() + 1) % 7) // rrule counts Monday as 0
		for ns.Weekday() != wkst {
			ns = ns.AddDate(0, 0, -1)
		}
	case rrule.DAILY:
		ns = day(start.AddDate(0, 0, int(target.Sub(start).Hours()/24)/iv*iv))
	case rrule.HOURLY:
		ns = start.Add(time.Duration(int(target.Sub(start).Hours())/iv*iv) * time.Hour)
	case rrule.MINUTELY:
		ns = start.Add(time.Duration(int(target.Sub(start).Minutes())/iv*iv) * time.Minute)
	default:
		ns = start.Add(time.Duration(int(target.Sub(start).Seconds())/iv*iv) * time.Second)
	}
	if ns.After(start) {
		opt.Dtstart = ns
	}
}
