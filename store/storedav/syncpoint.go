package storedav

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/hearth-home/hearth/store"
)

// DefaultMaxSyncTokenCommits is how many commits back a sync token may point unless
// Limits.MaxSyncTokenCommits says otherwise.
const DefaultMaxSyncTokenCommits = 100000

// SyncPoint is where a syncing client stands in a collection's history: it has seen
// the collection as it was at commit Since ("" : nothing yet). After a sync that stopped
// early (a client's DAV:limit), Target is the commit it was being brought to and After
// the last resource name it got of the changes between Since and Target (in name order).
type SyncPoint struct {
	Since  store.Hash
	Target store.Hash
	After  string
}

// Partial reports whether p is the middle of a sync that stopped early.
func (p SyncPoint) Partial() bool { return p.Target != "" }

// SyncResult is the answer to Sync.
type SyncResult struct {
	Changes []Change  // in resource-name order
	Next    SyncPoint // the point to hand out as the next sync token
	More    bool      // the changes stopped early: Next is not yet the current state
}

// FormatSyncPoint writes p as the part of a sync token after its base: the commit id
// for a complete sync; "SINCE/TARGET/AFTER" (SINCE "-" for nothing, AFTER base64url)
// for one that stopped early.
func FormatSyncPoint(p SyncPoint) string {
	if !p.Partial() {
		return string(p.Since)
	}
	since := string(p.Since)
	if since == "" {
		since = "-"
	}
	return since + "/" + string(p.Target) + "/" + base64.RawURLEncoding.EncodeToString([]byte(p.After))
}

// ParseSyncPoint reads what FormatSyncPoint wrote. ErrBadToken if it is malformed.
func ParseSyncPoint(s string) (SyncPoint, error) {
	bad := fmt.Errorf("storedav: sync token %q: %w", trunc(s), ErrBadToken)
	parts := strings.Split(s, "/")
	switch len(parts) {
	case 1:
		if !store.IsHash(s) {
			return SyncPoint{}, bad
		}
		return SyncPoint{Since: store.Hash(s)}, nil
	case 3:
		var p SyncPoint
		if parts[0] != "-" {
			if !store.IsHash(parts[0]) {
				return SyncPoint{}, bad
			}
			p.Since = store.Hash(parts[0])
		}
		if !store.IsHash(parts[1]) || len(parts[2]) > 2*MaxNameLen {
			return SyncPoint{}, bad
		}
		p.Target = store.Hash(parts[1])
		after, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(after) == 0 || CheckName(string(after)) != nil {
			return SyncPoint{}, bad
		}
		p.After = string(after)
		return p, nil
	}
	return SyncPoint{}, bad
}

