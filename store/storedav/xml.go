package storedav

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Limits on request bodies that are XML.
const (
	maxXMLBody  = 1 << 20
	maxXMLNodes = 20000
	maxXMLDepth = 32
)

// Element is a parsed XML element of a request body: enough of a DOM for DAV requests.
type Element struct {
	Name     xml.Name
	Attrs    []xml.Attr
	Text     string // the character data directly inside it
	Children []*Element
}

// Child returns the first child element with this name, or nil (also on a nil n).
func (n *Element) Child(space, local string) *Element {
	if n == nil {
		return nil
	}
	for _, c := range n.Children {
		if c.Name.Local == local && c.Name.Space == space {
			return c
		}
	}
	return nil
}

// Is reports whether n (not nil) is the element space:local.
func (n *Element) Is(space, local string) bool {
	return n != nil && n.Name.Space == space && n.Name.Local == local
}

// All returns the child elements with this name (none on a nil n).
func (n *Element) All(space, local string) []*Element {
	if n == nil {
		return nil
	}
	var out []*Element
	for _, c := range n.Children {
		if c.Is(space, local) {
			out = append(out, c)
		}
	}
	return out
}

// Lookup returns the value of the attribute with this local name and no namespace, and
// whether it is there.
func (n *Element) Lookup(local string) (string, bool) {
	if n == nil {
		return "", false
	}
	for _, a := range n.Attrs {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

// Attr returns the value of the attribute with this local name ("" if absent).
func (n *Element) Attr(local string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attrs {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// ParseXML parses a request body into an Element tree, with limits on its size, the
// number of elements and their depth; an empty body is (nil, nil).
func ParseXML(r io.Reader) (*Element, error) {
	d := xml.NewDecoder(io.LimitReader(r, maxXMLBody+1))
	var root *Element
	var stack []*Element
	count := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				return nil, fmt.Errorf("storedav: XML body: %w: unexpected end", ErrInvalid)
			}
			return root, nil
		}
		if err != nil {
			return nil, fmt.Errorf("storedav: XML body: %w: %v", ErrInvalid, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			count++
			if count > maxXMLNodes || len(stack) >= maxXMLDepth {
				return nil, fmt.Errorf("storedav: XML body: %w: too many or too deep elements", ErrInvalid)
			}
			n := &Element{Name: t.Name, Attrs: t.Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("storedav: XML body: %w: more than one root", ErrInvalid)
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				n := stack[len(stack)-1]
				if len(n.Text) < MaxDeadPropSize*4 {
					n.Text += string(t)
				}
			}
		}
	}
}

// Multistatus builds a 207 Multi-Status answer, with the namespaces of a Kind declared
// on its root; services use it for the REPORTs they answer themselves.
type Multistatus struct {
	b    bytes.Buffer
	kind *Kind
}

// NewMultistatus starts a Multi-Status answer for resources of kind k.
func NewMultistatus(k *Kind) *Multistatus {
	w := &Multistatus{kind: k}
	w.b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	fmt.Fprintf(&w.b, `<d:multistatus xmlns:d="DAV:" xmlns:k="%s" xmlns:cs="%s" xmlns:ic="%s">`, k.NS, NSCS, NSICal)
	return w
}

// prefix returns the prefix declared for ns on the root, or "".
func (w *Multistatus) prefix(ns string) string {
	switch ns {
	case NSDAV:
		return "d"
	case w.kind.NS:
		return "k"
	case NSCS:
		return "cs"
	case NSICal:
		return "ic"
	}
	return ""
}

// open writes the start tag of a property element.
func (w *Multistatus) elem(name xml.Name, inner string) {
	if p := w.prefix(name.Space); p != "" {
		b := &w.b
		b.WriteByte('<')
		b.WriteString(p)
		b.WriteByte(':')
		b.WriteString(name.Local)
		if inner == "" {
			b.WriteString("/>")
			return
		}
		b.WriteByte('>')
		b.WriteString(inner)
		b.WriteString("</")
		b.WriteString(p)
		b.WriteByte(':')
		b.WriteString(name.Local)
		b.WriteByte('>')
		return
	}
	w.b.WriteString("<x:" + name.Local + ` xmlns:x="`)
	xml.EscapeText(&w.b, []byte(name.Space))
	if inner == "" {
		w.b.WriteString(`"/>`)
	} else {
		w.b.WriteString(`">` + inner + "</x:" + name.Local + ">")
	}
}

// propFunc answers one property of a resource as inner XML; ok false: not found.
type propFunc func(name xml.Name) (inner string, ok bool)

// Response writes one response with the properties asked for, each answered by get as
// inner XML (ok false: not found): found ones in a 200
// propstat, the rest in a 404 propstat.
func (w *Multistatus) Response(href string, names []xml.Name, get func(name xml.Name) (inner string, ok bool)) {
	w.b.WriteString("<d:response><d:href>")
	w.b.WriteString(esc(href))
	w.b.WriteString("</d:href>")
	var missing []xml.Name
	found := false
	for _, n := range names {
		inner, ok := get(n)
		if !ok {
			missing = append(missing, n)
			continue
		}
		if !found {
			w.b.WriteString("<d:propstat><d:prop>")
			found = true
		}
		w.elem(n, inner)
	}
	if found {
		w.b.WriteString("</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>")
	}
	if len(missing) > 0 {
		w.b.WriteString("<d:propstat><d:prop>")
		for _, n := range missing {
			w.elem(n, "")
		}
		w.b.WriteString("</d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>")
	}
	if !found && len(missing) == 0 {
		w.b.WriteString("<d:status>HTTP/1.1 200 OK</d:status>")
	}
	w.b.WriteString("</d:response>")
}

// Status writes a response that is only a status (a deleted member in a sync).
func (w *Multistatus) Status(href string, code int) {
	w.b.WriteString("<d:response><d:href>")
	xml.EscapeText(&w.b, []byte(href))
	fmt.Fprintf(&w.b, "</d:href><d:status>HTTP/1.1 %d %s</d:status></d:response>", code, http.StatusText(code))
}

func (w *Multistatus) Finish(rw http.ResponseWriter, extra string) {
	w.b.WriteString(extra)
	w.b.WriteString("</d:multistatus>\n")
	rw.Header().Set("Content-Type", "application/xml; charset=utf-8")
	rw.WriteHeader(http.StatusMultiStatus)
	rw.Write(w.b.Bytes())
}

// Escape escapes text for XML element content; see esc.
func Escape(s string) string { return esc(s) }

// esc escapes text for XML element content: & < > always, CR as &#13; (so that it
// survives line-end normalisation), and characters XML cannot hold become U+FFFD.
// Newlines and quotes stay as they are.
func esc(s string) string {
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		c := s[i]
		clean = c != '&' && c != '<' && c != '>' && (c >= 0x20 || c == '\n' || c == '\t') && c < 0x80
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/16)
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '\r':
			b.WriteString("&#13;")
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func hrefXML(p string) string { return "<d:href>" + esc(p) + "</d:href>" }

// writeError answers a precondition error with its DAV:error body.
func writeCondition(w http.ResponseWriter, k *Kind, e *PreconditionError) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	fmt.Fprintf(&b, `<d:error xmlns:d="DAV:" xmlns:k="%s">`, k.NS)
	p := "d"
	if e.Name.Space == k.NS {
		p = "k"
	} else if e.Name.Space != NSDAV {
		p = "x"
		fmt.Fprintf(&b, `<x:%s xmlns:x="%s">`, e.Name.Local, esc(e.Name.Space))
	}
	if p != "x" {
		fmt.Fprintf(&b, "<%s:%s>", p, e.Name.Local)
	}
	if e.Href != "" {
		b.WriteString(hrefXML(e.Href))
	}
	fmt.Fprintf(&b, "</%s:%s>", p, e.Name.Local)
	b.WriteString("<d:responsedescription>")
	xml.EscapeText(&b, []byte(e.Reason))
	b.WriteString("</d:responsedescription></d:error>\n")
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(e.Status)
	w.Write(b.Bytes())
}
