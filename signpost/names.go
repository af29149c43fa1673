package signpost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDomain is the home domain when none is configured: RFC 8375's name for home networks,
// which no public DNS will ever answer for.
const DefaultDomain = "home.arpa"

// NamesFile is the name of the file in the data directory that holds the Names.
const NamesFile = "names.json"

// ErrInvalidNames: a names file or a Names value breaks a rule; test with errors.Is.
var ErrInvalidNames = errors.New("signpost: invalid names")

// Limits Names enforces.
const (
	MaxAppliances    = 64      // appliances in one Names
	MaxPorts         = 16      // ports of one appliance
	MaxNamesFileSize = 1 << 20 // bytes of names.json
	maxDomainLen     = 253     // bytes of a domain name (RFC 1035)
	maxServiceLen    = 15      // bytes of a port (service) name (RFC 6335)
)

// Names is the one place that says which appliances exist, the DNS name of each (its name
// below Domain) and the ports it serves. The DNS server answers A/AAAA/SRV records from it,
// the certificate authority issues certificates for its names, and appliances listen on its
// ports.
type Names struct {
	// Domain is the home domain, e.g. "home.arpa"; appliance "mail" is "mail.home.arpa".
	Domain string `json:"domain"`
	// Appliances are the appliances, each with a unique name and unique ports.
	Appliances []Appliance `json:"appliances"`
}

// Appliance is one appliance: its DNS label and the ports it listens on.
type Appliance struct {
	// Name is a single DNS label (lower case), e.g. "mail".
	Name string `json:"name"`
	// Ports are the services it offers.
	Ports []Port `json:"ports"`
}

// Port is one service of an appliance.
type Port struct {
	// Name is the service name as used in SRV records (RFC 6335), e.g. "imaps" gives
	// _imaps._tcp.mail.home.arpa.
	Name string `json:"name"`
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Port is the port number, 1..65535.
	Port int `json:"port"`
	// TLS says the port speaks TLS from the first byte (implicit TLS). STARTTLS ports and
	// plain HTTP say false.
	TLS bool `json:"tls,omitempty"`
	// Loopback says the port is served on loopback addresses only (plain HTTP for local
	// tools, LMTP from the local mail transfer agent); the DNS server does not publish it.
	Loopback bool `json:"loopback,omitempty"`
}

// DefaultNames returns the built-in appliances below domain ("" means DefaultDomain). Every
// port is above 1024 so no appliance needs root: the usual port plus 8000 for HTTPS
// (8443..8446), and 9000 plus the usual port for mail (IMAPS 9993, IMAP with STARTTLS 9143,
// submissions 9465 (implicit TLS, RFC 8314), submission with STARTTLS 9587, SMTP 9025, LMTP
// 9024). A router or firewall can forward 443, 993, 465, 587 and 25 to them. Names read from
// an older names.json may lack a port (such as submissions): everything that uses one
// checks that it is there.
func DefaultNames(domain string) Names {
	if domain == "" {
		domain = DefaultDomain
	}
	return Names{
		Domain: domain,
		Appliances: []Appliance{
			{Name: "store", Ports: []Port{
				{Name: "https", Proto: "tcp", Port: 8443, TLS: true},
				{Name: "http", Proto: "tcp", Port: 8088, Loopback: true},
			}},
			{Name: "mail", Ports: []Port{
				{Name: "imaps", Proto: "tcp", Port: 9993, TLS: true},
				{Name: "imap", Proto: "tcp", Port: 9143},
				{Name: "submissions", Proto: "tcp", Port: 9465, TLS: true},
				{Name: "submission", Proto: "tcp", Port: 9587},
				{Name: "smtp", Proto: "tcp", Port: 9025},
				{Name: "lmtp", Proto: "tcp", Port: 9024, Loopback: true},
			}},
			{Name: "contacts", Ports: []Port{{Name: "https", Proto: "tcp", Port: 8444, TLS: true}}},
			{Name: "calendar", Ports: []Port{{Name: "https", Proto: "tcp", Port: 8445, TLS: true}}},
			{Name: "dashboard", Ports: []Port{{Name: "https", Proto: "tcp", Port: 8446, TLS: true}}},
		},
	}
}

