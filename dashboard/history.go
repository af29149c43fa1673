package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hearth-home/hearth/store"
)

// Limits of the data views.
const (
	maxSets       = 1000      // data sets listed per service
	maxItemsShown = 200       // changed items shown in a commit view
	maxShowBytes  = 256 << 10 // bytes of one value shown or diffed
	itemsInList   = 3         // items named per commit in a history list
	maxRestoreTry = 5         // compare-and-swap attempts of a mail restore
)

// service is one kind of user data the dashboard shows.
type service struct {
	Name  string // "mail", "contacts", "calendar": also the repository's name
	Title string // "Mail folders"
	Item  string // "message", "contact", "event"
}

var services = []service{
	{"mail", "Mail folders", "message"},
	{"contacts", "Address books", "contact"},
	{"calendar", "Calendars", "event"},
}

func serviceNamed(name string) (service, bool) {
	for _, s := range services {
		if s.Name == name {
			return s, true
		}
	}
	return service{}, false
}

// dataSet is one mail folder, address book or calendar.
type dataSet struct {
	ID      string // mailbox id or collection name
	Name    string // what the user calls it
	Deleted bool   // it is gone: found in recent history only
}

// deletedScan bounds the commits the data page looks through for deleted sets.
const deletedScan = 500

// prefix is the key prefix whose changes are the set's history: a mailbox's index (every
// append, expunge and flag change rewrites it), a collection's objects.
func (s service) prefix(set string) string {
	if s.Name == "mail" {
		return "index/" + set
	}
	return "objects/" + set
}

// itemPrefix is where the set's items live.
func (s service) itemPrefix(set string) string {
	if s.Name == "mail" {
		return "msg/" + set
	}
	return "objects/" + set
}

