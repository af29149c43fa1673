package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-home/hearth/jitsu"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

// modulePath is Hearth's Go module, whose source "hearth up" builds the appliances from.
const modulePath = "github.com/hearth-home/hearth"

// upHelp is the long help of "hearth up".
const upHelp = `Runs jitsu with every built-in appliance (store, mail, contacts, calendar, and dashboard
when it exists) as processes started on demand: jitsu holds their sockets and answers DNS
for the home zone; a lookup of an appliance's name or a connection to one of its sockets
starts it, and it exits again after 5 minutes without connections. Ctrl-C stops jitsu and
every appliance (SIGTERM, waiting for them).

The appliance binaries come from, in this order:
  -bin DIR            the binaries in DIR (DIR/store, DIR/mail, ...)
  the module source   when the working directory is inside Hearth's source (a go.mod of
                      module github.com/hearth-home/hearth above it) and go is on PATH,
                      "go build -o DATA/bin/ ./appliances/..." first (as "go run ./cmd/hearth up")
  next to hearth      the directory of the hearth executable (as an installed release)
An appliance whose binary is missing (or fails to build) is left out with a note.

Sockets listen on 127.0.0.1 (-lan: every address) on the ports of DATA/names.json
(-free-ports: ports the kernel picks, e.g. beside another Hearth); the DNS names resolve
to where they listen and SRV records carry the real ports. The first run creates the data
directory, the home CA and a user admin whose generated password is printed once.
`

func cmdUp(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "up", "[-data DIR] [-dns ADDR] [-status ADDR] [-bin DIR] [-lan] [-free-ports]")
	data := fs.String("data", defaultData, "directory for accounts, certificates and repositories (created 0700)")
	dnsAddr := fs.String("dns", "127.0.0.1:5353", "DNS address of jitsu, UDP and TCP (port 0: any)")
	status := fs.String("status", "127.0.0.1:8053", "jitsu's status address for \"hearth status\" (empty: none)")
	bin := fs.String("bin", "", "directory of the appliance binaries (default: built from the source, or next to hearth)")
	lan := fs.Bool("lan", false, "serve the appliances' public ports on every address, not just 127.0.0.1")
	freePorts := fs.Bool("free-ports", false, "listen on ports the kernel picks instead of those in names.json")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(s.err, "\n", upHelp)
	}
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	cfg := upConfig{data: *data, dns: *dnsAddr, status: *status, bin: *bin, lan: *lan, freePorts: *freePorts}
	if err := up(ctx, s, cfg); err != nil {
		fmt.Fprintln(s.err, "hearth up:", err)
		return 1
	}
	return 0
}

// upConfig is what "hearth up" was asked for.
type upConfig struct {
	data, dns, status, bin string
	lan, freePorts         bool
}

