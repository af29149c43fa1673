package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// Limits on what a calendar object resource may contain.
const (
	// DefaultMaxObjectSize is the largest calendar object resource accepted (max-resource-size).
	DefaultMaxObjectSize = 1 << 20
	// MaxDepth is how deeply components may nest (VCALENDAR > VEVENT > VALARM is 3).
	MaxDepth = 6
	// MaxComponents is how many components (a master and its overrides, time zones,
	// alarms) one object may hold.
	MaxComponents = 2000
	// MaxLineLen is the longest unfolded content line.
	MaxLineLen = 256 << 10
)

// allComponents are the components a calendar collection can hold.
var allComponents = []string{ical.CompEvent, ical.CompToDo, ical.CompJournal, ical.CompFreeBusy}

// AllComponents lists the components a calendar collection can hold
// (CALDAV:supported-calendar-component-set).
func AllComponents() []string { return slices.Clone(allComponents) }

// Preconditions of RFC 4791 §5.3.2.1 that validation reports.
const (
	PreValidData          = "valid-calendar-data"
	PreValidObject        = "valid-calendar-object-resource"
	PreSupportedComponent = "supported-calendar-component"
	PreMaxResourceSize    = "max-resource-size"
	PreNoUIDConflict      = "no-uid-conflict"
)

// ValidationError says why a calendar object resource was refused: the CalDAV
// precondition it violates (reported in the error body), the HTTP status and the reason.
type ValidationError struct {
	Precondition string // e.g. "valid-calendar-data"
	Status       int    // 400, 403 or 413
	Reason       string
}

// Error says which precondition failed and why.
func (e *ValidationError) Error() string {
	return "calendar: " + e.Precondition + ": " + e.Reason
}

func invalid(pre string, status int, format string, args ...any) *ValidationError {
	return &ValidationError{Precondition: pre, Status: status, Reason: fmt.Sprintf(format, args...)}
}

// Object is a parsed, validated calendar object resource.
type Object struct {
	Cal  *ical.Calendar
	UID  string
	Kind string // VEVENT, VTODO, VJOURNAL or VFREEBUSY
}

// ValidateOptions tunes Validate.
type ValidateOptions struct {
	// Components the collection accepts (nil: all of AllComponents()).
	Components []string
	// MaxSize is the largest accepted object in bytes (0: DefaultMaxObjectSize).
	MaxSize int
}

// Validate parses data as one calendar object resource (RFC 4791 §4.1) and checks it:
// a single VCALENDAR, no METHOD, one kind of component with one UID, a component the
// collection supports, parseable dates, durations and recurrence rules, known time zones.
// A refusal is a *ValidationError.
func Validate(data []byte, opts ValidateOptions) (*Object, error) {
	maxSize := opts.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxObjectSize
	}
	if len(data) > maxSize {
		return nil, invalid(PreMaxResourceSize, http.StatusRequestEntityTooLarge, "object is %d bytes, more than the %d allowed", len(data), maxSize)
	}
	cal, err := parse(data)
	if err != nil {
		return nil, err
	}
	obj, err := check(cal)
	if err != nil {
		return nil, err
	}
	comps := opts.Components
	if comps == nil {
		comps = allComponents
	}
	if !slices.Contains(comps, obj.Kind) {
		return nil, invalid(PreSupportedComponent, http.StatusForbidden, "this calendar does not accept %s (it takes %s)", obj.Kind, strings.Join(comps, ", "))
	}
	return obj, nil
}

// Parse parses a stored calendar object without the collection checks of Validate.
func Parse(data []byte) (*Object, error) {
	cal, err := parse(data)
	if err != nil {
		return nil, err
	}
	return check(cal)
}

// parse decodes data after checking its shape, so that the decoder never sees input
// that is too deep, has overlong lines or trailing content.
func parse(data []byte) (*ical.Calendar, error) { return parseLimit(data, MaxComponents) }

