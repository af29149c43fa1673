package mail

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/hearth-home/hearth/store"
)

func TestCapabilities(t *testing.T) {
	f := newFixture(t, fixtureOpts{appendLimit: 1 << 20})
	c := f.login("alice", alicePass, nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev2, imap.CapIMAP4rev1, imap.CapIdle, imap.CapMove, imap.CapUIDPlus,
		imap.CapNamespace, imap.CapListExtended, imap.CapListStatus, imap.CapStatusSize, imap.CapSpecialUse,
		imap.CapCreateSpecialUse, imap.CapUnselect, imap.CapEnable, imap.CapLiteralPlus, imap.CapLiteralMinus,
		imap.CapSASLIR, imap.CapESearch, imap.CapSearchRes, imap.CapUTF8Accept, imap.CapAppendLimit} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing (have %v)", want, caps)
		}
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{AppendLimit: true}).Wait()
	if err != nil || st.AppendLimit == nil || *st.AppendLimit != 1<<20 {
		t.Errorf("STATUS APPENDLIMIT = %+v, %v", st, err)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("namespace = %+v, %v", ns, err)
	}
	en, err := c.Enable(imap.CapIMAP4rev2, imap.CapUTF8Accept).Wait()
	if err != nil || !en.Caps.Has(imap.CapIMAP4rev2) {
		t.Errorf("enable = %+v, %v", en, err)
	}
}

func TestDefaultMailboxesAndList(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.login("alice", alicePass, nil)
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, Size: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]imap.MailboxAttr{}
	for _, d := range list {
		got[d.Mailbox] = d.Attrs
		if d.Status == nil || d.Status.NumMessages == nil || *d.Status.NumMessages != 0 || d.Status.Size == nil {
			t.Errorf("LIST-STATUS of %s = %+v", d.Mailbox, d.Status)
		}
	}
	for _, d := range DefaultMailboxes {
		attrs, ok := got[d.Name]
		if !ok {
			t.Errorf("mailbox %s missing", d.Name)
			continue
		}
		if d.SpecialUse != "" && !slices.Contains(attrs, d.SpecialUse) {
			t.Errorf("%s attrs %v lack %s", d.Name, attrs, d.SpecialUse)
		}
		if !slices.Contains(attrs, imap.MailboxAttrHasNoChildren) {
			t.Errorf("%s attrs %v lack \\HasNoChildren", d.Name, attrs)
		}
	}

	// CREATE-SPECIAL-USE, hierarchy, CHILDREN, subscriptions and \NonExistent.
	if err := c.Create("Lists/go", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Flagged", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Bad", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{"\\Nonsense"}}).Wait(); imapCode(err) != "USEATTR" {
		t.Errorf("create with unknown special use: %v", err)
	}
	if err := c.Create("INBOX", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Errorf("create INBOX again: %v", err)
	}
	if err := c.Subscribe("Lists/go").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Old").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Old").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Error("DELETE INBOX succeeded")
	}

	tests := []struct {
		name    string
		pattern string
		opts    *imap.ListOptions
		want    map[string][]imap.MailboxAttr // mailbox -> attrs it must have
		absent  []string
	}{
		{"percent", "%", nil, map[string][]imap.MailboxAttr{"Lists": {imap.MailboxAttrHasChildren}, "INBOX": nil}, []string{"Lists/go", "Old"}},
		{"children", "Lists/*", nil, map[string][]imap.MailboxAttr{"Lists/go": {imap.MailboxAttrHasNoChildren}}, []string{"Lists"}},
		{"subscribed", "*", &imap.ListOptions{SelectSubscribed: true},
			map[string][]imap.MailboxAttr{"Old": {imap.MailboxAttrNonExistent, imap.MailboxAttrSubscribed}, "Lists/go": {imap.MailboxAttrSubscribed}}, []string{"Flagged"}},
		{"special-use", "*", &imap.ListOptions{SelectSpecialUse: true},
			map[string][]imap.MailboxAttr{"Flagged": {imap.MailboxAttrFlagged}, "Trash": {imap.MailboxAttrTrash}}, []string{"INBOX", "Lists"}},
		{"inbox case", "inbox", nil, map[string][]imap.MailboxAttr{"INBOX": nil}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, err := c.List("", tc.pattern, tc.opts).Collect()
			if err != nil {
				t.Fatal(err)
			}
			have := map[string][]imap.MailboxAttr{}
			for _, d := range list {
				have[d.Mailbox] = d.Attrs
			}
			for name, attrs := range tc.want {
				got, ok := have[name]
				if !ok {
					t.Errorf("%s missing from %v", name, have)
				}
				for _, a := range attrs {
					if !slices.Contains(got, a) {
						t.Errorf("%s attrs %v lack %s", name, got, a)
					}
				}
			}
			for _, name := range tc.absent {
				if _, ok := have[name]; ok {
					t.Errorf("%s listed: %v", name, have)
				}
			}
		})
	}

	// RECURSIVEMATCH: Lists is not subscribed but has a subscribed child.
	list, err = c.List("", "%", &imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var childInfo bool
	for _, d := range list {
		if d.Mailbox == "Lists" && d.ChildInfo != nil && d.ChildInfo.Subscribed {
			childInfo = true
		}
	}
	if !childInfo {
		t.Errorf("RECURSIVEMATCH: no CHILDINFO for Lists in %+v", list)
	}

	// RENAME keeps messages, UIDVALIDITY and children.
	appendMsg(t, c, "Lists/go", testMessage("renamed", "a@example.org", "b@example.org", "x"), nil)
	before, _ := c.Status("Lists/go", &imap.StatusOptions{UIDValidity: true, NumMessages: true}).Wait()
	if err := c.Rename("Lists", "Groups", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	after, err := c.Status("Groups/go", &imap.StatusOptions{UIDValidity: true, NumMessages: true}).Wait()
	if err != nil || after.UIDValidity != before.UIDValidity || *after.NumMessages != 1 {
		t.Errorf("after rename: %+v, %v (before %+v)", after, err, before)
	}
	if _, err := c.Status("Lists/go", &imap.StatusOptions{NumMessages: true}).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("old name after rename: %v", err)
	}
}

