// Package storetest is the conformance suite every store.Store implementation must pass.
//
// An implementation's tests call Test with a Factory:
//
//	func TestConformance(t *testing.T) {
//		storetest.Test(t, func(t *testing.T, rules store.MergeRules) store.Store {
//			s := memstore.New(&memstore.Options{MergeRules: rules})
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite uses only the store.Store interface, so a REST client can run it against a
// server as well as an implementation can run it directly.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Factory returns a fresh, empty store (as store.Init makes it) using rules for merges.
// It should release the store with t.Cleanup; the suite may already have closed it, so
// the cleanup must ignore the error Close then returns.
type Factory func(t *testing.T, rules store.MergeRules) store.Store

// Rules returns the merge rules the suite passes to every Factory call:
// store.LastWriterWins for "lww/*" and store.UnionLines for "*/flags".
func Rules() store.MergeRules {
	return store.MergeRules{
		{Pattern: "lww/*", Rule: store.LastWriterWins},
		{Pattern: "*/flags", Rule: store.UnionLines},
	}
}

// Test runs the whole conformance suite, each check in its own subtest on a fresh store.
func Test(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(h *harness)
	}{
		{"InitialCommit", testInitialCommit},
		{"StatVersionIsBlobHash", testVersions},
		{"ReadAtBranchAndCommit", testReadAtRevision},
		{"MissingKeysAndDirectories", testMissingAndDirectories},
		{"ListPrefixBoundaries", testList},
		{"AtomicCommit", testAtomicCommit},
		{"ParentCompareAndSwap", testParentCAS},
		{"IfMatchAndMissing", testIfMatch},
		{"Copy", testCopy},
		{"KeyDirectoryConflicts", testShapeConflicts},
		{"InvalidKeys", testInvalidKeys},
		{"InvalidBranches", testInvalidBranches},
		{"InvalidArguments", testInvalidArguments},
		{"TooLarge", testTooLarge},
		{"NoOpChange", testNoOpChange},
		{"CommitMetadata", testCommitMetadata},
		{"LogOrderAndLimit", testLog},
		{"History", testHistory},
		{"HistoryThroughMerge", testHistoryThroughMerge},
		{"Diff", testDiff},
		{"Branches", testBranches},
		{"FastForward", testFastForward},
		{"EmptyRootReplaced", testEmptyRootReplaced},
		{"Merge", testMerge},
		{"Revert", testRevert},
		{"Watch", testWatch},
		{"ConcurrentDistinctKeys", testConcurrentDistinctKeys},
		{"ConcurrentCounter", testConcurrentCounter},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, Rules())
			if s == nil {
				t.Fatal("Factory returned a nil store")
			}
			tc.fn(&harness{t: t, s: s, ctx: t.Context()})
		})
	}
}

// unknownHash names no commit or value in any store the suite makes.
const unknownHash = store.Hash("0123456789abcdef0123456789abcdef01234567")

// author signs the suite's commits.
var author = store.Signature{Name: "Storetest", Email: "storetest@example.org"}

// waitFor bounds every wait for a watch event, so a broken store fails instead of hanging.
const waitFor = 10 * time.Second

// harness is one subtest's store with helpers that fail the test informatively.
type harness struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
}

// run runs fn as a nested subtest on the same store.
func (h *harness) run(name string, fn func(h *harness)) {
	h.t.Run(name, func(t *testing.T) { fn(&harness{t: t, s: h.s, ctx: t.Context()}) })
}

func put(key, value string) store.Op { return store.Op{Key: key, Value: []byte(value)} }
func del(key string) store.Op        { return store.Op{Key: key, Delete: true} }

// try commits ops on branch with msg as the message.
func (h *harness) try(branch, msg string, ops ...store.Op) (store.Commit, error) {
	return h.s.Commit(h.ctx, store.Change{Branch: branch, Author: author, Message: msg, Ops: ops})
}

// commit is try that fails the test on error.
func (h *harness) commit(branch, msg string, ops ...store.Op) store.Commit {
	h.t.Helper()
	c, err := h.try(branch, msg, ops...)
	if err != nil {
		h.t.Fatalf("Commit %q on branch %q (%s): %v", msg, branch, describeOps(ops), err)
	}
	return c
}

// change commits c, filling in the author, and fails the test on error.
func (h *harness) change(c store.Change) store.Commit {
	h.t.Helper()
	if c.Author == (store.Signature{}) {
		c.Author = author
	}
	got, err := h.s.Commit(h.ctx, c)
	if err != nil {
		h.t.Fatalf("Commit %q on branch %q (parent %q, %s): %v", c.Message, c.Branch, c.Parent, describeOps(c.Ops), err)
	}
	return got
}

func describeOps(ops []store.Op) string {
	var parts []string
	for i, op := range ops {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… %d ops", len(ops)))
			break
		}
		switch {
		case op.Delete:
			parts = append(parts, "delete "+op.Key)
		case op.Copy != "":
			parts = append(parts, fmt.Sprintf("copy %s to %s", short(op.Copy), op.Key))
		default:
			parts = append(parts, fmt.Sprintf("put %s=%.20q", op.Key, op.Value))
		}
		if op.IfMatch != "" {
			parts[len(parts)-1] += " if-match " + short(op.IfMatch)
		}
	}
	return strings.Join(parts, ", ")
}

func short(h store.Hash) string {
	if h == store.Missing {
		return "Missing"
	}
	if len(h) > 8 {
		return string(h[:8])
	}
	return string(h)
}

