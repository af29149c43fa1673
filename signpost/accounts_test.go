package signpost

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
)

func argonIDKey(password string, salt []byte, time, memory uint32, threads uint8) []byte {
	return argon2.IDKey([]byte(password), salt, time, memory, threads, 32)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newMem returns accounts over a fresh in-memory store, and the store.
func newMem(t testing.TB) (*Accounts, *memstore.Store) {
	t.Helper()
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	return NewAccounts(s, AccountsOptions{Logger: quiet, Limits: lenient}), s
}

// lenient limits keep tests of credentials from being throttled (limit_test.go tests that).
var lenient = LimitOptions{FreeFailures: 1000, LockoutAfter: 2000}

func mustAdd(t testing.TB, a *Accounts, name, password string) {
	t.Helper()
	if err := a.Add(context.Background(), name, password); err != nil {
		t.Fatal(err)
	}
}

func userNames(t *testing.T, a *Accounts) []string {
	t.Helper()
	users, err := a.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	return names
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) || (want == nil) != (err == nil) {
		t.Fatalf("%s = %v, want %v", what, err, want)
	}
}

func TestAddValidation(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t)
	mustAdd(t, a, "taken", "password1")
	for _, tc := range []struct {
		name, user, password string
		want                 error
	}{
		{"ok", "alice", "password1", nil},
		{"digits and punctuation", "0b.o_b-", "12345678", nil},
		{"64 bytes", strings.Repeat("x", 64), "password1", nil},
		{"1024-byte password", "long", strings.Repeat("p", 1024), nil},
		{"exists", "taken", "password1", ErrExists},
		{"reserved", "system", "password1", ErrInvalid},
		{"empty name", "", "password1", ErrInvalid},
		{"65 bytes", strings.Repeat("x", 65), "password1", ErrInvalid},
		{"upper case", "Alice", "password1", ErrInvalid},
		{"leading dot", ".alice", "password1", ErrInvalid},
		{"leading dash", "-alice", "password1", ErrInvalid},
		{"slash", "a/b", "password1", ErrInvalid},
		{"space", "a b", "password1", ErrInvalid},
		{"7-byte password", "bob", "1234567", ErrInvalid},
		{"1025-byte password", "bob", strings.Repeat("p", 1025), ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, fmt.Sprintf("Add(%q)", tc.user), a.Add(ctx, tc.user, tc.password), tc.want)
		})
	}
	want := []string{"0b.o_b-", "alice", "long", "taken", strings.Repeat("x", 64)}
	if got := userNames(t, a); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
}

