package storedav

import (
	"encoding/xml"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

func xmlName(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }
func nameDAV(local string) xml.Name        { return xml.Name{Space: NSDAV, Local: local} }

// propfindReq is what a PROPFIND asked for.
type propfindReq struct {
	names    []xml.Name // nil with allprop
	allprop  bool
	propname bool
}

func (q *request) parsePropfind() (propfindReq, bool) {
	root, err := ParseXML(q.r.Body)
	if err != nil {
		http.Error(q.w, err.Error(), http.StatusBadRequest)
		return propfindReq{}, false
	}
	if root == nil {
		return propfindReq{allprop: true}, true
	}
	if root.Name != nameDAV("propfind") {
		http.Error(q.w, "PROPFIND body must be a DAV:propfind", http.StatusBadRequest)
		return propfindReq{}, false
	}
	switch {
	case root.Child(NSDAV, "prop") != nil:
		var names []xml.Name
		for _, c := range root.Child(NSDAV, "prop").Children {
			names = append(names, c.Name)
		}
		return propfindReq{names: names}, true
	case root.Child(NSDAV, "propname") != nil:
		return propfindReq{propname: true}, true
	}
	return propfindReq{allprop: true}, true
}

// resource is something PROPFIND describes.
type resource struct {
	href  string
	names []xml.Name // what allprop returns
	get   propFunc
}

func (q *request) depth() int {
	switch strings.TrimSpace(strings.ToLower(q.r.Header.Get("Depth"))) {
	case "0":
		return 0
	case "1", "infinity", "":
		return 1
	}
	return 1
}

func (q *request) propfind() {
	pf, ok := q.parsePropfind()
	if !ok {
		return
	}
	depth := q.depth()
	if q.r.Header.Get("Depth") == "" {
		depth = 0 // a missing Depth means infinity in RFC 4918; be finite and cheap
	}
	var res []resource
	var err error
	switch q.t.Level {
	case LevelRoot:
		res = []resource{q.rootRes()}
	case LevelPrincipal:
		res = []resource{q.principalRes()}
		if depth > 0 {
			res = append(res, q.homeRes())
		}
	case LevelHome:
		res = []resource{q.homeRes()}
		if depth > 0 {
			var cs []resource
			cs, err = q.visibleRes()
			res = append(res, cs...)
		}
	case LevelCollection:
		var info CollectionInfo
		info, err = q.h.coll.Get(q.ctx(), q.t.Owner, q.t.Collection)
		if err == nil {
			var head store.Hash
			head, err = q.h.coll.Head(q.ctx(), q.t.Owner)
			res = []resource{q.collectionRes(info, head, q.acc)}
			if err == nil && depth > 0 {
				var objs []ObjectInfo
				objs, _, err = q.h.coll.Objects(q.ctx(), q.t.Owner, q.t.Collection)
				for _, o := range objs {
					res = append(res, q.objectRes(q.t.Owner, q.t.Collection, o, nil))
				}
			}
		}
	case LevelObject:
		var data []byte
		var info ObjectInfo
		data, info, err = q.h.coll.Object(q.ctx(), q.t.Owner, q.t.Collection, q.t.Resource)
		if err == nil {
			res = []resource{q.objectRes(q.t.Owner, q.t.Collection, info, data)}
		}
	}
	if err != nil {
		q.fail(err)
		return
	}
	ms := NewMultistatus(q.h.kind)
	for _, r := range res {
		switch {
		case pf.propname:
			ms.Response(r.href, r.names, func(xml.Name) (string, bool) { return "", true })
		case pf.allprop:
			ms.Response(r.href, r.names, r.get)
		default:
			ms.Response(r.href, pf.names, r.get)
		}
	}
	ms.Finish(q.w, "")
}

func (q *request) principalHref() string { return "/" + q.user + "/" }

// common answers the properties every resource has.
func (q *request) common(n xml.Name) (string, bool) {
	if n.Space != NSDAV {
		return "", false
	}
	switch n.Local {
	case "current-user-principal":
		return hrefXML(q.principalHref()), true
	case "principal-collection-set":
		return hrefXML("/"), true
	}
	return "", false
}

func (q *request) rootRes() resource {
	return resource{
		href:  "/",
		names: []xml.Name{nameDAV("resourcetype"), nameDAV("current-user-principal")},
		get: func(n xml.Name) (string, bool) {
			if n == nameDAV("resourcetype") {
				return "<d:collection/>", true
			}
			return q.common(n)
		},
	}
}

func (q *request) principalRes() resource {
	home := Target{Level: LevelHome, Owner: q.t.Owner}.Href(q.h.kind.Repo)
	k := q.h.kind
	return resource{
		href:  q.t.Href(k.Repo),
		names: []xml.Name{nameDAV("resourcetype"), nameDAV("displayname"), nameDAV("current-user-principal"), nameDAV("principal-URL"), xmlName(k.NS, k.HomeSet)},
		get: func(n xml.Name) (string, bool) {
			switch n {
			case nameDAV("resourcetype"):
				return "<d:collection/><d:principal/>", true
			case nameDAV("displayname"):
				return esc(q.t.Owner), true
			case nameDAV("principal-URL"):
				return hrefXML(q.t.Href(k.Repo)), true
			case xmlName(k.NS, k.HomeSet):
				return hrefXML(home), true
			case xmlName(NSCalDAV, "calendar-user-address-set"):
				return hrefXML("mailto:" + q.t.Owner + "@home.arpa"), true
			}
			return q.common(n)
		},
	}
}

func (q *request) homeRes() resource {
	return resource{
		href:  Target{Level: LevelHome, Owner: q.t.Owner}.Href(q.h.kind.Repo),
		names: []xml.Name{nameDAV("resourcetype"), nameDAV("displayname"), nameDAV("current-user-principal"), nameDAV("owner")},
		get: func(n xml.Name) (string, bool) {
			switch n {
			case nameDAV("resourcetype"):
				return "<d:collection/>", true
			case nameDAV("displayname"):
				return esc(q.h.kind.Repo), true
			case nameDAV("owner"):
				return hrefXML("/" + q.t.Owner + "/"), true
			case nameDAV("current-user-privilege-set"):
				return "<d:privilege><d:read/></d:privilege><d:privilege><d:bind/></d:privilege><d:privilege><d:unbind/></d:privilege>", true
			}
			return q.common(n)
		},
	}
}

// visibleRes lists the collections in the user's home set: their own and the ones
// shared with them.
func (q *request) visibleRes() ([]resource, error) {
	vis, err := q.h.Visible(q.ctx())
	if err != nil {
		return nil, err
	}
	heads := map[string]store.Hash{}
	var out []resource
	for _, v := range vis {
		head, ok := heads[v.Owner]
		if !ok {
			if head, err = q.h.coll.Head(q.ctx(), v.Owner); err != nil {
				return nil, err
			}
			heads[v.Owner] = head
		}
		out = append(out, q.collectionRes(v.CollectionInfo, head, v.Access))
	}
	return out, nil
}

func (q *request) syncToken(head store.Hash) string { return q.h.base + string(head) }

func (q *request) collectionRes(c CollectionInfo, head store.Hash, acc signpost.Access) resource {
	k := q.h.kind
	names := []xml.Name{nameDAV("resourcetype"), nameDAV("displayname"), xmlName(k.NS, k.Description), xmlName(NSICal, "calendar-color"),
		xmlName(NSCS, "getctag"), nameDAV("sync-token"), nameDAV("current-user-principal"), nameDAV("owner"),
		nameDAV("supported-report-set"), nameDAV("current-user-privilege-set"), xmlName(k.NS, "max-resource-size")}
	if k.SupportedData != "" {
		names = append(names, xmlName(k.NS, k.SupportedData))
	}
	if k.Components {
		names = append(names, xmlName(NSCalDAV, "supported-calendar-component-set"))
	}
	for key := range c.Meta.Dead {
		if n, ok := parseClark(key); ok {
			names = append(names, n)
		}
	}
	m := c.Meta
	return resource{
		href:  Target{Level: LevelCollection, Owner: c.Owner, Collection: c.Name}.Href(k.Repo),
		names: names,
		get: func(n xml.Name) (string, bool) {
			switch n {
			case nameDAV("resourcetype"):
				return "<d:collection/><k:" + k.CollectionType + "/>", true
			case nameDAV("displayname"):
				if m.DisplayName == "" {
					return esc(c.Name), true
				}
				return esc(m.DisplayName), true
			case xmlName(k.NS, k.Description):
				return esc(m.Description), m.Description != ""
			case xmlName(NSICal, "calendar-color"):
				return esc(m.Color), m.Color != ""
			case xmlName(NSCS, "getctag"):
				return esc(string(head)), head != ""
			case nameDAV("sync-token"):
				return esc(q.syncToken(head)), head != ""
			case nameDAV("owner"):
				return hrefXML("/" + c.Owner + "/"), true
			case nameDAV("supported-report-set"):
				var b strings.Builder
				for _, r := range append([]string{"d:sync-collection"}, prefixed("k:", k.Reports)...) {
					b.WriteString("<d:supported-report><d:report><" + r + "/></d:report></d:supported-report>")
				}
				return b.String(), true
			case nameDAV("current-user-privilege-set"):
				if acc >= signpost.ReadWrite {
					return "<d:privilege><d:read/></d:privilege><d:privilege><d:write/></d:privilege><d:privilege><d:write-properties/></d:privilege>" +
						"<d:privilege><d:write-content/></d:privilege><d:privilege><d:bind/></d:privilege><d:privilege><d:unbind/></d:privilege>", true
				}
				return "<d:privilege><d:read/></d:privilege>", true
			case xmlName(k.NS, "max-resource-size"):
				return strconv.FormatInt(q.h.coll.limits.MaxResourceSize, 10), true
			case xmlName(k.NS, k.SupportedData):
				return `<k:` + k.DataProp[:len(k.DataProp)-len("-data")] + `-data-type content-type="` + esc(k.MediaType) + `" version="` + esc(k.Version) + `"/>`, k.SupportedData != ""
			case xmlName(NSCalDAV, "supported-calendar-component-set"):
				if !k.Components {
					return "", false
				}
				var b strings.Builder
				for _, comp := range m.Components {
					b.WriteString(`<k:comp name="` + esc(comp) + `"/>`)
				}
				return b.String(), true
			}
			if v, ok := m.Dead[clark(n)]; ok {
				return esc(v), true
			}
			if k.CollectionProp != nil {
				if v, ok := k.CollectionProp(n, m); ok {
					return v, true
				}
			}
			return q.common(n)
		},
	}
}

func prefixed(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// objectRes describes an object; data may be nil, then the data property is read on
// demand.
func (q *request) objectRes(owner, coll string, o ObjectInfo, data []byte) resource {
	k := q.h.kind
	return resource{
		href:  Target{Level: LevelObject, Owner: owner, Collection: coll, Resource: o.Name}.Href(k.Repo),
		names: []xml.Name{nameDAV("resourcetype"), nameDAV("getetag"), nameDAV("getcontenttype"), nameDAV("getcontentlength")},
		get: func(n xml.Name) (string, bool) {
			switch n {
			case nameDAV("resourcetype"):
				return "", true
			case nameDAV("getetag"):
				return etag(o.ETag), true // hex digits in quotes: nothing to escape
			case nameDAV("getcontenttype"):
				return esc(k.ContentType), true
			case nameDAV("getcontentlength"):
				return strconv.FormatInt(o.Size, 10), true
			case xmlName(k.NS, k.DataProp):
				if data == nil {
					b, _, err := q.h.coll.Object(q.ctx(), owner, coll, o.Name)
					if err != nil {
						return "", false
					}
					data = b
				}
				return esc(string(data)), true
			}
			return q.common(n)
		},
	}
}

// clark is a property's name as "{ns}local".
func clark(n xml.Name) string { return "{" + n.Space + "}" + n.Local }

func parseClark(s string) (xml.Name, bool) {
	if !strings.HasPrefix(s, "{") {
		return xml.Name{}, false
	}
	ns, local, ok := strings.Cut(s[1:], "}")
	return xml.Name{Space: ns, Local: local}, ok && local != ""
}

// setProps applies property updates from a PROPPATCH or MKCOL body to m; it returns
// for each property its status.
func (q *request) setProps(m *Meta, set []*Element, remove []*Element, creating bool) []propStatus {
	k := q.h.kind
	var out []propStatus
	for _, p := range set {
		st := http.StatusOK
		switch p.Name {
		case nameDAV("displayname"):
			m.DisplayName = strings.TrimSpace(p.Text)
		case xmlName(k.NS, k.Description):
			m.Description = p.Text
		case xmlName(NSICal, "calendar-color"):
			m.Color = strings.TrimSpace(p.Text)
		case nameDAV("resourcetype"):
			if !creating {
				st = http.StatusForbidden
			} else if p.Child(k.NS, k.CollectionType) == nil {
				st = http.StatusForbidden
			}
		case xmlName(NSCalDAV, "supported-calendar-component-set"):
			if !k.Components || !creating {
				st = http.StatusForbidden
				break
			}
			m.Components = nil
			for _, c := range p.Children {
				if c.Name.Local == "comp" {
					m.Components = append(m.Components, strings.ToUpper(c.Attr("name")))
				}
			}
		case nameDAV("getetag"), nameDAV("getctag"), nameDAV("sync-token"), xmlName(NSCS, "getctag"), nameDAV("getcontenttype"),
			nameDAV("getcontentlength"), xmlName(k.NS, k.SupportedData), xmlName(k.NS, "max-resource-size"), nameDAV("supported-report-set"):
			st = http.StatusForbidden // protected
		default:
			if m.Dead == nil {
				m.Dead = map[string]string{}
			}
			m.Dead[clark(p.Name)] = p.Text
		}
		out = append(out, propStatus{p.Name, st})
	}
	for _, p := range remove {
		switch p.Name {
		case nameDAV("displayname"):
			m.DisplayName = ""
		case xmlName(k.NS, k.Description):
			m.Description = ""
		case xmlName(NSICal, "calendar-color"):
			m.Color = ""
		default:
			delete(m.Dead, clark(p.Name))
		}
		out = append(out, propStatus{p.Name, http.StatusOK})
	}
	return out
}

type propStatus struct {
	name   xml.Name
	status int
}

// propsOf returns the property elements inside the set (or remove) children of root.
func propsOf(root *Element, op string) []*Element {
	var out []*Element
	for _, c := range root.Children {
		if c.Name == nameDAV(op) {
			if p := c.Child(NSDAV, "prop"); p != nil {
				out = append(out, p.Children...)
			}
		}
	}
	return out
}

func (q *request) proppatch() {
	if q.t.Level != LevelCollection {
		http.Error(q.w, "PROPPATCH is supported on collections only", http.StatusForbidden)
		return
	}
	root, err := ParseXML(q.r.Body)
	if err != nil || root == nil || root.Name != nameDAV("propertyupdate") {
		http.Error(q.w, "PROPPATCH needs a DAV:propertyupdate body", http.StatusBadRequest)
		return
	}
	var sts []propStatus
	failed := false
	err = q.h.coll.Update(q.ctx(), q.t.Owner, q.t.Collection, func(m *Meta) error {
		sts = q.setProps(m, propsOf(root, "set"), propsOf(root, "remove"), false)
		failed = slices.ContainsFunc(sts, func(s propStatus) bool { return s.status != http.StatusOK })
		if failed {
			return errNoChange
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		q.fail(err)
		return
	}
	ms := NewMultistatus(q.h.kind)
	ms.b.WriteString("<d:response><d:href>" + esc(q.t.Href(q.h.kind.Repo)) + "</d:href>")
	for _, s := range sts {
		code := s.status
		if failed && code == http.StatusOK {
			code = http.StatusFailedDependency
		}
		ms.b.WriteString("<d:propstat><d:prop>")
		ms.elem(s.name, "")
		ms.b.WriteString("</d:prop><d:status>HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "</d:status></d:propstat>")
	}
	ms.b.WriteString("</d:response>")
	ms.Finish(q.w, "")
}

var errNoChange = errors.New("storedav: no change")

func (q *request) mkcol() {
	if q.t.Level != LevelCollection {
		http.Error(q.w, "collections are made at /OWNER/"+q.h.kind.Repo+"/NAME/", http.StatusForbidden)
		return
	}
	if q.t.Owner != q.user {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("need-privileges"), Reason: "collections are made in your own home set"})
		return
	}
	root, err := ParseXML(q.r.Body)
	if err != nil {
		http.Error(q.w, err.Error(), http.StatusBadRequest)
		return
	}
	var m Meta
	var sts []propStatus
	if root != nil {
		sts = q.setProps(&m, propsOf(root, "set"), nil, true)
	}
	for _, s := range sts {
		if s.status != http.StatusOK {
			name := "valid-resourcetype"
			if s.name.Local == "supported-calendar-component-set" {
				name = "supported-calendar-component"
			}
			q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV(name), Reason: "cannot set " + s.name.Local})
			return
		}
	}
	if err := q.h.coll.Create(q.ctx(), q.t.Owner, q.t.Collection, m); err != nil {
		q.fail(err)
		return
	}
	q.w.Header().Set("Location", q.t.Href(q.h.kind.Repo))
	q.w.WriteHeader(http.StatusCreated)
}

// syncCollection answers RFC 6578's REPORT.
func (q *request) syncCollection(root *Element) {
	if q.t.Level != LevelCollection {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("supported-report"), Reason: "sync-collection is supported on collections"})
		return
	}
	var names []xml.Name
	if p := root.Child(NSDAV, "prop"); p != nil {
		for _, c := range p.Children {
			names = append(names, c.Name)
		}
	} else {
		names = []xml.Name{nameDAV("getetag")}
	}
	var from SyncPoint
	if tn := root.Child(NSDAV, "sync-token"); tn != nil && strings.TrimSpace(tn.Text) != "" {
		tok := strings.TrimSpace(tn.Text)
		rest, ok := strings.CutPrefix(tok, q.h.base)
		var err error
		if ok {
			from, err = ParseSyncPoint(rest)
		}
		if !ok || err != nil {
			q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("valid-sync-token"), Reason: "unknown sync token"})
			return
		}
	}
	limit := -1
	if lim := root.Child(NSDAV, "limit"); lim != nil {
		nr := lim.Child(NSDAV, "nresults")
		n, err := 0, error(nil)
		if nr != nil {
			n, err = strconv.Atoi(strings.TrimSpace(nr.Text))
		}
		if nr == nil || err != nil || n < 1 {
			http.Error(q.w, "bad DAV:limit: want <nresults> with a positive number", http.StatusBadRequest)
			return
		}
		limit = n
	}
	res, err := q.h.coll.Sync(q.ctx(), q.t.Owner, q.t.Collection, from, limit)
	if errors.Is(err, ErrBadToken) {
		q.condition(&PreconditionError{Status: http.StatusForbidden, Name: nameDAV("valid-sync-token"), Reason: "unknown or expired sync token: sync again from an empty token"})
		return
	}
	if err != nil {
		q.fail(err)
		return
	}
	changes := res.Changes
	ms := NewMultistatus(q.h.kind)
	for _, c := range changes {
		t := Target{Level: LevelObject, Owner: q.t.Owner, Collection: q.t.Collection, Resource: c.Name}
		if c.Deleted {
			ms.Status(t.Href(q.h.kind.Repo), http.StatusNotFound)
			continue
		}
		r := q.objectRes(q.t.Owner, q.t.Collection, ObjectInfo{Name: c.Name, ETag: c.ETag, Size: -1}, nil)
		get := r.get
		if slices.Contains(names, nameDAV("getcontentlength")) {
			// Diffs carry no sizes: read the object for them.
			get = func(n xml.Name) (string, bool) {
				if n == nameDAV("getcontentlength") {
					b, _, err := q.h.coll.Object(q.ctx(), q.t.Owner, q.t.Collection, c.Name)
					return strconv.Itoa(len(b)), err == nil
				}
				return r.get(n)
			}
		}
		ms.Response(r.href, names, get)
	}
	if res.More {
		// RFC 6578 §3.6: the truncation is reported on the request URI; the token
		// continues from where the changes stopped.
		ms.b.WriteString("<d:response><d:href>")
		ms.b.WriteString(esc(q.t.Href(q.h.kind.Repo)))
		ms.b.WriteString("</d:href><d:status>HTTP/1.1 507 Insufficient Storage</d:status>" +
			"<d:error><d:number-of-matches-within-limits/></d:error></d:response>")
	}
	ms.Finish(q.w, "<d:sync-token>"+esc(q.h.base+FormatSyncPoint(res.Next))+"</d:sync-token>")
}
