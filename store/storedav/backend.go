package storedav

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// VisibleCollection is a collection in a user's home set, with what they may do with it.
type VisibleCollection struct {
	CollectionInfo
	Access signpost.Access
	Href   string // its URL path
}

// Visible lists the collections of the user in ctx (UserFromContext): their own, then
// those shared with them (a grant on a whole repository shows all of its collections).
func (h *Handler) Visible(ctx context.Context) ([]VisibleCollection, error) {
	user, ok := UserFromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("storedav: no user in context: %w", ErrForbidden)
	}
	own, err := h.coll.List(ctx, user)
	if err != nil {
		return nil, err
	}
	var out []VisibleCollection
	add := func(c CollectionInfo, acc signpost.Access) {
		out = append(out, VisibleCollection{CollectionInfo: c, Access: acc,
			Href: Target{Level: LevelCollection, Owner: c.Owner, Collection: c.Name}.Href(h.kind.Repo)})
	}
	for _, c := range own {
		add(c, signpost.ReadWrite)
	}
	grants, err := h.acct.GrantsTo(ctx, user)
	if errors.Is(err, signpost.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for _, g := range grants {
		if g.Collection.Repo != h.kind.Repo || g.Access < signpost.ReadOnly {
			continue
		}
		var cs []CollectionInfo
		if g.Collection.Path == "" {
			if cs, err = h.coll.List(ctx, g.Collection.Owner); err != nil {
				return nil, err
			}
		} else if c, err := h.coll.Get(ctx, g.Collection.Owner, g.Collection.Path); err == nil {
			cs = []CollectionInfo{c}
		} else if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, ErrInvalid) {
			return nil, err
		}
		for _, c := range cs {
			key := c.Owner + "/" + c.Name
			if i, ok := seen[key]; ok {
				out[i].Access = max(out[i].Access, g.Access)
				continue
			}
			seen[key] = len(out)
			add(c, g.Access)
		}
	}
	return out, nil
}

// Resolve parses a decoded URL path (as go-webdav hands a Backend) and checks that the
// user in ctx may read what it names: ErrForbidden if not, ErrInvalid for a bad path.
func (h *Handler) Resolve(ctx context.Context, path string) (Target, signpost.Access, error) {
	user, ok := UserFromContext(ctx)
	if !ok {
		return Target{}, signpost.NoAccess, fmt.Errorf("storedav: no user in context: %w", ErrForbidden)
	}
	t, err := parseDecoded(h.kind.Repo, path)
	if err != nil {
		return Target{}, signpost.NoAccess, err
	}
	acc, err := h.access(ctx, user, t)
	if err != nil {
		return Target{}, signpost.NoAccess, err
	}
	if acc == signpost.NoAccess {
		return Target{}, acc, fmt.Errorf("storedav: %s: %w", path, ErrForbidden)
	}
	return t, acc, nil
}

// StoredObject is an object with its bytes, as a Backend needs it.
type StoredObject struct {
	Path string // decoded URL path
	ObjectInfo
	Data []byte
}

// Object reads the object at a decoded URL path for the user in ctx.
func (h *Handler) Object(ctx context.Context, path string) (StoredObject, error) {
	t, _, err := h.Resolve(ctx, path)
	if err != nil {
		return StoredObject{}, err
	}
	if t.Level != LevelObject {
		return StoredObject{}, fmt.Errorf("storedav: %s is not an object: %w", path, store.ErrNotFound)
	}
	data, info, err := h.coll.Object(ctx, t.Owner, t.Collection, t.Resource)
	if err != nil {
		return StoredObject{}, err
	}
	return StoredObject{Path: decodedPath(t, h.kind.Repo), ObjectInfo: info, Data: data}, nil
}

// Objects reads every object of the collection at a decoded URL path for the user in ctx.
func (h *Handler) Objects(ctx context.Context, path string) ([]StoredObject, error) {
	t, _, err := h.Resolve(ctx, path)
	if err != nil {
		return nil, err
	}
	if t.Level != LevelCollection {
		return nil, fmt.Errorf("storedav: %s is not a collection: %w", path, store.ErrNotFound)
	}
	infos, head, err := h.coll.Objects(ctx, t.Owner, t.Collection)
	if err != nil {
		return nil, err
	}
	out := make([]StoredObject, 0, len(infos))
	for _, o := range infos {
		data, err := h.coll.Data(ctx, t.Owner, head, t.Collection, o)
		if err != nil {
			return nil, err
		}
		ot := Target{Level: LevelObject, Owner: t.Owner, Collection: t.Collection, Resource: o.Name}
		out = append(out, StoredObject{Path: decodedPath(ot, h.kind.Repo), ObjectInfo: o, Data: data})
	}
	return out, nil
}

// decodedPath is t's path unescaped, as go-webdav compares paths.
func decodedPath(t Target, repo string) string {
	p := "/" + t.Owner + "/" + repo + "/" + t.Collection + "/"
	if t.Level == LevelObject {
		p += t.Resource
	}
	return p
}

// StatusOf returns the HTTP status the Handler answers for an error of this package
// (500 for unknown errors), for backends that report errors to go-webdav
// (webdav.NewHTTPError(StatusOf(err), err)).
func StatusOf(err error) int {
	var pe *PreconditionError
	switch {
	case err == nil:
		return 200
	case errors.As(err, &pe):
		return pe.Status
	case errors.Is(err, store.ErrNotFound):
		return 404
	case errors.Is(err, ErrForbidden):
		return 403
	case errors.Is(err, ErrPrecondition):
		return 412
	case errors.Is(err, ErrInvalid), errors.Is(err, signpost.ErrInvalid):
		return 400
	case errors.Is(err, ErrExists):
		return 405
	}
	return 500
}
