package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/hearth-home/hearth/signpost"
)

func cmdUserAdd(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "user add", "[-data DIR] NAME")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if code, ok := parseFlags(fs, args, 1); !ok {
		return code
	}
	name := fs.Arg(0)
	if err := signpost.CheckName(name); err != nil {
		fmt.Fprintln(s.err, "hearth user add:", err)
		return 2
	}
	if err := userAdd(ctx, s, *data, name); err != nil {
		fmt.Fprintln(s.err, "hearth user add:", err)
		return 1
	}
	fmt.Fprintf(s.out, "added user %s\n", name)
	return 0
}

func userAdd(ctx context.Context, s stdio, dataDir, name string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	accounts, err := openAccounts(dataDir)
	if err != nil {
		return err
	}
	password, err := readPassword(s, name)
	if err != nil {
		return err
	}
	return accounts.Add(ctx, name, password)
}

// readPassword asks for a password twice without echo when standard input is a terminal,
// and otherwise reads the first line of standard input.
func readPassword(s stdio, name string) (string, error) {
	if f, ok := s.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(s.err, "Password for %s: ", name)
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(s.err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(s.err, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(s.err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", errors.New("the passwords differ")
		}
		return string(p1), nil
	}
	// One line, read no further than a password can be long.
	r := bufio.NewReader(io.LimitReader(s.in, signpost.MaxPasswordLen+2))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > signpost.MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", signpost.MaxPasswordLen)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on standard input (give it as the first line)")
	}
	return line, nil
}

func cmdUserList(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "user list", "[-data DIR]")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	accounts, err := openAccounts(*data)
	if err == nil {
		var names []string
		if names, err = accounts.List(ctx); err == nil {
			for _, n := range names {
				fmt.Fprintln(s.out, n)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(s.err, "hearth user list:", err)
		return 1
	}
	return 0
}

func cmdUserToken(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "user token", "[-data DIR] NAME LABEL")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if code, ok := parseFlags(fs, args, 2); !ok {
		return code
	}
	accounts, err := openAccounts(*data)
	if err == nil {
		var token string
		if token, err = accounts.AddToken(ctx, fs.Arg(0), fs.Arg(1)); err == nil {
			fmt.Fprintln(s.out, token)
			fmt.Fprintf(s.err, "This is %s's token %q; it is shown only this once. Use it as \"Authorization: Bearer TOKEN\".\n", fs.Arg(0), fs.Arg(1))
		}
	}
	if err != nil {
		fmt.Fprintln(s.err, "hearth user token:", err)
		return 1
	}
	return 0
}

func openAccounts(dataDir string) (*signpost.Accounts, error) {
	return signpost.OpenAccounts(filepath.Join(dataDir, "accounts.json"))
}
