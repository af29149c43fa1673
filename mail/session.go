package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// session is one IMAP connection's state.
type session struct {
	srv  *Server
	b    *Backend
	conn *imapserver.Conn
	ctx  context.Context
	// plainOK: passwords may be sent before TLS (loopback or trusted transport).
	plainOK bool

	user string
	us   *userState
	sel  *selection
	// updates is the last UpdateWriter the library handed us; Store uses it to
	// announce new keywords before a FETCH mentions them.
	updates *imapserver.UpdateWriter
	// idling is held while Idle runs (see Close).
	idling sync.Mutex
}

// selection is the client's view of the selected mailbox.
type selection struct {
	id        string
	readOnly  bool
	uids      []imap.UID // the client's sequence numbers: uids[seq-1]
	seen      uint64     // mailbox changes up to here are reflected in uids and reported
	kwVersion uint64
	recent    imap.UIDSet
	own       map[imap.UID]uint64 // flag changes this session made and reported itself
	searchRes []imap.UID
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

func imapErr(typ imap.StatusResponseType, code imap.ResponseCode, format string, args ...any) error {
	return &imap.Error{Type: typ, Code: code, Text: fmt.Sprintf(format, args...)}
}

// mapErr turns backend errors into IMAP responses.
func mapErr(err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, ErrNoMailbox):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, ErrExists):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, ErrTooBig):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTooBig, "Message too big")
	case errors.Is(err, ErrInvalid):
		return imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "%s", strings.TrimPrefix(err.Error(), "mail: "))
	case errors.Is(err, store.ErrTooLarge):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeLimit, "Too large")
	}
	return err
}

func (s *session) Close() error {
	// The library may close the session while Idle still runs: when IDLE ends with a
	// read error (a client gone, or cut off by a time limit) it closes stop and returns
	// without waiting for Idle. Idle returns promptly once stop is closed.
	s.idling.Lock()
	defer s.idling.Unlock()
	s.sel = nil
	return nil
}

func (s *session) isTLS() bool {
	_, ok := s.conn.NetConn().(*tls.Conn)
	return ok
}

// Login checks the password with signpost's accounts (app passwords work too). Plaintext
// passwords are refused unless the connection is TLS, loopback or a trusted transport.
func (s *session) Login(username, password string) error {
	nc := s.conn.NetConn()
	if !s.plainOK && !s.isTLS() {
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodePrivacyRequired, "TLS is required to log in")
	}
	if s.b.opts.Accounts == nil {
		return imapserver.ErrAuthFailed
	}
	err := s.b.opts.Accounts.CheckPassword(s.ctx, nc.RemoteAddr().String(), username, password)
	var te *signpost.ThrottledError
	switch {
	case errors.As(err, &te):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Too many failed logins, retry in %s", te.RetryAfter().Round(time.Second))
	case errors.Is(err, signpost.ErrThrottled):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Too many failed logins, retry later")
	case errors.Is(err, signpost.ErrBadCredentials):
		return imapserver.ErrAuthFailed
	case err != nil:
		s.b.log.Warn("mail: login", "user", username, "err", err)
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Login temporarily unavailable")
	}
	if err := s.b.EnsureUser(s.ctx, username); err != nil {
		s.b.log.Warn("mail: login", "user", username, "err", err)
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Mailbox temporarily unavailable")
	}
	us, err := s.b.user(s.ctx, username)
	if err != nil {
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Mailbox temporarily unavailable")
	}
	s.user, s.us = username, us
	return nil
}

func (s *session) Unauthenticate() error {
	s.user, s.us, s.sel = "", nil, nil
	return nil
}

// appendLimit is the largest APPEND accepted. The session does not implement
// imapserver.SessionAppendLimit: the library then refuses a too-large literal without
// reading it, which breaks the connection when the client sent it non-synchronizing
// (LITERAL+). Instead the server advertises plain APPENDLIMIT, STATUS reports the limit,
// and Append reads and drops a too-large message before answering NO [TOOBIG].
func (s *session) appendLimit() uint32 { return uint32(min(s.b.limit, 1<<32-1)) }

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// locked runs fn with the user state locked.
func (s *session) locked(fn func(us *userState) error) error {
	if s.us == nil {
		return imapErr(imap.StatusResponseTypeNo, "", "Not logged in")
	}
	if err := s.us.lock(s.ctx); err != nil {
		return err
	}
	defer s.us.mu.Unlock()
	return fn(s.us)
}

func (s *session) rev2() bool { return s.conn.EnabledCaps().Has(imap.CapIMAP4rev2) }

