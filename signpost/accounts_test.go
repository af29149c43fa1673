package signpost

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
)

func argonIDKey(password string, salt []byte, time, memory uint32, threads uint8) []byte {
	return argon2.IDKey([]byte(password), salt, time, memory, threads, 32)
}

func openTemp(t *testing.T) (*Accounts, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accounts.json")
	a, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	return a, path
}

func TestAddValidation(t *testing.T) {
	ctx := context.Background()
	a, _ := openTemp(t)
	if err := a.Add(ctx, "taken", "password1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, password string
		want                 error
	}{
		{"ok", "alice", "password1", nil},
		{"digits and punctuation", "0b.o_b-", "12345678", nil},
		{"64 bytes", strings.Repeat("x", 64), "password1", nil},
		{"1024-byte password", "long", strings.Repeat("p", 1024), nil},
		{"exists", "taken", "password1", ErrExists},
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
			err := a.Add(ctx, tc.user, tc.password)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Add(%q) = %v, want %v", tc.user, err, tc.want)
			}
		})
	}
	got, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0b.o_b-", "alice", "long", "taken", strings.Repeat("x", 64)}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
}

func TestCheckPassword(t *testing.T) {
	ctx := context.Background()
	a, path := openTemp(t)
	if err := a.Add(ctx, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, "bob", "battery staple"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, password string
		want                 error
	}{
		{"right", "alice", "correct horse", nil},
		{"other user's password", "alice", "battery staple", ErrBadCredentials},
		{"wrong", "alice", "correct horsE", ErrBadCredentials},
		{"empty", "alice", "", ErrBadCredentials},
		{"unknown user", "carol", "correct horse", ErrBadCredentials},
		{"invalid user name", "../etc", "correct horse", ErrBadCredentials},
		{"huge password", "alice", strings.Repeat("p", 1<<20), ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.CheckPassword(ctx, tc.user, tc.password)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckPassword(%q) = %v, want %v", tc.user, err, tc.want)
			}
		})
	}

	// The file: mode 0600, argon2id PHC strings with the stated parameters, no plaintext.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "correct horse") || strings.Contains(string(b), "battery") {
		t.Fatalf("plaintext password in file:\n%s", b)
	}
	phc := regexp.MustCompile(`"\$argon2id\$v=19\$m=19456,t=2,p=1\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"`)
	m := phc.FindAllStringSubmatch(string(b), -1)
	if len(m) != 2 {
		t.Fatalf("want 2 argon2id hashes in file:\n%s", b)
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

	// Reopening reads the same accounts.
	b2, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.CheckPassword(ctx, "bob", "battery staple"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}

// Parameters are read from each stored hash, and damaged or absurd hashes match nothing.
func TestStoredHashParameters(t *testing.T) {
	ctx := context.Background()
	salt := []byte("0123456789abcdef")
	cheap := encodeHash(64, 1, 1, salt, argonIDKey("secret-pw", salt, 1, 64, 1))
	huge := encodeHash(1<<22, 1, 1, salt, argonIDKey("secret-pw", salt, 1, 64, 1))
	for _, tc := range []struct {
		name, hash string
		want       error
	}{
		{"other parameters", cheap, nil},
		{"memory out of bounds", huge, ErrBadCredentials},
		{"argon2i", strings.Replace(cheap, "argon2id", "argon2i", 1), ErrBadCredentials},
		{"version 16", strings.Replace(cheap, "v=19", "v=16", 1), ErrBadCredentials},
		{"bad base64", cheap[:len(cheap)-3] + "!!!", ErrBadCredentials},
		{"plaintext", "secret-pw", ErrBadCredentials},
		{"empty", "", ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "accounts.json")
			body := fmt.Sprintf(`{"users":[{"name":"u","password":%q,"created":"2025-01-01T00:00:00Z"}]}`, tc.hash)
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			a, err := OpenAccounts(path)
			if err != nil {
				t.Fatal(err)
			}
			err = a.CheckPassword(ctx, "u", "secret-pw")
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckPassword = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	a, path := openTemp(t)
	for _, u := range []string{"alice", "bob"} {
		if err := a.Add(ctx, u, "password-"+u); err != nil {
			t.Fatal(err)
		}
	}
	tokA, err := a.AddToken(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	tokA2, err := a.AddToken(ctx, "alice", "laptop ✓")
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := a.AddToken(ctx, "bob", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if tokA == tokA2 || tokA == tokB {
		t.Fatal("tokens repeat")
	}
	raw, err := base64.RawURLEncoding.DecodeString(tokA)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q: %d bytes, %v", tokA, len(raw), err)
	}

	t.Run("AddToken errors", func(t *testing.T) {
		for _, tc := range []struct {
			name, user, label string
			want              error
		}{
			{"unknown user", "carol", "phone", ErrNotFound},
			{"empty label", "alice", "", ErrInvalid},
			{"long label", "alice", strings.Repeat("l", 65), ErrInvalid},
			{"control character", "alice", "a\nb", ErrInvalid},
			{"not UTF-8", "alice", "\xff", ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := a.AddToken(ctx, tc.user, tc.label); !errors.Is(err, tc.want) {
					t.Fatalf("AddToken = %v, want %v", err, tc.want)
				}
			})
		}
	})

	t.Run("CheckToken", func(t *testing.T) {
		flipped := []byte(tokA)
		flipped[10] ^= 1
		for _, tc := range []struct {
			name, token, user string
			want              error
		}{
			{"alice", tokA, "alice", nil},
			{"alice second", tokA2, "alice", nil},
			{"bob", tokB, "bob", nil},
			{"one bit off", string(flipped), "", ErrBadCredentials},
			{"empty", "", "", ErrBadCredentials},
			{"truncated", tokA[:42], "", ErrBadCredentials},
			{"padded", tokA + "=", "", ErrBadCredentials},
			{"not base64url", strings.Repeat("*", 43), "", ErrBadCredentials},
			{"stored hash itself", tokenHash(tokA), "", ErrBadCredentials},
			{"huge", strings.Repeat("A", 1<<20), "", ErrBadCredentials},
		} {
			t.Run(tc.name, func(t *testing.T) {
				user, err := a.CheckToken(ctx, tc.token)
				if user != tc.user || !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Fatalf("CheckToken = %q, %v; want %q, %v", user, err, tc.user, tc.want)
				}
			})
		}
	})

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), tokA) || !strings.Contains(string(b), tokenHash(tokA)) {
		t.Fatalf("file must hold the token's SHA-256 and not the token:\n%s", b)
	}

	t.Run("limit", func(t *testing.T) {
		for i := 2; i < MaxTokens; i++ { // alice has 2
			if _, err := a.AddToken(ctx, "alice", fmt.Sprint("t", i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.AddToken(ctx, "alice", "one too many"); !errors.Is(err, ErrLimit) {
			t.Fatalf("token %d: %v, want ErrLimit", MaxTokens+1, err)
		}
	})
}

// Two Accounts on one file (as a server and the CLI would be) see each other's writes and
// lose none of them, even when writing at once.
func TestSharedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "accounts.json")
	a1, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.Add(ctx, "alice", "password1"); err != nil {
		t.Fatal(err)
	}
	if err := a2.CheckPassword(ctx, "alice", "password1"); err != nil {
		t.Fatalf("second instance does not see the first's user: %v", err)
	}
	tok, err := a2.AddToken(ctx, "alice", "cli")
	if err != nil {
		t.Fatal(err)
	}
	if user, err := a1.CheckToken(ctx, tok); err != nil || user != "alice" {
		t.Fatalf("first instance: CheckToken = %q, %v", user, err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		a := a1
		if i%2 == 1 {
			a = a2
		}
		wg.Go(func() { errs <- a.Add(ctx, fmt.Sprint("user", i), "password1") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []*Accounts{a1, a2} {
		names, err := a.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 9 {
			t.Fatalf("List = %q, want alice and user0..user7", names)
		}
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, body string
	}{
		{"not JSON", "{"},
		{"unknown field", `{"users":[],"admins":[]}`},
		{"bad name", `{"users":[{"name":"Root","password":""}]}`},
		{"duplicate", `{"users":[{"name":"a","password":""},{"name":"a","password":""}]}`},
		{"unsorted", `{"users":[{"name":"b","password":""},{"name":"a","password":""}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "accounts.json")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenAccounts(path); err == nil {
				t.Fatal("OpenAccounts accepted a bad file")
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "accounts.json")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, MaxAccountsFile+1); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenAccounts(path); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("OpenAccounts = %v, want a size error", err)
		}
	})
	t.Run("changed to bad while open", func(t *testing.T) {
		ctx := context.Background()
		a, path := openTemp(t)
		if err := a.Add(ctx, "alice", "password1"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".new", []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		if err := a.CheckPassword(ctx, "alice", "password1"); err == nil || errors.Is(err, ErrBadCredentials) {
			t.Fatalf("CheckPassword on a damaged file = %v, want a file error", err)
		}
		if err := a.Add(ctx, "bob", "password1"); err == nil {
			t.Fatal("Add overwrote a damaged file")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		a, err := OpenAccounts(filepath.Join(t.TempDir(), "nope", "accounts.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Add(context.Background(), "alice", "password1"); err == nil {
			t.Fatal("Add succeeded without a directory")
		}
	})
}

func TestCanceledContext(t *testing.T) {
	a, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checks := map[string]error{
		"Add":           a.Add(ctx, "alice", "password1"),
		"CheckPassword": a.CheckPassword(ctx, "alice", "password1"),
	}
	_, checks["List"] = a.List(ctx)
	_, checks["AddToken"] = a.AddToken(ctx, "alice", "x")
	_, checks["CheckToken"] = a.CheckToken(ctx, "x")
	for name, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s = %v, want context.Canceled", name, err)
		}
	}
}

// TestVerifiedCacheNeverAcceptsAStalePassword: a remembered successful check must not
// let an old password in after the password changed (here from another process's view:
// the user is recreated in the file with a new password).
func TestVerifiedCacheNeverAcceptsAStalePassword(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "accounts.json")
	a, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, "alice", "first-password"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the second and third checks are answered from the cache
		if err := a.CheckPassword(ctx, "alice", "first-password"); err != nil {
			t.Fatalf("right password: %v", err)
		}
	}
	if err := a.CheckPassword(ctx, "alice", "wrong-password"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password after a cached success: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	b, err := OpenAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, "alice", "second-password"); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckPassword(ctx, "alice", "first-password"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after it changed: %v, want ErrBadCredentials", err)
	}
	if err := a.CheckPassword(ctx, "alice", "second-password"); err != nil {
		t.Fatalf("new password: %v", err)
	}
}
