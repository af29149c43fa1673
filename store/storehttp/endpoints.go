package storehttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-home/hearth/store"
)

// revParam returns the revision in query parameter name, writing 400 when it is malformed.
func (c *repoCtx) revParam(name string) (string, bool) {
	v := c.r.URL.Query().Get(name)
	if err := store.CheckRev(v); err != nil {
		c.fail(fmt.Errorf("storehttp: parameter %s: %w", name, err))
		return "", false
	}
	return v, true
}

// branchParam returns the branch in query parameter "branch" ("" allowed).
func (c *repoCtx) branchParam() (string, bool) {
	v := c.r.URL.Query().Get("branch")
	if v == "" {
		return "", true
	}
	if err := store.CheckBranch(v); err != nil {
		c.fail(fmt.Errorf("storehttp: parameter branch: %w", err))
		return "", false
	}
	return v, true
}

// limitParam returns the "limit" query parameter (absent: 0, all).
func (c *repoCtx) limitParam() (int, bool) {
	v := c.r.URL.Query().Get("limit")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.fail(fmt.Errorf("storehttp: parameter limit %q: %w", v, store.ErrInvalid))
		return 0, false
	}
	return n, true
}

// decode reads a JSON body of at most limit bytes into v, writing the error answer on failure.
func (c *repoCtx) decode(limit int64, v any) bool {
	if c.r.ContentLength > limit {
		c.fail(errBodyTooLarge)
		return false
	}
	if err := decodeJSON(http.MaxBytesReader(c.w, c.r.Body, limit), limit, v); err != nil {
		c.fail(err)
		return false
	}
	return true
}

func (c *repoCtx) listBranches() {
	answerList(c, func(s store.Store) ([]store.Branch, error) { return s.Branches(c.r.Context()) },
		func(bs []store.Branch) any { return branchesAnswer{Branches: bs} })
}

// answerList opens the repository, reads a list from it and answers it as the JSON that
// wrap makes of it (an empty list, never null).
func answerList[T any](c *repoCtx, read func(s store.Store) ([]T, error), wrap func([]T) any) {
	s, ok := c.open(false)
	if !ok {
		return
	}
	xs, err := read(s)
	if err != nil {
		c.fail(err)
		return
	}
	if xs == nil {
		xs = []T{}
	}
	writeJSON(c.w, http.StatusOK, wrap(xs))
}

func (c *repoCtx) createBranch() {
	var req branchRequest
	if !c.decode(maxSmallJSON, &req) {
		return
	}
	if err := store.CheckBranch(req.Name); err != nil {
		c.fail(err)
		return
	}
	if err := store.CheckRev(req.From); err != nil {
		c.fail(err)
		return
	}
	s, ok := c.open(false)
	if !ok {
		return
	}
	b, err := s.CreateBranch(c.r.Context(), req.Name, req.From)
	if err != nil {
		c.fail(err)
		return
	}
	writeJSON(c.w, http.StatusCreated, b)
}

func (c *repoCtx) deleteBranch() {
	s, ok := c.open(false)
	if !ok {
		return
	}
	if err := s.DeleteBranch(c.r.Context(), c.arg); err != nil {
		c.fail(err)
		return
	}
	c.w.WriteHeader(http.StatusNoContent)
}

func (c *repoCtx) fastForward() {
	var req fastForwardRequest
	if !c.decode(maxSmallJSON, &req) {
		return
	}
	if !store.IsHash(string(req.To)) {
		c.fail(fmt.Errorf("storehttp: fast-forward to %q: %w", req.To, store.ErrInvalid))
		return
	}
	s, ok := c.open(false)
	if !ok {
		return
	}
	if err := s.FastForward(c.r.Context(), c.arg, req.To); err != nil {
		c.fail(err)
		return
	}
	writeJSON(c.w, http.StatusOK, store.Branch{Name: c.arg, Head: req.To})
}

func (c *repoCtx) resolve() {
	rev, ok := c.revParam("rev")
	if !ok {
		return
	}
	s, ok := c.open(false)
	if !ok {
		return
	}
	id, err := s.Resolve(c.r.Context(), rev)
	if err != nil {
		c.fail(err)
		return
	}
	writeJSON(c.w, http.StatusOK, resolveAnswer{Commit: id})
}

