package store

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// MergeCase is what a MergeRule sees of a key that both sides of a merge changed.
// Base, Ours and Theirs are nil where the key is absent on that side (an empty value is
// non-nil). Ours is the branch merged into; OursTime and TheirsTime are the two head commits' times.
type MergeCase struct {
	Key                  string
	Base, Ours, Theirs   []byte
	OursTime, TheirsTime time.Time
}

// A MergeRule resolves a key both sides changed differently. It returns the merged value,
// nil to delete the key, or an error wrapping ErrConflict to leave it a conflict.
type MergeRule func(MergeCase) ([]byte, error)

// MergeRules choose a rule by key pattern, the first matching pattern winning; keys no
// pattern matches are conflicts. Patterns use path.Match syntax. As in gitattributes, a
// pattern with a slash matches the whole key ("INBOX/*" matches "INBOX/42" only), and a
// pattern without one matches the key's last segment at any depth ("flags" and "*.flags"
// match "INBOX/42/flags").
type MergeRules []PatternRule

// PatternRule is one pattern and its rule.
type PatternRule struct {
	Pattern string
	Rule    MergeRule
}

// For returns the rule for key, or nil.
func (rs MergeRules) For(key string) MergeRule {
	base := path.Base(key)
	for _, r := range rs {
		subject := key
		if !strings.Contains(r.Pattern, "/") {
			subject = base
		}
		if ok, _ := path.Match(r.Pattern, subject); ok {
			return r.Rule
		}
	}
	return nil
}

// LastWriterWins takes the side whose head commit is newer (ours on a tie).
func LastWriterWins(c MergeCase) ([]byte, error) {
	if c.TheirsTime.After(c.OursTime) {
		return c.Theirs, nil
	}
	return c.Ours, nil
}

// UnionLines merges values that are sets of lines (such as IMAP flags): the result has every
// line either side added and none that either side removed, relative to the base, sorted.
// A side that deleted the key counts as removing all of its lines; the key is deleted only
// when the result is empty and a side deleted it.
func UnionLines(c MergeCase) ([]byte, error) {
	base, ours, theirs := lineSet(c.Base), lineSet(c.Ours), lineSet(c.Theirs)
	out := map[string]bool{}
	for l := range ours {
		if theirs[l] || !base[l] {
			out[l] = true
		}
	}
	for l := range theirs {
		if ours[l] || !base[l] {
			out[l] = true
		}
	}
	if len(out) == 0 && (c.Ours == nil || c.Theirs == nil) {
		return nil, nil
	}
	lines := make([]string, 0, len(out))
	for l := range out {
		lines = append(lines, l)
	}
	slices.Sort(lines)
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func lineSet(v []byte) map[string]bool {
	m := map[string]bool{}
	for l := range strings.SplitSeq(string(v), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			m[l] = true
		}
	}
	return m
}

// MergeConflictError lists the keys a merge could not resolve. It matches ErrConflict.
type MergeConflictError struct {
	Keys []string
}

func (e *MergeConflictError) Error() string {
	keys := e.Keys
	more := ""
	if len(keys) > 10 {
		keys, more = keys[:10], fmt.Sprintf(" and %d more", len(e.Keys)-10)
	}
	return fmt.Sprintf("store: merge conflict in %s%s", strings.Join(keys, ", "), more)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *MergeConflictError) Is(target error) bool { return target == ErrConflict }

// MergeInput is what Merge3 needs: the three trees as key → version maps, a way to load a
// value by version, the rules and the two sides' head times.
type MergeInput struct {
	Base, Ours, Theirs   map[string]Hash
	Load                 func(Hash) ([]byte, error)
	Rules                MergeRules
	OursTime, TheirsTime time.Time
}

