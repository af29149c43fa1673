// Package tailnet joins an appliance to the user's tailnet as its own node.
//
// Each appliance (mail, contacts, calendar, store) runs an embedded Tailscale
// client (tailscale.com/tsnet) with its own state directory, hostname and
// tailnet addresses, so it is reachable as http://mail/ or mail.TAILNET.ts.net
// from the user's devices without any port being opened on the home network.
// Peers are identified with [Node.WhoIs], which asks the node's own tailscaled
// state which user and machine stand behind a tailnet address.
//
// The package lives apart from package signpost so that binaries which do not
// join a tailnet do not carry tsnet (it adds about 24 MB to a binary, 17 MB
// with -ldflags=-s -w).
// An appliance main that wants to build with and without it keeps the call to
// [Join] in a file guarded by a build tag such as //go:build !notailnet.
package tailnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"tailscale.com/client/local"
	"tailscale.com/logtail"
	"tailscale.com/tsnet"
)

// AuthKeyEnv is the environment variable a main passes to [AuthKeyFrom] (through its
// getenv argument) to hold a Tailscale auth key.
const AuthKeyEnv = "HEARTH_TS_AUTHKEY"

// MaxAuthKeyLen is the longest auth key accepted, in bytes. Tailscale auth keys are
// under 100 bytes; OAuth client secrets with parameters stay well below this.
const MaxAuthKeyLen = 1024

// MaxHostnameLen is the longest hostname accepted: one DNS label.
const MaxHostnameLen = 63

// MaxTags is the largest number of ACL tags a node may advertise.
const MaxTags = 32

// ErrPeerNotFound is returned by [Node.WhoIs] when no tailnet node owns the address.
var ErrPeerNotFound = errors.New("tailnet: peer not found")

// Options configures [Join].
type Options struct {
	// Hostname is the node's name on the tailnet and its MagicDNS label, e.g. "mail".
	// Required: a DNS label of letters, digits and hyphens, at most 63 bytes.
	Hostname string
	// Dir is the node's state directory (its machine and node keys, its certificates).
	// Required; created with mode 0700 when missing. Each node needs its own Dir.
	Dir string
	// AuthKey registers the node without an interactive login. It is used only on
	// the first start: once Dir holds a registered node, the key is ignored. When
	// empty and Dir holds no node, Join waits for an interactive login whose URL is
	// logged at Info level. See [AuthKeyFrom].
	AuthKey string
	// ControlURL is the coordination server; "" means Tailscale's. Set it for
	// Headscale or for tests. (When AuthKey or ControlURL is empty, tsnet itself
	// falls back to the TS_AUTHKEY and TS_CONTROL_URL environment variables.)
	ControlURL string
	// Ephemeral registers the node as ephemeral: the control server forgets it soon
	// after it goes offline.
	Ephemeral bool
	// AdvertiseTags are ACL tags ("tag:hearth") the node asks to carry; the control
	// server decides whether it may. At most MaxTags.
	AdvertiseTags []string
	// UploadLogs lets tsnet upload its logs to Tailscale's log service. When false
	// (the default) Join switches log uploads off for the whole process (a one-way,
	// process-wide switch inside tailscale.com/logtail); logs still go to Logger.
	UploadLogs bool
	// Logger receives tsnet's logs: its backend logs at Debug, messages meant for the
	// user (such as a login URL) at Info. nil: slog.Default().
	Logger *slog.Logger
}

// Node is an appliance's presence on the tailnet. Its methods are safe for
// concurrent use.
type Node struct {
	srv      *tsnet.Server
	lc       *local.Client
	hostname string
	dnsName  string
	v4, v6   netip.Addr
}

// Peer identifies the user and machine behind a tailnet address.
type Peer struct {
	// LoginName is the owning user's login, e.g. "alice@example.com". For a node
	// owned by ACL tags it is Tailscale's placeholder ("tagged-devices").
	LoginName string
	// NodeName is the peer's MagicDNS name without the trailing dot, e.g.
	// "laptop.tail1234.ts.net".
	NodeName string
	// Tags are the peer's ACL tags, empty for a user-owned node.
	Tags []string
}