// FQDN returns the fully qualified DNS name of the appliance named app (without a trailing
// dot), e.g. "store.home.arpa". It does not check that the appliance exists.
func (n Names) FQDN(app string) string {
	return app + "." + n.Domain
}

// Appliance returns the appliance called name.
func (n Names) Appliance(name string) (Appliance, bool) {
	for _, a := range n.Appliances {
		if a.Name == name {
			return a, true
		}
	}
	return Appliance{}, false
}

// Port returns the port number of service port of appliance app, or 0 if there is none.
func (n Names) Port(app, port string) int {
	a, ok := n.Appliance(app)
	if !ok {
		return 0
	}
	for _, p := range a.Ports {
		if p.Name == port {
			return p.Port
		}
	}
	return 0
}

// DNSNames returns the FQDN of every appliance, in order: the names to hand to
// (*CA).ServerConfig.
func (n Names) DNSNames() []string {
	out := make([]string, 0, len(n.Appliances))
	for _, a := range n.Appliances {
		out = append(out, n.FQDN(a.Name))
	}
	return out
}

// Validate checks the domain's syntax, that appliance names are single DNS labels and
// unique, and that ports are in range, well named and not used twice on the host.
func (n Names) Validate() error {
	if err := checkDomain(n.Domain); err != nil {
		return fmt.Errorf("signpost: names: domain: %w", err)
	}
	if len(n.Appliances) > MaxAppliances {
		return fmt.Errorf("signpost: names: %d appliances, at most %d: %w", len(n.Appliances), MaxAppliances, ErrInvalidNames)
	}
	if len(n.FQDN("x")) > maxDomainLen {
		return fmt.Errorf("signpost: names: domain %q leaves no room for appliance names: %w", n.Domain, ErrInvalidNames)
	}
	apps := make(map[string]bool)
	ports := make(map[string]string) // "tcp/8443" → "store/https"
	for _, a := range n.Appliances {
		if err := checkLabel63(a.Name); err != nil {
			return fmt.Errorf("signpost: names: appliance %q: %w", a.Name, err)
		}
		if len(n.FQDN(a.Name)) > maxDomainLen {
			return fmt.Errorf("signpost: names: appliance %q: name longer than %d bytes: %w", a.Name, maxDomainLen, ErrInvalidNames)
		}
		if apps[a.Name] {
			return fmt.Errorf("signpost: names: appliance %q twice: %w", a.Name, ErrInvalidNames)
		}
		apps[a.Name] = true
		if len(a.Ports) > MaxPorts {
			return fmt.Errorf("signpost: names: appliance %q: %d ports, at most %d: %w", a.Name, len(a.Ports), MaxPorts, ErrInvalidNames)
		}
		services := make(map[string]bool)
		for _, p := range a.Ports {
			if err := checkService(p.Name); err != nil {
				return fmt.Errorf("signpost: names: appliance %q: port %q: %w", a.Name, p.Name, err)
			}
			if p.Proto != "tcp" && p.Proto != "udp" {
				return fmt.Errorf("signpost: names: appliance %q: port %q: proto %q is neither tcp nor udp: %w", a.Name, p.Name, p.Proto, ErrInvalidNames)
			}
			if p.Port < 1 || p.Port > 65535 {
				return fmt.Errorf("signpost: names: appliance %q: port %q: number %d outside 1..65535: %w", a.Name, p.Name, p.Port, ErrInvalidNames)
			}
			svc := p.Name + "/" + p.Proto
			if services[svc] {
				return fmt.Errorf("signpost: names: appliance %q: port %q/%s twice: %w", a.Name, p.Name, p.Proto, ErrInvalidNames)
			}
			services[svc] = true
			key := fmt.Sprintf("%s/%d", p.Proto, p.Port)
			if other, dup := ports[key]; dup {
				return fmt.Errorf("signpost: names: %s port %d used by %s and %s/%s: %w", p.Proto, p.Port, other, a.Name, p.Name, ErrInvalidNames)
			}
			ports[key] = a.Name + "/" + p.Name
		}
	}
	return nil
}

