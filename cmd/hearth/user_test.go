package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/signpost"
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
			a, err := signpost.OpenAccounts(filepath.Join(data, "accounts.json"))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := a.CheckPassword(ctx, tc.args[0], tc.password); err != nil {
				t.Fatalf("CheckPassword(%q, %q) = %v", tc.args[0], tc.password, err)
			}
			if err := a.CheckPassword(ctx, tc.args[0], tc.password+"x"); !errors.Is(err, signpost.ErrBadCredentials) {
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

func TestUserListAndToken(t *testing.T) {
	data := t.TempDir()
	if code, stdout, _ := runCmd(t, "", "user", "list", "-data", data); code != 0 || stdout != "" {
		t.Fatalf("list with no users: exit %d, %q", code, stdout)
	}
	for _, u := range []string{"bob", "alice"} {
		if code, _, stderr := runCmd(t, "password-"+u+"\n", "user", "add", "-data", data, u); code != 0 {
			t.Fatalf("add %s: %s", u, stderr)
		}
	}
	code, stdout, stderr := runCmd(t, "", "user", "list", "-data", data)
	if code != 0 || stdout != "alice\nbob\n" {
		t.Fatalf("list: exit %d, %q, %q", code, stdout, stderr)
	}

	code, stdout, stderr = runCmd(t, "", "user", "token", "-data", data, "bob", "phone")
	if code != 0 {
		t.Fatalf("token: exit %d, %q", code, stderr)
	}
	token := strings.TrimSpace(stdout)
	a, err := signpost.OpenAccounts(filepath.Join(data, "accounts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if user, err := a.CheckToken(context.Background(), token); err != nil || user != "bob" {
		t.Fatalf("CheckToken(%q) = %q, %v", token, user, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		text string
	}{
		{"unknown user", []string{"carol", "phone"}, 1, "no such user"},
		{"bad label", []string{"bob", ""}, 1, "label"},
		{"no label", []string{"bob"}, 2, "want 2 arguments"},
		{"list with an argument", nil, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"user", "token", "-data", data}, tc.args...)
			if tc.args == nil {
				args = []string{"user", "list", "-data", data, "extra"}
			}
			code, stdout, stderr := runCmd(t, "", args...)
			if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.text) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, tc.code, stdout, stderr, tc.text)
			}
		})
	}
}