func mailboxFlags(m *mailbox) []imap.Flag {
	flags := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	return append(flags, m.keywords...)
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.sel = nil
	var data *imap.SelectData
	err := s.locked(func(us *userState) error {
		m := us.byName[normalizeName(name)]
		if m == nil {
			return ErrNoMailbox
		}
		sel := &selection{id: m.id, readOnly: options.ReadOnly, seen: m.changed, kwVersion: m.kwVersion,
			uids: make([]imap.UID, len(m.msgs)), own: map[imap.UID]uint64{}}
		var firstUnseen uint32
		for i, e := range m.msgs {
			sel.uids[i] = e.UID
			if firstUnseen == 0 && !hasFlag(e.Flags, imap.FlagSeen) {
				firstUnseen = uint32(i + 1)
			}
		}
		var numRecent uint32
		if !options.ReadOnly {
			numRecent = sel.claimRecent(m)
		}
		s.sel = sel
		data = &imap.SelectData{
			Flags:             mailboxFlags(m),
			PermanentFlags:    append(mailboxFlags(m), `\*`),
			NumMessages:       uint32(len(sel.uids)),
			FirstUnseenSeqNum: firstUnseen,
			NumRecent:         numRecent,
			UIDNext:           m.meta.UIDNext,
			UIDValidity:       m.meta.UIDValidity,
		}
		return nil
	})
	return data, mapErr(err)
}

// claimRecent makes the messages no session has seen yet recent in this one.
func (sel *selection) claimRecent(m *mailbox) uint32 {
	var n uint32
	i, _ := m.find(m.recentFloor)
	if i < len(m.msgs) {
		sel.recent.AddRange(m.msgs[i].UID, m.msgs[len(m.msgs)-1].UID)
		n = uint32(len(m.msgs) - i)
	}
	m.recentFloor = m.meta.UIDNext
	return n
}

func (sel *selection) recentCount() uint32 {
	var n uint32
	for _, u := range sel.uids {
		if sel.recent.Contains(u) {
			n++
		}
	}
	return n
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	var special imap.MailboxAttr
	if options != nil {
		if len(options.SpecialUse) > 1 {
			return imapErr(imap.StatusResponseTypeNo, imap.ResponseCode("USEATTR"), "At most one special-use attribute")
		}
		if len(options.SpecialUse) == 1 {
			special = options.SpecialUse[0]
			if !knownSpecialUse(special) {
				return imapErr(imap.StatusResponseTypeNo, imap.ResponseCode("USEATTR"), "Unknown special-use attribute %s", special)
			}
		}
	}
	return mapErr(s.locked(func(us *userState) error {
		return us.update(s.ctx, "create "+name, func(t *tx) error {
			_, err := us.createLocked(t, name, special)
			return err
		})
	}))
}

func (s *session) Delete(name string) error {
	name = normalizeName(name)
	if name == "INBOX" {
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "INBOX cannot be deleted")
	}
	return mapErr(s.b.DeleteMailbox(s.ctx, s.user, name))
}

func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	return mapErr(s.b.RenameMailbox(s.ctx, s.user, oldName, newName))
}

func (s *session) Subscribe(name string) error {
	name = normalizeName(name)
	return mapErr(s.locked(func(us *userState) error {
		if us.byName[name] == nil {
			return ErrNoMailbox
		}
		if us.subs[name] {
			return nil
		}
		return us.update(s.ctx, "subscribe "+name, func(t *tx) error {
			us.subs[name] = true
			t.subs = true
			return nil
		})
	}))
}

func (s *session) Unsubscribe(name string) error {
	name = normalizeName(name)
	return mapErr(s.locked(func(us *userState) error {
		if !us.subs[name] {
			return nil
		}
		return us.update(s.ctx, "unsubscribe "+name, func(t *tx) error {
			delete(us.subs, name)
			t.subs = true
			return nil
		})
	}))
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	var data *imap.StatusData
	err := s.locked(func(us *userState) error {
		m := us.byName[normalizeName(name)]
		if m == nil {
			return ErrNoMailbox
		}
		data = s.status(m, options)
		return nil
	})
	return data, mapErr(err)
}

func (s *session) status(m *mailbox, options *imap.StatusOptions) *imap.StatusData {
	data := &imap.StatusData{Mailbox: m.meta.Name, UIDNext: m.meta.UIDNext, UIDValidity: m.meta.UIDValidity}
	var unseen, deleted, recent uint32
	var size int64
	for _, e := range m.msgs {
		if !hasFlag(e.Flags, imap.FlagSeen) {
			unseen++
		}
		if hasFlag(e.Flags, imap.FlagDeleted) {
			deleted++
		}
		if e.UID >= m.recentFloor {
			recent++
		}
		size += e.Size
	}
	n := uint32(len(m.msgs))
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.NumRecent {
		data.NumRecent = &recent
	}
	if options.Size {
		data.Size = &size
	}
	if options.AppendLimit {
		l := s.appendLimit()
		data.AppendLimit = &l
	}
	return data
}