func TestCheckPassword(t *testing.T) {
	ctx := context.Background()
	a, s := newMem(t)
	mustAdd(t, a, "alice", "correct horse")
	mustAdd(t, a, "bob", "battery staple")
	for _, tc := range []struct {
		name, user, password string
		want                 error
	}{
		{"right", "alice", "correct horse", nil},
		{"right again (cached)", "alice", "correct horse", nil},
		{"other user's password", "alice", "battery staple", ErrBadCredentials},
		{"wrong", "alice", "correct horsE", ErrBadCredentials},
		{"empty", "alice", "", ErrBadCredentials},
		{"unknown user", "carol", "correct horse", ErrBadCredentials},
		{"reserved user", "system", "correct horse", ErrBadCredentials},
		{"invalid user name", "../etc", "correct horse", ErrBadCredentials},
		{"huge password", "alice", strings.Repeat("p", 1<<20), ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, fmt.Sprintf("CheckPassword(%q)", tc.user), a.CheckPassword(ctx, "192.0.2.1:1234", tc.user, tc.password), tc.want)
		})
	}

	// The repository: one key per user holding an argon2id PHC string with the stated
	// parameters, different salts, no plaintext in values or commit messages.
	entries, err := s.List(ctx, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var all strings.Builder
	for _, e := range entries {
		keys = append(keys, e.Key)
		b, _, err := s.Get(ctx, "main", e.Key)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	if !slices.Equal(keys, []string{"users/alice.json", "users/bob.json"}) {
		t.Fatalf("keys %q", keys)
	}
	log, err := s.Log(ctx, "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range log {
		all.WriteString(c.Message)
	}
	if log[0].Message != "add user bob" {
		t.Errorf("newest commit message %q", log[0].Message)
	}
	if strings.Contains(all.String(), "correct horse") || strings.Contains(all.String(), "battery") {
		t.Fatalf("plaintext password stored:\n%s", all.String())
	}
	phc := regexp.MustCompile(`"\$argon2id\$v=19\$m=19456,t=2,p=1\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"`)
	m := phc.FindAllStringSubmatch(all.String(), -1)
	if len(m) != 2 {
		t.Fatalf("want 2 argon2id hashes:\n%s", all.String())
	}
	if m[0][1] == m[1][1] {
		t.Error("two users share a salt")
	}
	for _, sm := range m {
		salt, err := base64.RawStdEncoding.DecodeString(sm[1])
		if err != nil || len(salt) != 16 {
			t.Errorf("salt %q: %d bytes, %v", sm[1], len(salt), err)
		}
	}

	// Another Accounts over the same store (another process) sees the same users.
	b := NewAccounts(s, AccountsOptions{Logger: quiet, Limits: lenient})
	if err := b.CheckPassword(ctx, "192.0.2.1", "bob", "battery staple"); err != nil {
		t.Fatalf("second Accounts: %v", err)
	}
}

// putRecord writes a raw user record, as a damaged or older writer might have.
func putRecord(t *testing.T, s store.Store, key, body string) {
	t.Helper()
	if _, err := s.Commit(context.Background(), store.Change{Message: "test", Ops: []store.Op{{Key: key, Value: []byte(body)}}}); err != nil {
		t.Fatal(err)
	}
}

// Parameters are read from each stored hash, and damaged or absurd records match nothing.
func TestStoredHashParameters(t *testing.T) {
	ctx := context.Background()
	salt := []byte("0123456789abcdef")
	cheap := encodeHash(64, 1, 1, salt, argonIDKey("secret-pw", salt, 1, 64, 1))
	huge := encodeHash(1<<22, 1, 1, salt, argonIDKey("secret-pw", salt, 1, 64, 1))
	rec := func(name, hash string) string {
		return fmt.Sprintf(`{"name":%q,"password":%q,"created":"2025-01-01T00:00:00Z"}`, name, hash)
	}
	for _, tc := range []struct {
		name, body string
		want       error
	}{
		{"other parameters", rec("u", cheap), nil},
		{"memory out of bounds", rec("u", huge), ErrBadCredentials},
		{"argon2i", rec("u", strings.Replace(cheap, "argon2id", "argon2i", 1)), ErrBadCredentials},
		{"version 16", rec("u", strings.Replace(cheap, "v=19", "v=16", 1)), ErrBadCredentials},
		{"bad base64", rec("u", cheap[:len(cheap)-3]+"!!!"), ErrBadCredentials},
		{"plaintext", rec("u", "secret-pw"), ErrBadCredentials},
		{"empty", rec("u", ""), ErrBadCredentials},
		{"other user's record", rec("v", cheap), ErrBadCredentials},
		{"not JSON", "secret-pw", ErrBadCredentials},
		{"unknown field", `{"name":"u","password":"` + cheap + `","admin":true}`, ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, s := newMem(t)
			putRecord(t, s, "users/u.json", tc.body)
			wantErr(t, "CheckPassword", a.CheckPassword(ctx, "192.0.2.1", "u", "secret-pw"), tc.want)
		})
	}
}