// validSet reports whether set is a well-formed mailbox id or collection name.
func (s service) validSet(set string) bool {
	if set == "" || len(set) > store.MaxSegmentLen || strings.ContainsAny(set, "/\\\x00") || set == "." || set == ".." {
		return false
	}
	if s.Name == "mail" {
		if len(set) > 32 {
			return false
		}
		for i := 0; i < len(set); i++ {
			if c := set[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return store.CheckKey("objects/"+set) == nil
}

// openData opens user's repository of service s for reading; (nil, nil) if it does not exist.
func (h *Handler) openData(ctx context.Context, user string, s service) (store.Store, error) {
	st, err := h.opts.Repos.Open(ctx, user+"/"+s.Name, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return st, err
}

// sets lists the data sets of service s in st at head.
func (h *Handler) sets(ctx context.Context, st store.Store, s service) ([]dataSet, error) {
	prefix := "collections"
	if s.Name == "mail" {
		prefix = "meta"
	}
	entries, err := st.List(ctx, "", prefix)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(entries) > maxSets {
		entries = entries[:maxSets]
	}
	var out []dataSet
	for _, e := range entries {
		id := strings.TrimPrefix(e.Key, prefix+"/")
		if s.Name != "mail" {
			var ok bool
			if id, ok = strings.CutSuffix(id, ".json"); !ok {
				continue
			}
		}
		name := setName(ctx, st, "", e.Key, id)
		out = append(out, dataSet{ID: id, Name: name})
	}
	slices.SortFunc(out, func(a, b dataSet) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// setPrefix is where the sets' metadata lives: meta/ID or collections/NAME.json.
func (s service) setPrefix() string {
	if s.Name == "mail" {
		return "meta"
	}
	return "collections"
}

// setName reads what the user calls a set from its metadata at rev.
func setName(ctx context.Context, st store.Store, rev, key, id string) string {
	b, _, err := st.Get(ctx, rev, key)
	if err != nil || len(b) > 64<<10 {
		return id
	}
	var m struct {
		Name        string `json:"name"`
		DisplayName string `json:"displayname"`
	}
	if json.Unmarshal(b, &m) != nil {
		return id
	}
	if m.Name != "" {
		return m.Name
	}
	if m.DisplayName != "" {
		return m.DisplayName + " (" + id + ")"
	}
	return id
}

// deletedSets lists the sets deleted in the last deletedScan commits that do not exist
// now, newest deletion first, so their history (and what they held) stays reachable.
func (h *Handler) deletedSets(ctx context.Context, st store.Store, s service, live []dataSet) ([]dataSet, error) {
	commits, err := st.Log(ctx, "", deletedScan)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, d := range live {
		seen[d.ID] = true
	}
	var out []dataSet
	for _, c := range commits {
		parent := firstParent(c)
		if parent == "" {
			continue
		}
		diffs, err := st.Diff(ctx, parent, string(c.ID), s.setPrefix())
		if err != nil {
			return nil, err
		}
		for _, d := range diffs {
			if d.Kind != store.Deleted {
				continue
			}
			id := strings.TrimSuffix(strings.TrimPrefix(d.Key, s.setPrefix()+"/"), ".json")
			if seen[id] || !s.validSet(id) {
				continue
			}
			seen[id] = true
			out = append(out, dataSet{ID: id, Name: setName(ctx, st, parent, d.Key, id), Deleted: true})
			if len(out) == maxSets {
				return out, nil
			}
		}
	}
	return out, nil
}

// dataSetsData is the data template's content.
type dataSetsData struct {
	Services []serviceSets
}

type serviceSets struct {
	Service service
	Sets    []dataSet
	Deleted []dataSet
	Error   string
}

func (h *Handler) dataSets(w http.ResponseWriter, r request) {
	var d dataSetsData
	for _, s := range services {
		ss := serviceSets{Service: s}
		st, err := h.openData(r.Context(), r.sess.user, s)
		if err == nil && st != nil {
			ss.Sets, err = h.sets(r.Context(), st, s)
			if err == nil {
				ss.Deleted, err = h.deletedSets(r.Context(), st, s, ss.Sets)
			}
		}
		if err != nil {
			ss.Error = err.Error()
		}
		d.Services = append(d.Services, ss)
	}
	h.render(w, r.Request, r.sess, http.StatusOK, "data", "Your data", d)
}

// itemChange is one item a commit changed.
type itemChange struct {
	Key        string
	Kind       store.DiffKind
	Name       string // a summary: subject, FN, SUMMARY ("" if unknown)
	Restorable bool
	// For the commit view:
	Lines []diffLine
	Note  string
}

// historyEntry is one commit in a set's history.
type historyEntry struct {
	ID      string
	Short   string
	Time    string
	Author  string
	Message string
	Added   int
	Changed int
	Deleted int
	Items   []itemChange
	More    int
}

// historyData is the history template's content.
type historyData struct {
	Service service
	Set     dataSet
	Entries []historyEntry
	Older   string // where the next page starts ("" at the end)
	Skip    bool   // the next page starts after Older, not at it
	Scanned int
}

func (h *Handler) setOf(w http.ResponseWriter, r request) (service, dataSet, store.Store, bool) {
	s, ok := serviceNamed(r.PathValue("service"))
	set := r.PathValue("set")
	if !ok || !s.validSet(set) {
		h.fail(w, r.Request, r.sess, http.StatusNotFound, "No such data set.")
		return s, dataSet{}, nil, false
	}
	st, err := h.openData(r.Context(), r.sess.user, s)
	if err != nil {
		h.internal(w, r.Request, r.sess, "open "+s.Name, err)
		return s, dataSet{}, nil, false
	}
	if st == nil {
		h.fail(w, r.Request, r.sess, http.StatusNotFound, "No such data set.")
		return s, dataSet{}, nil, false
	}
	ds := dataSet{ID: set, Name: set}
	if sets, err := h.sets(r.Context(), st, s); err == nil {
		for _, x := range sets {
			if x.ID == set {
				ds = x
			}
		}
	}
	return s, ds, st, true
}

// history lists, newest first, the commits that changed a data set: one page of
// HistoryPageSize, looking through at most HistoryScan commits from the cursor "before".
func (h *Handler) history(w http.ResponseWriter, r request) {
	s, ds, st, ok := h.setOf(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	start := q.Get("from")
	if start != "" && !isHash(start) {
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, "Bad page cursor.")
		return
	}
	d, err := h.historyPage(r.Context(), st, s, ds, start, start != "" && q.Get("skip") == "1")
	if err != nil {
		h.internal(w, r.Request, r.sess, "read history", err)
		return
	}
	h.render(w, r.Request, r.sess, http.StatusOK, "history", ds.Name+" history", d)
}

// historyPage builds one page of a set's history from start ("" is the head; skip: from
// the commit after start).
func (h *Handler) historyPage(ctx context.Context, st store.Store, s service, ds dataSet, start string, skip bool) (historyData, error) {
	d := historyData{Service: s, Set: ds}
	rev, skipFirst, batch := start, skip, 64
	for d.Scanned < HistoryScan && len(d.Entries) < HistoryPageSize {
		want := min(batch, HistoryScan-d.Scanned) + boolInt(skipFirst)
		commits, err := st.Log(ctx, rev, want)
		if errors.Is(err, store.ErrNotFound) && rev == "" {
			return d, nil // an empty repository
		}
		if err != nil {
			return d, err
		}
		last := len(commits) < want // reached the first commit
		if skipFirst && len(commits) > 0 {
			commits = commits[1:]
		}
		for _, c := range commits {
			d.Scanned++
			e, touched, err := h.entryOf(ctx, st, s, ds.ID, c)
			if err != nil {
				return d, err
			}
			if touched {
				if len(d.Entries) == HistoryPageSize {
					d.Older = string(c.ID)
					return d, nil
				}
				d.Entries = append(d.Entries, e)
			}
			rev, skipFirst = string(c.ID), true
		}
		if last || len(commits) == 0 {
			return d, nil
		}
		batch *= 4
	}
	if rev != "" { // the page is full or the scan limit reached
		d.Older, d.Skip = rev, true // the last commit looked at: go on after it
	}
	return d, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// firstParent is the revision a commit is compared with ("" for a root: the empty tree).
func firstParent(c store.Commit) string {
	if len(c.Parents) == 0 {
		return ""
	}
	return string(c.Parents[0])
}

// entryOf describes commit c's changes to set, and whether it changed it at all.
func (h *Handler) entryOf(ctx context.Context, st store.Store, s service, set string, c store.Commit) (historyEntry, bool, error) {
	parent := firstParent(c)
	diffs, err := st.Diff(ctx, parent, string(c.ID), s.prefix(set))
	if err != nil || len(diffs) == 0 {
		return historyEntry{}, false, err
	}
	if s.Name == "mail" {
		idx := len(diffs)
		if diffs, err = st.Diff(ctx, parent, string(c.ID), s.itemPrefix(set)); err != nil {
			return historyEntry{}, false, err
		}
		if len(diffs) == 0 { // only flags changed
			e := newEntry(c)
			e.Changed = idx
			e.Items = []itemChange{{Kind: store.Modified, Name: "flags changed"}}
			return e, true, nil
		}
	}
	e := newEntry(c)
	for _, df := range diffs {
		switch df.Kind {
		case store.Added:
			e.Added++
		case store.Modified:
			e.Changed++
		case store.Deleted:
			e.Deleted++
		}
		if len(e.Items) < itemsInList {
			it := itemChange{Key: df.Key, Kind: df.Kind, Restorable: df.Kind == store.Deleted}
			rev := string(c.ID)
			if df.Kind == store.Deleted {
				rev = parent
			}
			it.Name = describe(ctx, st, s, rev, df.Key)
			e.Items = append(e.Items, it)
		} else {
			e.More++
		}
	}
	return e, true, nil
}

func newEntry(c store.Commit) historyEntry {
	return historyEntry{
		ID: string(c.ID), Short: string(c.ID)[:min(10, len(c.ID))],
		Time:   c.Time.Local().Format("2006-01-02 15:04:05"),
		Author: c.Author.Name, Message: firstLine(c.Message),
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return clip(s, 200)
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// describe returns a one-line summary of an item's value at rev: a message's subject and
// sender, a contact's FN, an event's SUMMARY; else its name.
func describe(ctx context.Context, st store.Store, s service, rev, key string) string {
	b, _, err := st.Get(ctx, rev, key)
	if err != nil {
		return path.Base(key)
	}
	return summarize(s, b, path.Base(key))
}

// summarize picks the summary fields out of a value's (unfolded) header lines.
func summarize(s service, b []byte, fallback string) string {
	if len(b) > maxShowBytes {
		b = b[:maxShowBytes]
	}
	var fields []string
	switch s.Name {
	case "mail":
		fields = []string{"subject", "from"}
	case "contacts":
		fields = []string{"fn"}
	default:
		fields = []string{"summary"}
	}
	found := map[string]string{}
	for _, line := range unfold(b) {
		if s.Name == "mail" && line == "" {
			break // end of the header
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(name)
		if i := strings.IndexByte(name, ';'); i >= 0 && s.Name != "mail" {
			name = name[:i] // vCard/iCalendar parameters
		}
		if slices.Contains(fields, name) && found[name] == "" {
			found[name] = strings.TrimSpace(value)
		}
	}
	var parts []string
	for _, f := range fields {
		if v := found[f]; v != "" {
			v = clip(v, 120)
			if f == "from" {
				v = "from " + v
			}
			parts = append(parts, v)
		}
	}
	if len(parts) == 0 {
		return fallback
	}
	return strings.Join(parts, ", ")
}

// unfold splits text into lines, joining continuation lines (starting with a space or tab).
func unfold(b []byte) []string {
	var out []string
	for _, raw := range bytes.Split(b, []byte{'\n'}) {
		line := strings.TrimSuffix(string(raw), "\r")
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(out) > 0 && out[len(out)-1] != "" {
			out[len(out)-1] += " " + strings.TrimLeft(line, " \t")
			continue
		}
		out = append(out, line)
	}
	return out
}

func isHash(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// commitData is the commit template's content.
type commitData struct {
	Service service
	Set     dataSet
	Entry   historyEntry
	Items   []itemChange
	More    int
}

// commitView shows what one commit changed in a set, with line diffs and restore buttons.
func (h *Handler) commitView(w http.ResponseWriter, r request) {
	s, ds, st, ok := h.setOf(w, r)
	if !ok {
		return
	}
	id := r.PathValue("commit")
	if !isHash(id) {
		h.fail(w, r.Request, r.sess, http.StatusNotFound, "No such commit.")
		return
	}
	cs, err := st.Log(r.Context(), id, 1)
	if err != nil || len(cs) == 0 {
		h.fail(w, r.Request, r.sess, http.StatusNotFound, "No such commit.")
		return
	}
	c := cs[0]
	parent := firstParent(c)
	d := commitData{Service: s, Set: ds, Entry: newEntry(c)}
	diffs, err := st.Diff(r.Context(), parent, id, s.itemPrefix(ds.ID))
	if err != nil {
		h.internal(w, r.Request, r.sess, "diff", err)
		return
	}
	for i, df := range diffs {
		if i == maxItemsShown {
			d.More = len(diffs) - i
			break
		}
		it := itemChange{Key: df.Key, Kind: df.Kind, Restorable: df.Kind == store.Deleted}
		var old, cur []byte
		if df.Kind != store.Added {
			old, _, _ = st.Get(r.Context(), parent, df.Key)
		}
		if df.Kind != store.Deleted {
			cur, _, _ = st.Get(r.Context(), id, df.Key)
		}
		if df.Kind == store.Deleted {
			it.Name = summarize(s, old, path.Base(df.Key))
		} else {
			it.Name = summarize(s, cur, path.Base(df.Key))
		}
		if len(old) > maxShowBytes || len(cur) > maxShowBytes {
			it.Note = "too large to show"
		} else {
			it.Lines = lineDiff(string(old), string(cur))
		}
		d.Items = append(d.Items, it)
	}
	if s.Name == "mail" && len(diffs) == 0 {
		d.Items = append(d.Items, itemChange{Kind: store.Modified, Name: "flags changed", Note: "only the mailbox's index changed (flags)"})
	}
	h.render(w, r.Request, r.sess, http.StatusOK, "commit", "Commit "+d.Entry.Short, d)
}

// ErrNotDeleted: restore was asked for an item that the commit did not delete.
var ErrNotDeleted = errors.New("dashboard: the item was not deleted in that commit")

// ErrExists: the item to restore is there already (or, for a contact or event, another
// one now has its UID).
var ErrExists = errors.New("dashboard: already there")

// restore brings back an item deleted in a commit.
func (h *Handler) restore(w http.ResponseWriter, r request) {
	f := r.PostForm
	s, ok := serviceNamed(f.Get("service"))
	set, commit, key := f.Get("set"), f.Get("commit"), f.Get("key")
	if !ok || !s.validSet(set) || !isHash(commit) || store.CheckKey(key) != nil || !strings.HasPrefix(key, s.itemPrefix(set)+"/") {
		h.fail(w, r.Request, r.sess, http.StatusBadRequest, "Bad restore request.")
		return
	}
	st, err := h.openData(r.Context(), r.sess.user, s)
	if err != nil || st == nil {
		h.fail(w, r.Request, r.sess, http.StatusNotFound, "No such data set.")
		return
	}
	sig := store.Signature{Name: r.sess.user, Email: r.sess.user + "@hearth.invalid"}
	var what string
	if s.Name == "mail" {
		what, err = RestoreMessage(r.Context(), st, set, key, store.Hash(commit), sig)
	} else {
		what, err = RestoreObject(r.Context(), st, set, key, store.Hash(commit), sig)
	}
	back := "/history/" + s.Name + "/" + set + "/" + commit
	switch {
	case errors.Is(err, ErrNotDeleted), errors.Is(err, ErrExists), errors.Is(err, store.ErrNotFound):
		h.met.restores.WithLabelValues(s.Name, "refused").Inc()
		h.fail(w, r.Request, r.sess, http.StatusConflict, err.Error())
		return
	case err != nil:
		h.met.restores.WithLabelValues(s.Name, "error").Inc()
		h.internal(w, r.Request, r.sess, "restore", err)
		return
	}
	h.met.restores.WithLabelValues(s.Name, "ok").Inc()
	h.logger.Info("dashboard: restored", "user", r.sess.user, "repo", s.Name, "key", key, "from", commit)
	h.redirect(w, r, back, "Restored "+s.Item+" "+what+".")
}

// deletedIn checks that commit deleted key and returns the commit's parent and the
// key's version before.
func deletedIn(ctx context.Context, st store.Store, key string, commit store.Hash) (string, store.Hash, error) {
	cs, err := st.Log(ctx, string(commit), 1)
	if err != nil {
		return "", "", err
	}
	if len(cs) == 0 {
		return "", "", fmt.Errorf("commit %s: %w", commit, store.ErrNotFound)
	}
	parent := firstParent(cs[0])
	if parent == "" {
		return "", "", ErrNotDeleted
	}
	diffs, err := st.Diff(ctx, parent, string(commit), key)
	if err != nil {
		return "", "", err
	}
	if len(diffs) != 1 || diffs[0].Key != key || diffs[0].Kind != store.Deleted {
		return "", "", ErrNotDeleted
	}
	return parent, diffs[0].Old, nil
}

// RestoreObject brings back a contact or event (storedav layout, key
// objects/COLL/RESOURCE) that commit deleted: its bytes under the same resource name, its
// UID index entry, and its collection's metadata if the collection is gone too, in one
// commit that fails if any of them exists now. It returns the item's summary.
func RestoreObject(ctx context.Context, st store.Store, coll, key string, commit store.Hash, author store.Signature) (string, error) {
	parent, old, err := deletedIn(ctx, st, key, commit)
	if err != nil {
		return "", fmt.Errorf("dashboard: restore %s: %w", key, err)
	}
	res := strings.TrimPrefix(key, "objects/"+coll+"/")
	ops := []store.Op{{Key: key, Copy: old, IfMatch: store.Missing}}
	// The UID index entries that pointed at the resource and went in the same commit.
	diffs, err := st.Diff(ctx, parent, string(commit), "uids/"+coll)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("dashboard: restore %s: %w", key, err)
	}
	for _, d := range diffs {
		if d.Kind != store.Deleted {
			continue
		}
		if b, _, err := st.Get(ctx, parent, d.Key); err == nil && string(b) == res {
			ops = append(ops, store.Op{Key: d.Key, Copy: d.Old, IfMatch: store.Missing})
		}
	}
	metaKey := "collections/" + coll + ".json"
	if _, err := st.Stat(ctx, "", metaKey); errors.Is(err, store.ErrNotFound) {
		e, err := st.Stat(ctx, parent, metaKey)
		if err != nil {
			return "", fmt.Errorf("dashboard: restore %s: collection %s: %w", key, coll, err)
		}
		ops = append(ops, store.Op{Key: metaKey, Copy: e.Version, IfMatch: store.Missing})
	}
	name := describe(ctx, st, service{Name: "contacts"}, parent, key)
	if strings.HasSuffix(res, ".ics") {
		name = describe(ctx, st, service{Name: "calendar"}, parent, key)
	}
	_, err = st.Commit(ctx, store.Change{Author: author, Message: "restore " + key + " deleted in " + string(commit)[:10], Ops: ops})
	if errors.Is(err, store.ErrConflict) {
		return "", fmt.Errorf("dashboard: restore %s: %w (it, or another item with its UID, exists now)", key, ErrExists)
	}
	if err != nil {
		return "", fmt.Errorf("dashboard: restore %s: %w", key, err)
	}
	return name, nil
}

// RestoreMessage brings back a message (mail layout, key msg/MAILBOX/SHARD/UID) that
// commit deleted, into the same mailbox with a new UID: the message's bytes are copied
// (not stored again), its index line (flags but \Deleted, internal date) appended to the
// index chunk of the new UID and the mailbox's UIDNEXT advanced, in one commit on the
// head it read (retried if another writer got there first). ErrExists if the mailbox
// holds that message now; ErrNotFound if the mailbox is gone. It returns the summary.
func RestoreMessage(ctx context.Context, st store.Store, mailbox, key string, commit store.Hash, author store.Signature) (string, error) {
	parent, old, err := deletedIn(ctx, st, key, commit)
	if err != nil {
		return "", fmt.Errorf("dashboard: restore %s: %w", key, err)
	}
	oldUID, err := strconv.ParseUint(path.Base(key), 10, 32)
	if err != nil || oldUID == 0 {
		return "", fmt.Errorf("dashboard: restore %s: %w", key, ErrNotDeleted)
	}
	// The message's index line before the deletion: its flags and internal date.
	line := ""
	if b, err := lastVersion(ctx, st, parent, "index/"+mailbox+"/"+strconv.FormatUint(oldUID/256, 10)); err == nil {
		prefix := strconv.FormatUint(oldUID, 10) + " "
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, prefix) {
				line = l
				break
			}
		}
	}
	size, date, flags := int64(-1), "", []string(nil)
	if f := strings.Split(line, " "); len(f) >= 4 && f[1] == string(old) {
		if n, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			size = n
		}
		if _, err := time.Parse(time.RFC3339, f[3]); err == nil {
			date = f[3]
		}
		for _, fl := range f[4:] {
			if !strings.EqualFold(fl, `\Deleted`) && !strings.EqualFold(fl, `\Recent`) {
				flags = append(flags, fl)
			}
		}
	}
	if size < 0 {
		e, err := st.Stat(ctx, parent, key)
		if err != nil {
			return "", fmt.Errorf("dashboard: restore %s: %w", key, err)
		}
		size = e.Size
	}
	if date == "" {
		date = time.Now().Format(time.RFC3339)
	}
	name := describe(ctx, st, service{Name: "mail"}, parent, key)
	for try := 0; ; try++ {
		err := restoreMessageOnce(ctx, st, parent, mailbox, old, size, date, flags, author, "restore "+key+" deleted in "+string(commit)[:10])
		if !errors.Is(err, store.ErrConflict) || errors.Is(err, ErrExists) || try == maxRestoreTry {
			if err != nil {
				return "", fmt.Errorf("dashboard: restore %s: %w", key, err)
			}
			return name, nil
		}
	}
}

func restoreMessageOnce(ctx context.Context, st store.Store, parent, mailbox string, version store.Hash, size int64, date string, flags []string, author store.Signature, msg string) error {
	head, err := st.Resolve(ctx, "")
	if err != nil {
		return err
	}
	metaKey := "meta/" + mailbox
	metaJSON, metaEntry, err := st.Get(ctx, string(head), metaKey)
	if errors.Is(err, store.ErrNotFound) {
		// The mailbox was deleted too: it comes back as it was before the message's
		// deletion (same id, name and UIDVALIDITY), unless another mailbox has taken
		// its name since.
		metaJSON, err = recreatedMailbox(ctx, st, string(head), parent, mailbox)
		metaEntry = store.Entry{Version: store.Missing}
	}
	if err != nil {
		return err
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(metaJSON, &meta); err != nil {
		return fmt.Errorf("mailbox meta: %w", err)
	}
	var next uint64
	if err := json.Unmarshal(meta["uidNext"], &next); err != nil || next == 0 || next >= 1<<32-1 {
		return fmt.Errorf("mailbox meta: bad uidNext %s", meta["uidNext"])
	}
	// Is the message in the mailbox now (restored before, or copied back)?
	chunks, err := st.List(ctx, string(head), "index/"+mailbox)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	for _, c := range chunks {
		b, _, err := st.Get(ctx, string(head), c.Key)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(" "+string(version)+" ")) {
			return ErrExists
		}
	}
	uid := next
	next++
	meta["uidNext"] = json.RawMessage(strconv.FormatUint(next, 10))
	newMeta, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	chunkKey := "index/" + mailbox + "/" + strconv.FormatUint(uid/256, 10)
	chunk, chunkEntry, err := st.Get(ctx, string(head), chunkKey)
	chunkMatch := chunkEntry.Version
	switch {
	case errors.Is(err, store.ErrNotFound):
		chunk, chunkMatch = []byte("hearth-mail-index 1\n"), store.Missing
	case err != nil:
		return err
	}
	line := strconv.FormatUint(uid, 10) + " " + string(version) + " " + strconv.FormatInt(size, 10) + " " + date
	for _, f := range flags {
		line += " " + f
	}
	chunk = append(slices.Clip(chunk), line+"\n"...)
	msgKey := "msg/" + mailbox + "/" + strconv.FormatUint(uid/256, 10) + "/" + strconv.FormatUint(uid, 10)
	_, err = st.Commit(ctx, store.Change{
		Parent: head, Author: author, Message: msg,
		Ops: []store.Op{
			{Key: metaKey, Value: append(newMeta, '\n'), IfMatch: metaEntry.Version},
			{Key: chunkKey, Value: chunk, IfMatch: chunkMatch},
			{Key: msgKey, Copy: version, IfMatch: store.Missing},
		},
	})
	return err
}

// recreatedMailbox returns the last metadata of mailbox at rev or before, for restoring
// a mailbox deleted since: store.ErrNotFound if there is none, ErrExists if a mailbox at
// head has its name now.
func recreatedMailbox(ctx context.Context, st store.Store, head, rev, mailbox string) ([]byte, error) {
	old, err := lastVersion(ctx, st, rev, "meta/"+mailbox)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("the mailbox is gone: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var was struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(old, &was); err != nil || was.Name == "" {
		return nil, fmt.Errorf("mailbox meta at %s: no name", rev)
	}
	metas, err := st.List(ctx, head, "meta")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	for _, m := range metas {
		b, _, err := st.Get(ctx, head, m.Key)
		if err != nil {
			return nil, err
		}
		var now struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(b, &now) == nil && now.Name == was.Name {
			return nil, fmt.Errorf("a mailbox named %q exists now (restore the message from there): %w", was.Name, ErrExists)
		}
	}
	return old, nil
}

// lastVersion returns key's value at rev or, when it was deleted by then, its last value
// before: the mail service deletes a mailbox's metadata and index before its messages.
func lastVersion(ctx context.Context, st store.Store, rev, key string) ([]byte, error) {
	v, _, err := st.Get(ctx, rev, key)
	if !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	changes, herr := st.History(ctx, rev, key, 4)
	if herr != nil {
		return nil, herr
	}
	for _, c := range changes {
		if v, _, err = st.Get(ctx, string(c.ID), key); err == nil {
			return v, nil
		}
	}
	return nil, err
}
