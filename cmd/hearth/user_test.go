package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

func TestUserAdd(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		name      string
		stdin     string
		args      []string
		code      int
		password  string // checked when code is 0
		errorText string // in stderr when code is not 0
	}{
		{"first line", "correct horse\nignored\n", []string{"alice"}, 0, "correct horse", ""},
		{"CRLF and no more input", "battery staple\r\n", []string{"bob"}, 0, "battery staple", ""},
		{"no newline", "staple battery", []string{"carol"}, 0, "staple battery", ""},
		{"exists", "whatever-pw\n", []string{"alice"}, 1, "", "exists"},
		{"empty stdin", "", []string{"dave"}, 1, "", "no password"},
		{"empty line", "\nsecond line\n", []string{"dave"}, 1, "", "no password"},
		{"short password", "short\n", []string{"dave"}, 1, "", "password must be"},
		{"huge password", strings.Repeat("p", 10000), []string{"dave"}, 1, "", "longer than"},
		{"bad name", "correct horse\n", []string{"Dave"}, 2, "", "user name"},
		{"reserved name", "correct horse\n", []string{"system"}, 2, "", "reserved"},
		{"no name", "correct horse\n", nil, 2, "", "want 1 arguments"},
		{"two names", "correct horse\n", []string{"dave", "erin"}, 2, "", "want 1 arguments"},
		{"unknown flag", "correct horse\n", []string{"-force", "dave"}, 2, "", "-force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"user", "add", "-data", data}, tc.args...)
			code, stdout, stderr := runCmd(t, tc.stdin, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tc.code, stdout, stderr)
			}
			if code != 0 {
				if !strings.Contains(stderr, tc.errorText) {
					t.Fatalf("stderr %q does not say %q", stderr, tc.errorText)
				}
				return
			}
			a := testAccounts(t, data)
			ctx := context.Background()
			if err := a.CheckPassword(ctx, "127.0.0.1", tc.args[0], tc.password); err != nil {
				t.Fatalf("CheckPassword(%q, %q) = %v", tc.args[0], tc.password, err)
			}
			if err := a.CheckPassword(ctx, "127.0.0.1", tc.args[0], tc.password+"x"); !errors.Is(err, signpost.ErrBadCredentials) {
				t.Fatalf("a wrong password gives %v", err)
			}
		})
	}
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", fi.Mode().Perm())
	}
}