// get returns key's value at rev and fails the test if it cannot.
func (h *harness) get(rev, key string) string {
	h.t.Helper()
	v, e, err := h.s.Get(h.ctx, rev, key)
	if err != nil {
		h.t.Fatalf("Get(%q, %q): %v", rev, key, err)
	}
	if e.Key != key || e.Version != store.BlobHash(v) || e.Size != int64(len(v)) {
		h.t.Errorf("Get(%q, %q) entry = %+v, want key %q, version %s (BlobHash of the value), size %d",
			rev, key, e, key, store.BlobHash(v), len(v))
	}
	return string(v)
}

// wantValue checks key's value at rev.
func (h *harness) wantValue(rev, key, want string) {
	h.t.Helper()
	if got := h.get(rev, key); got != want {
		h.t.Errorf("Get(%q, %q) = %q, want %q", rev, key, got, want)
	}
}

// wantMissing checks that Get and Stat of key at rev report ErrNotFound.
func (h *harness) wantMissing(rev, key string) {
	h.t.Helper()
	v, _, err := h.s.Get(h.ctx, rev, key)
	if !errors.Is(err, store.ErrNotFound) {
		h.t.Errorf("Get(%q, %q) = %q, %v; want ErrNotFound", rev, key, v, err)
	}
	if e, err := h.s.Stat(h.ctx, rev, key); !errors.Is(err, store.ErrNotFound) {
		h.t.Errorf("Stat(%q, %q) = %+v, %v; want ErrNotFound", rev, key, e, err)
	}
}

// state returns every key at rev below prefix with its value.
func (h *harness) state(rev, prefix string) map[string]string {
	h.t.Helper()
	es, err := h.s.List(h.ctx, rev, prefix)
	if err != nil {
		h.t.Fatalf("List(%q, %q): %v", rev, prefix, err)
	}
	m := make(map[string]string, len(es))
	for _, e := range es {
		m[e.Key] = h.get(rev, e.Key)
	}
	return m
}

// wantState checks that the keys at rev are exactly want.
func (h *harness) wantState(rev string, want map[string]string) {
	h.t.Helper()
	got := h.state(rev, "")
	if d := mapDiff(got, want); d != "" {
		h.t.Errorf("keys at %q differ from what was expected:\n%s", rev, d)
	}
}

func mapDiff(got, want map[string]string) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, fmt.Sprintf("  %s: missing, want %q", k, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("  %s: %q, want %q", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("  %s: %q, want absent", k, g))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// head returns the commit a branch points at.
func (h *harness) head(branch string) store.Hash {
	h.t.Helper()
	id, err := h.s.Resolve(h.ctx, branch)
	if err != nil {
		h.t.Fatalf("Resolve(%q): %v", branch, err)
	}
	return id
}

// wantHead checks the commit a branch points at.
func (h *harness) wantHead(branch string, want store.Hash, why string) {
	h.t.Helper()
	if got := h.head(branch); got != want {
		h.t.Errorf("%s: branch %q is at %s, want %s", why, branch, short(got), short(want))
	}
}

// log returns Log(rev, limit) and fails the test on error.
func (h *harness) log(rev string, limit int) []store.Commit {
	h.t.Helper()
	cs, err := h.s.Log(h.ctx, rev, limit)
	if err != nil {
		h.t.Fatalf("Log(%q, %d): %v", rev, limit, err)
	}
	return cs
}

// wantCommits checks that got lists exactly the commits in want, in order.
func (h *harness) wantCommits(what string, got, want []store.Commit) {
	h.t.Helper()
	if !slices.EqualFunc(got, want, func(a, b store.Commit) bool { return a.ID == b.ID }) {
		h.t.Errorf("%s = %s\nwant %s", what, describeCommits(got), describeCommits(want))
	}
}

// describeCommits names commits by message (the suite gives each a unique one) and id.
func describeCommits(cs []store.Commit) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%q(%s)", c.Message, short(c.ID))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// wantSameCommit checks that got describes the same commit as want, metadata included.
func (h *harness) wantSameCommit(what string, got, want store.Commit) {
	h.t.Helper()
	if got.ID != want.ID || !slices.Equal(got.Parents, want.Parents) || got.Author != want.Author ||
		got.Message != want.Message || !got.Time.Equal(want.Time) {
		h.t.Errorf("%s = %+v\nwant %+v", what, got, want)
	}
}

// wantErr checks that err matches target.
func (h *harness) wantErr(what string, err, target error) {
	h.t.Helper()
	if !errors.Is(err, target) {
		h.t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// wantTime checks a commit time: set, whole seconds, in UTC.
func (h *harness) wantTime(what string, tm time.Time) {
	h.t.Helper()
	if tm.IsZero() || !tm.Equal(tm.Truncate(time.Second)) || tm.Location() != time.UTC {
		h.t.Errorf("%s: time %v, want a non-zero UTC time with one-second precision", what, tm)
	}
}

// wantPrecondition checks that err is a *store.PreconditionError with the given fields
// that also matches store.ErrConflict.
func (h *harness) wantPrecondition(what string, err error, want store.PreconditionError) {
	h.t.Helper()
	var pe *store.PreconditionError
	if !errors.As(err, &pe) {
		h.t.Errorf("%s: error %v, want a *store.PreconditionError %+v", what, err, want)
		return
	}
	if *pe != want {
		h.t.Errorf("%s: %+v, want %+v", what, *pe, want)
	}
	if !errors.Is(err, store.ErrConflict) {
		h.t.Errorf("%s: errors.Is(%v, ErrConflict) is false", what, err)
	}
}