// Sync returns the changes of a collection from point from on, at most limit of them
// (limit < 0: all). When they stop early, Next continues where they stopped: a sync
// from it returns the rest, and later changes after those. ErrBadToken when a commit
// of from is unknown, not in the branch's history (rewritten since), further back than
// Limits.MaxSyncTokenCommits commits or older than Limits.MaxSyncTokenAge.
func (c *Collections) Sync(ctx context.Context, owner, coll string, from SyncPoint, limit int) (SyncResult, error) {
	s, err := c.open(ctx, owner, false)
	if err != nil {
		return SyncResult{}, err
	}
	if s == nil {
		return SyncResult{}, fmt.Errorf("storedav: collection %s/%s: %w", owner, coll, store.ErrNotFound)
	}
	head, err := s.Resolve(ctx, "")
	if err != nil {
		return SyncResult{}, fmt.Errorf("storedav: changes of %s/%s: %w", owner, coll, err)
	}
	if _, err := s.Stat(ctx, string(head), metaKey(coll)); err != nil {
		return SyncResult{}, fmt.Errorf("storedav: collection %s/%s: %w", owner, coll, err)
	}
	for _, h := range []store.Hash{from.Since, from.Target} {
		if h != "" {
			if err := c.checkTokenCommit(ctx, s, head, h); err != nil {
				return SyncResult{}, fmt.Errorf("storedav: changes of %s/%s: %w", owner, coll, err)
			}
		}
	}
	if from.Target == from.Since && from.Since != "" {
		from.Target, from.After = "", ""
	}
	if !from.Partial() {
		// A fresh sync from Since to head.
		if from.Since == head {
			return SyncResult{Next: SyncPoint{Since: head}}, nil
		}
		var all []Change
		if from.Since == "" {
			// Everything: the cached listing is cheaper than a diff from the empty tree.
			objs, at, err := c.Objects(ctx, owner, coll)
			if err != nil {
				return SyncResult{}, err
			}
			head = at
			all = make([]Change, len(objs))
			for i, o := range objs {
				all[i] = Change{Name: o.Name, ETag: o.ETag}
			}
			slices.SortFunc(all, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
		} else if all, err = c.changesBetween(ctx, s, owner, coll, from.Since, head); err != nil {
			return SyncResult{}, err
		}
		if limit < 0 || len(all) <= limit {
			return SyncResult{Changes: all, Next: SyncPoint{Since: head}}, nil
		}
		return c.cut(all, limit, SyncPoint{Since: from.Since, Target: head}), nil
	}
	// The rest of a sync that stopped early.
	rest, err := c.changesBetween(ctx, s, owner, coll, from.Since, from.Target)
	if err != nil {
		return SyncResult{}, err
	}
	i, _ := slices.BinarySearchFunc(rest, from.After, func(ch Change, name string) int { return strings.Compare(ch.Name, name) })
	if i < len(rest) && rest[i].Name == from.After {
		i++
	}
	rest = rest[i:]
	if limit >= 0 && len(rest) > limit {
		return c.cut(rest, limit, from), nil
	}
	if from.Target == head {
		return SyncResult{Changes: rest, Next: SyncPoint{Since: head}}, nil
	}
	// The rest fits: add what changed after Target (those win: they are the state now).
	later, err := c.changesBetween(ctx, s, owner, coll, from.Target, head)
	if err != nil {
		return SyncResult{}, err
	}
	merged := mergeChanges(rest, later)
	if limit < 0 || len(merged) <= limit {
		return SyncResult{Changes: merged, Next: SyncPoint{Since: head}}, nil
	}
	// Only the rest: the client then stands at Target, and continues from there.
	return SyncResult{Changes: rest, Next: SyncPoint{Since: from.Target}, More: true}, nil
}

// cut returns the first limit changes, continuing at the same Since and Target.
func (c *Collections) cut(all []Change, limit int, p SyncPoint) SyncResult {
	if limit == 0 {
		return SyncResult{Next: SyncPoint{Since: p.Since, Target: p.Target, After: p.After}, More: true}
	}
	p.After = all[limit-1].Name
	return SyncResult{Changes: all[:limit], Next: p, More: true}
}

// mergeChanges merges two name-sorted lists; on equal names b's entry wins.
func mergeChanges(a, b []Change) []Change {
	out := make([]Change, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Name < b[j].Name):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].Name < a[i].Name:
			out = append(out, b[j])
			j++
		default:
			out = append(out, b[j])
			i++
			j++
		}
	}
	return out
}

// changesBetween lists the objects of a collection that differ between two commits
// (from "" : every object at to), sorted by name.
func (c *Collections) changesBetween(ctx context.Context, s store.Store, owner, coll string, from, to store.Hash) ([]Change, error) {
	if from == to {
		return nil, nil
	}
	diffs, err := s.Diff(ctx, string(from), string(to), objPrefix(coll))
	if err != nil {
		return nil, fmt.Errorf("storedav: changes of %s/%s: %w", owner, coll, err)
	}
	p := objPrefix(coll) + "/"
	out := make([]Change, 0, len(diffs))
	for _, d := range diffs {
		name, ok := strings.CutPrefix(d.Key, p)
		if !ok || strings.Contains(name, "/") {
			continue
		}
		if d.Kind == store.Deleted {
			out = append(out, Change{Name: name, Deleted: true})
		} else {
			out = append(out, Change{Name: name, ETag: d.New})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// checkTokenCommit checks that h is in the history of head, at most
// Limits.MaxSyncTokenCommits commits back and not older than Limits.MaxSyncTokenAge.
func (c *Collections) checkTokenCommit(ctx context.Context, s store.Store, head, h store.Hash) error {
	if !store.IsHash(string(h)) {
		return fmt.Errorf("%w: %q", ErrBadToken, trunc(string(h)))
	}
	if h == head {
		return nil // current, however old
	}
	maxBack := c.limits.MaxSyncTokenCommits
	var found *store.Commit
	// Walk back from head in growing steps: tokens are usually recent.
	for n := 16; ; n *= 16 {
		n = min(n, maxBack+1)
		log, err := s.Log(ctx, string(head), n)
		if err != nil {
			return fmt.Errorf("log: %w", err)
		}
		for i := range log {
			if log[i].ID == h {
				found = &log[i]
				break
			}
		}
		if found != nil || len(log) < n || n > maxBack {
			break
		}
	}
	if found == nil {
		return fmt.Errorf("%w: commit %s is not among the last %d of the history", ErrBadToken, h, maxBack)
	}
	if age := c.limits.MaxSyncTokenAge; age > 0 && c.now().Sub(found.Time) > age {
		return fmt.Errorf("%w: commit %s is older than %s", ErrBadToken, h, age)
	}
	return nil
}
