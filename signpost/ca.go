package signpost

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Errors returned by the certificate authority; test them with errors.Is.
var (
	// ErrNoCertificate: a TLS client asked for a name or address the server was not
	// configured with (or that the CA's name constraints do not permit).
	ErrNoCertificate = errors.New("signpost: no certificate for this name")
	// ErrBadCA: the CA directory holds files that are not a usable CA (corrupt, expired,
	// key and certificate do not match).
	ErrBadCA = errors.New("signpost: unusable certificate authority")
)

// Lifetimes and file names of the local CA.
const (
	// CALifetime is how long a new CA certificate is valid.
	CALifetime = 10 * 365 * 24 * time.Hour
	// DefaultLeafLifetime is how long an issued server certificate is valid unless
	// CAOptions.LeafLifetime says otherwise.
	DefaultLeafLifetime = 90 * 24 * time.Hour
	// MaxLeafLifetime is the longest server certificate Apple's clients accept (397 days).
	MaxLeafLifetime = 397 * 24 * time.Hour

	caKeyFile  = "ca-key.pem" // the CA's private key and certificate, mode 0600
	caCertFile = "ca.crt"     // the CA's certificate alone, for users to copy, mode 0644
	leafDir    = "certs"      // issued certificates with their keys, one file per name
	maxPEMFile = 64 << 10     // bytes of a key or certificate file
	clockSkew  = time.Hour    // certificates start this long before they are made
)

// privateRanges are the addresses the CA may certify: loopback, RFC 1918, shared (CGNAT,
// as tailnets use), link-local and unique local IPv6. A public address cannot be certified,
// so the CA cannot be misused for someone else's server.
var privateRanges = []string{
	"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
	"169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
}

// CAOptions tune OpenCA. The zero value is usable.
type CAOptions struct {
	// Domains a new CA may issue certificates for (its name constraints), besides
	// "localhost"; each permits the domain and every name below it. nil: DefaultDomain.
	// An existing CA keeps the constraints it was made with.
	Domains []string
	// Hostname goes into a new CA's name, "Hearth local CA (HOSTNAME)". "": os.Hostname().
	Hostname string
	// LeafLifetime is how long issued certificates are valid: 0 means DefaultLeafLifetime;
	// more than MaxLeafLifetime or less than an hour is an error. A certificate is renewed
	// when less than a third of its lifetime remains.
	LeafLifetime time.Duration
	// Logger receives CA creation and certificate issuance events. nil: slog.Default().
	Logger *slog.Logger
}

// CA is Hearth's local certificate authority: an ECDSA P-256 key and a self-signed
// certificate kept in one directory, issuing server certificates for the appliances on
// demand. It is safe for concurrent use.
type CA struct {
	dir      string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	leafLife time.Duration
	logger   *slog.Logger

	mu     sync.Mutex                  // guards leaves and issuing
	leaves map[string]*tls.Certificate // by name or IP address string
}