func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if r.Size() > s.b.limit {
		io.Copy(io.Discard, r)
		return nil, imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTooBig, "Message over %d bytes", s.b.limit)
	}
	buf := make([]byte, r.Size())
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if len(buf) == 0 {
		return nil, imapErr(imap.StatusResponseTypeNo, "", "Empty message")
	}
	flags, err := checkFlags(options.Flags)
	if err != nil {
		return nil, mapErr(err)
	}
	date := options.Time
	if date.IsZero() {
		date = s.b.now()
	}
	name = normalizeName(name)
	var data *imap.AppendData
	err = s.locked(func(us *userState) error {
		return us.update(s.ctx, "append to "+name, func(t *tx) error {
			m := us.byName[name]
			if m == nil {
				return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate, "No such mailbox")
			}
			uid := t.insert(m, buf, "", 0, flags, date)
			data = &imap.AppendData{UID: uid, UIDValidity: m.meta.UIDValidity}
			return nil
		})
	})
	return data, mapErr(err)
}

func (s *session) Unselect() error {
	s.sel = nil
	return nil
}

// update is one untagged response Poll writes.
type update struct {
	expunge uint32
	exists  uint32
	recent  uint32
	flags   []imap.Flag // mailbox FLAGS when mbFlags
	mbFlags bool
	seq     uint32
	uid     imap.UID
	msgFl   []imap.Flag
}

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.updates = w
	if s.sel == nil || s.us == nil {
		return nil
	}
	var ups []update
	err := s.locked(func(us *userState) error {
		ups = s.pollLocked(us, allowExpunge)
		return nil
	})
	if err != nil {
		return err
	}
	return s.writeUpdates(w, ups)
}

