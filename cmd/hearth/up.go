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

Once up, it prints the services (DNS name, address, TLS), the settings to type into
Thunderbird, DAVx5 and vdirsyncer (for khal and khard), and how to point a router
(dnsmasq, unbound) or a tailnet's split DNS at jitsu. Split DNS needs port 53: run
"hearth up -lan -dns IP:53" with CAP_NET_BIND_SERVICE, or redirect port 53 to jitsu's.
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
	// The status socket first: the dashboard is told where it is.
	var statusLn net.Listener
	if cfg.status != "" {
		if statusLn, err = net.Listen("tcp", cfg.status); err != nil {
			return errors.Join(fmt.Errorf("-status: %w", err), repos.Close())
		}
	}
	closeStatus := func() {
		if statusLn != nil {
			statusLn.Close()
		}
	}
	ms := upManifests(jitsu.BuiltinManifests(binDir, dataDir, names, logger), cfg, statusLn)
	j, err := jitsu.Start(ctx, jitsu.Config{
		Names: names, Manifests: ms, DNSAddr: cfg.dns, Logger: logger,
		Summon: jitsu.SummonOptions{Logger: logger, BaseEnv: os.Environ()},
	})
	if err != nil {
		closeStatus()
		return errors.Join(err, repos.Close())
	}
	stop := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		return j.Close(cctx)
	}
	// Only now that nothing can fail before the welcome is printed: a first admin whose
	// password was never shown would lock the owner out.
	user, password, err := firstUser(ctx, accounts)
	if cerr := repos.Close(); err == nil && cerr != nil { // the appliances open it themselves
		err = fmt.Errorf("close repositories: %w", cerr)
	}
	if err != nil {
		closeStatus()
		return errors.Join(err, stop())
	}
	w := welcome{
		dataDir: dataDir, caFile: filepath.Join(dataDir, "ca", "ca.crt"),
		user: user, password: password, domain: names.Domain,
		services: j.Services(), dns: j.DNSAddr(), lan: cfg.lan,
	}
	if statusLn != nil {
		w.status = statusLn.Addr().String()
	}
	for _, a := range names.Appliances {
		if !slices.ContainsFunc(ms, func(m jitsu.Manifest) bool { return m.Name == a.Name }) {
			w.missing = append(w.missing, a.Name)
		}
	}
	if ips, err := signpost.LANAddrs(); err == nil {
		w.lanAddr, w.tailnetAddr = pickAddrs(ips)
	}
	writeWelcome(s.out, w)

	// Backups and replicas of DATA/backup.json ("hearth backup add"), see backup.go.
	stopBackups := startBackups(ctx, dataDir, logger)
	defer stopBackups()

	sctx, cancelStatus := context.WithCancel(ctx)
	statusDone := make(chan error, 1)
	if statusLn != nil {
		// The dashboard's stop buttons post to the stop endpoint with the control token.
		token, terr := signpost.EnsureControlToken(dataDir)
		if terr != nil {
			logger.Warn("no stop endpoint for the dashboard", "err", terr)
		}
		h := j.ControlHandler(token)
		go func() {
			statusDone <- signpost.ServeHTTP(sctx, []net.Listener{statusLn}, h, signpost.ServeOptions{Logger: logger})
		}()
	}
	select {
	case <-ctx.Done():
	case <-j.Failed():
	case err = <-statusDone:
		statusDone <- err
	}
	cancelStatus()
	if statusLn != nil {
		err = <-statusDone
	}
	err = errors.Join(err, stop())
	if err == nil {
		fmt.Fprintln(s.out, "hearth: stopped")
	}
	return err
}

// metricsPort is the loopback port of a built-in appliance's /metrics under "hearth up"
// (jitsu's own are on its status address).
func metricsPort(appliance string) (int, bool) {
	port, ok := map[string]int{"store": 9181, "mail": 9182, "contacts": 9183, "calendar": 9184, "dashboard": 9185}[appliance]
	return port, ok
}