// parseLimit is parse allowing maxComps components.
func parseLimit(data []byte, maxComps int) (*ical.Calendar, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, invalid(PreValidData, http.StatusBadRequest, "empty body")
	}
	depth, comps, ended := 0, 0, false
	rest := data
	for len(rest) > 0 {
		line, next, _ := bytes.Cut(rest, []byte{'\n'})
		rest = next
		// a continuation line (folded) starts with a space or tab
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			var more []byte
			more, rest, _ = bytes.Cut(rest, []byte{'\n'})
			line = append(bytes.TrimRight(line[:len(line):len(line)], "\r"), more[1:]...)
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) > MaxLineLen {
			return nil, invalid(PreValidData, http.StatusBadRequest, "a content line is longer than %d bytes", MaxLineLen)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if ended {
			return nil, invalid(PreValidData, http.StatusBadRequest, "content after END:VCALENDAR")
		}
		head, err := lineHead(line)
		if err != nil {
			return nil, err
		}
		name, _, _ := bytes.Cut(head, []byte{';'})
		switch {
		case bytes.EqualFold(name, []byte("BEGIN")):
			depth++
			comps++
			if depth > MaxDepth {
				return nil, invalid(PreValidData, http.StatusBadRequest, "components nest deeper than %d", MaxDepth)
			}
			if comps > maxComps {
				return nil, invalid(PreValidData, http.StatusBadRequest, "more than %d components", maxComps)
			}
		case bytes.EqualFold(name, []byte("END")):
			depth--
			if depth < 0 {
				return nil, invalid(PreValidData, http.StatusBadRequest, "END without BEGIN")
			}
			ended = depth == 0
		default:
			if depth == 0 {
				return nil, invalid(PreValidData, http.StatusBadRequest, "content outside BEGIN:VCALENDAR")
			}
		}
	}
	if !ended {
		return nil, invalid(PreValidData, http.StatusBadRequest, "missing END:VCALENDAR")
	}
	return decode(data)
}

// maxLineHead bounds a content line's name and parameters (the decoder copies parameter
// values a byte at a time, so long ones cost quadratic time).
const maxLineHead = 4096

// lineHead returns the name and parameters of a content line: what comes before the
// first colon outside double quotes.
func lineHead(line []byte) ([]byte, error) {
	quoted := false
	for i, c := range line {
		if i > maxLineHead {
			return nil, invalid(PreValidData, http.StatusBadRequest, "a property's name and parameters are longer than %d bytes", maxLineHead)
		}
		switch {
		case c == '"':
			quoted = !quoted
		case c == ':' && !quoted:
			return line[:i], nil
		}
	}
	return nil, invalid(PreValidData, http.StatusBadRequest, "content line %q has no ':'", trunc(line))
}

