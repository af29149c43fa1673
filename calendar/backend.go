package calendar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// Backend is a caldav.Backend over the store, for go-webdav's caldav.Handler: it reads
// and writes through storedav, which checks the user's access to every path.
type Backend struct {
	dav   *storedav.Handler
	cache *objCache
}

var _ caldav.Backend = (*Backend)(nil)

// NewBackend returns a caldav.Backend reading through dav (whose Kind must be Kind()).
func NewBackend(dav *storedav.Handler) *Backend { return &Backend{dav: dav, cache: &objCache{}} }

func (b *Backend) user(ctx context.Context) (string, error) {
	u, ok := storedav.UserFromContext(ctx)
	if !ok {
		return "", webdav.NewHTTPError(http.StatusUnauthorized, errors.New("calendar: no user"))
	}
	return u, nil
}

// CurrentUserPrincipal is /USER/.
func (b *Backend) CurrentUserPrincipal(ctx context.Context) (string, error) {
	u, err := b.user(ctx)
	if err != nil {
		return "", err
	}
	return "/" + u + "/", nil
}

// CalendarHomeSetPath is /USER/calendar/.
func (b *Backend) CalendarHomeSetPath(ctx context.Context) (string, error) {
	u, err := b.user(ctx)
	if err != nil {
		return "", err
	}
	return "/" + u + "/" + Repo + "/", nil
}

func toCalendar(c storedav.CollectionInfo, href string) caldav.Calendar {
	return caldav.Calendar{Path: href, Name: c.Meta.DisplayName, Description: c.Meta.Description,
		MaxResourceSize: DefaultMaxObjectSize, SupportedComponentSet: c.Meta.Components}
}

// CreateCalendar makes a calendar in the user's own home set.
func (b *Backend) CreateCalendar(ctx context.Context, cal *caldav.Calendar) error {
	t, _, err := b.dav.Resolve(ctx, cal.Path)
	if err != nil {
		return mapErr(err)
	}
	u, _ := b.user(ctx)
	if t.Level != storedav.LevelCollection || t.Owner != u {
		return webdav.NewHTTPError(http.StatusForbidden, errors.New("calendar: calendars are made in your own home set"))
	}
	return mapErr(b.dav.Collections().Create(ctx, t.Owner, t.Collection, storedav.Meta{
		DisplayName: cal.Name, Description: cal.Description, Components: cal.SupportedComponentSet}))
}

// ListCalendars lists the user's calendars and those shared with them.
func (b *Backend) ListCalendars(ctx context.Context) ([]caldav.Calendar, error) {
	vis, err := b.dav.Visible(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]caldav.Calendar, 0, len(vis))
	for _, v := range vis {
		out = append(out, toCalendar(v.CollectionInfo, v.Href))
	}
	return out, nil
}

// GetCalendar returns one calendar.
func (b *Backend) GetCalendar(ctx context.Context, path string) (*caldav.Calendar, error) {
	t, _, err := b.dav.Resolve(ctx, path)
	if err != nil {
		return nil, mapErr(err)
	}
	if t.Level != storedav.LevelCollection {
		return nil, webdav.NewHTTPError(http.StatusNotFound, errors.New("calendar: not a calendar"))
	}
	c, err := b.dav.Collections().Get(ctx, t.Owner, t.Collection)
	if err != nil {
		return nil, mapErr(err)
	}
	cal := toCalendar(c, t.Href(Repo))
	return &cal, nil
}

func (b *Backend) toObject(so storedav.StoredObject) (*caldav.CalendarObject, error) {
	var obj *Object
	if c := b.cache.get(so.ETag); c != nil && c.obj != nil {
		obj = c.obj
	} else {
		var err error
		if obj, err = Parse(so.Data); err != nil {
			return nil, fmt.Errorf("calendar: stored object %s: %w", so.Path, err)
		}
		b.cache.put(so.ETag, &cached{obj: obj, data: so.Data})
	}
	return &caldav.CalendarObject{Path: so.Path, ETag: string(so.ETag), ContentLength: so.Size, Data: obj.Cal}, nil
}

// GetCalendarObject returns one object.
func (b *Backend) GetCalendarObject(ctx context.Context, path string, _ *caldav.CalendarCompRequest) (*caldav.CalendarObject, error) {
	so, err := b.dav.Object(ctx, path)
	if err != nil {
		return nil, mapErr(err)
	}
	return b.toObject(so)
}

// ListCalendarObjects returns every object of a calendar.
func (b *Backend) ListCalendarObjects(ctx context.Context, path string, _ *caldav.CalendarCompRequest) ([]caldav.CalendarObject, error) {
	sos, err := b.dav.Objects(ctx, path)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]caldav.CalendarObject, 0, len(sos))
	for _, so := range sos {
		co, err := b.toObject(so)
		if err != nil {
			continue // unparseable objects are served by GET, not listed with data
		}
		out = append(out, *co)
	}
	return out, nil
}