// Join starts an embedded Tailscale node and waits until it is connected to the
// tailnet, or until ctx is done. On error nothing is left running.
func Join(ctx context.Context, opts Options) (*Node, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("tailnet_node", opts.Hostname)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tailnet: join %q: state dir: %w", opts.Hostname, err)
	}
	if !opts.UploadLogs {
		logtail.Disable()
	}
	srv := &tsnet.Server{
		Dir:           opts.Dir,
		Hostname:      opts.Hostname,
		AuthKey:       opts.AuthKey,
		ControlURL:    opts.ControlURL,
		Ephemeral:     opts.Ephemeral,
		AdvertiseTags: append([]string(nil), opts.AdvertiseTags...),
		Logf:          logf(logger, slog.LevelDebug),
		UserLogf:      logf(logger, slog.LevelInfo),
	}
	// Start fails only before anything runs, and tsnet's Close must not be called
	// after a failed Start.
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("tailnet: join %q: start: %w", opts.Hostname, err)
	}
	st, err := srv.Up(ctx)
	if err != nil {
		srv.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("tailnet: join %q: %w", opts.Hostname, ctxErr)
		}
		return nil, fmt.Errorf("tailnet: join %q: %w", opts.Hostname, err)
	}
	lc, err := srv.LocalClient()
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("tailnet: join %q: %w", opts.Hostname, err)
	}
	n := &Node{srv: srv, lc: lc, hostname: opts.Hostname}
	if st.Self != nil {
		n.dnsName = strings.TrimSuffix(st.Self.DNSName, ".")
	}
	for _, ip := range st.TailscaleIPs {
		switch {
		case ip.Is4() && !n.v4.IsValid():
			n.v4 = ip
		case ip.Is6() && !n.v6.IsValid():
			n.v6 = ip
		}
	}
	logger.Info("tailnet: joined", "dns_name", n.dnsName, "ipv4", n.v4, "ipv6", n.v6)
	return n, nil
}

// logf adapts a slog.Logger to tsnet's printf-style logger at one level.
func logf(l *slog.Logger, level slog.Level) func(format string, args ...any) {
	return func(format string, args ...any) {
		ctx := context.Background()
		if !l.Enabled(ctx, level) {
			return
		}
		l.Log(ctx, level, strings.TrimSuffix(fmt.Sprintf(format, args...), "\n"), "component", "tsnet")
	}
}

func (o *Options) validate() error {
	if err := checkHostname(o.Hostname); err != nil {
		return err
	}
	if o.Dir == "" {
		return fmt.Errorf("tailnet: join %q: no state dir", o.Hostname)
	}
	if o.AuthKey != "" {
		if _, err := parseAuthKey([]byte(o.AuthKey)); err != nil {
			return fmt.Errorf("tailnet: join %q: %w", o.Hostname, err)
		}
	}
	if o.ControlURL != "" {
		u, err := url.Parse(o.ControlURL)
		if err != nil {
			return fmt.Errorf("tailnet: join %q: control URL: %w", o.Hostname, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("tailnet: join %q: control URL %q: want http(s)://host", o.Hostname, o.ControlURL)
		}
	}
	if len(o.AdvertiseTags) > MaxTags {
		return fmt.Errorf("tailnet: join %q: %d tags, at most %d", o.Hostname, len(o.AdvertiseTags), MaxTags)
	}
	for _, tag := range o.AdvertiseTags {
		name, ok := strings.CutPrefix(tag, "tag:")
		if !ok || checkLabelChars(name) != nil {
			return fmt.Errorf("tailnet: join %q: bad tag %q: want tag:NAME", o.Hostname, tag)
		}
	}
	return nil
}

// checkHostname reports whether h is one DNS label usable as a tailnet hostname.
func checkHostname(h string) error {
	if h == "" {
		return errors.New("tailnet: no hostname")
	}
	if len(h) > MaxHostnameLen {
		return fmt.Errorf("tailnet: hostname %.20q…: longer than %d bytes", h, MaxHostnameLen)
	}
	if err := checkLabelChars(h); err != nil {
		return fmt.Errorf("tailnet: hostname %q: %w", h, err)
	}
	if h[0] == '-' || h[len(h)-1] == '-' {
		return fmt.Errorf("tailnet: hostname %q: starts or ends with '-'", h)
	}
	return nil
}

func checkLabelChars(s string) error {
	if s == "" || len(s) > MaxHostnameLen {
		return fmt.Errorf("want 1 to %d characters", MaxHostnameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("character %q not allowed (want letters, digits, '-')", c)
		}
	}
	return nil
}

// Hostname is the node's tailnet hostname as given in Options.
func (n *Node) Hostname() string { return n.hostname }

// DNSName is the node's MagicDNS name without the trailing dot
// ("mail.tail1234.ts.net"), or "" when the control server assigned none.
func (n *Node) DNSName() string { return n.dnsName }

// Addrs returns the node's tailnet IPv4 and IPv6 addresses; either may be invalid
// (the zero netip.Addr) when the tailnet assigned none.
func (n *Node) Addrs() (v4, v6 netip.Addr) { return n.v4, n.v6 }

// Listen listens on the tailnet only (never on the host's interfaces). network is
// "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6"; addr is ":PORT" or
// "TAILNET-IP:PORT".
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	ln, err := n.srv.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("tailnet: %s: listen %s %q: %w", n.hostname, network, addr, err)
	}
	return ln, nil
}

