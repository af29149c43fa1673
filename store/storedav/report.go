package storedav

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hearth-home/hearth/signpost"
)

// MaxMultigetHrefs is the most hrefs one multiget may name.
const MaxMultigetHrefs = 10000

// reportProps returns the properties a REPORT asks for (getetag and the data when it
// names none).
func (q *request) reportProps(root *Element) []xml.Name {
	if p := root.Child(NSDAV, "prop"); p != nil {
		names := make([]xml.Name, 0, len(p.Children))
		for _, c := range p.Children {
			names = append(names, c.Name)
		}
		return names
	}
	return []xml.Name{nameDAV("getetag"), xmlName(q.h.kind.NS, q.h.kind.DataProp)}
}

// multiget answers a multiget REPORT with the stored bytes of each href the user may read.
func (q *request) multiget(root *Element) {
	names := q.reportProps(root)
	var hrefs []string
	for _, c := range root.Children {
		if c.Name == nameDAV("href") {
			hrefs = append(hrefs, strings.TrimSpace(c.Text))
		}
	}
	if len(hrefs) > MaxMultigetHrefs {
		http.Error(q.w, fmt.Sprintf("more than %d hrefs", MaxMultigetHrefs), http.StatusBadRequest)
		return
	}
	ms := NewMultistatus(q.h.kind)
	for _, href := range hrefs {
		t, err := q.hrefTarget(href)
		if err != nil {
			ms.Status(href, StatusOf(err))
			continue
		}
		data, info, err := q.h.coll.Object(q.ctx(), t.Owner, t.Collection, t.Resource)
		if err != nil {
			ms.Status(t.Href(q.h.kind.Repo), StatusOf(err))
			continue
		}
		r := q.objectRes(t.Owner, t.Collection, info, data)
		ms.Response(r.href, names, r.get)
	}
	ms.Finish(q.w, "")
}

// hrefTarget parses an href of a REPORT (a path or a URL) into an object the user may
// read.
func (q *request) hrefTarget(href string) (Target, error) {
	u, err := url.Parse(href)
	if err != nil {
		return Target{}, fmt.Errorf("storedav: href %q: %w", trunc(href), ErrInvalid)
	}
	t, err := ParsePath(q.h.kind.Repo, u.EscapedPath())
	if err != nil {
		return Target{}, err
	}
	if t.Level != LevelObject {
		return Target{}, fmt.Errorf("storedav: href %q: %w: not an object", trunc(href), ErrForbidden)
	}
	acc, err := q.h.access(q.ctx(), q.user, t)
	if err != nil {
		return Target{}, err
	}
	if acc == signpost.NoAccess {
		return Target{}, fmt.Errorf("storedav: href %q: %w", trunc(href), ErrForbidden)
	}
	return t, nil
}

// query answers a query REPORT on a collection with Kind.Match and the stored bytes.
func (q *request) query(root *Element) {
	k := q.h.kind
	if q.t.Level != LevelCollection {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("supported-report"), Reason: k.Query + " is supported on collections"})
		return
	}
	match, err := k.Match(root.Child(k.NS, "filter"))
	if err != nil {
		var pe *PreconditionError
		if errors.As(err, &pe) {
			q.condition(pe)
		} else {
			http.Error(q.w, "bad filter: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	limit := -1
	if nr := root.Child(k.NS, "limit").Child(k.NS, "nresults"); nr != nil {
		n, err := strconv.Atoi(strings.TrimSpace(nr.Text))
		if err != nil || n < 0 {
			http.Error(q.w, "bad nresults", http.StatusBadRequest)
			return
		}
		limit = n
	}
	names := q.reportProps(root)
	objs, head, err := q.h.coll.Objects(q.ctx(), q.t.Owner, q.t.Collection)
	if err != nil {
		q.fail(err)
		return
	}
	ms := NewMultistatus(k)
	found := 0
	for _, o := range objs {
		data, err := q.h.coll.Data(q.ctx(), q.t.Owner, head, q.t.Collection, o)
		if err != nil {
			q.fail(err)
			return
		}
		ot := Target{Level: LevelObject, Owner: q.t.Owner, Collection: q.t.Collection, Resource: o.Name}
		ok, err := match(StoredObject{Path: decodedPath(ot, k.Repo), ObjectInfo: o, Data: data})
		if err != nil {
			http.Error(q.w, "filter: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !ok {
			continue
		}
		if limit >= 0 && found == limit {
			// RFC 6352 §8.6.1: the truncation is reported on the request URI.
			ms.Status(q.t.Href(k.Repo), http.StatusInsufficientStorage)
			break
		}
		found++
		r := q.objectRes(q.t.Owner, q.t.Collection, o, data)
		ms.Response(r.href, names, r.get)
	}
	ms.Finish(q.w, "")
}