// checkDomain checks a domain name: dot-separated lower-case LDH labels of 1..63 bytes,
// at most 253 bytes, no trailing dot, not all digits in the last label.
func checkDomain(d string) error {
	if d == "" {
		return fmt.Errorf("empty: %w", ErrInvalidNames)
	}
	if len(d) > maxDomainLen {
		return fmt.Errorf("%q longer than %d bytes: %w", clip(d), maxDomainLen, ErrInvalidNames)
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if err := checkLabel63(l); err != nil {
			return fmt.Errorf("%q: %w", clip(d), err)
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("%q: last label is numeric: %w", clip(d), ErrInvalidNames)
	}
	return nil
}

// checkLabel63 checks one DNS label: 1..63 bytes of a-z, 0-9 and '-', not starting or
// ending with '-'.
func checkLabel63(l string) error {
	if l == "" || len(l) > 63 {
		return fmt.Errorf("label %q must be 1..63 bytes: %w", clip(l), ErrInvalidNames)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q: byte %q is not a-z, 0-9 or '-': %w", clip(l), c, ErrInvalidNames)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-': %w", l, ErrInvalidNames)
	}
	return nil
}

// checkService checks an RFC 6335 service name: 1..15 bytes of a-z, 0-9 and '-', with a
// letter, not starting or ending with '-' and no "--".
func checkService(s string) error {
	if s == "" || len(s) > maxServiceLen {
		return fmt.Errorf("service name must be 1..%d bytes: %w", maxServiceLen, ErrInvalidNames)
	}
	if err := checkLabel63(s); err != nil {
		return err
	}
	if strings.Contains(s, "--") || strings.Trim(s, "0123456789-") == "" {
		return fmt.Errorf("service name %q needs a letter and no \"--\": %w", s, ErrInvalidNames)
	}
	return nil
}

// ParseNames decodes and validates Names from JSON, as written by WriteNames. Unknown
// fields are an error, so a typo does not pass silently.
func ParseNames(b []byte) (Names, error) {
	if len(b) > MaxNamesFileSize {
		return Names{}, fmt.Errorf("signpost: names: %d bytes, at most %d: %w", len(b), MaxNamesFileSize, ErrInvalidNames)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var n Names
	if err := dec.Decode(&n); err != nil {
		return Names{}, fmt.Errorf("signpost: names: %w: %w", ErrInvalidNames, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Names{}, fmt.Errorf("signpost: names: data after the JSON object: %w", ErrInvalidNames)
	}
	if err := n.Validate(); err != nil {
		return Names{}, err
	}
	return n, nil
}

// ReadNames reads DIR/names.json. When the file does not exist it returns
// DefaultNames(DefaultDomain) and no error.
func ReadNames(dir string) (Names, error) {
	path := filepath.Join(dir, NamesFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultNames(DefaultDomain), nil
	}
	if err != nil {
		return Names{}, fmt.Errorf("signpost: read names: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxNamesFileSize+1))
	if err != nil {
		return Names{}, fmt.Errorf("signpost: read names %s: %w", path, err)
	}
	n, err := ParseNames(b)
	if err != nil {
		return Names{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return n, nil
}

// WriteNames validates n and writes it durably to DIR/names.json (mode 0644).
func WriteNames(dir string, n Names) error {
	if err := n.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return fmt.Errorf("signpost: write names: %w", err)
	}
	b = append(b, '\n')
	if err := durableReplace(filepath.Join(dir, NamesFile), b, 0o644); err != nil {
		return fmt.Errorf("signpost: write names: %w", err)
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 70 {
		return s[:70] + "..."
	}
	return s
}
