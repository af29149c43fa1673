package contacts

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/emersion/go-vcard"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// Limits of a query filter.
const (
	maxPropFilters = 64
	maxTextMatches = 64
)

// textMatch is a compiled CARDDAV:text-match (RFC 6352 §10.5.4).
type textMatch struct {
	text   string
	fold   func(string) string
	typ    string // equals, contains, starts-with, ends-with
	negate bool
}

func (m *textMatch) match(v string) bool {
	v, t := m.fold(v), m.text
	var ok bool
	switch m.typ {
	case "equals":
		ok = v == t
	case "starts-with":
		ok = strings.HasPrefix(v, t)
	case "ends-with":
		ok = strings.HasSuffix(v, t)
	default:
		ok = strings.Contains(v, t)
	}
	return ok != m.negate
}

type paramFilter struct {
	name       string
	notDefined bool
	text       *textMatch
}

type propFilter struct {
	name       string
	allOf      bool
	notDefined bool
	texts      []textMatch
	params     []paramFilter
}

// filter is a compiled CARDDAV:filter.
type filter struct {
	allOf bool
	props []propFilter
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func identity(s string) string { return s }

func compileTest(el *storedav.Element) (bool, error) {
	switch t := el.Attr("test"); t {
	case "", "anyof":
		return false, nil
	case "allof":
		return true, nil
	default:
		return false, fmt.Errorf("test %q: want anyof or allof", t)
	}
}

func compileText(el *storedav.Element) (textMatch, error) {
	m := textMatch{typ: el.Attr("match-type")}
	switch m.typ {
	case "", "contains", "equals", "starts-with", "ends-with":
	default:
		return m, fmt.Errorf("match-type %q", m.typ)
	}
	switch c := el.Attr("collation"); c {
	case "", "i;unicode-casemap":
		m.fold = strings.ToLower
	case "i;ascii-casemap":
		m.fold = asciiLower
	case "i;octet":
		m.fold = identity
	default:
		return m, &storedav.PreconditionError{Status: http.StatusForbidden, Name: xml.Name{Space: storedav.NSCardDAV, Local: "supported-collation"},
			Reason: fmt.Sprintf("collation %q is not supported", c)}
	}
	switch n := el.Attr("negate-condition"); n {
	case "", "no":
	case "yes":
		m.negate = true
	default:
		return m, fmt.Errorf("negate-condition %q", n)
	}
	m.text = m.fold(el.Text)
	return m, nil
}

func isCard(el *storedav.Element, local string) bool {
	return el.Name.Space == storedav.NSCardDAV && el.Name.Local == local
}

// compileFilter compiles a CARDDAV:filter element (nil matches everything).
func compileFilter(el *storedav.Element) (*filter, error) {
	f := &filter{}
	if el == nil {
		return f, nil
	}
	var err error
	if f.allOf, err = compileTest(el); err != nil {
		return nil, err
	}
	for _, pe := range el.Children {
		if !isCard(pe, "prop-filter") {
			continue
		}
		if len(f.props) >= maxPropFilters {
			return nil, fmt.Errorf("more than %d prop-filters", maxPropFilters)
		}
		pf := propFilter{name: strings.ToUpper(pe.Attr("name"))}
		if pf.name == "" {
			return nil, errors.New("prop-filter without a name")
		}
		if pf.allOf, err = compileTest(pe); err != nil {
			return nil, err
		}
		for _, c := range pe.Children {
			switch {
			case isCard(c, "is-not-defined"):
				pf.notDefined = true
			case isCard(c, "text-match"):
				if len(pf.texts) >= maxTextMatches {
					return nil, fmt.Errorf("more than %d text-matches", maxTextMatches)
				}
				m, err := compileText(c)
				if err != nil {
					return nil, err
				}
				pf.texts = append(pf.texts, m)
			case isCard(c, "param-filter"):
				if len(pf.params) >= maxTextMatches {
					return nil, fmt.Errorf("more than %d param-filters", maxTextMatches)
				}
				p := paramFilter{name: strings.ToUpper(c.Attr("name"))}
				if p.name == "" {
					return nil, errors.New("param-filter without a name")
				}
				if c.Child(storedav.NSCardDAV, "is-not-defined") != nil {
					p.notDefined = true
				} else if tm := c.Child(storedav.NSCardDAV, "text-match"); tm != nil {
					m, err := compileText(tm)
					if err != nil {
						return nil, err
					}
					p.text = &m
				}
				pf.params = append(pf.params, p)
			}
		}
		f.props = append(f.props, pf)
	}
	return f, nil
}

func (f *filter) match(c vcard.Card) bool {
	if len(f.props) == 0 {
		return true
	}
	for i := range f.props {
		ok := f.props[i].match(c)
		if ok && !f.allOf {
			return true
		}
		if !ok && f.allOf {
			return false
		}
	}
	return f.allOf
}

// match reports whether some instance of the property satisfies the prop-filter.
func (pf *propFilter) match(c vcard.Card) bool {
	fields := c[pf.name]
	if pf.notDefined {
		return len(fields) == 0
	}
	if len(fields) == 0 {
		return false
	}
	if len(pf.texts) == 0 && len(pf.params) == 0 {
		return true
	}
	for _, fl := range fields {
		if pf.matchField(fl) {
			return true
		}
	}
	return false
}

func (pf *propFilter) matchField(fl *vcard.Field) bool {
	n := 0
	test := func(ok bool) (done, result bool) {
		n++
		if ok && !pf.allOf {
			return true, true
		}
		if !ok && pf.allOf {
			return true, false
		}
		return false, false
	}
	for i := range pf.texts {
		if done, r := test(pf.texts[i].match(fl.Value)); done {
			return r
		}
	}
	for _, p := range pf.params {
		vals := fl.Params[p.name]
		ok := false
		switch {
		case p.notDefined:
			ok = len(vals) == 0
		case p.text == nil:
			ok = len(vals) > 0
		default:
			for _, v := range vals {
				for _, part := range strings.Split(v, ",") {
					ok = ok || p.text.match(part)
				}
			}
		}
		if done, r := test(ok); done {
			return r
		}
	}
	return pf.allOf
}

// cardCache keeps parsed cards by store version (never stale); its memory is bounded.
type cardCache struct {
	mu    sync.Mutex
	cards map[store.Hash]vcard.Card
}

// get returns the parsed card of a stored object.
func (cc *cardCache) get(o storedav.StoredObject) (vcard.Card, error) {
	cc.mu.Lock()
	c, ok := cc.cards[o.ETag]
	cc.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := vcard.NewDecoder(bytes.NewReader(o.Data)).Decode()
	if err != nil || len(c) == 0 {
		return nil, fmt.Errorf("contacts: stored vCard %s: %v", o.Path, err)
	}
	cc.mu.Lock()
	if cc.cards == nil || len(cc.cards) >= maxParsed {
		cc.cards = map[store.Hash]vcard.Card{}
	}
	cc.cards[o.ETag] = c
	cc.mu.Unlock()
	return c, nil
}

// matcher returns Kind.Match for address books, parsing cards through cc.
func matcher(cc *cardCache) func(el *storedav.Element) (func(storedav.StoredObject) (bool, error), error) {
	return func(el *storedav.Element) (func(storedav.StoredObject) (bool, error), error) {
		f, err := compileFilter(el)
		if err != nil {
			return nil, err
		}
		return func(o storedav.StoredObject) (bool, error) {
			c, err := cc.get(o)
			if err != nil {
				return false, nil // a damaged object matches nothing
			}
			return f.match(c), nil
		}, nil
	}
}
