package mail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/hearth-home/hearth/store"
)

// List answers LIST, LIST-EXTENDED (selection and return options, CHILDINFO,
// \NonExistent, \HasChildren/\HasNoChildren, LIST-STATUS) and LSUB.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	var out []*imap.ListData
	err := s.locked(func(us *userState) error {
		out = s.listLocked(us, ref, patterns, options)
		return nil
	})
	if err != nil {
		return mapErr(err)
	}
	for _, d := range out {
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) listLocked(us *userState, ref string, patterns []string, options *imap.ListOptions) []*imap.ListData {
	// Every name that exists, is an implied parent, or is subscribed.
	names := map[string]bool{}
	hasChild := map[string]bool{}
	subChild := map[string]bool{} // has a subscribed descendant
	addParents := func(n string, sub bool) {
		for i := strings.LastIndex(n, delimStr); i > 0; i = strings.LastIndex(n[:i], delimStr) {
			p := n[:i]
			if sub {
				subChild[p] = true
			} else {
				hasChild[p] = true
				names[p] = true
			}
		}
	}
	for n := range us.byName {
		names[n] = true
		addParents(n, false)
	}
	for n := range us.subs {
		names[n] = true
		addParents(n, true)
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	lsubStyle := options.SelectSubscribed && !options.SelectRecursiveMatch && !options.ReturnSubscribed &&
		!options.ReturnChildren && !options.ReturnSpecialUse && options.ReturnStatus == nil
	var out []*imap.ListData
	for _, n := range sorted {
		if !matchAny(n, ref, patterns) {
			continue
		}
		m := us.byName[n]
		sub := us.subs[n]
		d := &imap.ListData{Delim: delim, Mailbox: n}
		if options.SelectSubscribed && !sub {
			switch {
			case options.SelectRecursiveMatch && subChild[n]:
				d.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
			case lsubStyle && subChild[n] && hasPercent(patterns):
				d.Attrs = append(d.Attrs, imap.MailboxAttrNoSelect)
				out = append(out, d)
				continue
			default:
				continue
			}
		}
		if !options.SelectSubscribed && m == nil && !hasChild[n] {
			continue // subscribed but gone: only a SUBSCRIBED listing shows it
		}
		if options.SelectSpecialUse && (m == nil || m.meta.SpecialUse == "") {
			continue
		}
		switch {
		case m == nil && !hasChild[n]:
			d.Attrs = append(d.Attrs, imap.MailboxAttrNonExistent)
		case m == nil:
			d.Attrs = append(d.Attrs, imap.MailboxAttrNoSelect)
		}
		if m != nil || hasChild[n] {
			if hasChild[n] {
				d.Attrs = append(d.Attrs, imap.MailboxAttrHasChildren)
			} else {
				d.Attrs = append(d.Attrs, imap.MailboxAttrHasNoChildren)
			}
		}
		if sub && (options.SelectSubscribed || options.ReturnSubscribed) {
			d.Attrs = append(d.Attrs, imap.MailboxAttrSubscribed)
		}
		if m != nil && m.meta.SpecialUse != "" {
			d.Attrs = append(d.Attrs, m.meta.SpecialUse)
		}
		if m != nil && options.ReturnStatus != nil {
			d.Status = s.status(m, options.ReturnStatus)
		}
		out = append(out, d)
	}
	return out
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
		// INBOX is case-insensitive in patterns too.
		if name == "INBOX" || strings.HasPrefix(name, "INBOX/") {
			if imapserver.MatchList(name, delim, ref, normalizeName(p)) {
				return true
			}
		}
	}
	return false
}

func hasPercent(patterns []string) bool {
	for _, p := range patterns {
		if strings.Contains(p, "%") {
			return true
		}
	}
	return false
}

// MailboxInfo describes one mailbox, for import, export and tools.
type MailboxInfo struct {
	Name        string
	SpecialUse  imap.MailboxAttr // "" or one of \Sent, \Drafts, \Trash, \Junk, \Archive, ...
	UIDValidity uint32
	UIDNext     imap.UID
	Messages    int
	Size        int64
	Subscribed  bool
}