// OpenCA opens the CA in dir, creating the directory and a new CA on first use. Two
// processes opening the same new directory at once end up with the same single CA: the key
// file is created exclusively and the loser reads the winner's.
func OpenCA(dir string, opts CAOptions) (*CA, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	life := opts.LeafLifetime
	if life == 0 {
		life = DefaultLeafLifetime
	}
	if life > MaxLeafLifetime || life < time.Hour {
		return nil, fmt.Errorf("signpost: open CA: leaf lifetime %v outside 1h..%v", life, MaxLeafLifetime)
	}
	domains := opts.Domains
	if domains == nil {
		domains = []string{DefaultDomain}
	}
	for _, d := range domains {
		if err := checkDomain(d); err != nil {
			return nil, fmt.Errorf("signpost: open CA: domain: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, leafDir), 0o700); err != nil {
		return nil, fmt.Errorf("signpost: open CA: %w", err)
	}
	keyPath := filepath.Join(dir, caKeyFile)
	b, err := readSmall(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		nb, cerr := newCA(domains, opts.Hostname)
		if cerr != nil {
			return nil, fmt.Errorf("signpost: create CA: %w", cerr)
		}
		created, cerr := durableCreate(keyPath, nb, 0o600)
		if cerr != nil {
			return nil, fmt.Errorf("signpost: create CA %s: %w", keyPath, cerr)
		}
		if created {
			logger.Info("created a local certificate authority", "dir", dir)
		}
		b, err = readSmall(keyPath) // ours, or the one another process made first
	}
	if err != nil {
		return nil, fmt.Errorf("signpost: open CA: %w", err)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("CA key readable by others; making it private", "path", keyPath, "mode", fi.Mode().Perm())
		if err := os.Chmod(keyPath, 0o600); err != nil {
			return nil, fmt.Errorf("signpost: open CA: %w", err)
		}
	}
	cert, key, err := parseKeyAndCert(b)
	if err != nil {
		return nil, fmt.Errorf("signpost: open CA %s: %w", keyPath, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("signpost: open CA %s: certificate is not a CA: %w", keyPath, ErrBadCA)
	}
	if now := time.Now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("signpost: open CA %s: expired on %s; move the directory away to make a new one (clients must then trust it again): %w",
			keyPath, cert.NotAfter.Format(time.DateOnly), ErrBadCA)
	}
	ca := &CA{dir: dir, cert: cert, key: key, leafLife: life, logger: logger, leaves: make(map[string]*tls.Certificate)}
	for _, d := range domains {
		if !ca.permitsName(d) {
			logger.Warn("the existing CA may not issue for this domain (name constraints are fixed at creation)",
				"domain", d, "permitted", cert.PermittedDNSDomains)
		}
	}
	certPath := filepath.Join(dir, caCertFile)
	if old, err := readSmall(certPath); err != nil || !bytes.Equal(old, ca.CertificatePEM()) {
		if err := durableReplace(certPath, ca.CertificatePEM(), 0o644); err != nil {
			return nil, fmt.Errorf("signpost: open CA: write %s: %w", certPath, err)
		}
	}
	return ca, nil
}

// OpenHomeCA opens the CA of a Hearth data directory, DATA/ca, with name constraints for
// the home domain of DATA/names.json (DefaultDomain when there is none), and returns it with
// those Names. Every command and appliance that needs the CA should open it this way, so
// whichever comes first creates it with the same constraints. opts.Domains, if set, are
// permitted in addition.
func OpenHomeCA(dataDir string, opts CAOptions) (*CA, Names, error) {
	n, err := ReadNames(dataDir)
	if err != nil {
		return nil, Names{}, err
	}
	opts.Domains = append([]string{n.Domain}, opts.Domains...)
	ca, err := OpenCA(filepath.Join(dataDir, "ca"), opts)
	if err != nil {
		return nil, Names{}, err
	}
	return ca, n, nil
}

// newCA makes a new CA key and certificate and returns them PEM-encoded (key first).
func newCA(domains []string, hostname string) ([]byte, error) {
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	hostname = clip(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, hostname))
	name := "Hearth local CA"
	if hostname != "" {
		name += " (" + hostname + ")"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var ranges []*net.IPNet
	for _, r := range privateRanges {
		_, n, err := net.ParseCIDR(r)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, n)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                newSerial(),
		Subject:                     pkix.Name{CommonName: name, Organization: []string{"Hearth"}},
		NotBefore:                   now.Add(-clockSkew),
		NotAfter:                    now.Add(CALifetime),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         append(slices.Clone(domains), "localhost"),
		PermittedIPRanges:           ranges,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return encodeKeyAndCert(key, der)
}

// newSerial returns a random 128-bit positive serial number.
func newSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	b[0] &= 0x7f
	b[0] |= 0x40 // keep it 16 bytes long and positive
	return new(big.Int).SetBytes(b)
}

// encodeKeyAndCert PEM-encodes a private key (PKCS #8) followed by certificates.
func encodeKeyAndCert(key *ecdsa.PrivateKey, certs ...[]byte) ([]byte, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return out, nil
}

// parseKeyAndCert decodes what encodeKeyAndCert wrote: an ECDSA key and the first
// certificate, which must hold the key's public half.
func parseKeyAndCert(b []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	var cert *x509.Certificate
	var key *ecdsa.PrivateKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch {
		case blk.Type == "PRIVATE KEY" && key == nil:
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: key: %w", ErrBadCA, err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok || ek.Curve != elliptic.P256() {
				return nil, nil, fmt.Errorf("%w: key is not ECDSA P-256", ErrBadCA)
			}
			key = ek
		case blk.Type == "CERTIFICATE" && cert == nil:
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: certificate: %w", ErrBadCA, err)
			}
			cert = c
		}
	}
	if cert == nil || key == nil {
		return nil, nil, fmt.Errorf("%w: want a PEM private key and certificate", ErrBadCA)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: key and certificate do not match", ErrBadCA)
	}
	return cert, key, nil
}

// readSmall reads a file of at most maxPEMFile bytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, maxPEMFile, ErrBadCA)
	}
	return b, nil
}

// Dir returns the CA's directory.
func (ca *CA) Dir() string { return ca.dir }

// Certificate returns the CA certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertificatePEM returns the CA certificate, PEM-encoded: what clients import to trust
// Hearth's appliances.
func (ca *CA) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// CertPool returns a pool holding only the CA certificate, for Hearth's own TLS clients.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// permitsName reports whether the CA's name constraints allow DNS name n.
func (ca *CA) permitsName(n string) bool {
	if len(ca.cert.PermittedDNSDomains) == 0 {
		return true
	}
	for _, d := range ca.cert.PermittedDNSDomains {
		d = strings.TrimPrefix(d, ".")
		if n == d || strings.HasSuffix(n, "."+d) {
			return true
		}
	}
	return false
}

