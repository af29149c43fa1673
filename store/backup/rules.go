package backup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-home/hearth/store"
)

// mailIndexHeader is the first line of a mail index chunk (see package mail's doc).
const mailIndexHeader = "hearth-mail-index 1"

// MergeRules are the rules replica pulls merge with, chosen by key pattern so that one set
// serves every layout:
//
//   - mail index chunks (index/ID/N): merged per UID. A message only one side has stays
//     (a delivery on one side), one that a side expunged goes (expunge wins over a flag
//     change on the other side), flags are merged as sets (a flag either side added is
//     kept, one either side removed goes). The same UID holding different messages on the
//     two sides (both sides delivered into the same mailbox since they last synced, each
//     allocating the next UID) is a conflict here; UnionLines would instead keep two lines
//     for one UID and break the chunk's order.
//   - mail message blobs (msg/ID/S/UID): both sides writing one key is that same UID
//     collision, so it is a conflict, never a silent loss of one message. A replica sync
//     resolves it before merging again: it moves its own new messages to fresh UIDs above
//     both sides' uidNext (see Runner.SyncRepo), so both messages survive.
//   - mail mailbox meta (meta/ID): the newer side's JSON, with uidNext the larger of both.
//   - mail subscriptions: a three-way merge of the JSON list as a set.
//   - everything else (contacts and calendar objects, collections and UID indexes,
//     accounts records): last writer wins, by the two head commits' times. A contact
//     edited on both sides keeps one side's version whole; the other is in history.
func MergeRules() store.MergeRules {
	return store.MergeRules{
		{Pattern: "index/*/*", Rule: MergeMailIndex},
		{Pattern: "msg/*/*/*", Rule: conflictRule},
		{Pattern: "meta/*", Rule: MergeMailMeta},
		{Pattern: "subscriptions", Rule: MergeJSONSet},
		{Pattern: "*", Rule: store.LastWriterWins},
	}
}

// RevertRules are the rules a revert through the store's API applies (see
// store.RevertRequest.Rules): a mailbox's meta (meta/ID) goes back to its older JSON but
// keeps the larger uidNext, so that a UID handed out before the revert is never handed
// out again (IMAP clients that saw it would take a new message for the old one). Use
// "hearth mail restore" to bring messages back under new UIDs.
func RevertRules() store.MergeRules {
	return store.MergeRules{{Pattern: "meta/*", Rule: MergeMailMeta}}
}

func conflictRule(c store.MergeCase) ([]byte, error) {
	return nil, fmt.Errorf("backup: %s changed on both sides: %w", c.Key, store.ErrConflict)
}

type indexLine struct {
	head  string // "VERSION SIZE DATE"
	flags []string
}

func parseIndex(b []byte) (map[uint64]indexLine, error) {
	out := map[uint64]indexLine{}
	if b == nil {
		return out, nil
	}
	rest, ok := bytes.CutPrefix(b, []byte(mailIndexHeader+"\n"))
	if !ok {
		return nil, fmt.Errorf("backup: not a mail index chunk: %w", store.ErrConflict)
	}
	for _, line := range strings.Split(string(rest), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		if len(f) < 4 {
			return nil, fmt.Errorf("backup: mail index line %q: %w", line, store.ErrConflict)
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("backup: mail index line %q: %w", line, store.ErrConflict)
		}
		out[uid] = indexLine{head: strings.Join(f[1:4], " "), flags: f[4:]}
	}
	return out, nil
}

// mergeSets is the three-way merge of sets: an element stays if both sides have it or
// one side added it.
func mergeSets(base, ours, theirs []string) []string {
	in := func(s []string, x string) bool { return slices.Contains(s, x) }
	var out []string
	for _, x := range ours {
		if in(theirs, x) || !in(base, x) {
			out = append(out, x)
		}
	}
	for _, x := range theirs {
		if !in(ours, x) && !in(base, x) {
			out = append(out, x)
		}
	}
	return out
}

// MergeMailIndex merges a mail index chunk per UID (see MergeRules).
func MergeMailIndex(c store.MergeCase) ([]byte, error) {
	base, err := parseIndex(c.Base)
	if err != nil {
		return nil, err
	}
	ours, err := parseIndex(c.Ours)
	if err != nil {
		return nil, err
	}
	theirs, err := parseIndex(c.Theirs)
	if err != nil {
		return nil, err
	}
	uids := map[uint64]bool{}
	for _, m := range []map[uint64]indexLine{base, ours, theirs} {
		for u := range m {
			uids[u] = true
		}
	}
	out := map[uint64]indexLine{}
	for u := range uids {
		b, inB := base[u]
		o, inO := ours[u]
		t, inT := theirs[u]
		switch {
		case inB && (!inO || !inT): // expunged on a side
		case !inO:
			out[u] = t
		case !inT:
			out[u] = o
		case o.head != t.head:
			return nil, fmt.Errorf("backup: %s: uid %d names different messages on the two sides: %w", c.Key, u, store.ErrConflict)
		default:
			out[u] = indexLine{head: o.head, flags: mergeSets(b.flags, o.flags, t.flags)}
		}
	}
	if len(out) == 0 && (c.Ours == nil || c.Theirs == nil) {
		return nil, nil
	}
	keys := make([]uint64, 0, len(out))
	for u := range out {
		keys = append(keys, u)
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.WriteString(mailIndexHeader + "\n")
	for _, u := range keys {
		l := out[u]
		buf.WriteString(strconv.FormatUint(u, 10) + " " + l.head)
		for _, f := range l.flags {
			buf.WriteString(" " + f)
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// MergeMailMeta merges a mailbox's meta: the newer side's, with uidNext the larger.
func MergeMailMeta(c store.MergeCase) ([]byte, error) {
	win, err := store.LastWriterWins(c)
	if err != nil || win == nil || c.Ours == nil || c.Theirs == nil {
		return win, err
	}
	var w, o, t map[string]any
	if json.Unmarshal(win, &w) != nil || json.Unmarshal(c.Ours, &o) != nil || json.Unmarshal(c.Theirs, &t) != nil {
		return nil, fmt.Errorf("backup: %s: not JSON: %w", c.Key, store.ErrConflict)
	}
	on, _ := o["uidNext"].(float64)
	tn, _ := t["uidNext"].(float64)
	w["uidNext"] = max(on, tn)
	return json.Marshal(w)
}

// MergeJSONSet merges JSON lists of strings as sets (three-way), sorted.
func MergeJSONSet(c store.MergeCase) ([]byte, error) {
	dec := func(b []byte) ([]string, error) {
		var v []string
		if b == nil {
			return nil, nil
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("backup: %s: not a JSON list: %w", c.Key, store.ErrConflict)
		}
		return v, nil
	}
	base, err := dec(c.Base)
	if err != nil {
		return nil, err
	}
	ours, err := dec(c.Ours)
	if err != nil {
		return nil, err
	}
	theirs, err := dec(c.Theirs)
	if err != nil {
		return nil, err
	}
	out := mergeSets(base, ours, theirs)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return json.Marshal(out)
}