func (s *session) writeUpdates(w *imapserver.UpdateWriter, ups []update) error {
	for _, u := range ups {
		var err error
		switch {
		case u.mbFlags:
			err = w.WriteMailboxFlags(u.flags)
		case u.expunge != 0:
			err = w.WriteExpunge(u.expunge)
		case u.exists != 0:
			if err = w.WriteNumMessages(u.exists); err == nil {
				err = w.WriteNumRecent(u.recent)
			}
		default:
			err = w.WriteMessageFlags(u.seq, u.uid, u.msgFl)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pollLocked brings the selection up to date with the mailbox and returns what the
// client must be told.
func (s *session) pollLocked(us *userState, allowExpunge bool) []update {
	sel := s.sel
	m := us.boxes[sel.id]
	var ups []update
	if m == nil {
		// Deleted or renamed away by someone else: everything is gone.
		m = &mailbox{id: sel.id, changed: sel.seen + 1, kwVersion: sel.kwVersion}
	}
	if m.changed == sel.seen && m.kwVersion == sel.kwVersion {
		return nil
	}
	if m.kwVersion != sel.kwVersion {
		ups = append(ups, update{mbFlags: true, flags: mailboxFlags(m)})
		sel.kwVersion = m.kwVersion
	}
	if allowExpunge && len(sel.uids) > 0 {
		// Messages at or below the view's last UID can only have gone away, so equal
		// counts mean nothing was expunged; otherwise walk both sorted lists.
		upTo, _ := m.find(sel.uids[len(sel.uids)-1] + 1)
		if upTo != len(sel.uids) {
			kept := make([]imap.UID, 0, upTo)
			removed, j := 0, 0
			for i, u := range sel.uids {
				for j < len(m.msgs) && m.msgs[j].UID < u {
					j++
				}
				if j < len(m.msgs) && m.msgs[j].UID == u {
					kept = append(kept, u)
					continue
				}
				ups = append(ups, update{expunge: uint32(i + 1 - removed)})
				removed++
			}
			sel.uids = kept
		}
	}
	var last imap.UID
	if n := len(sel.uids); n > 0 {
		last = sel.uids[n-1]
	}
	i, _ := m.find(last + 1)
	if i < len(m.msgs) {
		for _, e := range m.msgs[i:] {
			sel.uids = append(sel.uids, e.UID)
		}
		if !sel.readOnly {
			sel.claimRecent(m)
		}
		ups = append(ups, update{exists: uint32(len(sel.uids)), recent: sel.recentCount()})
	}
	for _, e := range m.msgs {
		if e.modseq <= sel.seen || e.UID > last {
			continue
		}
		if own, ok := sel.own[e.UID]; ok && own == e.modseq {
			continue
		}
		seq, ok := slices.BinarySearch(sel.uids, e.UID)
		if !ok {
			continue
		}
		ups = append(ups, update{seq: uint32(seq + 1), uid: e.UID, msgFl: s.flagsFor(sel, e)})
	}
	clear(sel.own)
	sel.seen = m.changed
	return ups
}

// flagsFor is the FLAGS of e as this session shows them (with \Recent in IMAP4rev1).
func (s *session) flagsFor(sel *selection, e entry) []imap.Flag {
	flags := slices.Clip(e.Flags)
	if flags == nil {
		flags = []imap.Flag{}
	}
	if sel.recent.Contains(e.UID) && !s.rev2() {
		flags = append(flags, `\Recent`)
	}
	return flags
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.idling.Lock()
	defer s.idling.Unlock()
	s.updates = w
	if s.us == nil {
		<-stop
		return nil
	}
	for {
		var ups []update
		var wake <-chan struct{}
		err := s.locked(func(us *userState) error {
			if s.sel != nil {
				ups = s.pollLocked(us, true)
			}
			wake = us.notify
			return nil
		})
		if err != nil {
			return err
		}
		if err := s.writeUpdates(w, ups); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-wake:
		case <-s.ctx.Done():
			return nil
		}
	}
}

// resolve returns the indexes into sel.uids that numSet names, sorted and unique.
func (sel *selection) resolve(numSet imap.NumSet) ([]int, error) {
	n := len(sel.uids)
	var idx []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			start, stop := r.Start, r.Stop
			if start == 0 {
				start = uint32(n)
			}
			if stop == 0 {
				stop = uint32(n)
			}
			if start > stop {
				start, stop = stop, start
			}
			if start == 0 || int(start) > n {
				if n == 0 && (r.Start == 0 || r.Stop == 0) {
					continue
				}
				return nil, imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "Sequence number %d out of range", start)
			}
			stop = min(stop, uint32(n))
			for i := start; i <= stop; i++ {
				idx = append(idx, int(i-1))
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			for _, u := range sel.searchRes {
				if i, ok := slices.BinarySearch(sel.uids, u); ok {
					idx = append(idx, i)
				}
			}
			break
		}
		var maxUID imap.UID
		if n > 0 {
			maxUID = sel.uids[n-1]
		}
		for _, r := range set {
			start, stop := r.Start, r.Stop
			if start == 0 {
				start = maxUID
			}
			if stop == 0 {
				stop = maxUID
			}
			if start > stop {
				start, stop = stop, start
			}
			lo, _ := slices.BinarySearch(sel.uids, start)
			for i := lo; i < n && sel.uids[i] <= stop; i++ {
				idx = append(idx, i)
			}
		}
	default:
		return nil, imapErr(imap.StatusResponseTypeBad, "", "Bad message set")
	}
	if !sort.IntsAreSorted(idx) {
		slices.Sort(idx)
	}
	return slices.Compact(idx), nil
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "Mailbox is read-only")
	}
	newFlags, err := checkFlags(flags.Flags)
	if err != nil {
		return mapErr(err)
	}
	idx, err := sel.resolve(numSet)
	if err != nil {
		return err
	}
	type result struct {
		seq uint32
		e   entry
	}
	var results []result
	var kw []imap.Flag
	var kwChanged bool
	err = s.locked(func(us *userState) error {
		return us.update(s.ctx, "store flags", func(t *tx) error {
			results = results[:0]
			m := us.boxes[sel.id]
			if m == nil {
				return ErrNoMailbox
			}
			before := m.kwVersion
			for _, i := range idx {
				j, ok := m.find(sel.uids[i])
				if !ok {
					continue
				}
				e := m.msgs[j]
				next := applyStore(e.Flags, flags.Op, newFlags)
				if !sameFlags(next, e.Flags) {
					t.setFlags(m, j, next)
					sel.own[e.UID] = m.msgs[j].modseq
				}
				results = append(results, result{uint32(i + 1), m.msgs[j]})
			}
			kwChanged = m.kwVersion != before && m.kwVersion != sel.kwVersion
			if kwChanged {
				sel.kwVersion = m.kwVersion
				kw = mailboxFlags(m)
			}
			return nil
		})
	})
	if err != nil {
		return mapErr(err)
	}
	if kwChanged && s.updates != nil {
		if err := s.updates.WriteMailboxFlags(kw); err != nil {
			return err
		}
	}
	if flags.Silent {
		return nil
	}
	for _, r := range results {
		rw := w.CreateMessage(r.seq)
		rw.WriteUID(r.e.UID)
		rw.WriteFlags(s.flagsFor(sel, r.e))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

func applyStore(cur []imap.Flag, op imap.StoreFlagsOp, flags []imap.Flag) []imap.Flag {
	switch op {
	case imap.StoreFlagsSet:
		return slices.Clone(flags)
	case imap.StoreFlagsAdd:
		out := slices.Clone(cur)
		for _, f := range flags {
			if !hasFlag(out, f) {
				out = append(out, f)
			}
		}
		return out
	default:
		return slices.DeleteFunc(slices.Clone(cur), func(f imap.Flag) bool { return hasFlag(flags, f) })
	}
}

func sameFlags(a, b []imap.Flag) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return nil // CLOSE after EXAMINE must not expunge; EXPUNGE then does nothing
	}
	var gone []imap.UID
	err := s.locked(func(us *userState) error {
		m := us.boxes[sel.id]
		if m == nil {
			return ErrNoMailbox
		}
		var doomed []imap.UID
		for _, u := range sel.uids {
			if uids != nil && !uids.Contains(u) {
				continue
			}
			if j, ok := m.find(u); ok && hasFlag(m.msgs[j].Flags, imap.FlagDeleted) {
				doomed = append(doomed, u)
			}
		}
		for len(doomed) > 0 {
			batch := doomed[:min(len(doomed), maxBatch)]
			doomed = doomed[len(batch):]
			err := us.update(s.ctx, "expunge", func(t *tx) error {
				if us.boxes[sel.id] != m {
					return ErrNoMailbox
				}
				t.remove(m, batch)
				return nil
			})
			if err != nil {
				return err
			}
			gone = append(gone, batch...)
		}
		return nil
	})
	if err := s.writeExpunges(gone, w.WriteExpunge); err != nil {
		return err
	}
	return mapErr(err)
}

