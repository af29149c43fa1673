package jitsu

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-home/hearth/signpost"
)

// ErrInvalidZone: NewZone was given names or addresses it cannot serve; test with errors.Is.
var ErrInvalidZone = errors.New("jitsu: invalid zone")

// Limits NewZone enforces.
const (
	MaxAddrsPerName = 64    // A plus AAAA records of one name
	DefaultTTL      = 60    // seconds, when NewZone is given ttl 0
	MaxTTL          = 86400 // seconds
	nsLabel         = "ns"  // the server's own name below the zone
	hostmasterLabel = "hostmaster"
)

// wellKnown maps the autodiscovery services of RFC 6186 (mail) and RFC 6764 (CalDAV,
// CardDAV) to the appliance and port that provide them. A service whose appliance or port
// is missing from the Names is not published.
var wellKnown = [...]struct {
	service, app, port string
	davPath            bool // also publish TXT "path=/" (RFC 6764 section 4)
	plain              string
}{
	{service: "imap", app: "mail", port: "imap"},
	{service: "imaps", app: "mail", port: "imaps"},
	{service: "submissions", app: "mail", port: "submissions"}, // RFC 8314 section 5.1
	{service: "submission", app: "mail", port: "submission"},
	{service: "caldavs", app: "calendar", port: "https", davPath: true, plain: "caldav"},
	{service: "carddavs", app: "contacts", port: "https", davPath: true, plain: "carddav"},
}

// Zone is the home zone, built once from signpost.Names: every answer it can give is packed
// into wire format when it is built, so the server only copies it and patches the message
// ID, the question (the client's letter case) and EDNS. A Zone is immutable and safe for
// concurrent use; swap it with (*DNSServer).SetZone.
//
// It holds: SOA and NS at the apex; ns.ZONE with the server's addresses; NAME.ZONE with A
// and AAAA for every appliance (the addresses its sockets listen on); SRV
// _PORT._PROTO.NAME.ZONE for every port not restricted to loopback; the autodiscovery
// records _imap._tcp, _imaps._tcp, _submission._tcp (RFC 6186, target mail.ZONE),
// _submissions._tcp (RFC 8314 section 5.1; only when the Names have that port) and
// _caldavs._tcp, _carddavs._tcp (RFC 6764, calendar and contacts HTTPS ports) with TXT
// "path=/"; and, because Hearth offers no plain-text CalDAV/CardDAV, _caldav._tcp and
// _carddav._tcp as SRV 0 0 0 "." ("no service", RFC 6764 section 3). A query of type ANY
// gets one RRset of the name (RFC 8482).
type Zone struct {
	origin  string            // "home.arpa."
	wire    []byte            // origin in lower-case wire format
	entries map[string]*entry // lower-case wire name + 2-byte type → packed answer
	names   map[string]string // lower-case wire names that exist (incl. empty non-terminals) → appliance or ""
	soa     []byte            // the SOA RR, packed without compression, for negative answers
	ttl     uint32
}

// entry is one packed answer.
type entry struct {
	msg       []byte // whole response, question in lower case, ID 0
	appliance string // whose name or service was asked for, "" if none
}

// NewZone builds the zone for names. addrs gives each appliance's addresses (an appliance
// without addresses gets no A/AAAA records); nsAddrs are the DNS server's own addresses,
// published as ns.ZONE; ttl (seconds, 0 means DefaultTTL) is used for every record.
func NewZone(names signpost.Names, addrs map[string][]netip.Addr, nsAddrs []netip.Addr, ttl uint32) (*Zone, error) {
	if err := names.Validate(); err != nil {
		return nil, fmt.Errorf("jitsu: zone: %w", err)
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl > MaxTTL {
		return nil, fmt.Errorf("jitsu: zone: ttl %d above %d: %w", ttl, MaxTTL, ErrInvalidZone)
	}
	if _, ok := names.Appliance(nsLabel); ok {
		return nil, fmt.Errorf("jitsu: zone: an appliance may not be called %q (the server's own name): %w", nsLabel, ErrInvalidZone)
	}
	for app, as := range addrs {
		if _, ok := names.Appliance(app); !ok {
			return nil, fmt.Errorf("jitsu: zone: addresses for unknown appliance %q: %w", app, ErrInvalidZone)
		}
		if err := checkAddrs(as); err != nil {
			return nil, fmt.Errorf("jitsu: zone: appliance %q: %w", app, err)
		}
	}
	if err := checkAddrs(nsAddrs); err != nil {
		return nil, fmt.Errorf("jitsu: zone: server addresses: %w", err)
	}

	origin := dns.Fqdn(strings.ToLower(names.Domain))
	z := &Zone{origin: origin, entries: make(map[string]*entry), names: make(map[string]string), ttl: ttl}
	b := zoneBuilder{z: z, owners: make(map[string]string)}
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	nsName := nsLabel + "." + origin
	soa := &dns.SOA{Hdr: hdr(origin, dns.TypeSOA), Ns: nsName, Mbox: hostmasterLabel + "." + origin,
		Serial: uint32(time.Now().Unix()), Refresh: 3600, Retry: 900, Expire: 604800, Minttl: ttl}
	b.add(soa, "")
	b.add(&dns.NS{Hdr: hdr(origin, dns.TypeNS), Ns: nsName}, "")
	addAddrs := func(name string, as []netip.Addr, app string) {
		b.owners[name] = app
		for _, a := range as {
			if a.Is4() || a.Is4In6() {
				b.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: a.Unmap().AsSlice()}, app)
			} else {
				b.add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()}, app)
			}
		}
	}
	addAddrs(nsName, nsAddrs, "")
	for _, a := range names.Appliances {
		fqdn := a.Name + "." + origin
		addAddrs(fqdn, addrs[a.Name], a.Name)
		for _, p := range a.Ports {
			if p.Loopback {
				continue
			}
			name := "_" + p.Name + "._" + p.Proto + "." + fqdn
			b.add(&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Port: uint16(p.Port), Target: fqdn}, a.Name)
		}
	}
	for _, w := range wellKnown {
		port := names.Port(w.app, w.port)
		if port == 0 || !published(names, w.app, w.port) {
			continue
		}
		name := "_" + w.service + "._tcp." + origin
		b.add(&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Port: uint16(port), Target: w.app + "." + origin}, w.app)
		if w.davPath {
			b.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: []string{"path=/"}}, w.app)
		}
		if w.plain != "" {
			b.add(&dns.SRV{Hdr: hdr("_"+w.plain+"._tcp."+origin, dns.TypeSRV), Target: "."}, "")
		}
	}
	if err := b.pack(); err != nil {
		return nil, err
	}
	soaWire := make([]byte, dns.Len(soa)+16)
	n, err := dns.PackRR(soa, soaWire, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("jitsu: zone: pack SOA: %w", err)
	}
	z.soa = soaWire[:n]
	z.wire, err = wireName(origin)
	if err != nil {
		return nil, fmt.Errorf("jitsu: zone: %w", err)
	}
	return z, nil
}

