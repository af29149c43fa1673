package calendar

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // IANA zones even where the system has none

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// zone converts between wall-clock readings (held as time.UTC values) and instants.
type zone interface {
	utc(wall time.Time) time.Time
	wall(t time.Time) time.Time
}

// locZone is an IANA zone (or UTC).
type locZone struct{ loc *time.Location }

func (z locZone) utc(w time.Time) time.Time {
	if z.loc == time.UTC {
		return w
	}
	y, m, d := w.Date()
	h, mi, s := w.Clock()
	return time.Date(y, m, d, h, mi, s, 0, z.loc).UTC()
}

func (z locZone) wall(t time.Time) time.Time {
	l := t.In(z.loc)
	y, m, d := l.Date()
	h, mi, s := l.Clock()
	return time.Date(y, m, d, h, mi, s, 0, time.UTC)
}

var utcZone = locZone{time.UTC}

// vtzZone is a time zone defined by a VTIMEZONE: the onsets of its observances, sorted.
type vtzZone struct {
	onsets []onset
	before time.Duration // offset before the first onset
}

type onset struct {
	wall   time.Time // local time of the change, in the offset before it
	offset time.Duration
}

const (
	maxOnsets     = 2000 // per VTIMEZONE
	vtzLastYear   = 2200 // observances are expanded until then
	maxZoneIDLen  = 256
	maxCachedZone = 512
)

func newVTimezone(c *ical.Component) (*vtzZone, error) {
	z := &vtzZone{}
	first := time.Time{}
	for _, ob := range c.Children {
		if ob.Name != "STANDARD" && ob.Name != "DAYLIGHT" {
			continue
		}
		from, err := parseOffset(ob.Props.Get(ical.PropTimezoneOffsetFrom))
		if err != nil {
			return nil, fmt.Errorf("%s TZOFFSETFROM: %w", ob.Name, err)
		}
		to, err := parseOffset(ob.Props.Get(ical.PropTimezoneOffsetTo))
		if err != nil {
			return nil, fmt.Errorf("%s TZOFFSETTO: %w", ob.Name, err)
		}
		sp := ob.Props.Get(ical.PropDateTimeStart)
		if sp == nil {
			return nil, fmt.Errorf("%s without DTSTART", ob.Name)
		}
		start, _, err := parseWall(sp)
		if err != nil {
			return nil, fmt.Errorf("%s DTSTART: %w", ob.Name, err)
		}
		if first.IsZero() || start.Before(first) {
			first, z.before = start, from
		}
		z.onsets = append(z.onsets, onset{start, to})
		if rp := ob.Props.Get(ical.PropRecurrenceRule); rp != nil {
			opt, err := parseRRule(rp.Value)
			if err != nil {
				return nil, fmt.Errorf("%s RRULE: %w", ob.Name, err)
			}
			if err := checkRule(*opt, start); err != nil {
				return nil, fmt.Errorf("%s RRULE: %w", ob.Name, err)
			}
			opt.Dtstart = start
			limit := time.Date(vtzLastYear, 1, 1, 0, 0, 0, 0, time.UTC)
			if !opt.Until.IsZero() {
				opt.Until = opt.Until.Add(from) // UTC → local
			}
			if opt.Until.IsZero() || opt.Until.After(limit) {
				opt.Until = limit
			}
			r, err := rrule.NewRRule(*opt)
			if err != nil {
				return nil, fmt.Errorf("%s RRULE: %w", ob.Name, err)
			}
			next := safeNext(r.Iterator())
			for n := 0; n < maxOnsets; n++ {
				t, ok, err := next()
				if err != nil {
					return nil, fmt.Errorf("%s RRULE: %w", ob.Name, err)
				}
				if !ok {
					break
				}
				if !t.Equal(start) {
					z.onsets = append(z.onsets, onset{t, to})
				}
			}
		}
		for i := range ob.Props.Values(ical.PropRecurrenceDates) {
			ds, err := parseDateList(&ob.Props.Values(ical.PropRecurrenceDates)[i])
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				z.onsets = append(z.onsets, onset{d.wall, to})
			}
		}
		if len(z.onsets) > 4*maxOnsets {
			return nil, errors.New("too many observances")
		}
	}
	if len(z.onsets) == 0 {
		return nil, errors.New("no STANDARD or DAYLIGHT observance")
	}
	slices.SortFunc(z.onsets, func(a, b onset) int { return a.wall.Compare(b.wall) })
	return z, nil
}