func trunc(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// decode runs the iCalendar decoder. Its parser panics on some malformed lines that the
// checks in parse do not foresee; such a panic is reported as malformed data.
func decode(data []byte) (cal *ical.Calendar, err error) {
	defer func() {
		if r := recover(); r != nil {
			cal, err = nil, invalid(PreValidData, http.StatusBadRequest, "malformed iCalendar: %v", r)
		}
	}()
	cal, err = ical.NewDecoder(bytes.NewReader(data)).Decode()
	if err != nil {
		return nil, invalid(PreValidData, http.StatusBadRequest, "%v", err)
	}
	return cal, nil
}

// check applies RFC 4791 §4.1 to a decoded calendar.
func check(cal *ical.Calendar) (*Object, error) {
	if cal.Props.Get(ical.PropMethod) != nil {
		return nil, invalid(PreValidObject, http.StatusForbidden, "a stored calendar object must not have METHOD")
	}
	obj := &Object{Cal: cal}
	tzids := map[string]bool{}
	masters := 0
	recurIDs := map[string]bool{}
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			id, _ := c.Props.Text(ical.PropTimezoneID)
			if id == "" {
				return nil, invalid(PreValidData, http.StatusBadRequest, "VTIMEZONE without TZID")
			}
			if _, err := newVTimezone(c); err != nil {
				return nil, invalid(PreValidData, http.StatusBadRequest, "VTIMEZONE %q: %v", id, err)
			}
			tzids[id] = true
			continue
		}
		if !slices.Contains(allComponents, c.Name) {
			if strings.HasPrefix(c.Name, "X-") {
				continue
			}
			return nil, invalid(PreValidObject, http.StatusForbidden, "unexpected component %s", c.Name)
		}
		if obj.Kind == "" {
			obj.Kind = c.Name
		} else if obj.Kind != c.Name {
			return nil, invalid(PreValidObject, http.StatusForbidden, "one object holds both %s and %s", obj.Kind, c.Name)
		}
		uid, _ := c.Props.Text(ical.PropUID)
		if uid == "" {
			return nil, invalid(PreValidObject, http.StatusForbidden, "%s without UID", c.Name)
		}
		if obj.UID == "" {
			obj.UID = uid
		} else if obj.UID != uid {
			return nil, invalid(PreValidObject, http.StatusForbidden, "two UIDs in one object: %q and %q", obj.UID, uid)
		}
		if rid := c.Props.Get(ical.PropRecurrenceID); rid != nil {
			if recurIDs[rid.Value] {
				return nil, invalid(PreValidObject, http.StatusForbidden, "RECURRENCE-ID %s twice", rid.Value)
			}
			recurIDs[rid.Value] = true
		} else {
			masters++
		}
		if err := checkComponent(c); err != nil {
			return nil, invalid(PreValidData, http.StatusBadRequest, "%s %q: %v", c.Name, uid, err)
		}
	}
	if obj.Kind == "" {
		return nil, invalid(PreValidObject, http.StatusForbidden, "no VEVENT, VTODO, VJOURNAL or VFREEBUSY")
	}
	if masters > 1 {
		return nil, invalid(PreValidObject, http.StatusForbidden, "%d %s without RECURRENCE-ID share UID %q", masters, obj.Kind, obj.UID)
	}
	// every TZID must name a VTIMEZONE of the object or a zone we know
	var tzErr error
	walkProps(cal.Component, func(p *ical.Prop) {
		id := p.Params.Get(ical.PropTimezoneID)
		if id == "" || tzids[id] || tzErr != nil {
			return
		}
		if _, err := loadIANA(id); err != nil {
			tzErr = invalid(PreValidData, http.StatusBadRequest, "TZID %q is neither in a VTIMEZONE nor a known time zone", id)
		}
	})
	if tzErr != nil {
		return nil, tzErr
	}
	return obj, nil
}