// writeExpunges removes uids from the selection, reporting each with write.
func (s *session) writeExpunges(uids []imap.UID, write func(uint32) error) error {
	sel := s.sel
	for _, u := range uids {
		i, ok := slices.BinarySearch(sel.uids, u)
		if !ok {
			continue
		}
		sel.uids = slices.Delete(sel.uids, i, i+1)
		if err := write(uint32(i + 1)); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := s.copyOrMove(numSet, dest, false)
	return data, err
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel.readOnly {
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "Mailbox is read-only")
	}
	data, moved, err := s.copyOrMove(numSet, dest, true)
	if err != nil {
		return err
	}
	if data != nil {
		if err := w.WriteCopyData(data); err != nil {
			return err
		}
	}
	return s.writeExpunges(moved, w.WriteExpunge)
}

func (s *session) copyOrMove(numSet imap.NumSet, dest string, move bool) (*imap.CopyData, []imap.UID, error) {
	sel := s.sel
	idx, err := sel.resolve(numSet)
	if err != nil {
		return nil, nil, err
	}
	dest = normalizeName(dest)
	data := &imap.CopyData{}
	var moved []imap.UID
	verb := "copy"
	if move {
		verb = "move"
	}
	err = s.locked(func(us *userState) error {
		src, dst := us.boxes[sel.id], us.byName[dest]
		if src == nil {
			return ErrNoMailbox
		}
		if dst == nil {
			return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate, "No such mailbox")
		}
		data.UIDValidity = dst.meta.UIDValidity
		var uids []imap.UID
		for _, i := range idx {
			if _, ok := src.find(sel.uids[i]); ok {
				uids = append(uids, sel.uids[i])
			}
		}
		for len(uids) > 0 {
			batch := uids[:min(len(uids), maxBatch)]
			uids = uids[len(batch):]
			var srcSet, dstSet imap.UIDSet
			err := us.update(s.ctx, verb+" to "+dest, func(t *tx) error {
				srcSet, dstSet = nil, nil
				if us.boxes[src.id] != src || us.boxes[dst.id] != dst {
					return ErrNoMailbox
				}
				for _, u := range batch {
					j, ok := src.find(u)
					if !ok {
						continue
					}
					e := src.msgs[j]
					flags := e.Flags
					nu := t.insert(dst, nil, e.Version, e.Size, flags, e.Date)
					srcSet.AddNum(u)
					dstSet.AddNum(nu)
				}
				if move {
					t.remove(src, batch)
				}
				return nil
			})
			if err != nil {
				return err
			}
			data.SourceUIDs.AddSet(srcSet)
			data.DestUIDs.AddSet(dstSet)
			if move {
				moved = append(moved, batch...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, moved, mapErr(err)
	}
	if len(data.SourceUIDs) == 0 {
		return nil, nil, nil
	}
	return data, moved, nil
}