// offsetAt is the zone's offset at a wall-clock reading.
func (z *vtzZone) offsetAt(w time.Time) time.Duration {
	i, _ := slices.BinarySearchFunc(z.onsets, w, func(o onset, t time.Time) int {
		if o.wall.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return z.before
	}
	return z.onsets[i-1].offset
}

func (z *vtzZone) utc(w time.Time) time.Time { return w.Add(-z.offsetAt(w)) }

func (z *vtzZone) wall(t time.Time) time.Time {
	guess := t.Add(z.offsetAt(t))
	return t.Add(z.offsetAt(guess))
}

func parseOffset(p *ical.Prop) (time.Duration, error) {
	if p == nil {
		return 0, errors.New("missing")
	}
	v := p.Value
	if len(v) != 5 && len(v) != 7 || (v[0] != '+' && v[0] != '-') {
		return 0, fmt.Errorf("bad UTC offset %q", v)
	}
	n := 0
	for _, c := range v[1:] {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad UTC offset %q", v)
		}
		n = n*10 + int(c-'0')
	}
	var d time.Duration
	if len(v) == 5 {
		d = time.Duration(n/100)*time.Hour + time.Duration(n%100)*time.Minute
	} else {
		d = time.Duration(n/10000)*time.Hour + time.Duration(n/100%100)*time.Minute + time.Duration(n%100)*time.Second
	}
	if d >= 24*time.Hour {
		return 0, fmt.Errorf("bad UTC offset %q", v)
	}
	if v[0] == '-' {
		d = -d
	}
	return d, nil
}

// loadIANA resolves a TZID as an IANA zone name, also in the "/vendor/.../Area/City" form
// some clients send.
func loadIANA(id string) (*time.Location, error) {
	if id == "" || len(id) > maxZoneIDLen || id == "Local" {
		return nil, errors.New("not an IANA zone")
	}
	if id == "UTC" || id == "Etc/UTC" || id == "GMT" || id == "Z" {
		return time.UTC, nil
	}
	if loc, err := time.LoadLocation(id); err == nil {
		return loc, nil
	}
	parts := strings.Split(strings.Trim(id, "/"), "/")
	for i := 1; i < len(parts); i++ {
		if loc, err := time.LoadLocation(strings.Join(parts[i:], "/")); err == nil {
			return loc, nil
		}
	}
	return nil, errors.New("not an IANA zone")
}

// Zones caches resolved IANA zones; it is safe for concurrent use. The zero value is ready.
type Zones struct {
	mu    sync.Mutex
	cache map[string]*time.Location
}

func (zs *Zones) iana(id string) (*time.Location, error) {
	if zs == nil {
		return loadIANA(id)
	}
	zs.mu.Lock()
	loc, ok := zs.cache[id]
	zs.mu.Unlock()
	if ok {
		if loc == nil {
			return nil, errors.New("not an IANA zone")
		}
		return loc, nil
	}
	loc, err := loadIANA(id)
	zs.mu.Lock()
	if zs.cache == nil || len(zs.cache) >= maxCachedZone {
		zs.cache = map[string]*time.Location{}
	}
	zs.cache[id] = loc
	zs.mu.Unlock()
	return loc, err
}

// objZones resolves the TZIDs of one object: its own VTIMEZONEs, else IANA names.
type objZones struct {
	zones    *Zones
	vtz      map[string]*ical.Component
	resolved map[string]zone
	floating zone
}

func newObjZones(cal *ical.Calendar, zs *Zones, floating zone) *objZones {
	oz := &objZones{zones: zs, floating: floating}
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			if id, _ := c.Props.Text(ical.PropTimezoneID); id != "" {
				if oz.vtz == nil {
					oz.vtz = map[string]*ical.Component{}
				}
				oz.vtz[id] = c
			}
		}
	}
	return oz
}

// zoneOf is the zone a DATE-TIME property is in: UTC, its TZID, or floating.
func (oz *objZones) zoneOf(p *ical.Prop) zone {
	if isUTC(p) {
		return utcZone
	}
	id := p.Params.Get(ical.PropTimezoneID)
	if id == "" {
		return oz.floating
	}
	if z, ok := oz.resolved[id]; ok {
		return z
	}
	var z zone = oz.floating
	if loc, err := oz.zones.iana(id); err == nil {
		z = locZone{loc}
	} else if c, ok := oz.vtz[id]; ok {
		if vz, err := newVTimezone(c); err == nil {
			z = vz
		}
	}
	if oz.resolved == nil {
		oz.resolved = map[string]zone{}
	}
	oz.resolved[id] = z
	return z
}

// when is a parsed DATE or DATE-TIME: its wall reading, its zone and its instant.
type when struct {
	wall   time.Time
	at     time.Time
	isDate bool
	z      zone
}