func TestAppPasswords(t *testing.T) {
	ctx := context.Background()
	a, s := newMem(t)
	mustAdd(t, a, "alice", "alice-password")
	mustAdd(t, a, "bob_2", "bob-password")
	phone, err := a.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	laptop, err := a.AddAppPassword(ctx, "alice", "laptop (work)")
	if err != nil {
		t.Fatal(err)
	}
	bobs, err := a.AddAppPassword(ctx, "bob_2", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^hth_alice_[A-Za-z0-9_-]{43}$`).MatchString(phone) || phone == laptop {
		t.Fatalf("app passwords %q, %q", phone, laptop)
	}
	if !strings.HasPrefix(bobs, "hth_bob_2_") {
		t.Fatalf("bob's app password %q", bobs)
	}

	for _, tc := range []struct {
		name, user, label string
		want              error
	}{
		{"duplicate label", "alice", "phone", ErrExists},
		{"unknown user", "carol", "phone", ErrNotFound},
		{"empty label", "alice", "", ErrInvalid},
		{"long label", "alice", strings.Repeat("l", MaxLabelLen+1), ErrInvalid},
		{"control character", "alice", "a\nb", ErrInvalid},
		{"bad user", "Alice", "x", ErrInvalid},
	} {
		t.Run("add/"+tc.name, func(t *testing.T) {
			_, err := a.AddAppPassword(ctx, tc.user, tc.label)
			wantErr(t, "AddAppPassword", err, tc.want)
		})
	}
	list, err := a.AppPasswords(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].Label != "phone" || list[1].Label != "laptop (work)" || list[0].Created.IsZero() {
		t.Fatalf("AppPasswords = %+v, %v", list, err)
	}

	check := func(t *testing.T, pw, tok map[string]error) {
		t.Helper()
		for _, c := range []struct{ user, secret string }{{"alice", phone}, {"alice", laptop}, {"bob_2", bobs}, {"alice", bobs}} {
			name := c.user + " " + c.secret
			want, ok := pw[name]
			if !ok {
				want = ErrBadCredentials
			}
			wantErr(t, "CheckPassword "+name[:20], a.CheckPassword(ctx, "192.0.2.9", c.user, c.secret), want)
		}
		for _, secret := range []string{phone, laptop, bobs} {
			want, ok := tok[secret]
			if !ok {
				want = ErrBadCredentials
			}
			user, err := a.CheckToken(ctx, "192.0.2.9", secret)
			wantErr(t, "CheckToken "+secret[:12], err, want)
			if err == nil && !strings.HasPrefix(secret, "hth_"+user+"_") {
				t.Fatalf("CheckToken(%q) = %q", secret, user)
			}
		}
	}
	t.Run("all work", func(t *testing.T) {
		check(t, map[string]error{"alice " + phone: nil, "alice " + laptop: nil, "bob_2 " + bobs: nil},
			map[string]error{phone: nil, laptop: nil, bobs: nil})
	})
	t.Run("bad tokens", func(t *testing.T) {
		for _, tok := range []string{"", "hth_", "hth_alice_", phone[:len(phone)-1], phone + "A", "hth_carol_" + phone[len("hth_alice_"):],
			strings.Replace(phone, "hth_alice", "hth_bob_2", 1), strings.Repeat("x", 1<<16)} {
			if _, err := a.CheckToken(ctx, "192.0.2.10", tok); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("CheckToken(%.20q) = %v", tok, err)
			}
		}
	})
	if err := a.RevokeAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "revoke again", a.RevokeAppPassword(ctx, "alice", "phone"), ErrNotFound)
	t.Run("one revoked", func(t *testing.T) {
		check(t, map[string]error{"alice " + laptop: nil, "bob_2 " + bobs: nil}, map[string]error{laptop: nil, bobs: nil})
	})
	if err := a.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	t.Run("alice disabled", func(t *testing.T) {
		check(t, map[string]error{"bob_2 " + bobs: nil}, map[string]error{bobs: nil})
		wantErr(t, "password of disabled", a.CheckPassword(ctx, "192.0.2.9", "alice", "alice-password"), ErrBadCredentials)
	})
	if err := a.SetDisabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	t.Run("alice enabled", func(t *testing.T) {
		check(t, map[string]error{"alice " + laptop: nil, "bob_2 " + bobs: nil}, map[string]error{laptop: nil, bobs: nil})
	})
	if err := a.Remove(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	t.Run("alice removed", func(t *testing.T) {
		check(t, map[string]error{"bob_2 " + bobs: nil}, map[string]error{bobs: nil})
		wantErr(t, "password of removed", a.CheckPassword(ctx, "192.0.2.9", "alice", "alice-password"), ErrBadCredentials)
	})

	// Secrets never reach the repository: only their SHA-256.
	log, err := s.Log(ctx, "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range log {
		for _, secret := range []string{phone, laptop, bobs} {
			if strings.Contains(c.Message, secret[10:]) {
				t.Fatalf("commit message %q holds a secret", c.Message)
			}
		}
	}
	b, _, err := s.Get(ctx, "main", "users/bob_2.json")
	if err != nil || strings.Contains(string(b), bobs[10:]) || !strings.Contains(string(b), secretHash(bobs)) {
		t.Fatalf("bob's record %s, %v", b, err)
	}
}

func TestChangesAndCache(t *testing.T) {
	ctx := context.Background()
	a, s := newMem(t)
	other := NewAccounts(s, AccountsOptions{Logger: quiet, Limits: lenient}) // as if in another process
	mustAdd(t, a, "alice", "old-password")
	steps := []struct {
		name   string
		change func() error
		checks map[string]error // password → result for alice
	}{
		{"added", func() error { return nil }, map[string]error{"old-password": nil, "new-password": ErrBadCredentials}},
		{"passwd elsewhere", func() error { return other.SetPassword(ctx, "alice", "new-password") },
			map[string]error{"old-password": ErrBadCredentials, "new-password": nil}},
		{"disabled elsewhere", func() error { return other.SetDisabled(ctx, "alice", true) },
			map[string]error{"old-password": ErrBadCredentials, "new-password": ErrBadCredentials}},
		{"enabled", func() error { return a.SetDisabled(ctx, "alice", false) },
			map[string]error{"new-password": nil}},
		{"removed elsewhere", func() error { return other.Remove(ctx, "alice") },
			map[string]error{"new-password": ErrBadCredentials}},
		{"added again", func() error { return other.Add(ctx, "alice", "third-password") },
			map[string]error{"new-password": ErrBadCredentials, "third-password": nil}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.change(); err != nil {
				t.Fatal(err)
			}
			for pw, want := range st.checks {
				for range 2 { // the second check may be answered from the cache
					wantErr(t, "CheckPassword "+pw, a.CheckPassword(ctx, "192.0.2.1", "alice", pw), want)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"passwd unknown", a.SetPassword(ctx, "nobody", "password1"), ErrNotFound},
		{"passwd short", a.SetPassword(ctx, "alice", "short"), ErrInvalid},
		{"remove unknown", a.Remove(ctx, "nobody"), ErrNotFound},
		{"disable unknown", a.SetDisabled(ctx, "nobody", true), ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.name, tc.err, tc.want) })
	}
	log, err := s.Log(ctx, "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, c := range slices.Backward(log) {
		if c.Message != "" {
			msgs = append(msgs, c.Message)
		}
	}
	want := []string{"add user alice", "set password of alice", "disable user alice", "enable user alice", "remove user alice", "add user alice"}
	if got := msgs[len(msgs)-len(want):]; !slices.Equal(got, want) {
		t.Fatalf("commit messages %q, want %q", got, want)
	}
	users, err := a.List(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "alice" || users[0].Disabled || users[0].Created.IsZero() {
		t.Fatalf("List = %+v, %v", users, err)
	}
}

func TestTailnet(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t)
	mustAdd(t, a, "alice", "alice-password")
	mustAdd(t, a, "bob", "bob-password")
	for _, tc := range []struct {
		name, login, user string
		passwordless      bool
		want              error
	}{
		{"map", "alice@example.com", "alice", true, nil},
		{"map github", "bob@github", "bob", false, nil},
		{"remap", "alice@github", "alice", false, nil},
		{"unknown user", "carol@example.com", "carol", false, ErrNotFound},
		{"bad login", "a/b", "alice", false, ErrInvalid},
		{"dot login", "..", "alice", false, ErrInvalid},
		{"long login", strings.Repeat("a", MaxLoginLen+1), "alice", false, ErrInvalid},
		{"reserved user", "x@example.com", "system", false, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, "MapTailnetLogin", a.MapTailnetLogin(ctx, tc.login, tc.user, tc.passwordless), tc.want)
		})
	}
	if err := a.MapTailnetLogin(ctx, "bob@github", "alice", true); err != nil { // replaces
		t.Fatal(err)
	}
	for _, tc := range []struct {
		login, user  string
		passwordless bool
		want         error
	}{
		{"alice@example.com", "alice", true, nil},
		{"alice@github", "alice", false, nil},
		{"bob@github", "alice", true, nil},
		{"carol@example.com", "", false, ErrNotFound},
		{"a/b", "", false, ErrInvalid},
	} {
		user, pl, err := a.TailnetUser(ctx, tc.login)
		wantErr(t, "TailnetUser "+tc.login, err, tc.want)
		if user != tc.user || pl != tc.passwordless {
			t.Errorf("TailnetUser(%q) = %q, %v; want %q, %v", tc.login, user, pl, tc.user, tc.passwordless)
		}
	}
	if err := a.UnmapTailnetLogin(ctx, "alice@github"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "unmap again", a.UnmapTailnetLogin(ctx, "alice@github"), ErrNotFound)
	if _, _, err := a.TailnetUser(ctx, "alice@github"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after unmap: %v", err)
	}
	if err := a.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.TailnetUser(ctx, "alice@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disabled user's login: %v", err)
	}
	// Removing a user removes their mappings.
	if err := a.Remove(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, a, "alice", "alice-password")
	for _, login := range []string{"alice@example.com", "bob@github"} {
		if _, _, err := a.TailnetUser(ctx, login); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s after the user was removed and re-added: %v", login, err)
		}
	}
}

// Two Accounts over two opens of one repository on disk, as two processes would have:
// concurrent adds and app password changes to the same user lose nothing.
func TestConcurrentAccountsOnDisk(t *testing.T) {
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
	mustAdd(t, accts[0], "shared", "shared-password")
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	secrets := make(chan string, 2*n)
	for i, a := range accts {
		wg.Go(func() {
			for j := range n {
				if err := a.Add(ctx, fmt.Sprintf("u%d-%d", i, j), "password-1"); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for j := range n {
				s, err := a.AddAppPassword(ctx, "shared", fmt.Sprintf("app %d-%d", i, j))
				if err != nil {
					errs <- err
				}
				secrets <- s
			}
		})
	}
	wg.Wait()
	close(errs)
	close(secrets)
	for err := range errs {
		t.Error(err)
	}
	if got := userNames(t, accts[1]); len(got) != 2*n+1 {
		t.Fatalf("%d users, want %d: %q", len(got), 2*n+1, got)
	}
	aps, err := accts[0].AppPasswords(ctx, "shared")
	if err != nil || len(aps) != 2*n {
		t.Fatalf("%d app passwords, want %d (%v)", len(aps), 2*n, err)
	}
	for s := range secrets {
		if u, err := accts[1].CheckToken(ctx, "192.0.2.1", s); err != nil || u != "shared" {
			t.Fatalf("CheckToken = %q, %v", u, err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	a, _ := newMem(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.CheckPassword(ctx, "192.0.2.1", "alice", "password"); !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckPassword = %v", err)
	}
	if _, err := a.CheckToken(ctx, "192.0.2.1", "hth_x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckToken = %v", err)
	}
}
