package mail

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/hearth-home/hearth/store"
)

// parsed is what FETCH and SEARCH need from a message's header, cached by blob version.
type parsed struct {
	header   textproto.Header
	envelope *imap.Envelope
	bs       imap.BodyStructure
}

// parseCache keeps the parsed headers of recently used messages, bounded by count.
type parseCache struct {
	mu    sync.Mutex
	max   int
	m     map[store.Hash]*parsed
	order []store.Hash
}

func newParseCache(n int) *parseCache {
	return &parseCache{max: n, m: map[store.Hash]*parsed{}}
}

func (c *parseCache) get(v store.Hash) *parsed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[v]
}

func (c *parseCache) put(v store.Hash, p *parsed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[v]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[v] = p
	c.order = append(c.order, v)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// message is one message being fetched or searched; its bytes are read on first need.
type message struct {
	s   *session
	st  store.Store
	rev string
	key string
	e   entry
	buf []byte
	p   *parsed
}

func (m *message) bytes() ([]byte, error) {
	if m.buf != nil {
		return m.buf, nil
	}
	b, _, err := m.st.Get(m.s.ctx, m.rev, m.key)
	if err != nil {
		return nil, fmt.Errorf("mail: read message %s: %w", m.key, err)
	}
	m.buf = b
	return b, nil
}

func (m *message) parsed() (*parsed, error) {
	if m.p != nil {
		return m.p, nil
	}
	if p := m.s.b.cache.get(m.e.Version); p != nil {
		m.p = p
		return p, nil
	}
	b, err := m.bytes()
	if err != nil {
		return nil, err
	}
	m.p = parseMessage(b)
	m.s.b.cache.put(m.e.Version, m.p)
	return m.p, nil
}

// parseMessage parses a message's header, envelope and body structure. A malformed
// message still gives a (possibly empty) result.
func parseMessage(b []byte) *parsed {
	br := bufio.NewReader(bytes.NewReader(b))
	h, _ := textproto.ReadHeader(br)
	return &parsed{header: h, envelope: buildEnvelope(h), bs: imapserver.ExtractBodyStructure(bytes.NewReader(b))}
}

// buildEnvelope makes an ENVELOPE keeping address groups (which the library flattens).
func buildEnvelope(h textproto.Header) *imap.Envelope {
	mh := gomail.Header{Header: gomessage.Header{Header: h}}
	date, _ := mh.Date()
	subject, err := mh.Subject()
	if err != nil {
		subject = h.Get("Subject")
	}
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	env := &imap.Envelope{
		Date:      date,
		Subject:   subject,
		From:      parseAddressField(h.Get("From")),
		Sender:    parseAddressField(h.Get("Sender")),
		ReplyTo:   parseAddressField(h.Get("Reply-To")),
		To:        parseAddressField(h.Get("To")),
		Cc:        parseAddressField(h.Get("Cc")),
		Bcc:       parseAddressField(h.Get("Bcc")),
		InReplyTo: inReplyTo,
		MessageID: messageID,
	}
	// RFC 3501: Sender and Reply-To default to From.
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
}

const maxAddresses = 1000

// parseAddressField parses an address-list header value, keeping groups as IMAP wants
// them: a start marker (Mailbox = group name, no Host), the members, an end marker (all
// empty). Unparseable items are skipped.
func parseAddressField(v string) []imap.Address {
	var out []imap.Address
	start, comment := 0, 0
	inQuote, inAngle, inGroup := false, false, false
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s == "" || len(out) >= maxAddresses {
			return
		}
		p := netmail.AddressParser{WordDecoder: wordDecoder}
		a, err := p.Parse(s)
		if err != nil {
			// net/mail refuses comments before the address ("(x) a@b"); drop them.
			if a, err = p.Parse(stripLeadingComments(s)); err != nil {
				return
			}
		}
		i := strings.LastIndexByte(a.Address, '@')
		if i < 0 {
			return
		}
		out = append(out, imap.Address{Name: a.Name, Mailbox: a.Address[:i], Host: a.Address[i+1:]})
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case comment > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				comment++
			} else if c == ')' {
				comment--
			}
		case c == '"':
			inQuote = true
		case c == '(':
			comment++
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case inAngle:
		case c == ':' && !inGroup:
			name := strings.TrimSpace(v[start:i])
			if d, err := wordDecoder.DecodeHeader(name); err == nil {
				name = d
			}
			name = strings.Trim(name, `"`)
			if name == "" {
				name = "undisclosed"
			}
			out = append(out, imap.Address{Mailbox: name})
			inGroup = true
			start = i + 1
		case c == ',':
			add(v[start:i])
			start = i + 1
		case c == ';' && inGroup:
			add(v[start:i])
			out = append(out, imap.Address{})
			inGroup = false
			start = i + 1
		}
	}
	add(v[start:])
	if inGroup {
		out = append(out, imap.Address{})
	}
	return out
}

