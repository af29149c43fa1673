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
	fs := flagSet(s, "up", "[-data DIR] [-listen ADDR] [-https ADDR]")
	data := fs.String("data", defaultData, "directory for accounts, certificates and repositories (created 0700)")
	listen := fs.String("listen", "127.0.0.1:8088", "plain HTTP address (keep it on loopback; empty: none)")
	https := fs.String("https", "127.0.0.1:8443", "HTTPS address (empty: none)")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if err := up(ctx, s, *data, *listen, *https); err != nil {
		fmt.Fprintln(s.err, "hearth up:", err)
		return 1
	}
	return 0
}

// up serves the store from dataDir until ctx ends: HTTPS with a certificate from the home
// CA on https, plain HTTP for loopback clients on listen.
func up(ctx context.Context, s stdio, dataDir, listen, https string) error {
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
	ca, names, err := signpost.OpenHomeCA(dataDir, signpost.CAOptions{Logger: logger})
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	lan, err := signpost.LANAddrs()
	if err != nil {
		logger.Warn("no LAN addresses in certificates", "err", err)
	}
	noActivation := func(string) string { return "" } // hearth up opens its own sockets
	lns, err := signpost.HTTPListeners(noActivation, listen, https, ca.ServerConfig(names.DNSNames(), lan))
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	var plainAddr, tlsAddr net.Addr
	for i, ln := range lns {
		if i == 0 && listen != "" {
			plainAddr = ln.Addr()
		} else {
			tlsAddr = ln.Addr()
		}
	}
	// Only now that nothing can fail before the welcome is printed: a first admin whose
	// password was never shown would lock the owner out.
	user, password, err := firstUser(ctx, accounts)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return errors.Join(err, repos.Close())
	}
	printWelcome(s.out, dataDir, plainAddr, tlsAddr, user, password)
	handler := storehttp.NewHandler(repos, storehttp.Options{Auth: accounts, Logger: logger})
	httpsPort := names.Port("store", "https")
	if ta, ok := tlsAddr.(*net.TCPAddr); ok {
		httpsPort = ta.Port
	}
	err = signpost.ServeHTTP(ctx, lns, signpost.RequireTLS(handler, httpsPort), signpost.ServeOptions{Logger: logger})
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

// printWelcome says what runs where, how to trust the certificates, and the password of a
// user just created. Either address may be nil (not served).
func printWelcome(w io.Writer, dataDir string, plainAddr, tlsAddr net.Addr, user, password string) {
	hostPort := func(addr net.Addr, host string) string {
		ta, ok := addr.(*net.TCPAddr)
		if !ok {
			return addr.String()
		}
		if host == "" {
			host = ta.IP.String()
			if ta.IP.IsUnspecified() {
				host = "127.0.0.1"
			}
		}
		return net.JoinHostPort(host, fmt.Sprint(ta.Port))
	}
	if password != "" {
		fmt.Fprintf(w, "Created user %s with password %s\n(shown only this once; add more users with \"hearth user add\")\n\n", user, password)
	}
	fmt.Fprintf(w, "Hearth is up, data in %s. Stop it with Ctrl-C.\n\n", dataDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tURL")
	var base, secure string
	if tlsAddr != nil {
		secure = "https://" + hostPort(tlsAddr, "localhost")
		fmt.Fprintf(tw, "  store REST API (TLS)\t%s/api/repos\n", secure)
		fmt.Fprintf(tw, "  git smart HTTP (TLS)\t%s/OWNER/NAME.git\n", secure)
	}
	if plainAddr != nil {
		base = "http://" + hostPort(plainAddr, "")
		fmt.Fprintf(tw, "  store REST API\t%s/api/repos\n", base)
		fmt.Fprintf(tw, "  git smart HTTP\t%s/OWNER/NAME.git\n", base)
	}
	tw.Flush()
	if secure != "" {
		fmt.Fprintf(w, "\nCertificates come from Hearth's own CA: trust it with\n  hearth ca export -data %s > hearth-ca.pem\n(the README says how, per client). Plain HTTP accepts credentials only from this machine.\n", dataDir)
	}
	fmt.Fprintf(w, "\nTry:\n")
	if base != "" {
		fmt.Fprintf(w, "  curl -u %s %s/api/repos\n", user, base)
		fmt.Fprintf(w, "  curl -u %s -d '{\"name\":\"%s/notes\"}' %s/api/repos\n", user, user, base)
		fmt.Fprintf(w, "  git clone http://%s@%s/%s/notes.git\n", user, hostPort(plainAddr, ""), user)
	}
	if secure != "" {
		fmt.Fprintf(w, "  curl --cacert hearth-ca.pem -u %s %s/api/repos\n", user, secure)
	}
	fmt.Fprintln(w)
}