// upManifests adapts the built-in manifests to cfg: sockets on 127.0.0.1 unless cfg.lan,
// ports from the kernel with cfg.freePorts, and the dashboard told where jitsu's status is.
func upManifests(ms []jitsu.Manifest, cfg upConfig, statusLn net.Listener) []jitsu.Manifest {
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
		// Each appliance serves /metrics on a loopback port of its own while it runs (not
		// with -free-ports: tests run several Hearths at once).
		if port, ok := metricsPort(ms[i].Name); ok && !cfg.freePorts {
			ms[i].Exec = append(ms[i].Exec, "-metrics", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		}
		if ms[i].Name == "dashboard" && statusLn != nil {
			ms[i].Exec = append(ms[i].Exec, "-jitsu-status", "http://"+statusLn.Addr().String()+"/status")
		}
	}
	return ms
}

// pickAddrs returns the first private IPv4 address of ips (the LAN) and the first one in
// the tailnet range 100.64.0.0/10; the zero Addr when there is none.
func pickAddrs(ips []net.IP) (lanAddr, tailnetAddr netip.Addr) {
	cgnat := netip.MustParsePrefix("100.64.0.0/10")
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		switch {
		case cgnat.Contains(a) && !tailnetAddr.IsValid():
			tailnetAddr = a
		case a.Is4() && a.IsPrivate() && !lanAddr.IsValid():
			lanAddr = a
		}
	}
	return lanAddr, tailnetAddr
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

// welcome is everything "hearth up" prints once it is up. writeWelcome depends on nothing
// else, so its text is reproducible (testdata/up-*.golden).
type welcome struct {
	dataDir     string
	caFile      string // the CA's certificate on this machine
	user        string // the user shown in examples
	password    string // the user's password, only when this run created the user
	domain      string // the home domain, e.g. "home.arpa"
	services    []jitsu.Service
	dns         netip.AddrPort // where jitsu answers DNS
	status      string         // jitsu's status address ("": none)
	missing     []string       // appliances in names.json without a binary
	lan         bool           // the appliances listen on every address
	lanAddr     netip.Addr     // this machine's LAN address (zero: unknown)
	tailnetAddr netip.Addr     // this machine's tailnet address (zero: none)
}

// welcomeLast is the last line of the welcome; what follows is the log of the run.
const welcomeLast = "Hearth is up. Stop it with Ctrl-C."

// service returns the published socket of an appliance.
func (w welcome) service(appliance, socket string) (jitsu.Service, bool) {
	for _, sv := range w.services {
		if sv.Appliance == appliance && sv.Socket == socket {
			return sv, true
		}
	}
	return jitsu.Service{}, false
}

// url returns https://FQDN:PORT/ of an appliance's https socket.
func (w welcome) url(appliance string) (string, bool) {
	sv, ok := w.service(appliance, "https")
	if !ok {
		return "", false
	}
	return "https://" + net.JoinHostPort(sv.FQDN, strconv.Itoa(int(sv.Addr.Port()))) + "/", true
}

