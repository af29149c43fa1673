package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// withAccounts parses a user command's flags (nargs arguments after them), opens the
// accounts of the data directory and runs fn; it returns the exit status.
func withAccounts(ctx context.Context, s stdio, name, synopsis string, nargs int, args []string,
	fn func(a *signpost.Accounts, args []string) error) int {
	return withAccountsFlags(ctx, s, name, synopsis, nargs, args, nil, fn)
}

// withAccountsFlags is withAccounts for a command with flags of its own, which addFlags
// defines on the flag set before parsing.
func withAccountsFlags(ctx context.Context, s stdio, name, synopsis string, nargs int, args []string,
	addFlags func(*flag.FlagSet), fn func(a *signpost.Accounts, args []string) error) int {
	fs := flagSet(s, name, synopsis)
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if addFlags != nil {
		addFlags(fs)
	}
	if code, ok := parseFlags(fs, args, nargs); !ok {
		return code
	}
	if fs.NArg() > 0 {
		if err := signpost.CheckName(fs.Arg(0)); err != nil {
			fmt.Fprintf(s.err, "hearth %s: %v\n", name, err)
			return 2
		}
	}
	err := func() (err error) {
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return err
		}
		logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
		repos, err := store.OpenRepos(filepath.Join(*data, "repos"), &store.Options{Logger: logger})
		if err != nil {
			return err
		}
		defer func() {
			if cerr := repos.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		a, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: logger})
		if err != nil {
			return err
		}
		return fn(a, fs.Args())
	}()
	if err != nil {
		fmt.Fprintf(s.err, "hearth %s: %v\n", name, err)
		return 1
	}
	return 0
}

func cmdUserAdd(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user add", "[-data DIR] NAME", 1, args, func(a *signpost.Accounts, args []string) error {
		password, generated, err := readPassword(s, args[0], true)
		if err != nil {
			return err
		}
		if err := a.Add(ctx, args[0], password); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "added user %s\n", args[0])
		if generated {
			fmt.Fprintf(s.out, "password: %s\n(shown only this once)\n", password)
		}
		return nil
	})
}

func cmdUserPasswd(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user passwd", "[-data DIR] NAME", 1, args, func(a *signpost.Accounts, args []string) error {
		password, generated, err := readPassword(s, args[0], true)
		if err != nil {
			return err
		}
		if err := a.SetPassword(ctx, args[0], password); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "set the password of %s\n", args[0])
		if generated {
			fmt.Fprintf(s.out, "password: %s\n(shown only this once)\n", password)
		}
		return nil
	})
}

func cmdUserRm(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user rm", "[-data DIR] NAME", 1, args, func(a *signpost.Accounts, args []string) error {
		if err := a.Remove(ctx, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "removed user %s (their repositories stay)\n", args[0])
		return nil
	})
}

func cmdUserDisable(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user disable", "[-data DIR] NAME", 1, args, func(a *signpost.Accounts, args []string) error {
		if err := a.SetDisabled(ctx, args[0], true); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "disabled user %s\n", args[0])
		return nil
	})
}

func cmdUserEnable(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user enable", "[-data DIR] NAME", 1, args, func(a *signpost.Accounts, args []string) error {
		if err := a.SetDisabled(ctx, args[0], false); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "enabled user %s\n", args[0])
		return nil
	})
}

func cmdUserList(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user list", "[-data DIR]", 0, args, func(a *signpost.Accounts, _ []string) error {
		users, err := a.List(ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			if u.Disabled {
				fmt.Fprintf(s.out, "%s (disabled)\n", u.Name)
			} else {
				fmt.Fprintln(s.out, u.Name)
			}
		}
		return nil
	})
}

func cmdAppPasswordAdd(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user app-password add", "[-data DIR] NAME LABEL", 2, args, func(a *signpost.Accounts, args []string) error {
		secret, err := a.AddAppPassword(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		fmt.Fprintln(s.out, secret)
		fmt.Fprintf(s.err, "This is %s's app password %q; it is shown only this once. Use it as the password of %s "+
			"(HTTP Basic, IMAP, CalDAV, CardDAV) or on its own as \"Authorization: Bearer %s\".\n", args[0], args[1], args[0], secret)
		return nil
	})
}

