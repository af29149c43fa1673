package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store/storedav"
)

// Limits on REPORT request bodies.
const (
	maxReportBody  = 1 << 20
	maxReportNodes = 20000
	maxReportDepth = 32
)

const (
	nsDAV    = "DAV:"
	nsCalDAV = "urn:ietf:params:xml:ns:caldav"
)

// parseXMLBody parses a REPORT body into an element tree (storedav.ParseXML's limits,
// and at most maxReportBody bytes); an empty body is an error.
func parseXMLBody(body []byte) (*storedav.Element, error) {
	if len(body) > maxReportBody {
		return nil, errors.New("body too large")
	}
	root, err := storedav.ParseXML(bytes.NewReader(body))
	if err == nil && root == nil {
		err = errors.New("incomplete XML body")
	}
	return root, err
}

// parseUTC parses a time-range attribute: a UTC date-time such as 20250301T000000Z.
func parseUTC(s string) (time.Time, error) {
	t, err := time.Parse(utcFormat, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("bad UTC date-time %q", s)
	}
	return t, nil
}

// parseTimeRange reads a CALDAV:time-range element; at least one bound is required.
func parseTimeRange(n *storedav.Element) (start, end time.Time, err error) {
	s, hasS := n.Lookup("start")
	e, hasE := n.Lookup("end")
	if !hasS && !hasE {
		return start, end, errors.New("time-range without start or end")
	}
	if hasS {
		if start, err = parseUTC(s); err != nil {
			return
		}
	}
	if hasE {
		if end, err = parseUTC(e); err != nil {
			return
		}
	}
	if hasS && hasE && !end.After(start) {
		return start, end, errors.New("time-range end is not after its start")
	}
	return start, end, nil
}

// parseCompFilter reads a CALDAV:comp-filter element.
func parseCompFilter(n *storedav.Element) (CompFilter, error) {
	f := CompFilter{}
	name, ok := n.Lookup("name")
	if !ok || name == "" {
		return f, errors.New("comp-filter without name")
	}
	f.Name = strings.ToUpper(name)
	for _, c := range n.Children {
		if c.Name.Space != nsCalDAV {
			continue
		}
		switch c.Name.Local {
		case "is-not-defined":
			f.IsNotDefined = true
		case "time-range":
			s, e, err := parseTimeRange(c)
			if err != nil {
				return f, err
			}
			f.Start, f.End, f.HasTimeRange = s, e, true
		case "prop-filter":
			pf, err := parsePropFilter(c)
			if err != nil {
				return f, err
			}
			f.Props = append(f.Props, pf)
		case "comp-filter":
			cf, err := parseCompFilter(c)
			if err != nil {
				return f, err
			}
			f.Comps = append(f.Comps, cf)
		}
	}
	return f, nil
}

func parsePropFilter(n *storedav.Element) (PropFilter, error) {
	f := PropFilter{}
	name, ok := n.Lookup("name")
	if !ok || name == "" {
		return f, errors.New("prop-filter without name")
	}
	f.Name = strings.ToUpper(name)
	for _, c := range n.Children {
		if c.Name.Space != nsCalDAV {
			continue
		}
		switch c.Name.Local {
		case "is-not-defined":
			f.IsNotDefined = true
		case "time-range":
			s, e, err := parseTimeRange(c)
			if err != nil {
				return f, err
			}
			f.Start, f.End, f.HasTimeRange = s, e, true
		case "text-match":
			tm, err := parseTextMatch(c)
			if err != nil {
				return f, err
			}
			f.Text = tm
		case "param-filter":
			pname, ok := c.Lookup("name")
			if !ok || pname == "" {
				return f, errors.New("param-filter without name")
			}
			pf := ParamFilter{Name: strings.ToUpper(pname)}
			if c.Child(nsCalDAV, "is-not-defined") != nil {
				pf.IsNotDefined = true
			}
			if tn := c.Child(nsCalDAV, "text-match"); tn != nil {
				tm, err := parseTextMatch(tn)
				if err != nil {
					return f, err
				}
				pf.Text = tm
			}
			f.Params = append(f.Params, pf)
		}
	}
	return f, nil
}

// errCollation is an unsupported collation (CALDAV:supported-collation).
var errCollation = errors.New("unsupported collation")

func parseTextMatch(n *storedav.Element) (*TextMatch, error) {
	tm := &TextMatch{Text: n.Text, Collation: "i;ascii-casemap"}
	if c, ok := n.Lookup("collation"); ok {
		switch c {
		case "i;ascii-casemap", "i;octet":
			tm.Collation = c
		case "i;unicode-casemap":
			tm.Collation = "i;ascii-casemap"
		default:
			return nil, fmt.Errorf("%w %q", errCollation, c)
		}
	}
	if v, ok := n.Lookup("negate-condition"); ok && v == "yes" {
		tm.Negate = true
	}
	return tm, nil
}

// dataRequest is what a CALDAV:calendar-data element of a REPORT asks for.
type dataRequest struct {
	comp                     *compSel // nil: everything
	expand, limit            bool
	expandStart, expandEnd   time.Time
	limitStart, limitEnd     time.Time
	limitFB                  bool
	limitFBStart, limitFBEnd time.Time
}

// compSel is a CALDAV:comp element: which properties and sub-components to return.
type compSel struct {
	name     string
	allProps bool
	props    []string
	allComps bool
	comps    []*compSel
}

func parseDataRequest(n *storedav.Element) (*dataRequest, error) {
	dr := &dataRequest{}
	for _, c := range n.Children {
		if c.Name.Space != nsCalDAV {
			continue
		}
		switch c.Name.Local {
		case "comp":
			cs, err := parseCompSel(c)
			if err != nil {
				return nil, err
			}
			dr.comp = cs
		case "expand", "limit-recurrence-set", "limit-freebusy-set":
			s, hasS := c.Lookup("start")
			e, hasE := c.Lookup("end")
			if !hasS || !hasE {
				return nil, fmt.Errorf("%s needs start and end", c.Name.Local)
			}
			st, err := parseUTC(s)
			if err != nil {
				return nil, err
			}
			en, err := parseUTC(e)
			if err != nil {
				return nil, err
			}
			if !en.After(st) {
				return nil, fmt.Errorf("%s end is not after its start", c.Name.Local)
			}
			switch c.Name.Local {
			case "expand":
				dr.expand, dr.expandStart, dr.expandEnd = true, st, en
			case "limit-recurrence-set":
				dr.limit, dr.limitStart, dr.limitEnd = true, st, en
			default:
				dr.limitFB, dr.limitFBStart, dr.limitFBEnd = true, st, en
			}
		}
	}
	return dr, nil
}

func parseCompSel(n *storedav.Element) (*compSel, error) {
	name, ok := n.Lookup("name")
	if !ok || name == "" {
		return nil, errors.New("comp without name")
	}
	cs := &compSel{name: strings.ToUpper(name)}
	for _, c := range n.Children {
		if c.Name.Space != nsCalDAV {
			continue
		}
		switch c.Name.Local {
		case "allprop":
			cs.allProps = true
		case "allcomp":
			cs.allComps = true
		case "prop":
			if pn, ok := c.Lookup("name"); ok && pn != "" {
				cs.props = append(cs.props, strings.ToUpper(pn))
			}
		case "comp":
			sub, err := parseCompSel(c)
			if err != nil {
				return nil, err
			}
			cs.comps = append(cs.comps, sub)
		}
	}
	return cs, nil
}
