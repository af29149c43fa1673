package calendar

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/emersion/go-ical"
)

// MaxImportSize bounds an .ics file given to Split, in bytes.
const MaxImportSize = 256 << 20

// MaxImportComponents bounds the components of a calendar file given to Split.
const MaxImportComponents = 1_000_000

// Resource is one calendar object resource cut out of a larger calendar.
type Resource struct {
	Name string // a resource name made from the UID, ending in .ics
	UID  string
	Data []byte
}

// Split cuts a calendar file holding many components into one resource per UID (a
// master with its overrides stay together). Each resource keeps the calendar's
// properties (except METHOD) and the VTIMEZONEs its components refer to.
func Split(data []byte) ([]Resource, error) {
	if len(data) > MaxImportSize {
		return nil, fmt.Errorf("calendar: split: %d bytes, more than %d", len(data), MaxImportSize)
	}
	cal, err := parseMany(data)
	if err != nil {
		return nil, fmt.Errorf("calendar: split: %w", err)
	}
	zones := map[string]*ical.Component{}
	var order []string
	byUID := map[string][]*ical.Component{}
	for _, c := range cal.Children {
		switch c.Name {
		case ical.CompTimezone:
			if id, _ := c.Props.Text(ical.PropTimezoneID); id != "" {
				zones[id] = c
			}
		case ical.CompEvent, ical.CompToDo, ical.CompJournal, ical.CompFreeBusy:
			uid, _ := c.Props.Text(ical.PropUID)
			if uid == "" {
				return nil, fmt.Errorf("calendar: split: a %s has no UID", c.Name)
			}
			if _, ok := byUID[uid]; !ok {
				order = append(order, uid)
			}
			byUID[uid] = append(byUID[uid], c)
		}
	}
	props := maps.Clone(cal.Props)
	delete(props, ical.PropMethod)
	if props.Get(ical.PropVersion) == nil {
		props.SetText(ical.PropVersion, "2.0")
	}
	if props.Get(ical.PropProductID) == nil {
		props.SetText(ical.PropProductID, "-//Hearth//calendar//EN")
	}
	out := make([]Resource, 0, len(order))
	names := map[string]bool{}
	for _, uid := range order {
		comps := byUID[uid]
		res := &ical.Component{Name: ical.CompCalendar, Props: props}
		used := map[string]bool{}
		for _, c := range comps {
			walkProps(c, func(p *ical.Prop) {
				if id := p.Params.Get(ical.PropTimezoneID); id != "" {
					used[id] = true
				}
			})
		}
		for _, id := range slices.Sorted(maps.Keys(used)) {
			if z, ok := zones[id]; ok {
				res.Children = append(res.Children, z)
			}
		}
		res.Children = append(res.Children, comps...)
		name := ResourceName(uid)
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s-%d.ics", strings.TrimSuffix(ResourceName(uid), ".ics"), n)
		}
		names[name] = true
		out = append(out, Resource{Name: name, UID: uid, Data: Encode(&ical.Calendar{Component: res})})
	}
	return out, nil
}

// ResourceName makes a resource name from a UID: the UID itself when it is short and
// made of safe characters, else a hash of it.
func ResourceName(uid string) string {
	safe := len(uid) > 0 && len(uid) <= 100 && uid[0] != '.'
	for _, c := range uid {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@') {
			safe = false
			break
		}
	}
	if safe {
		return uid + ".ics"
	}
	sum := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(sum[:16]) + ".ics"
}

// parseMany parses a calendar file that may hold many UIDs (and several VCALENDARs one
// after another, as some exports do), with the same shape checks as Validate.
func parseMany(data []byte) (*ical.Calendar, error) {
	var all *ical.Calendar
	rest := data
	for len(strings.TrimSpace(string(rest))) > 0 {
		end := indexEndCalendar(rest)
		if end < 0 {
			return nil, invalid(PreValidData, http.StatusBadRequest, "missing END:VCALENDAR")
		}
		cal, err := parseLimit(rest[:end], MaxImportComponents)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = cal
		} else {
			all.Children = append(all.Children, cal.Children...)
		}
		rest = rest[end:]
	}
	if all == nil {
		return nil, invalid(PreValidData, http.StatusBadRequest, "empty calendar")
	}
	return all, nil
}

// indexEndCalendar is the offset just past the first END:VCALENDAR line, or -1.
func indexEndCalendar(b []byte) int {
	s := strings.ToUpper(string(b))
	i := strings.Index(s, "END:VCALENDAR")
	if i < 0 {
		return -1
	}
	j := i + len("END:VCALENDAR")
	for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
		j++
	}
	return j
}

// Join merges calendar objects into one calendar file: the components of each, with
// every VTIMEZONE once.
func Join(objects [][]byte) ([]byte, error) {
	out := &ical.Component{Name: ical.CompCalendar, Props: ical.Props{}}
	out.Props.SetText(ical.PropVersion, "2.0")
	out.Props.SetText(ical.PropProductID, "-//Hearth//calendar//EN")
	seen := map[string]bool{}
	var zones, comps []*ical.Component
	for i, data := range objects {
		cal, err := parse(data)
		if err != nil {
			return nil, fmt.Errorf("calendar: join: object %d: %w", i, err)
		}
		for _, c := range cal.Children {
			if c.Name == ical.CompTimezone {
				id, _ := c.Props.Text(ical.PropTimezoneID)
				if !seen[id] {
					seen[id] = true
					zones = append(zones, c)
				}
				continue
			}
			comps = append(comps, c)
		}
	}
	out.Children = append(zones, comps...)
	return Encode(&ical.Calendar{Component: out}), nil
}
