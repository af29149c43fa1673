package signpost

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-home/hearth/store"
)

// grantsShape renders grant infos as "owner/repo[/path]>grantee:access" for comparison.
func grantsShape(gs []GrantInfo) []string {
	out := []string{}
	for _, g := range gs {
		out = append(out, fmt.Sprintf("%s>%s:%v", g.Collection, g.Grantee, g.Access))
	}
	return out
}

func mustGrant(t *testing.T, a *Accounts, c Collection, grantee string, acc Access) {
	t.Helper()
	if err := a.Grant(context.Background(), c, grantee, acc); err != nil {
		t.Fatal(err)
	}
}

// grantKeys returns the keys below grants/ in s.
func grantKeys(t *testing.T, s store.Store) []string {
	t.Helper()
	entries, err := s.List(context.Background(), "main", "grants")
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	keys := []string{}
	for _, e := range entries {
		keys = append(keys, e.Key)
	}
	return keys
}

func TestGrantRevokeRegrant(t *testing.T) {
	ctx := context.Background()
	a, s := newMem(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		mustAdd(t, a, u, u+"-password")
	}
	family := Collection{"alice", "contacts", "family"}
	cal := Collection{"alice", "calendar", ""}
	steps := []struct {
		name   string
		change func() error
		want   error
		msg    string   // the newest commit's message after the change
		of     []string // GrantsOf(alice/contacts)
		toBob  []string // GrantsTo(bob)
	}{
		{"grant", func() error { return a.Grant(ctx, family, "bob", ReadOnly) }, nil,
			"grant bob read-only access to alice/contacts/family",
			[]string{"alice/contacts/family>bob:read-only"}, []string{"alice/contacts/family>bob:read-only"}},
		{"grant the same again changes nothing", func() error { return a.Grant(ctx, family, "bob", ReadOnly) }, nil,
			"grant bob read-only access to alice/contacts/family",
			[]string{"alice/contacts/family>bob:read-only"}, []string{"alice/contacts/family>bob:read-only"}},
		{"regrant read-write", func() error { return a.Grant(ctx, family, "bob", ReadWrite) }, nil,
			"change bob's access to alice/contacts/family from read-only to read-write",
			[]string{"alice/contacts/family>bob:read-write"}, []string{"alice/contacts/family>bob:read-write"}},
		{"grant carol", func() error { return a.Grant(ctx, family, "carol", ReadOnly) }, nil,
			"grant carol read-only access to alice/contacts/family",
			[]string{"alice/contacts/family>bob:read-write", "alice/contacts/family>carol:read-only"}, []string{"alice/contacts/family>bob:read-write"}},
		{"calendar to bob", func() error { return a.Grant(ctx, cal, "bob", ReadOnly) }, nil,
			"grant bob read-only access to alice/calendar",
			[]string{"alice/contacts/family>bob:read-write", "alice/contacts/family>carol:read-only"},
			[]string{"alice/calendar>bob:read-only", "alice/contacts/family>bob:read-write"}},
		{"carol shares with bob", func() error { return a.Grant(ctx, Collection{"carol", "mail", "INBOX"}, "bob", ReadOnly) }, nil,
			"grant bob read-only access to carol/mail/INBOX",
			[]string{"alice/contacts/family>bob:read-write", "alice/contacts/family>carol:read-only"},
			[]string{"alice/calendar>bob:read-only", "alice/contacts/family>bob:read-write", "carol/mail/INBOX>bob:read-only"}},
		{"revoke", func() error { return a.Revoke(ctx, family, "bob") }, nil,
			"revoke bob's read-write access to alice/contacts/family",
			[]string{"alice/contacts/family>carol:read-only"}, []string{"alice/calendar>bob:read-only", "carol/mail/INBOX>bob:read-only"}},
		{"revoke again", func() error { return a.Revoke(ctx, family, "bob") }, ErrNotFound,
			"revoke bob's read-write access to alice/contacts/family",
			[]string{"alice/contacts/family>carol:read-only"}, []string{"alice/calendar>bob:read-only", "carol/mail/INBOX>bob:read-only"}},
		{"revoke on a path inside a grant", func() error { return a.Revoke(ctx, Collection{"alice", "calendar", "home"}, "bob") }, ErrNotFound,
			"revoke bob's read-write access to alice/contacts/family",
			[]string{"alice/contacts/family>carol:read-only"}, []string{"alice/calendar>bob:read-only", "carol/mail/INBOX>bob:read-only"}},
		{"grant none removes", func() error { return a.Grant(ctx, cal, "bob", NoAccess) }, nil,
			"revoke bob's read-only access to alice/calendar",
			[]string{"alice/contacts/family>carol:read-only"}, []string{"carol/mail/INBOX>bob:read-only"}},
		{"grant none of nothing", func() error { return a.Grant(ctx, cal, "bob", NoAccess) }, nil,
			"revoke bob's read-only access to alice/calendar",
			[]string{"alice/contacts/family>carol:read-only"}, []string{"carol/mail/INBOX>bob:read-only"}},
		{"repository-wide", func() error { return a.Grant(ctx, Collection{"alice", "contacts", ""}, "bob", ReadOnly) }, nil,
			"grant bob read-only access to alice/contacts",
			[]string{"alice/contacts>bob:read-only", "alice/contacts/family>carol:read-only"},
			[]string{"alice/contacts>bob:read-only", "carol/mail/INBOX>bob:read-only"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			wantErr(t, st.name, st.change(), st.want)
			log, err := s.Log(ctx, "main", 1)
			if err != nil {
				t.Fatal(err)
			}
			if log[0].Message != st.msg {
				t.Errorf("commit message %q, want %q", log[0].Message, st.msg)
			}
			of, err := a.GrantsOf(ctx, Collection{"alice", "contacts", ""})
			if got := grantsShape(of); err != nil || !slices.Equal(got, st.of) {
				t.Errorf("GrantsOf = %q, %v; want %q", got, err, st.of)
			}
			to, err := a.GrantsTo(ctx, "bob")
			if got := grantsShape(to); err != nil || !slices.Equal(got, st.toBob) {
				t.Errorf("GrantsTo(bob) = %q, %v; want %q", got, err, st.toBob)
			}
		})
	}
	// GrantsOf a path lists that path and below; another Accounts (process) sees the same.
	other := NewAccounts(s, AccountsOptions{Logger: quiet, Limits: lenient})
	of, err := other.GrantsOf(ctx, family)
	if got := grantsShape(of); err != nil || !slices.Equal(got, []string{"alice/contacts/family>carol:read-only"}) {
		t.Fatalf("GrantsOf(family) = %q, %v", got, err)
	}
	if to, err := other.GrantsTo(ctx, "alice"); err != nil || len(to) != 0 {
		t.Fatalf("GrantsTo(alice) = %v, %v", to, err)
	}
	want := []string{"grants/by/alice.json", "grants/by/carol.json", "grants/to/bob.json", "grants/to/carol.json"}
	if got := grantKeys(t, s); !slices.Equal(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
	// Revoking everything leaves no records behind.
	for _, r := range []struct {
		c       Collection
		grantee string
	}{{Collection{"alice", "contacts", ""}, "bob"}, {family, "carol"}, {Collection{"carol", "mail", "INBOX"}, "bob"}} {
		if err := a.Revoke(ctx, r.c, r.grantee); err != nil {
			t.Fatal(err)
		}
	}
	if got := grantKeys(t, s); len(got) != 0 {
		t.Fatalf("keys left %q", got)
	}
}

func TestAccess(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		mustAdd(t, a, u, u+"-password")
	}
	mustGrant(t, a, Collection{"alice", "contacts", "family"}, "bob", ReadOnly)
	mustGrant(t, a, Collection{"alice", "contacts", "family/kids"}, "bob", ReadWrite)
	mustGrant(t, a, Collection{"alice", "calendar", ""}, "bob", ReadWrite)
	mustGrant(t, a, Collection{"alice", "mail", ""}, "carol", ReadOnly)
	mustGrant(t, a, Collection{"alice", "mail", "INBOX"}, "carol", ReadWrite)
	mustGrant(t, a, Collection{"carol", "contacts", "work"}, "alice", ReadOnly)
	for _, tc := range []struct {
		user       string
		owner      string
		repo, path string
		want       Access
	}{
		{"alice", "alice", "contacts", "", ReadWrite},
		{"alice", "alice", "contacts", "family", ReadWrite},
		{"alice", "alice", "never-made", "x/y", ReadWrite},
		{"bob", "alice", "contacts", "family", ReadOnly},
		{"bob", "alice", "contacts", "family/card.vcf", ReadOnly},
		{"bob", "alice", "contacts", "family/kids", ReadWrite},
		{"bob", "alice", "contacts", "family/kids/x.vcf", ReadWrite},
		{"bob", "alice", "contacts", "family/kidsx", ReadOnly},
		{"bob", "alice", "contacts", "family2", NoAccess},
		{"bob", "alice", "contacts", "famil", NoAccess},
		{"bob", "alice", "contacts", "", NoAccess},
		{"bob", "alice", "contacts", "work", NoAccess},
		{"bob", "alice", "calendar", "", ReadWrite},
		{"bob", "alice", "calendar", "home/event.ics", ReadWrite},
		{"bob", "alice", "calendar2", "", NoAccess},
		{"bob", "alice", "mail", "INBOX", NoAccess},
		{"bob", "carol", "contacts", "work", NoAccess},
		{"carol", "alice", "mail", "", ReadOnly},
		{"carol", "alice", "mail", "Sent/1", ReadOnly},
		{"carol", "alice", "mail", "INBOX", ReadWrite}, // the greater of two grants
		{"carol", "alice", "mail", "INBOX/7", ReadWrite},
		{"carol", "alice", "contacts", "family", NoAccess},
		{"alice", "carol", "contacts", "work", ReadOnly},
		{"alice", "carol", "contacts", "", NoAccess},
		{"dave", "alice", "contacts", "family", NoAccess},
		{"dave", "alice", "mail", "", NoAccess},
		{"nobody", "alice", "contacts", "family", NoAccess},
		{"bob", "nobody", "contacts", "", NoAccess},
		{"nobody", "nobody", "contacts", "", NoAccess},
	} {
		c := Collection{tc.owner, tc.repo, tc.path}
		t.Run(tc.user+" "+c.String(), func(t *testing.T) {
			got, err := a.Access(ctx, tc.user, c)
			if err != nil || got != tc.want {
				t.Fatalf("Access(%q, %s) = %v, %v; want %v", tc.user, c, got, err, tc.want)
			}
		})
	}
}