// permitsIP reports whether the CA's name constraints allow address ip.
func (ca *CA) permitsIP(ip net.IP) bool {
	if len(ca.cert.PermittedIPRanges) == 0 {
		return true
	}
	for _, r := range ca.cert.PermittedIPRanges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// ServerConfig returns a TLS server configuration whose certificates the CA issues on
// demand: for the SNI name a client asks for if it is one of names or "localhost", and,
// when a client sends no name (it dialled an address), for the local address it connected
// to if that is one of ips, 127.0.0.1 or ::1. Other names are refused (the handshake fails
// with ErrNoCertificate), as are names the CA's name constraints do not permit (logged
// here). Certificates are cached in memory and in DIR/certs and renewed during a handshake
// once less than a third of their lifetime remains.
//
// Tailnet certificates (the tailnet part of signpost) plug in by wrapping GetCertificate:
// answer *.ts.net names from the tailnet first and fall back to this one.
func (ca *CA) ServerConfig(names []string, ips []net.IP) *tls.Config {
	allowed := map[string]bool{}
	for _, n := range append(slices.Clone(names), "localhost") {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if err := checkDomain(n); err != nil && n != "localhost" {
			ca.logger.Warn("not a DNS name; no certificate will be issued for it", "name", n, "err", err)
			continue
		}
		if !ca.permitsName(n) {
			ca.logger.Warn("the CA's name constraints do not permit this name; no certificate will be issued for it",
				"name", n, "permitted", ca.cert.PermittedDNSDomains)
			continue
		}
		allowed[n] = true
	}
	for _, ip := range append(slices.Clone(ips), net.IPv4(127, 0, 0, 1), net.IPv6loopback) {
		if ip == nil {
			continue
		}
		if !ca.permitsIP(ip) {
			ca.logger.Warn("the CA may only certify private addresses; no certificate will be issued for this one", "ip", ip)
			continue
		}
		allowed[ip.String()] = true
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
			if name == "" && hello.Conn != nil {
				if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
					name = a.IP.String()
				}
			}
			if ip := net.ParseIP(name); ip != nil {
				name = ip.String() // canonical form, e.g. for ::ffff:127.0.0.1
			}
			if name == "" || !allowed[name] {
				return nil, fmt.Errorf("signpost: TLS server name %q: %w", clip(name), ErrNoCertificate)
			}
			return ca.leaf(name, time.Now())
		},
	}
}

// leaf returns a valid certificate for name (a DNS name or an IP address), from memory,
// from disk or newly issued.
func (ca *CA) leaf(name string, now time.Time) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.leaves[name]; c != nil && !ca.needsRenewal(c.Leaf, now) {
		return c, nil
	}
	path := filepath.Join(ca.dir, leafDir, strings.ReplaceAll(name, ":", "_")+".pem")
	if b, err := readSmall(path); err == nil {
		if lc, key, err := parseKeyAndCert(b); err == nil && lc.CheckSignatureFrom(ca.cert) == nil &&
			lc.VerifyHostname(name) == nil && !ca.needsRenewal(lc, now) {
			c := &tls.Certificate{Certificate: [][]byte{lc.Raw}, PrivateKey: key, Leaf: lc}
			ca.leaves[name] = c
			return c, nil
		}
	}
	c, b, err := ca.issue(name, now)
	if err != nil {
		return nil, fmt.Errorf("signpost: issue certificate for %q: %w", name, err)
	}
	if err := durableReplace(path, b, 0o600); err != nil {
		ca.logger.Warn("cannot keep the issued certificate on disk; serving it from memory", "name", name, "err", err)
	}
	ca.logger.Info("issued certificate", "name", name, "until", c.Leaf.NotAfter)
	ca.leaves[name] = c
	return c, nil
}

// needsRenewal reports whether c has less than a third of its lifetime left at now (or is
// not valid yet, after the clock went back).
func (ca *CA) needsRenewal(c *x509.Certificate, now time.Time) bool {
	total := c.NotAfter.Sub(c.NotBefore)
	return now.Before(c.NotBefore) || c.NotAfter.Sub(now) < total/3
}

// issue makes a new key and a certificate for name signed by the CA, and returns it with
// its PEM encoding (key, then certificate).
func (ca *CA) issue(name string, now time.Time) (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(ca.leafLife)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	// The subject stays empty (the names are in the critical SAN extension), so no
	// client checks a common name against the name constraints.
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	lc, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	b, err := encodeKeyAndCert(key, der)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: lc}, b, nil
}
