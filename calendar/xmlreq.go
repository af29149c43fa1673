package calendar

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
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

// xnode is a parsed XML element.
type xnode struct {
	name     xml.Name
	attr     []xml.Attr
	text     string
	children []*xnode
}

func (n *xnode) is(space, local string) bool {
	return n != nil && n.name.Space == space && n.name.Local == local
}

func (n *xnode) child(space, local string) *xnode {
	if n == nil {
		return nil
	}
	for _, c := range n.children {
		if c.is(space, local) {
			return c
		}
	}
	return nil
}

func (n *xnode) all(space, local string) []*xnode {
	var out []*xnode
	if n == nil {
		return nil
	}
	for _, c := range n.children {
		if c.is(space, local) {
			out = append(out, c)
		}
	}
	return out
}

func (n *xnode) attrValue(local string) (string, bool) {
	for _, a := range n.attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

// parseXMLBody parses a REPORT body into an element tree with limits on size, count and depth.
func parseXMLBody(body []byte) (*xnode, error) {
	if len(body) > maxReportBody {
		return nil, errors.New("body too large")
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	var root *xnode
	var stack []*xnode
	count := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if root == nil || len(stack) > 0 {
				return nil, errors.New("incomplete XML body")
			}
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if count++; count > maxReportNodes || len(stack) >= maxReportDepth {
				return nil, errors.New("too many or too deeply nested elements")
			}
			n := &xnode{name: t.Name, attr: t.Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, errors.New("more than one root element")
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
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
func parseTimeRange(n *xnode) (start, end time.Time, err error) {
	s, hasS := n.attrValue("start")
	e, hasE := n.attrValue("end")
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
func parseCompFilter(n *xnode) (CompFilter, error) {
	f := CompFilter{}
	name, ok := n.attrValue("name")
	if !ok || name == "" {
		return f, errors.New("comp-filter without name")
	}
	f.Name = strings.ToUpper(name)
	for _, c := range n.children {
		if c.name.Space != nsCalDAV {
			continue
		}
		switch c.name.Local {
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

func parsePropFilter(n *xnode) (PropFilter, error) {
	f := PropFilter{}
	name, ok := n.attrValue("name")
	if !ok || name == "" {
		return f, errors.New("prop-filter without name")
	}
	f.Name = strings.ToUpper(name)
	for _, c := range n.children {
		if c.name.Space != nsCalDAV {
			continue
		}
		switch c.name.Local {
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
			pname, ok := c.attrValue("name")
			if !ok || pname == "" {
				return f, errors.New("param-filter without name")
			}
			pf := ParamFilter{Name: strings.ToUpper(pname)}
			if c.child(nsCalDAV, "is-not-defined") != nil {
				pf.IsNotDefined = true
			}
			if tn := c.child(nsCalDAV, "text-match"); tn != nil {
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

func parseTextMatch(n *xnode) (*TextMatch, error) {
	tm := &TextMatch{Text: n.text, Collation: "i;ascii-casemap"}
	if c, ok := n.attrValue("collation"); ok {
		switch c {
		case "i;ascii-casemap", "i;octet":
			tm.Collation = c
		case "i;unicode-casemap":
			tm.Collation = "i;ascii-casemap"
		default:
			return nil, fmt.Errorf("%w %q", errCollation, c)
		}
	}
	if v, ok := n.attrValue("negate-condition"); ok && v == "yes" {
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

func parseDataRequest(n *xnode) (*dataRequest, error) {
	dr := &dataRequest{}
	for _, c := range n.children {
		if c.name.Space != nsCalDAV {
			continue
		}
		switch c.name.Local {
		case "comp":
			cs, err := parseCompSel(c)
			if err != nil {
				return nil, err
			}
			dr.comp = cs
		case "expand", "limit-recurrence-set", "limit-freebusy-set":
			s, hasS := c.attrValue("start")
			e, hasE := c.attrValue("end")
			if !hasS || !hasE {
				return nil, fmt.Errorf("%s needs start and end", c.name.Local)
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
				return nil, fmt.Errorf("%s end is not after its start", c.name.Local)
			}
			switch c.name.Local {
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

func parseCompSel(n *xnode) (*compSel, error) {
	name, ok := n.attrValue("name")
	if !ok || name == "" {
		return nil, errors.New("comp without name")
	}
	cs := &compSel{name: strings.ToUpper(name)}
	for _, c := range n.children {
		if c.name.Space != nsCalDAV {
			continue
		}
		switch c.name.Local {
		case "allprop":
			cs.allProps = true
		case "allcomp":
			cs.allComps = true
		case "prop":
			if pn, ok := c.attrValue("name"); ok && pn != "" {
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
