package calendar

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav/caldav"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// Options configure a Handler.
type Options struct {
	// Repos holds the users' repositories USER/calendar (required).
	Repos storedav.Repos
	// Accounts authenticates requests and answers sharing (required).
	Accounts storedav.Accounts
	// Limits bound sizes and counts (zero: storedav's defaults).
	Limits storedav.Limits
	// Realm is the HTTP Basic realm ("": "Hearth").
	Realm string
	// PeerUser, when set, names the user a peer may act as without a password.
	PeerUser func(ctx context.Context, remote string) (user string, ok bool)
	// Logger receives server errors. nil: slog.Default().
	Logger *slog.Logger
}

// Handler is the CalDAV server: storedav answers discovery, collections, objects and
// sync-collection; the Handler answers calendar-query, calendar-multiget and
// free-busy-query itself, with recurrence expansion and the exact stored bytes.
type Handler struct {
	dav     *storedav.Handler
	kind    *storedav.Kind
	coll    *storedav.Collections
	library http.Handler
	cache   *objCache
	zones   *Zones
	log     *slog.Logger
	now     func() time.Time
}

// NewHandler returns the CalDAV handler for opts.
func NewHandler(opts Options) (*Handler, error) {
	h := &Handler{kind: Kind(), cache: &objCache{}, zones: &Zones{}, log: opts.Logger, now: time.Now}
	if h.log == nil {
		h.log = slog.Default()
	}
	dav, err := storedav.NewHandler(storedav.Options{Kind: h.kind, Repos: opts.Repos, Accounts: opts.Accounts,
		Next: http.HandlerFunc(h.report), Limits: opts.Limits, Realm: opts.Realm, PeerUser: opts.PeerUser, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("calendar: %w", err)
	}
	h.dav, h.coll = dav, dav.Collections()
	h.library = &caldav.Handler{Backend: &Backend{dav: dav, cache: h.cache}}
	return h, nil
}

// ServeHTTP answers a CalDAV request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.dav.ServeHTTP(w, r) }

// DropCaches empties the handler's caches (parsed objects, object bytes, large
// listings), for an idle appliance to give the memory back (signpost.ServeOptions.OnIdle).
// Queries fill them again.
func (h *Handler) DropCaches() {
	h.cache.drop()
	h.coll.DropCaches()
}

// Collections returns the calendars the handler serves, for commands such as import.
func (h *Handler) Collections() *storedav.Collections { return h.coll }

// report answers the REPORTs storedav hands on (authenticated, readable paths).
func (h *Handler) report(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBody+1))
	if err != nil || len(body) > maxReportBody {
		http.Error(w, "REPORT body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	root, err := parseXMLBody(body)
	if err != nil {
		http.Error(w, "REPORT body: "+err.Error(), http.StatusBadRequest)
		return
	}
	t, _, err := h.dav.Resolve(r.Context(), r.URL.Path)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	switch {
	case root.Is(nsCalDAV, "calendar-query"):
		h.query(w, r, t, root)
	case root.Is(nsCalDAV, "calendar-multiget"):
		h.multiget(w, r, t, root)
	case root.Is(nsCalDAV, "free-busy-query"):
		h.freeBusy(w, r, t, root)
	default:
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		h.library.ServeHTTP(w, r)
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *storedav.PreconditionError
	switch {
	case errors.As(err, &pe):
		writeCondition(w, pe.Status, pe.Name, pe.Reason)
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "not found", http.StatusNotFound)
	case errors.Is(err, storedav.ErrForbidden):
		writeCondition(w, http.StatusForbidden, xml.Name{Space: nsDAV, Local: "need-privileges"}, "not shared with you")
	case errors.Is(err, storedav.ErrInvalid), errors.Is(err, signpost.ErrInvalid):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, context.Canceled):
		http.Error(w, "canceled", http.StatusServiceUnavailable)
	default:
		h.log.ErrorContext(r.Context(), "calendar: report failed", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// writeCondition answers a failed precondition with a DAV:error body.
func writeCondition(w http.ResponseWriter, status int, name xml.Name, reason string) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<d:error xmlns:d="DAV:">`)
	fmt.Fprintf(&b, `<x:%s xmlns:x="%s"/>`, name.Local, escText(name.Space))
	b.WriteString("<d:responsedescription>" + escText(reason) + "</d:responsedescription></d:error>\n")
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func escText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// loaded is one object read for a report.
type loaded struct {
	href string
	etag store.Hash
	c    *cached
}

// load returns the object at t (parsed, through the cache).
func (h *Handler) load(ctx context.Context, t storedav.Target, rev store.Hash, etag store.Hash) (*cached, error) {
	if etag != "" {
		if c := h.cache.get(etag); c != nil {
			return c, nil
		}
	}
	var data []byte
	var info storedav.ObjectInfo
	var err error
	if rev != "" {
		data, info, err = h.coll.ObjectAt(ctx, t.Owner, rev, t.Collection, t.Resource)
	} else {
		data, info, err = h.coll.Object(ctx, t.Owner, t.Collection, t.Resource)
	}
	if err != nil {
		return nil, err
	}
	if c := h.cache.get(info.ETag); c != nil {
		return c, nil
	}
	obj, err := Parse(data)
	if err != nil {
		// stored before validation got stricter, or written behind our back: serve the
		// bytes, match nothing
		obj = nil
	}
	c := &cached{obj: obj, data: data}
	h.cache.put(info.ETag, c)
	return c, nil
}

// each calls fn for every object of the collection (or the one object) t names.
func (h *Handler) each(ctx context.Context, t storedav.Target, fn func(loaded) error) error {
	switch t.Level {
	case storedav.LevelObject:
		c, err := h.load(ctx, t, "", "")
		if err != nil {
			return err
		}
		return fn(loaded{href: t.Href(Repo), etag: store.BlobHash(c.data), c: c})
	case storedav.LevelCollection:
		infos, head, err := h.coll.Objects(ctx, t.Owner, t.Collection)
		if err != nil {
			return err
		}
		for _, info := range infos {
			ot := storedav.Target{Level: storedav.LevelObject, Owner: t.Owner, Collection: t.Collection, Resource: info.Name}
			c, err := h.load(ctx, ot, head, info.ETag)
			if err != nil {
				return err
			}
			if err := fn(loaded{href: ot.Href(Repo), etag: info.ETag, c: c}); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("calendar: REPORT on %s: %w", t.Href(Repo), storedav.ErrForbidden)
}

// propReq is what a REPORT asks to be returned for each object.
type propReq struct {
	names []xml.Name
	data  *dataRequest
}

func parsePropReq(root *storedav.Element) (propReq, error) {
	var pr propReq
	prop := root.Child(nsDAV, "prop")
	if prop == nil {
		// allprop, propname or nothing: the etag and the data
		pr.names = []xml.Name{{Space: nsDAV, Local: "getetag"}}
		return pr, nil
	}
	for _, c := range prop.Children {
		pr.names = append(pr.names, c.Name)
		if c.Is(nsCalDAV, "calendar-data") {
			dr, err := parseDataRequest(c)
			if err != nil {
				return pr, err
			}
			pr.data = dr
		}
	}
	return pr, nil
}

// object writes one object's response with the requested properties.
func (h *Handler) object(m *storedav.Multistatus, l loaded, pr propReq, floating zone) {
	m.Response(l.href, pr.names, func(n xml.Name) (string, bool) { return h.prop(l, n, pr.data, floating) })
}

// prop is one property of an object as escaped inner XML.
func (h *Handler) prop(l loaded, n xml.Name, dr *dataRequest, floating zone) (string, bool) {
	switch n {
	case xml.Name{Space: nsDAV, Local: "getetag"}:
		return escText(`"` + string(l.etag) + `"`), true
	case xml.Name{Space: nsDAV, Local: "getcontenttype"}:
		return "text/calendar; charset=utf-8", true
	case xml.Name{Space: nsDAV, Local: "getcontentlength"}:
		return strconv.Itoa(len(l.c.data)), true
	case xml.Name{Space: nsDAV, Local: "resourcetype"}:
		return "", true
	case xml.Name{Space: nsCalDAV, Local: "calendar-data"}:
		return storedav.Escape(string(h.calendarData(l, dr, floating))), true
	}
	return "", false
}

// calendarData is an object's data as a calendar-data element asks: the stored bytes,
// or expanded, limited or pruned.
func (h *Handler) calendarData(l loaded, dr *dataRequest, floating zone) []byte {
	if dr == nil || l.c.obj == nil || (dr.comp == nil && !dr.expand && !dr.limit && !dr.limitFB) {
		return l.c.data
	}
	m := &Matcher{Zones: h.zones, float: floating}
	cal := l.c.obj.Cal
	var err error
	switch {
	case dr.expand:
		cal, err = m.Expand(l.c.obj, dr.expandStart, dr.expandEnd)
	case dr.limit:
		cal, err = m.LimitRecurrenceSet(l.c.obj, dr.limitStart, dr.limitEnd)
	}
	if err != nil {
		return l.c.data
	}
	if dr.comp != nil {
		cal = &ical.Calendar{Component: prune(cal.Component, dr.comp)}
	}
	return Encode(cal)
}

// prune keeps the properties and components a CALDAV:comp selection names.
func prune(c *ical.Component, sel *compSel) *ical.Component {
	out := &ical.Component{Name: c.Name, Props: ical.Props{}}
	if sel.allProps {
		out.Props = c.Props
	} else {
		for _, p := range sel.props {
			if v, ok := c.Props[p]; ok {
				out.Props[p] = v
			}
		}
	}
	for _, child := range c.Children {
		if sel.allComps {
			out.Children = append(out.Children, child)
			continue
		}
		for _, s := range sel.comps {
			if s.name == child.Name {
				out.Children = append(out.Children, prune(child, s))
				break
			}
		}
	}
	return out
}

// queryZone is the time zone of floating times in a calendar-query: CALDAV:timezone
// (a VCALENDAR with one VTIMEZONE) or CALDAV:timezone-id (RFC 7809); UTC otherwise.
func (h *Handler) queryZone(root *storedav.Element) (zone, error) {
	if n := root.Child(nsCalDAV, "timezone-id"); n != nil {
		loc, err := h.zones.iana(strings.TrimSpace(n.Text))
		if err != nil {
			return nil, fmt.Errorf("unknown timezone-id %q", strings.TrimSpace(n.Text))
		}
		return locZone{loc}, nil
	}
	if n := root.Child(nsCalDAV, "timezone"); n != nil {
		cal, err := parse([]byte(n.Text))
		if err != nil {
			return nil, fmt.Errorf("timezone: %v", err)
		}
		for _, c := range cal.Children {
			if c.Name != ical.CompTimezone {
				continue
			}
			id, _ := c.Props.Text(ical.PropTimezoneID)
			if loc, err := h.zones.iana(id); err == nil {
				return locZone{loc}, nil
			}
			vz, err := newVTimezone(c)
			if err != nil {
				return nil, fmt.Errorf("timezone: %v", err)
			}
			return vz, nil
		}
		return nil, errors.New("timezone without VTIMEZONE")
	}
	return utcZone, nil
}

func validFilter(w http.ResponseWriter, reason string) {
	writeCondition(w, http.StatusBadRequest, xml.Name{Space: nsCalDAV, Local: "valid-filter"}, reason)
}

// query answers CALDAV:calendar-query (RFC 4791 §7.8).
func (h *Handler) query(w http.ResponseWriter, r *http.Request, t storedav.Target, root *storedav.Element) {
	fn := root.Child(nsCalDAV, "filter")
	if fn == nil || fn.Child(nsCalDAV, "comp-filter") == nil {
		validFilter(w, "calendar-query needs a filter with a comp-filter")
		return
	}
	f, err := parseCompFilter(fn.Child(nsCalDAV, "comp-filter"))
	if errors.Is(err, errCollation) {
		writeCondition(w, http.StatusForbidden, xml.Name{Space: nsCalDAV, Local: "supported-collation"}, err.Error())
		return
	}
	if err != nil {
		validFilter(w, err.Error())
		return
	}
	if f.Name != ical.CompCalendar {
		validFilter(w, "the top comp-filter must name VCALENDAR")
		return
	}
	pr, err := parsePropReq(root)
	if err != nil {
		validFilter(w, err.Error())
		return
	}
	fz, err := h.queryZone(root)
	if err != nil {
		writeCondition(w, http.StatusBadRequest, xml.Name{Space: nsCalDAV, Local: "valid-calendar-data"}, err.Error())
		return
	}
	m := &Matcher{Zones: h.zones, float: fz}
	ms := storedav.NewMultistatus(h.kind)
	err = h.each(r.Context(), t, func(l loaded) error {
		if l.c.obj == nil {
			return nil
		}
		ok, err := m.Match(l.c.obj, f)
		if errors.Is(err, errTooManyInstances) {
			return nil
		}
		if err != nil || !ok {
			return nil // an object we cannot evaluate does not match
		}
		h.object(ms, l, pr, fz)
		return nil
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ms.Finish(w, "")
}

// multiget answers CALDAV:calendar-multiget (RFC 4791 §7.9).
func (h *Handler) multiget(w http.ResponseWriter, r *http.Request, t storedav.Target, root *storedav.Element) {
	pr, err := parsePropReq(root)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hrefs := root.All(nsDAV, "href")
	if limit := 10000; len(hrefs) > limit {
		http.Error(w, fmt.Sprintf("more than %d hrefs", limit), http.StatusBadRequest)
		return
	}
	ms := storedav.NewMultistatus(h.kind)
	for _, hn := range hrefs {
		href := strings.TrimSpace(hn.Text)
		ot, err := hrefTarget(href)
		if err == nil && (ot.Owner != t.Owner || (t.Level >= storedav.LevelCollection && ot.Collection != t.Collection)) {
			// outside the collection asked about: check access for it too
			_, _, err = h.dav.Resolve(r.Context(), "/"+ot.Owner+"/"+Repo+"/"+ot.Collection+"/")
		}
		if err != nil || ot.Level != storedav.LevelObject {
			ms.Status(href, http.StatusForbidden)
			continue
		}
		c, err := h.load(r.Context(), ot, "", "")
		if errors.Is(err, store.ErrNotFound) {
			ms.Status(href, http.StatusNotFound)
			continue
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.object(ms, loaded{href: ot.Href(Repo), etag: store.BlobHash(c.data), c: c}, pr, utcZone)
	}
	ms.Finish(w, "")
}

// hrefTarget parses an href of a multiget: a path or an absolute URL.
func hrefTarget(href string) (storedav.Target, error) {
	if i := strings.Index(href, "://"); i >= 0 {
		rest := href[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return storedav.Target{}, storedav.ErrInvalid
		}
		href = rest[j:]
	}
	return storedav.ParsePath(Repo, href)
}

// freeBusy answers CALDAV:free-busy-query (RFC 4791 §7.10) with a VFREEBUSY.
func (h *Handler) freeBusy(w http.ResponseWriter, r *http.Request, t storedav.Target, root *storedav.Element) {
	tr := root.Child(nsCalDAV, "time-range")
	if tr == nil {
		http.Error(w, "free-busy-query needs a time-range", http.StatusBadRequest)
		return
	}
	start, end, err := parseTimeRange(tr)
	if err == nil && (start.IsZero() || end.IsZero()) {
		err = errors.New("free-busy-query needs both start and end")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m := &Matcher{Zones: h.zones}
	fb := m.NewFreeBusy(start, end)
	err = h.each(r.Context(), t, func(l loaded) error {
		if l.c.obj != nil {
			if err := fb.Add(l.c.obj); err != nil && !errors.Is(err, errTooManyInstances) {
				h.log.DebugContext(r.Context(), "calendar: free-busy skips an object", "href", l.href, "err", err)
			}
		}
		return nil
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(fb.Calendar(h.now()))
}