// Merge3 computes the operations that turn Ours into the merged tree. Identical sides
// take it; a side that alone changed a key wins; keys both changed differently go to the
// rule for the key, and those without a rule (or whose rule refuses) make a
// *MergeConflictError. Keys in the result are sorted. Implementations of Merger share it.
func Merge3(in MergeInput) ([]Op, error) {
	keys := map[string]bool{}
	for _, m := range []map[string]Hash{in.Base, in.Ours, in.Theirs} {
		for k := range m {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	var ops []Op
	var conflicts []string
	for _, k := range sorted {
		b, o, t := in.Base[k], in.Ours[k], in.Theirs[k]
		switch {
		case o == t, t == b:
			continue // same on both sides, or only ours changed
		case o == b: // only theirs changed
			if t == "" {
				ops = append(ops, Op{Key: k, Delete: true})
			} else {
				ops = append(ops, Op{Key: k, Copy: t})
			}
			continue
		}
		rule := in.Rules.For(k)
		if rule == nil {
			conflicts = append(conflicts, k)
			continue
		}
		c := MergeCase{Key: k, OursTime: in.OursTime, TheirsTime: in.TheirsTime}
		var err error
		for _, side := range []struct {
			v   Hash
			dst *[]byte
		}{{b, &c.Base}, {o, &c.Ours}, {t, &c.Theirs}} {
			if side.v == "" {
				continue
			}
			if *side.dst, err = in.Load(side.v); err != nil {
				return nil, fmt.Errorf("store: merge %q: %w", k, err)
			}
			if *side.dst == nil {
				*side.dst = []byte{}
			}
		}
		v, err := rule(c)
		if errors.Is(err, ErrConflict) {
			conflicts = append(conflicts, k)
			continue
		} else if err != nil {
			return nil, fmt.Errorf("store: merge %q: %w", k, err)
		}
		switch {
		case v == nil && o != "":
			ops = append(ops, Op{Key: k, Delete: true})
		case v != nil && BlobHash(v) != o:
			ops = append(ops, Op{Key: k, Value: v})
		}
	}
	if len(conflicts) > 0 {
		return nil, &MergeConflictError{Keys: conflicts}
	}
	return ops, nil
}

// DiffMaps compares two key → version maps (restricted to prefix) the way Historian.Diff does.
func DiffMaps(from, to map[string]Hash, prefix string) []Diff {
	var out []Diff
	for k, v := range from {
		if !UnderPrefix(k, prefix) {
			continue
		}
		if w, ok := to[k]; !ok {
			out = append(out, Diff{Key: k, Kind: Deleted, Old: v})
		} else if w != v {
			out = append(out, Diff{Key: k, Kind: Modified, Old: v, New: w})
		}
	}
	for k, w := range to {
		if _, ok := from[k]; !ok && UnderPrefix(k, prefix) {
			out = append(out, Diff{Key: k, Kind: Added, New: w})
		}
	}
	slices.SortFunc(out, func(a, b Diff) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// RevertOps turns the differences between a branch head and the commit a revert goes
// back to (diffs from the head to it, as Historian.Diff gives them) into the revert's
// operations. Keys that rules match are decided by their rule (see RevertRequest.Rules),
// load reading values by version; a rule that keeps the head's value drops the key from
// the revert. The others take the value at the older commit, or are deleted.
func RevertOps(diffs []Diff, rules MergeRules, load func(Hash) ([]byte, error), headTime time.Time) ([]Op, error) {
	ops := make([]Op, 0, len(diffs))
	now := time.Now()
	if !now.After(headTime) {
		now = headTime.Add(time.Second) // TheirsTime is after OursTime, whatever the clocks say
	}
	for _, d := range diffs {
		back := Op{Key: d.Key, Copy: d.New}
		if d.Kind == Deleted {
			back = Op{Key: d.Key, Delete: true}
		}
		rule := rules.For(d.Key)
		if rule == nil {
			ops = append(ops, back)
			continue
		}
		var ours, theirs []byte
		var err error
		if d.Old != "" {
			if ours, err = load(d.Old); err != nil {
				return nil, fmt.Errorf("store: revert %q: %w", d.Key, err)
			}
		}
		if d.New != "" {
			if theirs, err = load(d.New); err != nil {
				return nil, fmt.Errorf("store: revert %q: %w", d.Key, err)
			}
		}
		v, err := rule(MergeCase{Key: d.Key, Ours: ours, Theirs: theirs, OursTime: headTime, TheirsTime: now})
		switch {
		case errors.Is(err, ErrConflict):
			ops = append(ops, back)
		case err != nil:
			return nil, fmt.Errorf("store: revert %q: %w", d.Key, err)
		case v == nil && ours == nil, v != nil && ours != nil && bytes.Equal(v, ours):
			// The rule keeps the head's value: nothing to change.
		case v == nil:
			ops = append(ops, Op{Key: d.Key, Delete: true})
		case theirs != nil && bytes.Equal(v, theirs):
			ops = append(ops, back)
		default:
			ops = append(ops, Op{Key: d.Key, Value: v})
		}
	}
	return ops, nil
}