// up runs jitsu with the built-in appliances from cfg.data until ctx ends.
func up(ctx context.Context, s stdio, cfg upConfig) error {
	logger := slog.New(slog.NewTextHandler(s.err, nil))
	dataDir, err := filepath.Abs(cfg.data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if _, err := netip.ParseAddrPort(cfg.dns); err != nil {
		return fmt.Errorf("-dns %q: want IP:port: %w", cfg.dns, err)
	}
	repos, err := store.OpenRepos(filepath.Join(dataDir, "repos"), &store.Options{Logger: logger})
	if err != nil {
		return err
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: logger})
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	_, names, err := signpost.OpenHomeCA(dataDir, signpost.CAOptions{Logger: logger})
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	binDir, err := applianceBinaries(ctx, logger, dataDir, cfg.bin)
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	ms := jitsu.BuiltinManifests(binDir, dataDir, names, logger)
	for i := range ms {
		for k, sock := range ms[i].Sockets {
			host, port, _ := net.SplitHostPort(sock.Addr)
			if host == "" && !cfg.lan {
				host = "127.0.0.1"
			}
			if cfg.freePorts {
				port = "0"
			}
			ms[i].Sockets[k].Addr = net.JoinHostPort(host, port)
		}
	}
	j, err := jitsu.Start(ctx, jitsu.Config{
		Names: names, Manifests: ms, DNSAddr: cfg.dns, Logger: logger,
		Summon: jitsu.SummonOptions{Logger: logger, BaseEnv: os.Environ()},
	})
	if err != nil {
		return errors.Join(err, repos.Close())
	}
	stop := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		return j.Close(cctx)
	}
	var statusLn net.Listener
	if cfg.status != "" {
		if statusLn, err = net.Listen("tcp", cfg.status); err != nil {
			return errors.Join(err, stop(), repos.Close())
		}
	}
	// Only now that nothing can fail before the welcome is printed: a first admin whose
	// password was never shown would lock the owner out.
	user, password, err := firstUser(ctx, accounts)
	if cerr := repos.Close(); err == nil && cerr != nil { // the appliances open it themselves
		err = fmt.Errorf("close repositories: %w", cerr)
	}
	if err != nil {
		if statusLn != nil {
			statusLn.Close()
		}
		return errors.Join(err, stop())
	}
	printWelcome(s.out, dataDir, j, ms, names, statusLn, user, password)

	sctx, cancelStatus := context.WithCancel(ctx)
	statusDone := make(chan error, 1)
	if statusLn != nil {
		go func() {
			statusDone <- signpost.ServeHTTP(sctx, []net.Listener{statusLn}, j.StatusHandler(), signpost.ServeOptions{Logger: logger})
		}()
	} else {
		statusDone <- nil
	}
	select {
	case <-ctx.Done():
	case <-j.Failed():
	case err = <-statusDone:
		statusDone <- err
	}
	cancelStatus()
	err = errors.Join(<-statusDone, stop())
	if err == nil {
		fmt.Fprintln(s.out, "hearth: stopped")
	}
	return err
}

// applianceBinaries returns the directory of the appliance binaries (see upHelp): binFlag;
// else DATA/bin built from the module source around the working directory; else the
// directory of the hearth executable.
func applianceBinaries(ctx context.Context, logger *slog.Logger, dataDir, binFlag string) (string, error) {
	if binFlag != "" {
		return filepath.Abs(binFlag)
	}
	if root, ok := moduleRoot(); ok {
		if goBin, err := exec.LookPath("go"); err == nil {
			out := filepath.Join(dataDir, "bin")
			if err := buildAppliances(ctx, logger, goBin, root, out); err != nil {
				return "", err
			}
			return out, nil
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the appliance binaries: %w (pass -bin DIR)", err)
	}
	return filepath.Dir(exe), nil
}

// moduleRoot returns the directory of the go.mod of Hearth's module at or above the
// working directory.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			return dir, goModPath(b) == modulePath
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// goModPath returns the module path a go.mod declares ("" if none).
func goModPath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			if p, err := strconv.Unquote(f[1]); err == nil {
				return p
			}
			return f[1]
		}
	}
	return ""
}

// maxBuildOutput bounds the compiler output kept for an error message.
const maxBuildOutput = 4096

// buildAppliances builds every appliance below root/appliances but jitsu into out. When
// building them together fails (one appliance does not compile), each is built alone and
// the failures are logged; the others are still served.
func buildAppliances(ctx context.Context, logger *slog.Logger, goBin, root, out string) error {
	entries, err := os.ReadDir(filepath.Join(root, "appliances"))
	if err != nil {
		return fmt.Errorf("build appliances: %w", err)
	}
	var pkgs []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "jitsu" {
			pkgs = append(pkgs, "./appliances/"+e.Name())
		}
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("build appliances: %w", err)
	}
	build := func(pkgs ...string) error {
		cmd := exec.CommandContext(ctx, goBin, append([]string{"build", "-o", out + string(filepath.Separator)}, pkgs...)...)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		if err != nil {
			if len(b) > maxBuildOutput {
				b = b[:maxBuildOutput]
			}
			return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, b)
		}
		return nil
	}
	logger.Info("building the appliances from the source", "module", root, "into", out)
	if err := build(pkgs...); err == nil {
		return nil
	} else if ctx.Err() != nil {
		return err
	}
	for _, p := range pkgs {
		if err := build(p); err != nil {
			if ctx.Err() != nil {
				return err
			}
			os.Remove(filepath.Join(out, filepath.Base(p))) // no stale binary for a broken build
			logger.Warn("appliance does not build; left out", "appliance", filepath.Base(p), "err", err)
		}
	}
	return nil
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