// testAccounts opens the accounts of a data directory as another process would.
func testAccounts(t *testing.T, data string) *signpost.Accounts {
	t.Helper()
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repos.Close() })
	a, err := signpost.OpenAccounts(context.Background(), repos, signpost.AccountsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestUserCommands(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	if code, stdout, _ := runCmd(t, "", "user", "list", "-data", data); code != 0 || stdout != "" {
		t.Fatalf("list with no users: exit %d, %q", code, stdout)
	}
	for _, u := range []string{"bob", "alice"} {
		if code, _, stderr := runCmd(t, "password-"+u+"\n", "user", "add", "-data", data, u); code != 0 {
			t.Fatalf("add %s: %s", u, stderr)
		}
	}
	var secret string
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string // a regular expression matched against the whole of stdout
		stderr string // a substring of stderr
	}{
		{"list", "", []string{"list"}, 0, `alice\nbob\n`, ""},
		{"list with an argument", "", []string{"list", "extra"}, 2, ``, "want 0 arguments"},
		{"app password", "", []string{"app-password", "add", "bob", "phone"}, 0, `hth_bob_[A-Za-z0-9_-]{43}\n`, "shown only this once"},
		{"second app password", "", []string{"app-password", "add", "bob", "laptop"}, 0, `hth_bob_[A-Za-z0-9_-]{43}\n`, ""},
		{"same label", "", []string{"app-password", "add", "bob", "phone"}, 1, ``, "exists"},
		{"app password of unknown user", "", []string{"app-password", "add", "carol", "phone"}, 1, ``, "not found"},
		{"empty label", "", []string{"app-password", "add", "bob", ""}, 1, ``, "label"},
		{"no label", "", []string{"app-password", "add", "bob"}, 2, ``, "want 2 arguments"},
		{"list app passwords", "", []string{"app-password", "list", "bob"}, 0, `phone +\d{4}-.*\nlaptop +\d{4}-.*\n`, ""},
		{"revoke", "", []string{"app-password", "revoke", "bob", "laptop"}, 0, `revoked .*\n`, ""},
		{"revoke again", "", []string{"app-password", "revoke", "bob", "laptop"}, 1, ``, "not found"},
		{"passwd", "new-password\n", []string{"passwd", "alice"}, 0, `set the password of alice\n`, ""},
		{"passwd too short", "short\n", []string{"passwd", "alice"}, 1, ``, "password must be"},
		{"passwd unknown", "new-password\n", []string{"passwd", "carol"}, 1, ``, "not found"},
		{"disable", "", []string{"disable", "alice"}, 0, `disabled user alice\n`, ""},
		{"list shows disabled", "", []string{"list"}, 0, `alice \(disabled\)\nbob\n`, ""},
		{"enable", "", []string{"enable", "alice"}, 0, `enabled user alice\n`, ""},
		{"disable unknown", "", []string{"disable", "carol"}, 1, ``, "not found"},
		{"tailnet map", "", []string{"tailnet", "map", "-passwordless", "alice", "alice@example.com"}, 0, `tailnet login alice@example\.com is now user alice, without a password\n`, ""},
		{"tailnet map unknown user", "", []string{"tailnet", "map", "carol", "carol@example.com"}, 1, ``, "not found"},
		{"tailnet list", "", []string{"tailnet", "list"}, 0, `LOGIN +USER +PASSWORD\nalice@example\.com +alice +not needed\n`, ""},
		{"tailnet unmap as another user", "", []string{"tailnet", "unmap", "bob", "alice@example.com"}, 1, ``, "belongs to alice"},
		{"tailnet unmap", "", []string{"tailnet", "unmap", "alice", "alice@example.com"}, 0, ``, ""},
		{"tailnet list empty", "", []string{"tailnet", "list"}, 0, `LOGIN +USER +PASSWORD\n`, ""},
		{"rm", "", []string{"rm", "bob"}, 0, `removed user bob .*\n`, ""},
		{"rm again", "", []string{"rm", "bob"}, 1, ``, "not found"},
		{"rm bad name", "", []string{"rm", "Bob"}, 2, ``, "user name"},
		{"list after rm", "", []string{"list"}, 0, `alice\n`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"user", tc.args[0]}, "-data", data)
			if tc.args[0] == "app-password" || tc.args[0] == "tailnet" {
				args = append([]string{"user", tc.args[0], tc.args[1], "-data", data}, tc.args[2:]...)
			} else {
				args = append(args, tc.args[1:]...)
			}
			code, stdout, stderr := runCmd(t, tc.stdin, args...)
			if code != tc.code || !regexp.MustCompile(`^(?s:`+tc.stdout+`)$`).MatchString(stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d (want %d), stdout %q (want %s), stderr %q (want %q)", code, tc.code, stdout, tc.stdout, stderr, tc.stderr)
			}
			if tc.name == "app password" {
				secret = strings.TrimSpace(stdout)
				a := testAccounts(t, data)
				if user, err := a.CheckToken(ctx, "127.0.0.1", secret); err != nil || user != "bob" {
					t.Fatalf("CheckToken(%q) = %q, %v", secret, user, err)
				}
				if err := a.CheckPassword(ctx, "127.0.0.1", "bob", secret); err != nil {
					t.Fatalf("app password as password: %v", err)
				}
			}
		})
	}
	a := testAccounts(t, data)
	if err := a.CheckPassword(ctx, "127.0.0.1", "alice", "new-password"); err != nil {
		t.Fatalf("alice's new password: %v", err)
	}
	if err := a.CheckPassword(ctx, "127.0.0.1", "alice", "password-alice"); !errors.Is(err, signpost.ErrBadCredentials) {
		t.Fatalf("alice's old password: %v", err)
	}
	if _, err := a.CheckToken(ctx, "127.0.0.1", secret); !errors.Is(err, signpost.ErrBadCredentials) {
		t.Fatalf("removed bob's app password: %v", err)
	}
	if code, _, stderr := runCmd(t, "", "user", "token", "-data", data, "alice", "x"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("user token still exists: %d %q", code, stderr)
	}
}