// Mailboxes lists user's mailboxes sorted by name.
func (b *Backend) Mailboxes(ctx context.Context, user string) ([]MailboxInfo, error) {
	us, err := b.user(ctx, user)
	if err != nil {
		return nil, err
	}
	if err := us.lock(ctx); err != nil {
		return nil, err
	}
	defer us.mu.Unlock()
	var out []MailboxInfo
	for _, m := range us.boxes {
		var size int64
		for _, e := range m.msgs {
			size += e.Size
		}
		out = append(out, MailboxInfo{Name: m.meta.Name, SpecialUse: m.meta.SpecialUse, UIDValidity: m.meta.UIDValidity,
			UIDNext: m.meta.UIDNext, Messages: len(m.msgs), Size: size, Subscribed: us.subs[m.meta.Name]})
	}
	slices.SortFunc(out, func(a, b MailboxInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// CreateMailbox creates a mailbox (and missing parents) with an optional special use.
// ErrExists if it exists.
func (b *Backend) CreateMailbox(ctx context.Context, user, name string, specialUse imap.MailboxAttr) error {
	us, err := b.user(ctx, user)
	if err != nil {
		return err
	}
	if err := us.lock(ctx); err != nil {
		return err
	}
	defer us.mu.Unlock()
	return us.update(ctx, "create "+name, func(t *tx) error {
		_, err := us.createLocked(t, name, specialUse)
		return err
	})
}

// Message is one message as Messages reports it.
type Message struct {
	UID   imap.UID
	Flags []imap.Flag
	Date  time.Time // INTERNALDATE
	Size  int64
	// Body returns the message's bytes (read from the store on call).
	Body func(ctx context.Context) ([]byte, error)
}

// Messages calls fn for each message of user's mailbox in UID order, as of the moment
// of the call (later changes are not seen). An error from fn stops the iteration and is
// returned.
func (b *Backend) Messages(ctx context.Context, user, mailbox string, fn func(Message) error) error {
	us, err := b.user(ctx, user)
	if err != nil {
		return err
	}
	if err := us.lock(ctx); err != nil {
		return err
	}
	m := us.byName[normalizeName(mailbox)]
	if m == nil {
		us.mu.Unlock()
		return fmt.Errorf("mail: messages of %s %q: %w", user, mailbox, ErrNoMailbox)
	}
	msgs, st, rev, id := slices.Clone(m.msgs), us.st, string(us.head), m.id
	us.mu.Unlock()
	for _, e := range msgs {
		key := msgKey(id, e.UID)
		msg := Message{UID: e.UID, Flags: slices.Clone(e.Flags), Date: e.Date, Size: e.Size,
			Body: func(ctx context.Context) ([]byte, error) {
				b, _, err := st.Get(ctx, rev, key)
				return b, err
			}}
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// DeleteMailbox deletes a mailbox and its messages (INBOX cannot be deleted); its
// children stay. The mailbox disappears in one commit; message blobs are then removed in
// further commits of at most maxBatch deletions each.
func (b *Backend) DeleteMailbox(ctx context.Context, user, name string) error {
	name = normalizeName(name)
	if name == "INBOX" {
		return fmt.Errorf("mail: delete INBOX: %w", ErrInvalid)
	}
	us, err := b.user(ctx, user)
	if err != nil {
		return err
	}
	if err := us.lock(ctx); err != nil {
		return err
	}
	defer us.mu.Unlock()
	var gone *mailbox
	err = us.update(ctx, "delete "+name, func(t *tx) error {
		m := us.byName[name]
		if m == nil {
			return fmt.Errorf("mail: delete %q: %w", name, ErrNoMailbox)
		}
		us.deleteLocked(t, m)
		gone = m
		return nil
	})
	if err != nil {
		return err
	}
	for msgs := gone.msgs; len(msgs) > 0; {
		batch := msgs[:min(len(msgs), maxBatch)]
		msgs = msgs[len(batch):]
		err := us.update(ctx, "delete messages of "+name, func(t *tx) error {
			for _, e := range batch {
				t.ops = append(t.ops, store.Op{Key: msgKey(gone.id, e.UID), Delete: true})
			}
			return nil
		})
		if err != nil {
			b.log.Warn("mail: delete mailbox messages", "user", user, "mailbox", name, "err", err)
			break
		}
	}
	return nil
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves its messages
// to the new mailbox and leaves INBOX empty, as IMAP says.
func (b *Backend) RenameMailbox(ctx context.Context, user, oldName, newName string) error {
	oldName, newName = normalizeName(oldName), normalizeName(strings.TrimSuffix(newName, delimStr))
	if err := checkMailboxName(newName); err != nil {
		return fmt.Errorf("mail: rename to %q: %w: %v", newName, ErrInvalid, err)
	}
	us, err := b.user(ctx, user)
	if err != nil {
		return err
	}
	if err := us.lock(ctx); err != nil {
		return err
	}
	defer us.mu.Unlock()
	if us.byName[oldName] == nil {
		return fmt.Errorf("mail: rename %q: %w", oldName, ErrNoMailbox)
	}
	if us.byName[newName] != nil {
		return fmt.Errorf("mail: rename to %q: %w", newName, ErrExists)
	}
	if newName == oldName || strings.HasPrefix(newName, oldName+delimStr) {
		return fmt.Errorf("mail: rename %q into itself: %w", oldName, ErrInvalid)
	}
	if oldName == "INBOX" {
		var dst *mailbox
		err := us.update(ctx, "rename INBOX to "+newName, func(t *tx) error {
			var err error
			dst, err = us.createLocked(t, newName, "")
			return err
		})
		if err != nil {
			return err
		}
		for {
			src := us.byName["INBOX"]
			if src == nil || len(src.msgs) == 0 {
				return nil
			}
			batch := make([]imap.UID, 0, maxBatch)
			for _, e := range src.msgs[:min(len(src.msgs), maxBatch)] {
				batch = append(batch, e.UID)
			}
			err := us.update(ctx, "move INBOX to "+newName, func(t *tx) error {
				for _, u := range batch {
					if j, ok := src.find(u); ok {
						e := src.msgs[j]
						t.insert(dst, nil, e.Version, e.Size, e.Flags, e.Date)
					}
				}
				t.remove(src, batch)
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return us.update(ctx, "rename "+oldName+" to "+newName, func(t *tx) error {
		var moving []*mailbox
		for n, m := range us.byName {
			if n == oldName || strings.HasPrefix(n, oldName+delimStr) {
				moving = append(moving, m)
			}
		}
		for _, m := range moving {
			target := newName + strings.TrimPrefix(m.meta.Name, oldName)
			if us.byName[target] != nil && us.byName[target] != m {
				return fmt.Errorf("mail: rename to %q: %w", target, ErrExists)
			}
		}
		for _, m := range moving {
			delete(us.byName, m.meta.Name)
		}
		for _, m := range moving {
			old := m.meta.Name
			m.meta.Name = newName + strings.TrimPrefix(old, oldName)
			us.byName[m.meta.Name] = m
			t.metas[m.id] = true
			t.touch(m)
			if us.subs[old] {
				delete(us.subs, old)
				us.subs[m.meta.Name] = true
				t.subs = true
			}
		}
		if i := strings.LastIndex(newName, delimStr); i > 0 && us.byName[newName[:i]] == nil {
			if _, err := us.createLocked(t, newName[:i], ""); err != nil {
				return err
			}
		}
		return nil
	})
}

// Restore brings back the messages of user's mailbox that were expunged (or moved away)
// since the given time: every message the mailbox held at its last commit before since
// that it no longer holds is added again, with its flags and internal date and a new
// UID (and without \Deleted). It returns how many messages it restored. The blobs are copied from history, so
// nothing is stored twice.
func (b *Backend) Restore(ctx context.Context, user, mailbox string, since time.Time) (int, error) {
	us, err := b.user(ctx, user)
	if err != nil {
		return 0, err
	}
	if err := us.lock(ctx); err != nil {
		return 0, err
	}
	defer us.mu.Unlock()
	name := normalizeName(mailbox)
	m := us.byName[name]
	if m == nil {
		return 0, fmt.Errorf("mail: restore %q: %w", mailbox, ErrNoMailbox)
	}
	commits, err := us.st.Log(ctx, string(us.head), 0)
	if err != nil {
		return 0, fmt.Errorf("mail: restore %q: %w", mailbox, err)
	}
	var base store.Hash
	for _, c := range commits { // newest first
		if !c.Time.After(since) {
			base = c.ID
			break
		}
	}
	if base == "" {
		return 0, nil
	}
	chunks, err := us.st.List(ctx, string(base), indexPrefix+m.id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("mail: restore %q: %w", mailbox, err)
	}
	var old []entry
	for _, c := range chunks {
		b, _, err := us.st.Get(ctx, string(base), c.Key)
		if err != nil {
			return 0, fmt.Errorf("mail: restore %q: %w", mailbox, err)
		}
		var n uint32
		if _, err := fmt.Sscan(strings.TrimPrefix(c.Key, indexPrefix+m.id+"/"), &n); err != nil {
			continue
		}
		es, err := decodeChunk(b, n)
		if err != nil {
			continue
		}
		old = append(old, es...)
	}
	present := map[store.Hash]int{}
	for _, e := range m.msgs {
		present[e.Version]++
	}
	var missing []entry
	for _, e := range old {
		if _, ok := m.find(e.UID); ok {
			continue
		}
		if present[e.Version] > 0 { // already back (restored before, or copied in again)
			present[e.Version]--
			continue
		}
		missing = append(missing, e)
	}
	restored := 0
	for len(missing) > 0 {
		batch := missing[:min(len(missing), maxBatch)]
		missing = missing[len(batch):]
		err := us.update(ctx, fmt.Sprintf("restore %d messages of %s", len(batch), name), func(t *tx) error {
			for _, e := range batch {
				flags := slices.DeleteFunc(slices.Clone(e.Flags), func(f imap.Flag) bool { return f == imap.FlagDeleted })
				t.insert(m, nil, e.Version, e.Size, flags, e.Date)
			}
			return nil
		})
		if err != nil {
			return restored, err
		}
		restored += len(batch)
	}
	return restored, nil
}