func cmdAppPasswordList(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user app-password list", "[-data DIR] NAME", 1, args, func(a *signpost.Accounts, args []string) error {
		aps, err := a.AppPasswords(ctx, args[0])
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		for _, ap := range aps {
			fmt.Fprintf(tw, "%s\t%s\n", ap.Label, ap.Created.Format("2006-01-02 15:04:05Z07:00"))
		}
		return tw.Flush()
	})
}

func cmdAppPasswordRevoke(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user app-password revoke", "[-data DIR] NAME LABEL", 2, args, func(a *signpost.Accounts, args []string) error {
		if err := a.RevokeAppPassword(ctx, args[0], args[1]); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "revoked app password %q of %s\n", args[1], args[0])
		return nil
	})
}

// readPassword asks for a password twice without echo when standard input is a terminal
// (an empty answer, when generate is true, makes a random one: generated is then true),
// and otherwise reads the first line of standard input.
func readPassword(s stdio, name string, generate bool) (password string, generated bool, err error) {
	if f, ok := s.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		prompt := fmt.Sprintf("Password for %s: ", name)
		if generate {
			prompt = fmt.Sprintf("Password for %s (Enter to generate one): ", name)
		}
		fmt.Fprint(s.err, prompt)
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(s.err)
		if err != nil {
			return "", false, fmt.Errorf("read password: %w", err)
		}
		if len(p1) == 0 && generate {
			return generatePassword(), true, nil
		}
		fmt.Fprint(s.err, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(s.err)
		if err != nil {
			return "", false, fmt.Errorf("read password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", false, errors.New("the passwords differ")
		}
		return string(p1), false, nil
	}
	// One line, read no further than a password can be long.
	r := bufio.NewReader(io.LimitReader(s.in, signpost.MaxPasswordLen+2))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, fmt.Errorf("read password from standard input: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > signpost.MaxPasswordLen {
		return "", false, fmt.Errorf("password longer than %d bytes", signpost.MaxPasswordLen)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", false, errors.New("no password on standard input (give it as the first line)")
	}
	return line, false, nil
}

// generatePassword returns a random password of 128 bits.
func generatePassword() string {
	raw := make([]byte, 16)
	rand.Read(raw)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func cmdTailnetMap(ctx context.Context, s stdio, args []string) int {
	var passwordless *bool
	return withAccountsFlags(ctx, s, "user tailnet map", "[-data DIR] [-passwordless] NAME LOGIN", 2, args,
		func(fs *flag.FlagSet) {
			passwordless = fs.Bool("passwordless", false, "let this device in without a password (IMAP: any password)")
		},
		func(a *signpost.Accounts, args []string) error {
			if err := a.MapTailnetLogin(ctx, args[1], args[0], *passwordless); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "tailnet login %s is now user %s", args[1], args[0])
			if *passwordless {
				fmt.Fprint(s.out, ", without a password")
			}
			fmt.Fprintln(s.out)
			return nil
		})
}

func cmdTailnetUnmap(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user tailnet unmap", "[-data DIR] NAME LOGIN", 2, args, func(a *signpost.Accounts, args []string) error {
		user, _, err := a.TailnetUser(ctx, args[1])
		if err == nil && user != args[0] {
			return fmt.Errorf("tailnet login %s belongs to %s, not %s", args[1], user, args[0])
		}
		return a.UnmapTailnetLogin(ctx, args[1])
	})
}

func cmdTailnetList(ctx context.Context, s stdio, args []string) int {
	return withAccounts(ctx, s, "user tailnet list", "[-data DIR]", 0, args, func(a *signpost.Accounts, _ []string) error {
		logins, err := a.TailnetLogins(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LOGIN\tUSER\tPASSWORD")
		for _, l := range logins {
			pw := "required"
			if l.Passwordless {
				pw = "not needed"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Login, l.User, pw)
		}
		return tw.Flush()
	})
}