func TestAccessDisabled(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		mustAdd(t, a, u, u+"-password")
	}
	family := Collection{"alice", "contacts", "family"}
	mustGrant(t, a, family, "bob", ReadWrite)
	mustGrant(t, a, family, "carol", ReadOnly)
	mustGrant(t, a, Collection{"carol", "calendar", ""}, "bob", ReadOnly)
	steps := []struct {
		name   string
		change func() error
		want   map[string]Access // user → access to alice/contacts/family
		toBob  []string
	}{
		{"enabled", func() error { return nil },
			map[string]Access{"alice": ReadWrite, "bob": ReadWrite, "carol": ReadOnly},
			[]string{"alice/contacts/family>bob:read-write", "carol/calendar>bob:read-only"}},
		{"grantee disabled", func() error { return a.SetDisabled(ctx, "bob", true) },
			map[string]Access{"alice": ReadWrite, "bob": NoAccess, "carol": ReadOnly},
			[]string{"alice/contacts/family>bob:read-write", "carol/calendar>bob:read-only"}},
		{"grantee enabled", func() error { return a.SetDisabled(ctx, "bob", false) },
			map[string]Access{"alice": ReadWrite, "bob": ReadWrite, "carol": ReadOnly},
			[]string{"alice/contacts/family>bob:read-write", "carol/calendar>bob:read-only"}},
		{"owner disabled", func() error { return a.SetDisabled(ctx, "alice", true) },
			map[string]Access{"alice": NoAccess, "bob": NoAccess, "carol": NoAccess},
			[]string{"carol/calendar>bob:read-only"}},
		{"grant while the owner is disabled", func() error { return a.Grant(ctx, family, "carol", ReadWrite) },
			map[string]Access{"alice": NoAccess, "bob": NoAccess, "carol": NoAccess},
			[]string{"carol/calendar>bob:read-only"}},
		{"owner enabled", func() error { return a.SetDisabled(ctx, "alice", false) },
			map[string]Access{"alice": ReadWrite, "bob": ReadWrite, "carol": ReadWrite},
			[]string{"alice/contacts/family>bob:read-write", "carol/calendar>bob:read-only"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.change(); err != nil {
				t.Fatal(err)
			}
			for user, want := range st.want {
				if got, err := a.Access(ctx, user, family); err != nil || got != want {
					t.Errorf("Access(%q) = %v, %v; want %v", user, got, err, want)
				}
			}
			to, err := a.GrantsTo(ctx, "bob")
			if got := grantsShape(to); err != nil || !slices.Equal(got, st.toBob) {
				t.Errorf("GrantsTo(bob) = %q, %v; want %q", got, err, st.toBob)
			}
		})
	}
}