// stripLeadingComments removes comments and white space at the start of s.
func stripLeadingComments(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel := s.sel
	idx, err := sel.resolve(numSet)
	if err != nil {
		return err
	}
	setSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			setSeen = setSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			setSeen = setSeen || !bs.Peek
		}
	}
	type item struct {
		seq       uint32
		e         entry
		flagsSent bool
	}
	var items []item
	var st store.Store
	var rev, id string
	err = s.locked(func(us *userState) error {
		m := us.boxes[sel.id]
		if m == nil {
			return ErrNoMailbox
		}
		st, rev, id = us.st, string(us.head), m.id
		items = make([]item, 0, len(idx))
		j := 0 // idx and m.msgs are both in UID order: walk them together
		for _, i := range idx {
			u := sel.uids[i]
			for j < len(m.msgs) && m.msgs[j].UID < u {
				j++
			}
			if j < len(m.msgs) && m.msgs[j].UID == u {
				items = append(items, item{seq: uint32(i + 1), e: m.msgs[j]})
			}
		}
		if !setSeen {
			return nil
		}
		err := us.update(s.ctx, "mark seen", func(t *tx) error {
			for k := range items {
				j, ok := m.find(items[k].e.UID)
				if !ok || hasFlag(m.msgs[j].Flags, imap.FlagSeen) {
					continue
				}
				t.setFlags(m, j, append(m.msgs[j].Flags[:len(m.msgs[j].Flags):len(m.msgs[j].Flags)], imap.FlagSeen))
				sel.own[items[k].e.UID] = m.msgs[j].modseq
				items[k].e = m.msgs[j]
				items[k].flagsSent = true
			}
			return nil
		})
		rev = string(us.head)
		return err
	})
	if err != nil {
		return mapErr(err)
	}
	for _, it := range items {
		msg := &message{s: s, st: st, rev: rev, key: msgKey(id, it.e.UID), e: it.e}
		if err := s.fetchOne(w, it.seq, msg, options, it.flagsSent); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) fetchOne(w *imapserver.FetchWriter, seq uint32, msg *message, options *imap.FetchOptions, flags bool) error {
	// Read everything first: an error must not leave a half-written response.
	var p *parsed
	var err error
	if options.Envelope || options.BodyStructure != nil {
		if p, err = msg.parsed(); err != nil {
			return err
		}
	}
	sections := make([][]byte, len(options.BodySection))
	binaries := make([][]byte, len(options.BinarySection))
	sizes := make([]uint32, len(options.BinarySectionSize))
	if len(sections)+len(binaries)+len(sizes) > 0 {
		b, err := msg.bytes()
		if err != nil {
			return err
		}
		for i, bs := range options.BodySection {
			sections[i] = imapserver.ExtractBodySection(bytes.NewReader(b), bs)
		}
		for i, bs := range options.BinarySection {
			binaries[i] = imapserver.ExtractBinarySection(bytes.NewReader(b), bs)
		}
		for i, bs := range options.BinarySectionSize {
			sizes[i] = imapserver.ExtractBinarySectionSize(bytes.NewReader(b), bs)
		}
	}
	rw := w.CreateMessage(seq)
	rw.WriteUID(msg.e.UID)
	if options.Flags || flags {
		rw.WriteFlags(s.flagsFor(s.sel, msg.e))
	}
	if options.InternalDate {
		rw.WriteInternalDate(msg.e.Date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(msg.e.Size)
	}
	if options.Envelope {
		rw.WriteEnvelope(p.envelope)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(p.bs)
	}
	for i, bs := range options.BodySection {
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(sections[i]))), sections[i]); err != nil {
			return err
		}
	}
	for i, bs := range options.BinarySection {
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(binaries[i]))), binaries[i]); err != nil {
			return err
		}
	}
	for i, bs := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bs, sizes[i])
	}
	return rw.Close()
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// Search evaluates every criterion the library parses: sequence and UID sets (with $),
// dates, header fields (address fields match parsed addresses), BODY and TEXT (decoded
// text parts), flags (\Recent per session), sizes, NOT and OR.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	if err := checkCriteria(criteria, 0); err != nil {
		return nil, err
	}
	var maxUID imap.UID
	if n := len(sel.uids); n > 0 {
		maxUID = sel.uids[n-1]
	}
	var res imap.UIDSet
	for _, u := range sel.searchRes {
		res.AddNum(u)
	}
	c := staticCriteria(*criteria, uint32(len(sel.uids)), maxUID, res)
	type item struct {
		seq uint32
		e   entry
	}
	var items []item
	var st store.Store
	var rev, id string
	err := s.locked(func(us *userState) error {
		m := us.boxes[sel.id]
		if m == nil {
			return ErrNoMailbox
		}
		st, rev, id = us.st, string(us.head), m.id
		for i, u := range sel.uids {
			if j, ok := m.find(u); ok {
				items = append(items, item{uint32(i + 1), m.msgs[j]})
			}
		}
		return nil
	})
	if err != nil {
		return nil, mapErr(err)
	}
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	var saved []imap.UID
	for _, it := range items {
		msg := &message{s: s, st: st, rev: rev, key: msgKey(id, it.e.UID), e: it.e}
		ok, err := s.match(it.seq, msg, &c)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		num := uint32(it.seq)
		if kind == imapserver.NumKindUID {
			num = uint32(it.e.UID)
		}
		if data.Count == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
		seqs.AddNum(it.seq)
		uids.AddNum(it.e.UID)
		saved = append(saved, it.e.UID)
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		sel.searchRes = saved
	}
	return data, nil
}