// checkComponent checks the date, duration and recurrence properties of one component.
func checkComponent(c *ical.Component) error {
	for _, name := range []string{ical.PropDateTimeStart, ical.PropDateTimeEnd, ical.PropDue, ical.PropRecurrenceID, ical.PropCompleted, ical.PropCreated} {
		ps := c.Props.Values(name)
		if len(ps) > 1 {
			return fmt.Errorf("%s twice", name)
		}
		if len(ps) == 1 {
			if _, _, err := parseWall(&ps[0]); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if c.Props.Get(ical.PropDateTimeEnd) != nil && c.Props.Get(ical.PropDuration) != nil {
		return errors.New("both DTEND and DURATION")
	}
	if c.Props.Get(ical.PropDue) != nil && c.Props.Get(ical.PropDuration) != nil {
		return errors.New("both DUE and DURATION")
	}
	if p := c.Props.Get(ical.PropDuration); p != nil {
		if _, err := parseDuration(p.Value); err != nil {
			return fmt.Errorf("DURATION: %w", err)
		}
	}
	if s, e := c.Props.Get(ical.PropDateTimeStart), c.Props.Get(ical.PropDateTimeEnd); s != nil && e != nil {
		sw, sd, _ := parseWall(s)
		ew, ed, _ := parseWall(e)
		if sd != ed {
			return errors.New("DTSTART and DTEND are not both dates or both date-times")
		}
		if sp, ep := s.Params.Get(ical.PropTimezoneID), e.Params.Get(ical.PropTimezoneID); sp == ep && isUTC(s) == isUTC(e) && ew.Before(sw) {
			return errors.New("DTEND before DTSTART")
		}
	}
	if len(c.Props.Values(ical.PropRecurrenceRule)) > 1 {
		return errors.New("more than one RRULE")
	}
	if p := c.Props.Get(ical.PropRecurrenceRule); p != nil {
		if c.Props.Get(ical.PropDateTimeStart) == nil && c.Props.Get(ical.PropDue) == nil {
			return errors.New("RRULE without DTSTART")
		}
		opt, err := parseRRule(p.Value)
		if err != nil {
			return fmt.Errorf("RRULE: %w", err)
		}
		base := c.Props.Get(ical.PropDateTimeStart)
		if base == nil {
			base = c.Props.Get(ical.PropDue)
		}
		w, _, _ := parseWall(base)
		if err := checkRule(*opt, w); err != nil {
			return fmt.Errorf("RRULE: %w", err)
		}
	}
	for _, name := range []string{ical.PropExceptionDates, ical.PropRecurrenceDates} {
		for i := range c.Props.Values(name) {
			p := &c.Props.Values(name)[i]
			if _, err := parseDateList(p); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	for _, child := range c.Children {
		if child.Name == ical.CompAlarm {
			if p := child.Props.Get(ical.PropTrigger); p == nil {
				return errors.New("VALARM without TRIGGER")
			}
		}
	}
	return nil
}

// walkProps calls fn for every property of c and its descendants.
func walkProps(c *ical.Component, fn func(*ical.Prop)) {
	for name := range c.Props {
		for i := range c.Props[name] {
			fn(&c.Props[name][i])
		}
	}
	for _, child := range c.Children {
		walkProps(child, fn)
	}
}

// parseWall parses a DATE or DATE-TIME value as its wall-clock reading (in time.UTC,
// whatever its zone) and says whether it is a DATE.
func parseWall(p *ical.Prop) (wall time.Time, isDate bool, err error) {
	return parseWallValue(p.Value, p.Params.Get(ical.ParamValue) == string(ical.ValueDate))
}

func parseWallValue(v string, date bool) (time.Time, bool, error) {
	switch {
	case len(v) == 8 || date:
		t, err := time.Parse("20060102", v)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bad date %q", v)
		}
		return t, true, nil
	case len(v) == 15 || (len(v) == 16 && (v[15] == 'Z' || v[15] == 'z')):
		t, err := time.Parse("20060102T150405", v[:15])
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bad date-time %q", v)
		}
		return t, false, nil
	}
	return time.Time{}, false, fmt.Errorf("bad date or date-time %q", v)
}

func isUTC(p *ical.Prop) bool {
	return len(p.Value) == 16 && (p.Value[15] == 'Z' || p.Value[15] == 'z')
}

// parseDuration parses an RFC 5545 duration ("P1W", "-PT15M", "P1DT2H").
// Days and weeks are nominal: they are returned apart so they can be added in wall time.
func parseDuration(s string) (dur, error) {
	var d dur
	if s == "" {
		return d, errors.New("empty duration")
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	if len(s) < 2 || s[0] != 'P' {
		return d, fmt.Errorf("bad duration %q", s)
	}
	s = s[1:]
	inTime, any := false, false
	for len(s) > 0 {
		if s[0] == 'T' {
			if inTime {
				return d, errors.New("bad duration: T twice")
			}
			inTime = true
			s = s[1:]
			continue
		}
		n, i := 0, 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if n > 1e7 {
				return d, errors.New("duration too long")
			}
			n = n*10 + int(s[i]-'0')
			i++
		}
		if i == 0 || i == len(s) {
			return d, errors.New("bad duration")
		}
		switch unit := s[i]; {
		case unit == 'W' && !inTime:
			d.days += 7 * n
		case unit == 'D' && !inTime:
			d.days += n
		case unit == 'H' && inTime:
			d.exact += time.Duration(n) * time.Hour
		case unit == 'M' && inTime:
			d.exact += time.Duration(n) * time.Minute
		case unit == 'S' && inTime:
			d.exact += time.Duration(n) * time.Second
		default:
			return d, fmt.Errorf("bad duration unit %q", unit)
		}
		any = true
		s = s[i+1:]
	}
	if !any {
		return d, errors.New("empty duration")
	}
	if neg {
		d.days, d.exact = -d.days, -d.exact
	}
	return d, nil
}

// dur is a duration with a nominal part (days, added in wall time) and an exact part.
type dur struct {
	days  int
	exact time.Duration
}