// Origin returns the zone's apex as a fully qualified name, e.g. "home.arpa.".
func (z *Zone) Origin() string { return z.origin }

// published says whether port of appliance app is served beyond loopback.
func published(names signpost.Names, app, port string) bool {
	a, _ := names.Appliance(app)
	for _, p := range a.Ports {
		if p.Name == port {
			return !p.Loopback && p.Proto == "tcp"
		}
	}
	return false
}

// checkAddrs checks one name's address list.
func checkAddrs(as []netip.Addr) error {
	if len(as) > MaxAddrsPerName {
		return fmt.Errorf("%d addresses, at most %d: %w", len(as), MaxAddrsPerName, ErrInvalidZone)
	}
	for _, a := range as {
		if !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("address %q is not a plain IP address: %w", a, ErrInvalidZone)
		}
	}
	return nil
}

// zoneBuilder collects RRsets and packs one answer per name and type.
type zoneBuilder struct {
	z      *Zone
	sets   []rrset
	owners map[string]string // names that exist without records of their own yet → appliance
}

type rrset struct {
	name      string
	rrtype    uint16
	rrs       []dns.RR
	appliance string
}

func (b *zoneBuilder) add(rr dns.RR, app string) {
	h := rr.Header()
	for i := range b.sets {
		if b.sets[i].name == h.Name && b.sets[i].rrtype == h.Rrtype {
			b.sets[i].rrs = append(b.sets[i].rrs, rr)
			return
		}
	}
	b.sets = append(b.sets, rrset{name: h.Name, rrtype: h.Rrtype, rrs: []dns.RR{rr}, appliance: app})
}

// glue returns the A and AAAA records of target, for the additional section.
func (b *zoneBuilder) glue(target string) []dns.RR {
	var out []dns.RR
	for _, s := range b.sets {
		if s.name == target && (s.rrtype == dns.TypeA || s.rrtype == dns.TypeAAAA) {
			out = append(out, s.rrs...)
		}
	}
	return out
}

func (b *zoneBuilder) pack() error {
	z := b.z
	for name, app := range b.owners {
		if err := b.exists(name, app); err != nil {
			return err
		}
	}
	for _, s := range b.sets {
		m := new(dns.Msg)
		m.Response, m.Authoritative, m.Compress = true, true, true
		m.Question = []dns.Question{{Name: s.name, Qtype: s.rrtype, Qclass: dns.ClassINET}}
		m.Answer = s.rrs
		var targets []string
		for _, rr := range s.rrs {
			switch rr := rr.(type) {
			case *dns.SRV:
				targets = append(targets, rr.Target)
			case *dns.NS:
				targets = append(targets, rr.Ns)
			}
		}
		slices.Sort(targets)
		for _, t := range slices.Compact(targets) {
			m.Extra = append(m.Extra, b.glue(t)...)
		}
		wire, err := m.Pack()
		if err != nil {
			return fmt.Errorf("jitsu: zone: pack %s %s: %w", s.name, dns.TypeToString[s.rrtype], err)
		}
		key, err := wireName(s.name)
		if err != nil {
			return fmt.Errorf("jitsu: zone: %w", err)
		}
		e := &entry{msg: wire, appliance: s.appliance}
		z.entries[string(appendType(key, s.rrtype))] = e
		if any := string(appendType(key, dns.TypeANY)); z.entries[any] == nil {
			z.entries[any] = e // RFC 8482: one RRset is a valid answer to ANY
		}
		if err := b.exists(s.name, s.appliance); err != nil {
			return err
		}
	}
	return nil
}

// exists records name and its ancestors up to the origin (empty non-terminals answer
// NODATA, not NXDOMAIN).
func (b *zoneBuilder) exists(name, app string) error {
	z := b.z
	for {
		key, err := wireName(name)
		if err != nil {
			return fmt.Errorf("jitsu: zone: %w", err)
		}
		if old, ok := z.names[string(key)]; !ok || old == "" {
			z.names[string(key)] = app
		}
		if name == z.origin || len(name) <= len(z.origin) {
			return nil
		}
		_, rest, _ := strings.Cut(name, ".")
		name, app = rest, ""
	}
}

// wireName returns the lower-case wire format of a fully qualified name.
func wireName(name string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("name %q: %w", name, err)
	}
	return buf[:n], nil
}

func appendType(b []byte, t uint16) []byte {
	return append(b[:len(b):len(b)], byte(t>>8), byte(t))
}