// QueryCalendarObjects returns the objects of a calendar that match a query, with
// recurrence-aware time ranges.
func (b *Backend) QueryCalendarObjects(ctx context.Context, path string, q *caldav.CalendarQuery) ([]caldav.CalendarObject, error) {
	all, err := b.ListCalendarObjects(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	f := fromLibraryFilter(q.CompFilter)
	var m Matcher
	var out []caldav.CalendarObject
	for _, co := range all {
		obj := &Object{Cal: co.Data}
		for _, c := range co.Data.Children {
			if c.Name != ical.CompTimezone {
				obj.Kind = c.Name
				break
			}
		}
		if ok, err := m.Match(obj, f); err == nil && ok {
			out = append(out, co)
		}
	}
	return out, nil
}

func fromLibraryFilter(cf caldav.CompFilter) CompFilter {
	f := CompFilter{Name: strings.ToUpper(cf.Name), IsNotDefined: cf.IsNotDefined, Start: cf.Start, End: cf.End,
		HasTimeRange: !cf.Start.IsZero() || !cf.End.IsZero()}
	for _, p := range cf.Props {
		pf := PropFilter{Name: strings.ToUpper(p.Name), IsNotDefined: p.IsNotDefined, Start: p.Start, End: p.End,
			HasTimeRange: !p.Start.IsZero() || !p.End.IsZero()}
		if p.TextMatch != nil {
			pf.Text = &TextMatch{Text: p.TextMatch.Text, Negate: p.TextMatch.NegateCondition}
		}
		for _, pp := range p.ParamFilter {
			prm := ParamFilter{Name: strings.ToUpper(pp.Name), IsNotDefined: pp.IsNotDefined}
			if pp.TextMatch != nil {
				prm.Text = &TextMatch{Text: pp.TextMatch.Text, Negate: pp.TextMatch.NegateCondition}
			}
			pf.Params = append(pf.Params, prm)
		}
		f.Props = append(f.Props, pf)
	}
	for _, c := range cf.Comps {
		f.Comps = append(f.Comps, fromLibraryFilter(c))
	}
	return f
}

// PutCalendarObject stores an object the library parsed (storedav normally answers PUT
// with the client's exact bytes before the library sees it).
func (b *Backend) PutCalendarObject(ctx context.Context, path string, cal *ical.Calendar, opts *caldav.PutCalendarObjectOptions) (*caldav.CalendarObject, error) {
	t, acc, err := b.dav.Resolve(ctx, path)
	if err != nil {
		return nil, mapErr(err)
	}
	if t.Level != storedav.LevelObject || acc < signpost.ReadWrite {
		return nil, webdav.NewHTTPError(http.StatusForbidden, errors.New("calendar: cannot write here"))
	}
	var cond storedav.Conditions
	if opts != nil {
		cond.IfNoneMatch = opts.IfNoneMatch.IsWildcard()
		if m := string(opts.IfMatch); m != "" && m != "*" {
			cond.IfMatch = store.Hash(strings.Trim(m, `"`))
		}
	}
	data := Encode(cal)
	res, err := b.dav.Collections().Put(ctx, t.Owner, t.Collection, t.Resource, data, cond)
	if err != nil {
		return nil, mapErr(err)
	}
	return &caldav.CalendarObject{Path: path, ETag: string(res.ETag), ContentLength: int64(len(data)), ModTime: time.Now(), Data: cal}, nil
}

// DeleteCalendarObject deletes an object.
func (b *Backend) DeleteCalendarObject(ctx context.Context, path string) error {
	t, acc, err := b.dav.Resolve(ctx, path)
	if err != nil {
		return mapErr(err)
	}
	if t.Level != storedav.LevelObject || acc < signpost.ReadWrite {
		return webdav.NewHTTPError(http.StatusForbidden, errors.New("calendar: cannot delete here"))
	}
	return mapErr(b.dav.Collections().DeleteObject(ctx, t.Owner, t.Collection, t.Resource, ""))
}

// mapErr turns model errors into HTTP errors go-webdav understands.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return webdav.NewHTTPError(http.StatusNotFound, err)
	case errors.Is(err, storedav.ErrForbidden):
		return webdav.NewHTTPError(http.StatusForbidden, err)
	case errors.Is(err, storedav.ErrPrecondition):
		return webdav.NewHTTPError(http.StatusPreconditionFailed, err)
	case errors.Is(err, storedav.ErrInvalid):
		return webdav.NewHTTPError(http.StatusBadRequest, err)
	case errors.Is(err, storedav.ErrExists):
		return webdav.NewHTTPError(http.StatusMethodNotAllowed, err)
	}
	var pe *storedav.PreconditionError
	if errors.As(err, &pe) {
		return webdav.NewHTTPError(pe.Status, err)
	}
	return err
}