func (oz *objZones) when(p *ical.Prop) (when, error) {
	w, isDate, err := parseWall(p)
	if err != nil {
		return when{}, err
	}
	z := oz.floating
	if !isDate {
		z = oz.zoneOf(p)
	}
	return when{wall: w, at: z.utc(w), isDate: isDate, z: z}, nil
}

// parseRRule parses an RRULE value; UNTIL keeps the zone it was written in.
func parseRRule(v string) (*rrule.ROption, error) {
	if len(v) > 4096 {
		return nil, errors.New("too long")
	}
	opt, err := rrule.StrToROption(v)
	if err != nil {
		return nil, err
	}
	if opt.Interval < 0 || opt.Count < 0 {
		return nil, errors.New("negative INTERVAL or COUNT")
	}
	for _, wd := range opt.Byweekday {
		n := wd.N()
		if n < -53 || n > 53 || ((opt.Freq == rrule.MONTHLY || len(opt.Bymonth) > 0) && (n < -5 || n > 5)) {
			return nil, fmt.Errorf("BYDAY ordinal %d out of range", n)
		}
	}
	if _, err := rrule.NewRRule(*opt); err != nil {
		return nil, err
	}
	return opt, nil
}

// checkRule makes sure a rule starting at dtstart (a wall reading) has occurrences at
// all: the library looks for the next occurrence until the year 9999, so a rule that can
// never occur (BYMONTH=2;BYMONTHDAY=30) would cost that walk on every query. The rule is
// tried from 400 years (one Gregorian cycle) before that end, 50 for hourly and finer
// rules, which keeps the walk short; a rule whose INTERVAL spans more is refused. A panic
// of the library is an error too.
func checkRule(opt rrule.ROption, dtstart time.Time) error {
	opt.Dtstart, opt.Count, opt.Until = dtstart, 0, time.Time{}
	from := 9999 - 400 // one cycle of the Gregorian calendar before the library's end
	if opt.Freq >= rrule.HOURLY {
		from = 9999 - 50 // the library walks every hour, minute or second: keep it short
	}
	fastForward(&opt, time.Date(from, 1, 1, 0, 0, 0, 0, time.UTC))
	r, err := rrule.NewRRule(opt)
	if err != nil {
		return err
	}
	_, ok, err := safeNext(r.Iterator())()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the rule never occurs")
	}
	return nil
}

// safeNext wraps a recurrence iterator so that a panic inside the library (seen with
// rules it accepts but cannot expand) ends the iteration with an error.
func safeNext(next rrule.Next) func() (time.Time, bool, error) {
	return func() (t time.Time, ok bool, err error) {
		defer func() {
			if r := recover(); r != nil {
				t, ok, err = time.Time{}, false, fmt.Errorf("recurrence rule cannot be expanded: %v", r)
			}
		}()
		t, ok = next()
		return t, ok, nil
	}
}

// dateItem is one value of an RDATE or EXDATE list.
type dateItem struct {
	wall     time.Time
	isDate   bool
	utc      bool
	period   bool
	end      time.Time // wall end of a PERIOD with an explicit end
	duration dur       // duration of a PERIOD written as start/duration
	hasEnd   bool
}

const maxDateList = 10000

func parseDateList(p *ical.Prop) ([]dateItem, error) {
	vals := strings.Split(p.Value, ",")
	if len(vals) > maxDateList {
		return nil, fmt.Errorf("more than %d dates", maxDateList)
	}
	isPeriod := p.Params.Get(ical.ParamValue) == string(ical.ValuePeriod)
	isDate := p.Params.Get(ical.ParamValue) == string(ical.ValueDate)
	out := make([]dateItem, 0, len(vals))
	for _, v := range vals {
		v = strings.TrimSpace(v)
		var it dateItem
		start, rest, hasSlash := strings.Cut(v, "/")
		if hasSlash && !isPeriod {
			isPeriod = true
		}
		w, d, err := parseWallValue(start, isDate)
		if err != nil {
			return nil, err
		}
		it.wall, it.isDate, it.utc = w, d, len(start) == 16
		if hasSlash {
			it.period = true
			if strings.HasPrefix(rest, "P") || strings.HasPrefix(rest, "+P") {
				du, err := parseDuration(rest)
				if err != nil {
					return nil, err
				}
				it.duration = du
			} else {
				e, _, err := parseWallValue(rest, false)
				if err != nil {
					return nil, err
				}
				it.end, it.hasEnd = e, true
			}
		} else if isPeriod {
			return nil, fmt.Errorf("bad period %q", v)
		}
		out = append(out, it)
	}
	return out, nil
}