func TestRemoveUserDropsGrants(t *testing.T) {
	ctx := context.Background()
	a, s := newMem(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		mustAdd(t, a, u, u+"-password")
	}
	mustGrant(t, a, Collection{"alice", "contacts", "family"}, "bob", ReadOnly)
	mustGrant(t, a, Collection{"alice", "calendar", ""}, "bob", ReadWrite)
	mustGrant(t, a, Collection{"alice", "contacts", "family"}, "carol", ReadOnly)
	mustGrant(t, a, Collection{"bob", "contacts", ""}, "alice", ReadOnly)
	mustGrant(t, a, Collection{"bob", "contacts", ""}, "carol", ReadWrite)
	mustGrant(t, a, Collection{"carol", "mail", ""}, "bob", ReadOnly)

	if err := a.Remove(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	want := []string{"grants/by/alice.json", "grants/to/carol.json"}
	if got := grantKeys(t, s); !slices.Equal(got, want) {
		t.Fatalf("keys after removing bob %q, want %q", got, want)
	}
	of, err := a.GrantsOf(ctx, Collection{"alice", "contacts", ""})
	if got := grantsShape(of); err != nil || !slices.Equal(got, []string{"alice/contacts/family>carol:read-only"}) {
		t.Fatalf("GrantsOf = %q, %v", got, err)
	}
	to, err := a.GrantsTo(ctx, "carol")
	if got := grantsShape(to); err != nil || !slices.Equal(got, []string{"alice/contacts/family>carol:read-only"}) {
		t.Fatalf("GrantsTo(carol) = %q, %v", got, err)
	}
	// A new user of the same name inherits nothing, either way round.
	mustAdd(t, a, "bob", "bob-password")
	for _, tc := range []struct {
		user string
		c    Collection
	}{
		{"bob", Collection{"alice", "contacts", "family"}},
		{"bob", Collection{"alice", "calendar", ""}},
		{"bob", Collection{"carol", "mail", ""}},
		{"alice", Collection{"bob", "contacts", ""}},
		{"carol", Collection{"bob", "contacts", ""}},
	} {
		if got, err := a.Access(ctx, tc.user, tc.c); err != nil || got != NoAccess {
			t.Errorf("Access(%q, %s) = %v, %v after bob was removed and added again", tc.user, tc.c, got, err)
		}
	}
	if to, err := a.GrantsTo(ctx, "bob"); err != nil || len(to) != 0 {
		t.Fatalf("GrantsTo(new bob) = %v, %v", to, err)
	}
	// Removing the last users leaves no records.
	for _, u := range []string{"alice", "carol"} {
		if err := a.Remove(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if got := grantKeys(t, s); len(got) != 0 {
		t.Fatalf("keys left %q", got)
	}
}

func TestGrantValidation(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t)
	for _, u := range []string{"alice", "bob", "off"} {
		mustAdd(t, a, u, u+"-password")
	}
	if err := a.SetDisabled(ctx, "off", true); err != nil {
		t.Fatal(err)
	}
	ok := Collection{"alice", "contacts", "family"}
	for _, tc := range []struct {
		name    string
		c       Collection
		grantee string
		acc     Access
		want    error
	}{
		{"ok", ok, "bob", ReadOnly, nil},
		{"whole repository", Collection{"alice", "contacts", ""}, "bob", ReadOnly, nil},
		{"deep path", Collection{"alice", "contacts", "a/b.c/d e/ü"}, "bob", ReadOnly, nil},
		{"repo punctuation", Collection{"alice", "0x.y_z-", ""}, "bob", ReadOnly, nil},
		{"to a disabled user", ok, "off", ReadOnly, nil},
		{"by a disabled user", Collection{"off", "contacts", ""}, "bob", ReadOnly, nil},
		{"self", ok, "alice", ReadOnly, ErrInvalid},
		{"unknown grantee", ok, "carol", ReadOnly, ErrNotFound},
		{"unknown owner", Collection{"carol", "contacts", ""}, "bob", ReadOnly, ErrNotFound},
		{"bad access", ok, "bob", Access(3), ErrInvalid},
		{"negative access", ok, "bob", Access(-1), ErrInvalid},
		{"reserved owner", Collection{"system", "accounts", ""}, "bob", ReadOnly, ErrInvalid},
		{"reserved grantee", ok, "system", ReadOnly, ErrInvalid},
		{"bad grantee", ok, "Bob", ReadOnly, ErrInvalid},
		{"empty owner", Collection{"", "contacts", ""}, "bob", ReadOnly, ErrInvalid},
		{"empty repo", Collection{"alice", "", "family"}, "bob", ReadOnly, ErrInvalid},
		{"repo with slash", Collection{"alice", "con/tacts", ""}, "bob", ReadOnly, ErrInvalid},
		{"repo upper case", Collection{"alice", "Contacts", ""}, "bob", ReadOnly, ErrInvalid},
		{"repo leading dot", Collection{"alice", ".contacts", ""}, "bob", ReadOnly, ErrInvalid},
		{"repo .git", Collection{"alice", "contacts.git", ""}, "bob", ReadOnly, ErrInvalid},
		{"repo 65 bytes", Collection{"alice", strings.Repeat("r", 65), ""}, "bob", ReadOnly, ErrInvalid},
		{"path ..", Collection{"alice", "contacts", "../bob"}, "bob", ReadOnly, ErrInvalid},
		{"path leading slash", Collection{"alice", "contacts", "/family"}, "bob", ReadOnly, ErrInvalid},
		{"path trailing slash", Collection{"alice", "contacts", "family/"}, "bob", ReadOnly, ErrInvalid},
		{"path .git", Collection{"alice", "contacts", "x/.GIT"}, "bob", ReadOnly, ErrInvalid},
		{"path control", Collection{"alice", "contacts", "a\nb"}, "bob", ReadOnly, ErrInvalid},
		{"path too long", Collection{"alice", "contacts", strings.Repeat("a/", 600)}, "bob", ReadOnly, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, "Grant", a.Grant(ctx, tc.c, tc.grantee, tc.acc), tc.want)
			if tc.want == ErrInvalid && tc.acc.valid() {
				wantErr(t, "Revoke", a.Revoke(ctx, tc.c, tc.grantee), ErrInvalid)
				if tc.c.Check() != nil {
					_, err := a.Access(ctx, "bob", tc.c)
					wantErr(t, "Access", err, ErrInvalid)
					_, err = a.GrantsOf(ctx, tc.c)
					wantErr(t, "GrantsOf", err, ErrInvalid)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"Access bad user", func() error { _, err := a.Access(ctx, "../x", ok); return err }(), ErrInvalid},
		{"GrantsTo bad user", func() error { _, err := a.GrantsTo(ctx, "A"); return err }(), ErrInvalid},
		{"GrantsTo unknown user", func() error { _, err := a.GrantsTo(ctx, "carol"); return err }(), ErrNotFound},
		{"GrantsOf unknown owner", func() error { _, err := a.GrantsOf(ctx, Collection{"carol", "x", ""}); return err }(), ErrNotFound},
		{"Revoke unknown grantee", a.Revoke(ctx, ok, "carol"), ErrNotFound},
		{"Revoke unknown owner", a.Revoke(ctx, Collection{"carol", "x", ""}, "bob"), ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.name, tc.err, tc.want) })
	}
}

func TestAccessText(t *testing.T) {
	for _, acc := range []Access{NoAccess, ReadOnly, ReadWrite} {
		b, err := json.Marshal(GrantInfo{Access: acc})
		if err != nil {
			t.Fatal(err)
		}
		var g GrantInfo
		if err := json.Unmarshal(b, &g); err != nil || g.Access != acc {
			t.Fatalf("%s: %v, %v", b, g.Access, err)
		}
		if p, err := ParseAccess(acc.String()); err != nil || p != acc {
			t.Fatalf("ParseAccess(%q) = %v, %v", acc.String(), p, err)
		}
	}
	if _, err := ParseAccess("rw"); !strings.Contains(fmt.Sprint(err), "invalid") {
		t.Fatalf("ParseAccess(rw) = %v", err)
	}
	if _, err := json.Marshal(Access(9)); err == nil {
		t.Fatal("Access(9) marshalled")
	}
	if s := Access(9).String(); s != "Access(9)" {
		t.Fatalf("String = %q", s)
	}
}

// The per-owner limit, and stored grant records that are damaged fail closed.
func TestGrantLimitAndDamage(t *testing.T) {
	ctx := context.Background()
	a, s := newMem(t)
	mustAdd(t, a, "alice", "alice-password")
	mustAdd(t, a, "bob", "bob-password")
	rec := grantsRecord{Owner: "alice"}
	for i := range MaxGrants {
		rec.Grants = append(rec.Grants, grantRecord{Repo: "contacts", Path: fmt.Sprintf("book%04d", i), Grantee: "bob", Access: ReadOnly})
	}
	b, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	putRecord(t, s, grantsByKey("alice"), string(b))
	putRecord(t, s, grantsToKey("bob"), `{"grantee":"bob","owners":["alice"]}`)
	wantErr(t, "Grant over the limit", a.Grant(ctx, Collection{"alice", "contacts", "more"}, "bob", ReadOnly), ErrLimit)
	// Changing and revoking existing grants still works at the limit.
	mustGrant(t, a, Collection{"alice", "contacts", "book0007"}, "bob", ReadWrite)
	if err := a.Revoke(ctx, Collection{"alice", "contacts", "book0008"}, "bob"); err != nil {
		t.Fatal(err)
	}
	mustGrant(t, a, Collection{"alice", "contacts", "more"}, "bob", ReadOnly)
	if got, err := a.Access(ctx, "bob", Collection{"alice", "contacts", "book0007/x"}); err != nil || got != ReadWrite {
		t.Fatalf("Access = %v, %v", got, err)
	}
	to, err := a.GrantsTo(ctx, "bob")
	if err != nil || len(to) != MaxGrants {
		t.Fatalf("GrantsTo: %d, %v", len(to), err)
	}

	for _, body := range []string{
		`not json`,
		`{"owner":"alice","grants":[{"repo":"contacts","grantee":"bob","access":"admin","created":"2025-01-01T00:00:00Z"}]}`,
		`{"owner":"alice","grants":[{"repo":"contacts","grantee":"alice","access":"read-only","created":"2025-01-01T00:00:00Z"}]}`,
		`{"owner":"bob","grants":[]}`,
		`{"owner":"alice","grants":[],"extra":1}`,
		`{"owner":"alice","grants":[{"repo":"b","grantee":"bob","access":"read-only","created":"2025-01-01T00:00:00Z"},{"repo":"a","grantee":"bob","access":"read-only","created":"2025-01-01T00:00:00Z"}]}`,
	} {
		putRecord(t, s, grantsByKey("alice"), body)
		if got, err := a.Access(ctx, "bob", Collection{"alice", "b", ""}); err == nil || got != NoAccess {
			t.Errorf("Access over damaged %s = %v, %v", body, got, err)
		}
		if got, err := a.Access(ctx, "alice", Collection{"alice", "b", ""}); err != nil || got != ReadWrite {
			t.Errorf("owner's Access over damaged %s = %v, %v", body, got, err)
		}
		if err := a.Grant(ctx, Collection{"alice", "b", ""}, "bob", ReadOnly); err == nil {
			t.Errorf("Grant over damaged %s succeeded", body)
		}
	}
	// Removing a user whose record is damaged removes it.
	if err := a.Remove(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := grantKeys(t, s); len(got) != 0 {
		t.Fatalf("keys left %q", got)
	}
}

// Two Accounts over two opens of one repository on disk, as two processes would have:
// concurrent grants by the same owner and to the same grantee lose none, and the records
// stay consistent with each other.
func TestConcurrentGrantsOnDisk(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "accounts.git")
	r0, err := store.Init(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r0.Close()
	var accts []*Accounts
	for range 2 {
		r, err := store.Open(dir, &store.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		accts = append(accts, NewAccounts(r, AccountsOptions{Logger: quiet, Limits: lenient}))
	}
	users := []string{"alice", "bob", "carol", "dave"}
	for _, u := range users {
		mustAdd(t, accts[0], u, u+"-password")
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 8*n)
	for i, a := range accts {
		for _, owner := range []string{"alice", "bob"} {
			wg.Go(func() {
				for j := range n {
					grantee := users[2+(i+j)%2] // carol or dave: both writers share grantees
					c := Collection{owner, "contacts", fmt.Sprintf("book-%d-%d", i, j)}
					if err := a.Grant(ctx, c, grantee, ReadOnly); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for _, owner := range []string{"alice", "bob"} {
		of, err := accts[1].GrantsOf(ctx, Collection{owner, "contacts", ""})
		if err != nil || len(of) != 2*n {
			t.Fatalf("GrantsOf(%s) = %d grants, %v; want %d", owner, len(of), err, 2*n)
		}
		total += len(of)
	}
	for _, grantee := range []string{"carol", "dave"} {
		to, err := accts[0].GrantsTo(ctx, grantee)
		if err != nil || len(to) != 2*n {
			t.Fatalf("GrantsTo(%s) = %d grants, %v; want %d", grantee, len(to), err, 2*n)
		}
		for _, g := range to {
			if got, err := accts[1].Access(ctx, grantee, g.Collection); err != nil || got != ReadOnly {
				t.Fatalf("Access(%s, %s) = %v, %v", grantee, g.Collection, got, err)
			}
		}
	}
	if total != 4*n {
		t.Fatalf("%d grants, want %d", total, 4*n)
	}
	// Concurrent removal of a grantee and grants to them leave no grant to a missing user.
	wg.Go(func() {
		if err := accts[0].Remove(ctx, "carol"); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		for j := range n {
			err := accts[1].Grant(ctx, Collection{"alice", "calendar", fmt.Sprint(j)}, "carol", ReadWrite)
			if err != nil && !strings.Contains(err.Error(), "not found") {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	mustAdd(t, accts[0], "carol", "carol-password")
	if to, err := accts[1].GrantsTo(ctx, "carol"); err != nil || len(to) != 0 {
		t.Fatalf("GrantsTo(new carol) = %v, %v", grantsShape(to), err)
	}
	for _, owner := range []string{"alice", "bob"} {
		rec, _, err := accts[0].getGrants(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range rec.Grants {
			if g.Grantee == "carol" {
				t.Fatalf("grant to removed carol survived: %+v", g)
			}
		}
	}
}