// writeWelcome prints the service table (service, DNS name, address, TLS), the settings to
// type into Thunderbird, DAVx5 and vdirsyncer, how to point a router or a tailnet at jitsu,
// a few commands to try, the password of a user just created, and welcomeLast.
func writeWelcome(out io.Writer, w welcome) {
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("Hearth serves from %s; appliances start when their name is looked up or a client connects.\n\n", w.dataDir)

	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tDNS NAME\tADDRESS\tTLS")
	for _, sv := range w.services {
		tls := "no"
		switch {
		case sv.TLS:
			tls = "yes"
		case sv.Appliance == "mail" && sv.Socket != "lmtp":
			tls = "STARTTLS"
		}
		addr := sv.Addr.String()
		if sv.Wildcard {
			addr = "*:" + strconv.Itoa(int(sv.Addr.Port()))
		}
		if sv.Loopback {
			tls += " (this machine only)"
		}
		fmt.Fprintf(tw, "  %s %s\t%s\t%s\t%s\n", sv.Appliance, sv.Socket, sv.FQDN, addr, tls)
	}
	fmt.Fprintf(tw, "  dns\tns.%s\t%s\tudp+tcp\n", w.domain, w.dns)
	if w.status != "" {
		only := ""
		if ap, err := netip.ParseAddrPort(w.status); err == nil && ap.Addr().IsLoopback() {
			only = " (this machine only)"
		}
		fmt.Fprintf(tw, "  status\t\t%s\tno%s\n", w.status, only)
	}
	tw.Flush()
	if len(w.missing) > 0 {
		p("\nNot served (no binary): %s\n", strings.Join(w.missing, ", "))
	}

	// Where clients find it.
	here := "localhost"
	if w.lan && w.lanAddr.IsValid() {
		here = w.lanAddr.String()
	}
	p("\nCertificates come from Hearth's own CA, %s: trust it on every device.\n", w.caFile)
	p("Copy it with \"hearth ca export -data %s > hearth-ca.pem\"; the README says how, per client.\n", w.dataDir)
	p("Names below %s are answered by jitsu (DNS %s). Until your devices ask it\n", w.domain, w.dns)
	p("(see \"Other devices\" below), type %s instead of a name: the certificates cover it too.\n", here)

	if in, ok := w.service("mail", "imaps"); ok {
		p("\nThunderbird: Account Settings > Account Actions > Add Mail Account, \"Configure manually\":\n")
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  incoming\tIMAP\tserver %s\tport %d\tSSL/TLS\tNormal password\tusername %s\n", in.FQDN, in.Addr.Port(), w.user)
		if sub, ok := w.service("mail", "submissions"); ok { // implicit TLS, RFC 8314
			fmt.Fprintf(tw, "  outgoing\tSMTP\tserver %s\tport %d\tSSL/TLS\tNormal password\tusername %s\n", sub.FQDN, sub.Addr.Port(), w.user)
		} else if sub, ok := w.service("mail", "submission"); ok {
			fmt.Fprintf(tw, "  outgoing\tSMTP\tserver %s\tport %d\tSTARTTLS\tNormal password\tusername %s\n", sub.FQDN, sub.Addr.Port(), w.user)
		}
		tw.Flush()
		p("  email address %s@%s (the username is %s, without the domain)\n", w.user, w.domain, w.user)
	}
	contacts, hasContacts := w.url("contacts")
	calendar, hasCalendar := w.url("calendar")
	if hasContacts || hasCalendar {
		p("\nDAVx5 (Android; install the CA certificate first): + > \"Login with URL and user name\":\n")
		if hasContacts {
			p("  contacts  base URL %s  user name %s\n", contacts, w.user)
		}
		if hasCalendar {
			p("  calendar  base URL %s  user name %s\n", calendar, w.user)
		}
		p("  or \"Login with email address\" %s@%s once the phone resolves %s through jitsu\n", w.user, w.domain, w.domain)
		p("  (the SRV records _carddavs._tcp and _caldavs._tcp name both).\n")
	}
	if dash, ok := w.url("dashboard"); ok {
		p("\nDashboard: %s (log in as %s)\n", dash, w.user)
	}
	if hasContacts || hasCalendar {
		p("\nkhard and khal through vdirsyncer: put this in ~/.config/vdirsyncer/config, then run\n")
		p("\"vdirsyncer discover && vdirsyncer sync\"; point khard at ~/.local/share/vdirsyncer/contacts/*/\n")
		p("and khal at ~/.local/share/vdirsyncer/calendars/* (type = discover).\n\n")
		p("[general]\nstatus_path = \"~/.local/share/vdirsyncer/status/\"\n")
		for _, d := range []struct {
			name, url, ext string
			ok             bool
		}{{"contacts", contacts, ".vcf", hasContacts}, {"calendars", calendar, ".ics", hasCalendar}} {
			if !d.ok {
				continue
			}
			typ := "carddav"
			if d.ext == ".ics" {
				typ = "caldav"
			}
			p("\n[pair hearth_%s]\na = \"hearth_%s_local\"\nb = \"hearth_%s_remote\"\ncollections = [\"from a\", \"from b\"]\n", d.name, d.name, d.name)
			p("\n[storage hearth_%s_local]\ntype = \"filesystem\"\npath = \"~/.local/share/vdirsyncer/%s/\"\nfileext = \"%s\"\n", d.name, d.name, d.ext)
			p("\n[storage hearth_%s_remote]\ntype = \"%s\"\nurl = \"%s\"\nusername = \"%s\"\n", d.name, typ, d.url, w.user)
			p("password.fetch = [\"prompt\", \"Hearth password of %s\"]\nverify = \"%s\"\n", w.user, w.caFile)
		}
	}

	// Other devices.
	lanIP, tsIP := "LAN-IP", "TAILNET-IP"
	if w.lanAddr.IsValid() {
		lanIP = w.lanAddr.String()
	}
	if w.tailnetAddr.IsValid() {
		tsIP = w.tailnetAddr.String()
	}
	p("\nOther devices find Hearth when their DNS server asks jitsu about %s.\n", w.domain)
	if !w.lan || w.dns.Addr().IsLoopback() {
		p("Now it answers this machine only: restart with \"hearth up -lan -dns %s:%d\".\n", lanIP, w.dns.Port())
	}
	p("  router with dnsmasq (OpenWrt, Pi-hole, most home routers), one line:\n")
	p("    server=/%s/%s#%d\n", w.domain, lanIP, w.dns.Port())
	p("  unbound (unbound.conf, server: and a stub zone):\n")
	p("    server:\n      local-zone: \"%s.\" nodefault\n      domain-insecure: \"%s\"\n", w.domain, w.domain)
	p("    stub-zone:\n      name: \"%s\"\n      stub-addr: %s@%d\n", w.domain, lanIP, w.dns.Port())
	p("  Tailscale split DNS: admin console > DNS > Nameservers > Add nameserver > Custom,\n")
	p("    %s, \"Restrict to domain\" %s (headscale: dns.nameservers.split in config.yaml).\n", tsIP, w.domain)
	p("    Split DNS asks port 53, which needs root or CAP_NET_BIND_SERVICE:\n")
	p("      go build -o hearth ./cmd/hearth && sudo setcap cap_net_bind_service=+ep hearth\n")
	p("      ./hearth up -lan -dns %s:53\n", tsIP)
	p("    or keep jitsu on %d and redirect port 53 to it:\n", w.dns.Port())
	p("      sudo iptables -t nat -A PREROUTING -i tailscale0 -p udp --dport 53 -j REDIRECT --to-ports %d\n", w.dns.Port())
	p("      sudo iptables -t nat -A PREROUTING -i tailscale0 -p tcp --dport 53 -j REDIRECT --to-ports %d\n", w.dns.Port())
	p("      hearth up -lan -dns %s:%d\n", tsIP, w.dns.Port())

	p("\nTry:\n")
	p("  dig @%s -p %d mail.%s\n", w.dns.Addr(), w.dns.Port(), w.domain)
	if w.status != "" {
		p("  hearth status -status %s\n", w.status)
	}
	if sv, ok := w.service("store", "https"); ok {
		p("  curl --cacert %s -u %s https://%s/api/repos\n", w.caFile, w.user, net.JoinHostPort("localhost", strconv.Itoa(int(sv.Addr.Port()))))
	}
	if sv, ok := w.service("store", "http"); ok {
		p("  git clone http://%s@%s/%s/notes.git\n", w.user, sv.Addr, w.user)
	}
	if w.password != "" {
		p("\nCreated user %s with password %s\n", w.user, w.password)
		p("(shown only this once; add more users with \"hearth user add\")\n")
	}
	p("\n%s\n", welcomeLast)
}