// printWelcome prints the password of a user just created, the service table (service,
// DNS name, address, TLS), what was left out, and how to try it.
func printWelcome(w io.Writer, dataDir string, j *jitsu.Jitsu, ms []jitsu.Manifest, names signpost.Names, statusLn net.Listener, user, password string) {
	if password != "" {
		fmt.Fprintf(w, "Created user %s with password %s\n(shown only this once; add more users with \"hearth user add\")\n\n", user, password)
	}
	fmt.Fprintf(w, "Hearth is up, data in %s. Stop it with Ctrl-C.\n", dataDir)
	fmt.Fprintln(w, "Appliances start when their name is looked up or a client connects.")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tDNS NAME\tADDRESS\tTLS")
	var plainHTTP, https string
	for _, sv := range j.Services() {
		tls := "no"
		if sv.TLS {
			tls = "yes"
		}
		addr := sv.Addr.String()
		if sv.Wildcard {
			addr = "*:" + strconv.Itoa(int(sv.Addr.Port()))
		}
		if sv.Loopback {
			tls += " (this machine only)"
		}
		fmt.Fprintf(tw, "  %s %s\t%s\t%s\t%s\n", sv.Appliance, sv.Socket, sv.FQDN, addr, tls)
		if sv.Appliance == "store" && sv.Socket == "http" {
			plainHTTP = "http://" + sv.Addr.String()
		}
		if sv.Appliance == "store" && sv.Socket == "https" {
			https = "https://" + net.JoinHostPort("localhost", strconv.Itoa(int(sv.Addr.Port())))
		}
	}
	fmt.Fprintf(tw, "  dns\tns.%s\t%s\tudp+tcp\n", names.Domain, j.DNSAddr())
	if statusLn != nil {
		fmt.Fprintf(tw, "  status\t\t%s\tno\n", statusLn.Addr())
	}
	tw.Flush()
	var missing []string
	for _, a := range names.Appliances {
		if !slices.ContainsFunc(ms, func(m jitsu.Manifest) bool { return m.Name == a.Name }) {
			missing = append(missing, a.Name)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "\nNot served (no binary): %s\n", strings.Join(missing, ", "))
	}
	fmt.Fprintf(w, "\nCertificates come from Hearth's own CA: trust it with\n  hearth ca export -data %s > hearth-ca.pem\n(the README says how, per client). Plain HTTP accepts credentials only from this machine.\n", dataDir)
	fmt.Fprintf(w, "\nTry:\n")
	dns := j.DNSAddr()
	fmt.Fprintf(w, "  dig @%s -p %d store.%s\n", dns.Addr(), dns.Port(), names.Domain)
	if statusLn != nil {
		fmt.Fprintf(w, "  hearth status -status %s\n", statusLn.Addr())
	}
	if https != "" {
		fmt.Fprintf(w, "  curl --cacert hearth-ca.pem -u %s %s/api/repos\n", user, https)
	}
	if plainHTTP != "" {
		fmt.Fprintf(w, "  curl -u %s %s/api/repos\n", user, plainHTTP)
		fmt.Fprintf(w, "  git clone %s/%s/notes.git\n", strings.Replace(plainHTTP, "http://", "http://"+user+"@", 1), user)
	}
	fmt.Fprintln(w)
}