// ListenTLS listens for TLS over TCP on the tailnet with a certificate for the
// node's MagicDNS name, which tailscale obtains from Let's Encrypt through the
// control server. It needs MagicDNS and HTTPS certificates enabled for the tailnet
// (admin console, DNS page); otherwise it fails at once with tsnet's explanation.
// The first handshake may wait several seconds while the certificate is issued;
// it is cached in Options.Dir.
func (n *Node) ListenTLS(network, addr string) (net.Listener, error) {
	ln, err := n.srv.ListenTLS(network, addr)
	if err != nil {
		return nil, fmt.Errorf("tailnet: %s: listen TLS %s %q: %w", n.hostname, network, addr, err)
	}
	return ln, nil
}

// Dial connects to addr over the tailnet. addr may name a peer by MagicDNS
// hostname ("mail:443"), full MagicDNS name or tailnet address.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := n.srv.Dial(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("tailnet: %s: dial %s %q: %w", n.hostname, network, addr, err)
	}
	return c, nil
}

// HTTPClient returns an HTTP client whose connections go over the tailnet.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: n.Dial}}
}

// WhoIs identifies the tailnet peer at remoteAddr ("IP:PORT" as in
// http.Request.RemoteAddr or net.Conn.RemoteAddr, or a bare IP). It returns an
// error wrapping ErrPeerNotFound when no node of the tailnet has that address.
func (n *Node) WhoIs(ctx context.Context, remoteAddr string) (Peer, error) {
	if _, err := netip.ParseAddrPort(remoteAddr); err != nil {
		if _, err2 := netip.ParseAddr(remoteAddr); err2 != nil {
			return Peer{}, fmt.Errorf("tailnet: whois %q: not IP:PORT or IP", remoteAddr)
		}
	}
	res, err := n.lc.WhoIs(ctx, remoteAddr)
	if errors.Is(err, local.ErrPeerNotFound) {
		return Peer{}, fmt.Errorf("tailnet: whois %q: %w", remoteAddr, ErrPeerNotFound)
	}
	if err != nil {
		return Peer{}, fmt.Errorf("tailnet: whois %q: %w", remoteAddr, err)
	}
	var p Peer
	if res.UserProfile != nil {
		p.LoginName = res.UserProfile.LoginName
	}
	if res.Node != nil {
		p.NodeName = strings.TrimSuffix(res.Node.Name, ".")
		p.Tags = append([]string(nil), res.Node.Tags...)
	}
	if p.LoginName == "" && p.NodeName == "" {
		return Peer{}, fmt.Errorf("tailnet: whois %q: %w", remoteAddr, ErrPeerNotFound)
	}
	return p, nil
}

// Close leaves the tailnet: it closes the node's listeners and stops its
// Tailscale client. An ephemeral node is then forgotten by the control server.
func (n *Node) Close() error {
	if err := n.srv.Close(); err != nil {
		return fmt.Errorf("tailnet: %s: close: %w", n.hostname, err)
	}
	return nil
}

// AuthKeyFrom returns the auth key to pass in Options.AuthKey: the contents of file
// when file is not "" (surrounding whitespace trimmed; a missing file is an error),
// else getenv(AuthKeyEnv). A main passes os.Getenv; the package never reads the
// environment itself. It returns "" and no error when neither gives a key, which
// suits a node already registered in its state dir.
func AuthKeyFrom(file string, getenv func(string) string) (string, error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("tailnet: auth key file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, MaxAuthKeyLen+64))
		if err != nil {
			return "", fmt.Errorf("tailnet: auth key file %q: %w", file, err)
		}
		key, err := parseAuthKey(b)
		if err != nil {
			return "", fmt.Errorf("tailnet: auth key file %q: %w", file, err)
		}
		if key == "" {
			return "", fmt.Errorf("tailnet: auth key file %q: empty", file)
		}
		return key, nil
	}
	if getenv == nil {
		return "", nil
	}
	key, err := parseAuthKey([]byte(getenv(AuthKeyEnv)))
	if err != nil {
		return "", fmt.Errorf("tailnet: $%s: %w", AuthKeyEnv, err)
	}
	return key, nil
}

// parseAuthKey trims surrounding whitespace from b and checks that what is left is
// one printable ASCII token of at most MaxAuthKeyLen bytes. Empty input gives "".
func parseAuthKey(b []byte) (string, error) {
	s := strings.TrimSpace(string(b))
	if len(s) > MaxAuthKeyLen {
		return "", fmt.Errorf("auth key longer than %d bytes", MaxAuthKeyLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("auth key: byte %d is %q: want one printable ASCII token", i, c)
		}
	}
	return s, nil
}
