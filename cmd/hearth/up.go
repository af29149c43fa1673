package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storehttp"
)

func cmdUp(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "up", "[-data DIR] [-listen ADDR]")
	data := fs.String("data", defaultData, "directory for accounts and repositories (created 0700)")
	listen := fs.String("listen", "127.0.0.1:8088", "TCP address to serve on")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if err := up(ctx, s, *data, *listen); err != nil {
		fmt.Fprintln(s.err, "hearth up:", err)
		return 1
	}
	return 0
}

// up serves the store from dataDir on listen until ctx ends.
func up(ctx context.Context, s stdio, dataDir, listen string) error {
	logger := slog.New(slog.NewTextHandler(s.err, nil))
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	repos, err := store.OpenRepos(filepath.Join(dataDir, "repos"), &store.Options{Logger: logger})
	if err != nil {
		return err
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: logger})
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	// Only now that nothing can fail before the welcome is printed: a first admin whose
	// password was never shown would lock the owner out.
	user, password, err := firstUser(ctx, accounts)
	if err != nil {
		ln.Close()
		return errors.Join(err, repos.Close())
	}
	printWelcome(s.out, dataDir, ln.Addr(), user, password)
	err = signpost.ServeHTTP(ctx, []net.Listener{ln}, storehttp.NewHandler(repos, storehttp.Options{Auth: accounts, Logger: logger}),
		signpost.ServeOptions{Logger: logger})
	if cerr := repos.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close repositories: %w", cerr))
	}
	if err == nil {
		fmt.Fprintln(s.out, "hearth: stopped")
	}
	return err
}

// firstUser returns the user to show in examples. When there is none yet it creates
// "admin" with a random password, which it returns too (it is never stored in clear).
func firstUser(ctx context.Context, accounts *signpost.Accounts) (user, password string, err error) {
	users, err := accounts.List(ctx)
	if err != nil {
		return "", "", err
	}
	if len(users) > 0 {
		if slices.ContainsFunc(users, func(u signpost.User) bool { return u.Name == "admin" }) {
			return "admin", "", nil
		}
		return users[0].Name, "", nil
	}
	raw := make([]byte, 16)
	rand.Read(raw)
	password = base64.RawURLEncoding.EncodeToString(raw)
	switch err := accounts.Add(ctx, "admin", password); {
	case errors.Is(err, signpost.ErrExists): // another process was first
		return "admin", "", nil
	case err != nil:
		return "", "", err
	}
	return "admin", password, nil
}

// printWelcome says what runs where, and the password of a user just created.
func printWelcome(w io.Writer, dataDir string, addr net.Addr, user, password string) {
	host := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	base := "http://" + host
	if password != "" {
		fmt.Fprintf(w, "Created user %s with password %s\n(shown only this once; add more users with \"hearth user add\")\n\n", user, password)
	}
	fmt.Fprintf(w, "Hearth is up, data in %s. Stop it with Ctrl-C.\n\n", dataDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tURL")
	fmt.Fprintf(tw, "  store REST API\t%s/api/repos\n", base)
	fmt.Fprintf(tw, "  git smart HTTP\t%s/OWNER/NAME.git\n", base)
	tw.Flush()
	fmt.Fprintf(w, "\nTry:\n")
	fmt.Fprintf(w, "  curl -u %s %s/api/repos\n", user, base)
	fmt.Fprintf(w, "  curl -u %s -d '{\"name\":\"%s/notes\"}' %s/api/repos\n", user, user, base)
	fmt.Fprintf(w, "  git clone http://%s@%s/%s/notes.git\n\n", user, host, user)
}