// getKey answers GET and HEAD of a key: the value read at the commit the revision names.
func (c *repoCtx) getKey() {
	rev, ok := c.revParam("rev")
	if !ok {
		return
	}
	s, ok := c.open(false)
	if !ok {
		return
	}
	ctx := c.r.Context()
	id, err := s.Resolve(ctx, rev)
	if err != nil {
		c.fail(err)
		return
	}
	e, err := s.Stat(ctx, string(id), c.arg)
	if err != nil {
		c.fail(err)
		return
	}
	h := c.w.Header()
	h.Set("ETag", etag(e.Version))
	h.Set(headerCommit, string(id))
	if inm := c.r.Header.Get("If-None-Match"); inm != "" && noneMatch(inm, e.Version) {
		c.w.WriteHeader(http.StatusNotModified)
		return
	}
	var value []byte
	if c.r.Method != http.MethodHead {
		if value, e, err = s.Get(ctx, string(id), c.arg); err != nil {
			c.fail(err)
			return
		}
	}
	h.Set("Content-Type", contentValue)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.FormatInt(e.Size, 10))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(value)
}

// condition turns If-Match / If-None-Match into an Op's IfMatch ("" when absent).
// If-Match: * needs the key to exist: it becomes the key's current version on branch.
func (c *repoCtx) condition(s store.Store, branch string) (store.Hash, error) {
	im, inm := c.r.Header.Get("If-Match"), c.r.Header.Get("If-None-Match")
	switch {
	case im != "" && inm != "":
		return "", fmt.Errorf("storehttp: both If-Match and If-None-Match: %w", store.ErrInvalid)
	case inm != "":
		if strings.TrimSpace(inm) != "*" {
			return "", fmt.Errorf("storehttp: If-None-Match must be *: %w", store.ErrInvalid)
		}
		return store.Missing, nil
	case strings.TrimSpace(im) == "*":
		e, err := s.Stat(c.r.Context(), branch, c.arg)
		if errors.Is(err, store.ErrNotFound) {
			b := branch
			if b == "" {
				b = store.DefaultBranch
			}
			return "", &store.PreconditionError{Branch: b, Key: c.arg, Have: store.Missing}
		}
		return e.Version, err
	case im != "":
		v, ok := parseETag(im)
		if !ok {
			return "", fmt.Errorf("storehttp: If-Match %q: want one strong entity tag: %w", im, store.ErrInvalid)
		}
		return v, nil
	}
	return "", nil
}

// message returns the X-Hearth-Message header or def.
func (c *repoCtx) message(def string) string {
	if m := c.r.Header.Get(headerMessage); m != "" {
		return m
	}
	return def
}

// putKey stores the request body as a key's value in one commit.
func (c *repoCtx) putKey() {
	branch, ok := c.branchParam()
	if !ok {
		return
	}
	if c.r.ContentLength > c.h.maxBody {
		c.fail(errBodyTooLarge)
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.h.maxBody))
	if err != nil {
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			err = errBodyTooLarge
		}
		c.fail(err)
		return
	}
	change := store.Change{
		Branch:  branch,
		Author:  c.author(),
		Message: c.message("put " + c.arg),
		Ops:     []store.Op{{Key: c.arg, Value: value}},
	}
	if err := store.CheckChange(&change, c.h.maxBody); err != nil {
		c.fail(err)
		return
	}
	s, ok := c.open(true)
	if !ok {
		return
	}
	if change.Ops[0].IfMatch, err = c.condition(s, branch); err != nil {
		c.fail(err)
		return
	}
	created := change.Ops[0].IfMatch == store.Missing
	if !created && change.Ops[0].IfMatch == "" {
		_, err := s.Stat(c.r.Context(), branch, c.arg)
		created = errors.Is(err, store.ErrNotFound)
	}
	commit, err := s.Commit(c.r.Context(), change)
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Header().Set("ETag", etag(store.BlobHash(value)))
	c.w.Header().Set(headerCommit, string(commit.ID))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(c.w, status, commit)
}

// deleteKey deletes a key in one commit.
func (c *repoCtx) deleteKey() {
	branch, ok := c.branchParam()
	if !ok {
		return
	}
	change := store.Change{
		Branch:  branch,
		Author:  c.author(),
		Message: c.message("delete " + c.arg),
		Ops:     []store.Op{{Key: c.arg, Delete: true}},
	}
	if err := store.CheckChange(&change, 0); err != nil {
		c.fail(err)
		return
	}
	c.commitWith(true, func(s store.Store) (store.Commit, error) {
		var err error
		if change.Ops[0].IfMatch, err = c.condition(s, branch); err != nil {
			return store.Commit{}, err
		}
		return s.Commit(c.r.Context(), change)
	})
}