const maxCriteriaDepth = 100

func checkCriteria(c *imap.SearchCriteria, depth int) error {
	if depth > maxCriteriaDepth {
		return imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "Search criteria nested too deeply")
	}
	if c.ModSeq != nil {
		return imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "MODSEQ is not supported")
	}
	for i := range c.Not {
		if err := checkCriteria(&c.Not[i], depth+1); err != nil {
			return err
		}
	}
	for i := range c.Or {
		for k := 0; k < 2; k++ {
			if err := checkCriteria(&c.Or[i][k], depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// staticCriteria resolves "*" and "$" in c's sets.
func staticCriteria(c imap.SearchCriteria, n uint32, maxUID imap.UID, res imap.UIDSet) imap.SearchCriteria {
	seqs := make([]imap.SeqSet, len(c.SeqNum))
	for i, set := range c.SeqNum {
		for _, r := range set {
			if r.Start == 0 {
				r.Start = n
			}
			if r.Stop == 0 {
				r.Stop = n
			}
			if r.Start > r.Stop {
				r.Start, r.Stop = r.Stop, r.Start
			}
			seqs[i] = append(seqs[i], r)
		}
	}
	c.SeqNum = seqs
	uids := make([]imap.UIDSet, len(c.UID))
	for i, set := range c.UID {
		if imap.IsSearchRes(set) {
			uids[i] = append(imap.UIDSet{}, res...)
			if uids[i] == nil {
				uids[i] = imap.UIDSet{}
			}
			continue
		}
		for _, r := range set {
			if r.Start == 0 {
				r.Start = maxUID
			}
			if r.Stop == 0 {
				r.Stop = maxUID
			}
			if r.Start > r.Stop {
				r.Start, r.Stop = r.Stop, r.Start
			}
			uids[i] = append(uids[i], r)
		}
	}
	c.UID = uids
	c.Not = append([]imap.SearchCriteria(nil), c.Not...)
	for i := range c.Not {
		c.Not[i] = staticCriteria(c.Not[i], n, maxUID, res)
	}
	c.Or = append([][2]imap.SearchCriteria(nil), c.Or...)
	for i := range c.Or {
		c.Or[i][0] = staticCriteria(c.Or[i][0], n, maxUID, res)
		c.Or[i][1] = staticCriteria(c.Or[i][1], n, maxUID, res)
	}
	return c
}

func dateOnly(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func matchDate(t, since, before time.Time) bool {
	t = dateOnly(t)
	if !since.IsZero() && t.Before(dateOnly(since)) {
		return false
	}
	if !before.IsZero() && !t.Before(dateOnly(before)) {
		return false
	}
	return true
}

func (s *session) match(seq uint32, msg *message, c *imap.SearchCriteria) (bool, error) {
	e := msg.e
	for _, set := range c.SeqNum {
		if !set.Contains(seq) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !set.Contains(e.UID) {
			return false, nil
		}
	}
	if !matchDate(e.Date, c.Since, c.Before) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !s.hasFlagView(e, f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if s.hasFlagView(e, f) {
			return false, nil
		}
	}
	if c.Larger != 0 && e.Size <= c.Larger {
		return false, nil
	}
	if c.Smaller != 0 && e.Size >= c.Smaller {
		return false, nil
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		p, err := msg.parsed()
		if err != nil {
			return false, err
		}
		for _, hf := range c.Header {
			if !matchHeader(p, hf.Key, hf.Value) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			if p.envelope.Date.IsZero() || !matchDate(p.envelope.Date, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	if len(c.Body) > 0 || len(c.Text) > 0 {
		b, err := msg.bytes()
		if err != nil {
			return false, err
		}
		for _, text := range c.Text {
			if !matchBody(b, text, true) {
				return false, nil
			}
		}
		for _, text := range c.Body {
			if !matchBody(b, text, false) {
				return false, nil
			}
		}
	}
	for i := range c.Not {
		ok, err := s.match(seq, msg, &c.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		ok, err := s.match(seq, msg, &c.Or[i][0])
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = s.match(seq, msg, &c.Or[i][1]); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

func (s *session) hasFlagView(e entry, f imap.Flag) bool {
	if strings.EqualFold(string(f), `\Recent`) {
		return s.sel.recent.Contains(e.UID)
	}
	return hasFlag(e.Flags, f)
}

func containsFold(s, substr string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(substr))
}

// matchHeader matches a header field: address fields by their parsed addresses
// ("Name <user@host>"), others by their decoded text. An empty value matches any message
// that has the field.
func matchHeader(p *parsed, key, value string) bool {
	fields := p.header.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	switch strings.ToLower(key) {
	case "from", "to", "cc", "bcc", "sender", "reply-to":
		for fields.Next() {
			for _, a := range parseAddressField(fields.Value()) {
				if a.Host == "" {
					if containsFold(a.Mailbox, value) {
						return true
					}
					continue
				}
				if containsFold(a.Name+" <"+a.Addr()+">", value) {
					return true
				}
			}
		}
		return false
	}
	for fields.Next() {
		v, err := wordDecoder.DecodeHeader(fields.Value())
		if err != nil {
			v = fields.Value()
		}
		if containsFold(v, value) {
			return true
		}
	}
	return false
}

const maxSearchParts = 100

// matchBody looks for text in the decoded text parts of a message (and, for TEXT, its
// header fields).
func matchBody(b []byte, text string, withHeader bool) bool {
	e, err := gomessage.Read(bytes.NewReader(b))
	if e == nil {
		return containsFold(string(b), text)
	}
	_ = err // unknown charsets and encodings still give a readable entity
	parts := 0
	return matchEntity(e, text, withHeader, &parts)
}

func matchEntity(e *gomessage.Entity, text string, withHeader bool, parts *int) bool {
	*parts++
	if *parts > maxSearchParts {
		return false
	}
	if withHeader {
		f := e.Header.Fields()
		for f.Next() {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if containsFold(v, text) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(p, text, withHeader, parts) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && t != "message/rfc822" {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(e.Body, store.MaxValueSize))
	if err != nil && len(body) == 0 {
		return false
	}
	return containsFold(string(body), text)
}