const groupMsg = "From: \"Ann Example\" <ann@example.org>\r\n" +
	"To: Friends: bob@example.org, \"Carl\" <carl@example.net>;, dave@example.com\r\n" +
	"Cc: (comment) erin@example.org (Erin)\r\n" +
	"Subject: =?utf-8?q?caf=C3=A9_plans?=\r\n" +
	"Date: Tue, 07 May 2024 10:00:00 +0200\r\n" +
	"Message-Id: <plans@example.org>\r\n" +
	"X-Tag: green\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=b1\r\n\r\n" +
	"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMeet at the caf=C3=A9 at noon.\r\n" +
	"--b1\r\nContent-Type: text/html\r\n\r\n<p>Meet at the <b>cafe</b></p>\r\n--b1--\r\n"

func TestAppendFetchStoreSearch(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.login("alice", alicePass, nil)
	a1 := appendMsg(t, c, "INBOX", groupMsg, []imap.Flag{imap.FlagFlagged})
	a2 := appendMsg(t, c, "INBOX", testMessage("second note", "Bob <bob@example.org>", "alice@example.org", "hello world"), []imap.Flag{imap.FlagSeen})
	a3 := appendMsg(t, c, "INBOX", testMessage("third", "carol@example.com", "alice@example.org", strings.Repeat("long line ", 500)), nil)
	if a1.UID != 1 || a2.UID != 2 || a3.UID != 3 || a1.UIDValidity == 0 {
		t.Fatalf("APPENDUID: %+v %+v %+v", a1, a2, a3)
	}
	cmd := c.Append("Nope", 5, nil)
	cmd.Write([]byte("hello"))
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("append to missing mailbox: %v", err)
	}

	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 3 || sel.UIDNext != 4 || sel.UIDValidity != a1.UIDValidity {
		t.Fatalf("select = %+v", sel)
	}

	bodySec := &imap.FetchItemBodySection{Peek: true}
	textSec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Part: []int{1}, Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{Envelope: true, Flags: true, InternalDate: true, RFC822Size: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{bodySec, textSec}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v %d", err, len(msgs))
	}
	m := msgs[0]
	if string(m.FindBodySection(bodySec)) != groupMsg || m.RFC822Size != int64(len(groupMsg)) {
		t.Errorf("body/size differ: %d", m.RFC822Size)
	}
	if !m.InternalDate.Equal(time.Date(2024, 5, 6, 5, 8, 9, 0, time.UTC)) {
		t.Errorf("internal date = %v", m.InternalDate)
	}
	env := m.Envelope
	if env.Subject != "café plans" || env.MessageID != "plans@example.org" || len(env.From) != 1 || env.From[0].Name != "Ann Example" {
		t.Errorf("envelope = %+v", env)
	}
	// The group survives: start marker, two members, end marker, then dave.
	if len(env.To) != 5 || !env.To[0].IsGroupStart() || env.To[0].Mailbox != "Friends" || env.To[1].Addr() != "bob@example.org" ||
		env.To[2].Name != "Carl" || !env.To[3].IsGroupEnd() || env.To[4].Addr() != "dave@example.com" {
		t.Errorf("envelope To = %+v", env.To)
	}
	if len(env.Cc) != 1 || env.Cc[0].Addr() != "erin@example.org" {
		t.Errorf("envelope Cc = %+v", env.Cc)
	}
	if mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok || mp.Subtype != "alternative" || len(mp.Children) != 2 {
		t.Errorf("bodystructure = %#v", m.BodyStructure)
	}
	if !strings.Contains(string(m.FindBodySection(textSec)), "caf=C3=A9") {
		t.Errorf("BODY[1.TEXT] = %q", m.FindBodySection(textSec))
	}
	if !slices.Contains(m.Flags, imap.FlagFlagged) || slices.Contains(m.Flags, imap.FlagSeen) {
		t.Errorf("flags after peek = %v", m.Flags)
	}

	// A non-peek fetch sets \Seen and reports it.
	msgs, err = c.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("fetch BODY[]: %v %+v", err, msgs)
	}

	// STORE with a new keyword: FLAGS announces it before the FETCH uses it.
	var mu sync.Mutex
	var order []string
	c2 := f.login("alice", alicePass, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.Flags != nil {
				mu.Lock()
				order = append(order, "FLAGS:"+flagList(d.Flags))
				mu.Unlock()
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, _ := msg.Collect()
			mu.Lock()
			order = append(order, "FETCH:"+flagList(buf.Flags))
			mu.Unlock()
		},
	}})
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{"$Work", imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	// imapclient runs the unilateral FETCH handler in a goroutine.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n >= 2 {
			break
		}
	}
	mu.Lock()
	if len(order) < 2 || !strings.HasPrefix(order[0], "FLAGS:") || !strings.Contains(order[0], "$Work") || !strings.Contains(order[1], "$Work") {
		t.Errorf("other session saw %v", order)
	}
	mu.Unlock()
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\Bogus`}}, nil).Close(); err == nil {
		t.Error("STORE of a malformed flag succeeded")
	}

	search := []struct {
		name     string
		criteria imap.SearchCriteria
		want     []imap.UID
	}{
		{"all", imap.SearchCriteria{}, []imap.UID{1, 2, 3}},
		{"from name", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "Ann"}}}, []imap.UID{1}},
		{"to in group", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "To", Value: "carl@example.net"}}}, []imap.UID{1}},
		{"cc through comment", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Cc", Value: "erin@"}}}, []imap.UID{1}},
		{"from not raw comment", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Cc", Value: "comment"}}}, nil},
		{"subject decoded", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "CAFÉ"}}}, []imap.UID{1}},
		{"header exists", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Tag", Value: ""}}}, []imap.UID{1}},
		{"body decoded", imap.SearchCriteria{Body: []string{"café at noon"}}, []imap.UID{1}},
		{"body not header", imap.SearchCriteria{Body: []string{"second note"}}, nil},
		{"text header", imap.SearchCriteria{Text: []string{"second note"}}, []imap.UID{2}},
		{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []imap.UID{2, 3}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []imap.UID{1}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$work"}}, []imap.UID{2}},
		{"larger", imap.SearchCriteria{Larger: 2000}, []imap.UID{3}},
		{"smaller", imap.SearchCriteria{Smaller: 2000}, []imap.UID{1, 2}},
		{"since", imap.SearchCriteria{Since: time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)}, []imap.UID{1, 2, 3}},
		{"before", imap.SearchCriteria{Before: time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)}, nil},
		{"sent before", imap.SearchCriteria{SentBefore: time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)}, []imap.UID{2, 3}},
		{"sent since", imap.SearchCriteria{SentSince: time.Date(2024, 5, 7, 0, 0, 0, 0, time.UTC)}, []imap.UID{1}},
		{"uid", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(2, 3)}}, []imap.UID{2, 3}},
		{"seq star", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}}, []imap.UID{2, 3}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}}}, []imap.UID{1}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Larger: 2000}}}}, []imap.UID{1, 3}},
	}
	for _, tc := range search {
		t.Run("search/"+tc.name, func(t *testing.T) {
			data, err := c.UIDSearch(&tc.criteria, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if got := data.AllUIDs(); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	// ESEARCH return options and SEARCHRES.
	data, err := c.Search(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || data.Min != 1 || data.Max != 3 || data.Count != 3 {
		t.Errorf("ESEARCH = %+v, %v", data, err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true, Size: true, UIDNext: true, NumDeleted: true}).Wait()
	if err != nil || *st.NumMessages != 3 || *st.NumUnseen != 1 || st.UIDNext != 4 || *st.NumDeleted != 0 || *st.Size <= int64(len(groupMsg)) {
		t.Errorf("STATUS = %+v, %v", st, err)
	}
}

func flagList(flags []imap.Flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = string(f)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

func TestCopyMoveExpunge(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.login("alice", alicePass, nil)
	for i := 0; i < 5; i++ {
		appendMsg(t, c, "INBOX", testMessage("m"+string(rune('a'+i)), "x@example.org", "alice@example.org", "body"), []imap.Flag{"$tag"})
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cp, err := c.Copy(imap.UIDSetNum(1, 2), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cp.SourceUIDs.String() != "1:2" || cp.DestUIDs.String() != "1:2" || cp.UIDValidity == 0 {
		t.Errorf("COPYUID = %+v", cp)
	}
	if _, err := c.Copy(imap.UIDSetNum(1), "Nope").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("copy to missing: %v", err)
	}
	mv, err := c.Move(imap.SeqSetNum(3), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if mv.SourceUIDs.String() != "3" || mv.DestUIDs.String() != "1" {
		t.Errorf("MOVE COPYUID = %+v", mv)
	}
	// MOVE into the same mailbox gives the message a new UID.
	mv, err = c.Move(imap.UIDSetNum(4), "INBOX").Wait()
	if err != nil || mv.DestUIDs.String() != "6" {
		t.Errorf("MOVE into itself = %+v, %v", mv, err)
	}
	if err := c.Store(imap.UIDSetNum(1, 5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// UID EXPUNGE only expunges the named \Deleted messages.
	if _, err := c.UIDExpunge(imap.UIDSetNum(5)).Collect(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(seqs, []uint32{1}) {
		t.Errorf("EXPUNGE = %v, %v", seqs, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[0].UID != 2 || msgs[1].UID != 6 || !slices.Contains(msgs[1].Flags, "$tag") {
		t.Errorf("after expunge: %v %+v", err, msgs)
	}
	for name, want := range map[string]uint32{"Archive": 2, "Trash": 1, "INBOX": 2} {
		st, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != want {
			t.Errorf("STATUS %s = %v, %v; want %d", name, st, err, want)
		}
	}
	// Copies share the blob: the store holds one version for both keys.
	us, _ := f.b.user(context.Background(), "alice")
	us.mu.Lock()
	inbox, archive := us.byName["INBOX"], us.byName["Archive"]
	if inbox.msgs[0].Version != archive.msgs[1].Version {
		t.Errorf("copy has a different blob: %s vs %s", inbox.msgs[0].Version, archive.msgs[1].Version)
	}
	us.mu.Unlock()
	// EXAMINE: STORE refused, CLOSE expunges nothing.
	if _, err := c.Select("Archive", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
		t.Error("STORE in EXAMINE succeeded")
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestAppendTooBig(t *testing.T) {
	f := newFixture(t, fixtureOpts{appendLimit: 1000})
	c := f.login("alice", alicePass, nil)
	big := testMessage("big", "a@example.org", "b@example.org", strings.Repeat("x", 2000))
	cmd := c.Append("INBOX", int64(len(big)), nil)
	cmd.Write([]byte(big))
	cmd.Close()
	_, err := cmd.Wait()
	if imapCode(err) != imap.ResponseCodeTooBig {
		t.Fatalf("append over limit: %v", err)
	}
	// The connection still works and nothing was stored.
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 0 {
		t.Errorf("after TOOBIG: %+v, %v", st, err)
	}
	if _, err := f.b.Deliver(context.Background(), "alice", "INBOX", []byte(big), nil, time.Time{}); !errors.Is(err, ErrTooBig) {
		t.Errorf("Deliver over limit: %v", err)
	}
}

// remoteListener makes every connection look as if it came from another machine.
type remoteListener struct{ net.Listener }

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000} }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

func TestAuth(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	if _, err := f.b.Deliver(ctx, "bob", "INBOX", []byte(testMessage("for bob", "x@example.org", "bob@example.org", "secret")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	t.Run("anonymous", func(t *testing.T) {
		c := f.dial(nil)
		if _, err := c.Select("INBOX", nil).Wait(); err == nil {
			t.Error("SELECT without login succeeded")
		}
		if err := c.Authenticate(sasl.NewAnonymousClient("trace")); err == nil {
			t.Error("AUTHENTICATE ANONYMOUS succeeded")
		}
	})
	t.Run("bad password", func(t *testing.T) {
		c := f.dial(nil)
		if err := c.Login("alice", "wrong-password").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("bad password: %v", err)
		}
		if err := c.Login("nobody", "whatever-pass").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("unknown user: %v", err)
		}
	})
	t.Run("sasl plain", func(t *testing.T) {
		c := f.dial(nil)
		if err := c.Authenticate(sasl.NewPlainClient("", "bob", bobPass)); err != nil {
			t.Fatal(err)
		}
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil || sel.NumMessages != 1 {
			t.Errorf("bob's INBOX: %+v, %v", sel, err)
		}
	})
	t.Run("a cannot see b", func(t *testing.T) {
		c := f.login("alice", alicePass, nil)
		for _, name := range []string{"INBOX", "bob/INBOX", "../bob/mail/INBOX", "/bob/INBOX"} {
			sel, err := c.Select(name, nil).Wait()
			if err == nil && sel.NumMessages != 0 {
				t.Errorf("alice SELECT %q sees %d messages", name, sel.NumMessages)
			}
		}
		list, err := c.List("", "*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if strings.Contains(d.Mailbox, "bob") {
				t.Errorf("alice lists %q", d.Mailbox)
			}
		}
	})
	t.Run("plaintext from another machine", func(t *testing.T) {
		g := newFixture(t, fixtureOpts{listener: func(ln net.Listener) net.Listener { return remoteListener{ln} }})
		c := g.dial(nil)
		caps, err := c.Capability().Wait()
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has(imap.CapLoginDisabled) {
			t.Errorf("caps over plain remote connection lack LOGINDISABLED: %v", caps)
		}
		if err := c.Login("alice", alicePass).Wait(); imapCode(err) != imap.ResponseCodePrivacyRequired {
			t.Errorf("plaintext login from remote: %v", err)
		}
	})
}

func TestIdle(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	exists := make(chan uint32, 16)
	c := f.login("alice", alicePass, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	waitExists := func(want uint32) {
		t.Helper()
		select {
		case n := <-exists:
			if n != want {
				t.Errorf("EXISTS %d, want %d", n, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no EXISTS %d during IDLE", want)
		}
	}
	go func() {
		f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage("delivered", "x@example.org", "alice@example.org", "hi")), nil, time.Time{})
	}()
	waitExists(1)

	// A commit written straight to the store, as a REST client would: the message blob
	// only, at the next UID; the backend indexes it.
	us, _ := f.b.user(ctx, "alice")
	us.mu.Lock()
	inbox := us.byName["INBOX"]
	id, next := inbox.id, inbox.meta.UIDNext
	st := us.st
	us.mu.Unlock()
	if _, err := st.Commit(ctx, store.Change{Author: author, Message: "rest", Ops: []store.Op{
		{Key: msgKey(id, next), Value: []byte(testMessage("via rest", "y@example.org", "alice@example.org", "hello"))},
	}}); err != nil {
		t.Fatal(err)
	}
	waitExists(2)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != next || msgs[0].Envelope.Subject != "via rest" {
		t.Fatalf("fetch REST message: %v %+v", err, msgs)
	}
	// The index was written back: a fresh backend sees the message.
	time.Sleep(100 * time.Millisecond)
	b2, err := NewBackend(f.repos, Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	n := 0
	deadline := time.Now().Add(5 * time.Second)
	for n != 2 && time.Now().Before(deadline) {
		n = 0
		b2.mu.Lock()
		delete(b2.users, "alice")
		b2.mu.Unlock()
		b2.Messages(ctx, "alice", "INBOX", func(Message) error { n++; return nil })
		if n != 2 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if n != 2 {
		t.Errorf("reloaded index has %d messages, want 2", n)
	}
}

// TestIdleOtherProcess: a delivery by another process (another Backend on the same data
// directory, as the LMTP appliance would be) reaches an idle client through the store's
// watch. The delay is logged, not asserted.
func TestIdleOtherProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	f := newFixture(t, fixtureOpts{repos: gitRepos(t, dir)})
	exists := make(chan uint32, 4)
	c := f.login("alice", alicePass, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewBackend(gitRepos(t, dir), Options{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	start := time.Now()
	if _, err := other.Deliver(ctx, "alice", "INBOX", []byte(testMessage("lmtp", "x@example.org", "alice@example.org", "hi")), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		t.Logf("EXISTS %d seen %v after the other process's commit", n, time.Since(start))
		if n != 1 {
			t.Errorf("EXISTS %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EXISTS during IDLE")
	}
	idle.Close()
	idle.Wait()
}