func (c *repoCtx) list() {
	rev, ok := c.revParam("rev")
	if !ok {
		return
	}
	answerList(c, func(s store.Store) ([]store.Entry, error) { return s.List(c.r.Context(), rev, c.arg) },
		func(es []store.Entry) any { return entriesAnswer{Entries: es} })
}

// commit applies a store.Change from the body, authored by the user.
func (c *repoCtx) commit() {
	var change store.Change
	if !c.decode(c.h.maxChange, &change) {
		return
	}
	change.Author = c.authorFor(change.Author)
	if err := store.CheckChange(&change, c.h.maxBody); err != nil {
		c.fail(err)
		return
	}
	c.commitWith(true, func(s store.Store) (store.Commit, error) { return s.Commit(c.r.Context(), change) })
}

func (c *repoCtx) log() {
	rev, ok := c.revParam("rev")
	if !ok {
		return
	}
	limit, ok := c.limitParam()
	if !ok {
		return
	}
	answerList(c, func(s store.Store) ([]store.Commit, error) { return s.Log(c.r.Context(), rev, limit) }, commitsJSON)
}

func (c *repoCtx) history() {
	rev, ok := c.revParam("rev")
	if !ok {
		return
	}
	limit, ok := c.limitParam()
	if !ok {
		return
	}
	answerList(c, func(s store.Store) ([]store.Commit, error) { return s.History(c.r.Context(), rev, c.arg, limit) }, commitsJSON)
}

func commitsJSON(cs []store.Commit) any { return commitsAnswer{Commits: cs} }

func (c *repoCtx) diff() {
	from, ok := c.revParam("from")
	if !ok {
		return
	}
	to, ok := c.revParam("to")
	if !ok {
		return
	}
	prefix := c.r.URL.Query().Get("prefix")
	if err := store.CheckPrefix(prefix); err != nil {
		c.fail(err)
		return
	}
	answerList(c, func(s store.Store) ([]store.Diff, error) { return s.Diff(c.r.Context(), from, to, prefix) },
		func(ds []store.Diff) any { return diffsAnswer{Diffs: ds} })
}

// merge merges branches; the merge commit is authored by the user.
func (c *repoCtx) merge() {
	var req store.MergeRequest
	if c.decode(maxSmallJSON, &req) {
		req.Author = c.authorFor(req.Author)
		c.commitWith(false, func(s store.Store) (store.Commit, error) { return s.Merge(c.r.Context(), req) })
	}
}

// revert restores a prefix; the commit is authored by the user.
func (c *repoCtx) revert() {
	var req store.RevertRequest
	if c.decode(maxSmallJSON, &req) {
		req.Author = c.authorFor(req.Author)
		req.Rules = c.h.revert
		c.commitWith(false, func(s store.Store) (store.Commit, error) { return s.Revert(c.r.Context(), req) })
	}
}

// commitWith runs a write on the repository (created first if create and missing) and
// answers with its commit.
func (c *repoCtx) commitWith(create bool, write func(store.Store) (store.Commit, error)) {
	s, ok := c.open(create)
	if !ok {
		return
	}
	commit, err := write(s)
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Header().Set(headerCommit, string(commit.ID))
	writeJSON(c.w, http.StatusOK, commit)
}

// watch streams the store's events as server-sent events until the client goes away or
// the store's channel closes.
func (c *repoCtx) watch() {
	branch, ok := c.branchParam()
	if !ok {
		return
	}
	prefix := c.r.URL.Query().Get("prefix")
	if err := store.CheckPrefix(prefix); err != nil {
		c.fail(err)
		return
	}
	s, ok := c.open(false)
	if !ok {
		return
	}
	ctx := c.r.Context()
	events, err := s.Watch(ctx, branch, prefix)
	if err != nil {
		c.fail(err)
		return
	}
	rc := http.NewResponseController(c.w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives any write timeout
	h := c.w.Header()
	h.Set("Content-Type", contentEvents)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(c.h.keepAlive)
	defer tick.Stop()
	for {
		var chunk []byte
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			b, err := marshalLine(ev)
			if err != nil {
				c.h.log.ErrorContext(ctx, "storehttp: watch: encode event", "repo", c.name, "err", err)
				return
			}
			chunk = append(append([]byte("data: "), b...), "\n\n"...)
		case <-tick.C:
			chunk = []byte(": keep-alive\n\n")
		}
		if _, err := c.w.Write(chunk); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}
