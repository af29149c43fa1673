package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-home/hearth/store"
)

// Mail layout constants (see package mail's doc): index chunks and message shards cover
// 256 UIDs each.
const (
	mailChunk      = 256
	maxMailboxScan = 10000 // mailboxes one renumbering looks at
)

// isMailRepo reports whether a repository holds a user's mail (package mail's RepoName).
func isMailRepo(name string) bool { return strings.HasSuffix(name, "/mail") }

func mailMsgKey(id string, uid uint64) string {
	return "msg/" + id + "/" + strconv.FormatUint(uid/mailChunk, 10) + "/" + strconv.FormatUint(uid, 10)
}

func mailIndexKey(id string, chunk uint64) string {
	return "index/" + id + "/" + strconv.FormatUint(chunk, 10)
}

// readIndex reads every index chunk of mailbox id at rev into one map.
func readIndex(ctx context.Context, s store.Store, rev, id string) (map[uint64]indexLine, error) {
	es, err := s.List(ctx, rev, "index/"+id)
	if errors.Is(err, store.ErrNotFound) {
		return map[uint64]indexLine{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[uint64]indexLine{}
	for _, e := range es {
		v, _, err := s.Get(ctx, rev, e.Key)
		if err != nil {
			return nil, err
		}
		m, err := parseIndex(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Key, err)
		}
		maps.Copy(out, m)
	}
	return out, nil
}

func uidNext(meta []byte) (uint64, map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(meta, &m); err != nil {
		return 0, nil, err
	}
	n, _ := m["uidNext"].(float64)
	return uint64(n), m, nil
}

func encodeIndex(lines map[uint64]indexLine, chunk uint64) []byte {
	var uids []uint64
	for u := range lines {
		if u/mailChunk == chunk {
			uids = append(uids, u)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	slices.Sort(uids)
	var buf bytes.Buffer
	buf.WriteString(mailIndexHeader + "\n")
	for _, u := range uids {
		l := lines[u]
		buf.WriteString(strconv.FormatUint(u, 10) + " " + l.head)
		for _, f := range l.flags {
			buf.WriteString(" " + f)
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// renumberMail resolves UID collisions between the local main branch of a mail repository
// and a remote commit: both sides delivered into one mailbox since they last synced, each
// giving its new messages the next UIDs. The local messages on UIDs the remote uses for
// other messages move, in one commit (compare-and-swap on the head), to fresh UIDs at
// or above both sides' uidNext; the remote's keep theirs. To an IMAP client of this side
// a moved message looks expunged and delivered again. It returns how many moved.
func renumberMail(ctx context.Context, s store.Store, theirs store.Hash, sig store.Signature) (int, error) {
	head, err := s.Resolve(ctx, store.DefaultBranch)
	if err != nil {
		return 0, err
	}
	metas, err := s.List(ctx, string(head), "meta")
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(metas) > maxMailboxScan {
		return 0, fmt.Errorf("backup: %d mailboxes: %w", len(metas), store.ErrTooLarge)
	}
	var ops []store.Op
	moved := 0
	for _, e := range metas {
		id := path.Base(e.Key)
		theirMeta, _, err := s.Get(ctx, string(theirs), e.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue // a mailbox only this side has: nothing can collide
		}
		if err != nil {
			return 0, err
		}
		ourMeta, _, err := s.Get(ctx, string(head), e.Key)
		if err != nil {
			return 0, err
		}
		ourNext, meta, err := uidNext(ourMeta)
		if err != nil {
			return 0, fmt.Errorf("backup: %s: %w", e.Key, err)
		}
		theirNext, _, err := uidNext(theirMeta)
		if err != nil {
			return 0, fmt.Errorf("backup: %s over there: %w", e.Key, err)
		}
		ours, err := readIndex(ctx, s, string(head), id)
		if err != nil {
			return 0, err
		}
		theirIdx, err := readIndex(ctx, s, string(theirs), id)
		if err != nil {
			return 0, err
		}
		var clash []uint64
		next := max(ourNext, theirNext)
		for u, l := range ours {
			if t, ok := theirIdx[u]; ok && t.head != l.head {
				clash = append(clash, u)
			}
			next = max(next, u+1)
		}
		for u := range theirIdx {
			next = max(next, u+1)
		}
		if len(clash) == 0 {
			continue
		}
		slices.Sort(clash)
		chunks := map[uint64]bool{}
		for _, u := range clash {
			l := ours[u]
			version, _, _ := strings.Cut(l.head, " ")
			delete(ours, u)
			ours[next] = l
			ops = append(ops,
				store.Op{Key: mailMsgKey(id, next), Copy: store.Hash(version)},
				store.Op{Key: mailMsgKey(id, u), Delete: true})
			chunks[u/mailChunk], chunks[next/mailChunk] = true, true
			next++
			moved++
		}
		for c := range chunks {
			if b := encodeIndex(ours, c); b != nil {
				ops = append(ops, store.Op{Key: mailIndexKey(id, c), Value: b})
			} else {
				ops = append(ops, store.Op{Key: mailIndexKey(id, c), Delete: true})
			}
		}
		meta["uidNext"] = next
		mb, err := json.Marshal(meta)
		if err != nil {
			return 0, err
		}
		ops = append(ops, store.Op{Key: e.Key, Value: append(mb, '\n')})
	}
	if moved == 0 {
		return 0, nil
	}
	if len(ops) > store.MaxOps {
		return 0, fmt.Errorf("backup: renumbering %d messages: %w", moved, store.ErrTooLarge)
	}
	_, err = s.Commit(ctx, store.Change{Branch: store.DefaultBranch, Parent: head, Author: sig, Ops: ops,
		Message: fmt.Sprintf("replica: %d messages moved to new UIDs (the replica gave theirs to other messages)", moved)})
	if err != nil {
		return 0, err
	}
	return moved, nil
}
