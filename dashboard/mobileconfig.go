package dashboard

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-home/hearth/signpost"
)

// The Apple configuration profile (.mobileconfig) the setup page offers: one download that
// installs the home CA and the mail, CardDAV and CalDAV accounts on an iPhone, iPad or Mac.
//
// The property list is written by the small encoder below rather than by a library: go.mod
// has none, the well-known Go plist packages are large for the five value types a profile
// needs, and the format is plain XML whose text goes through encoding/xml's escaping (which
// also replaces characters XML 1.0 cannot carry). The profile is not signed: the device
// shows it as "Unsigned" and asks before installing it.

// MobileconfigPath is where the setup page's Apple configuration profile is served.
const MobileconfigPath = "/setup/hearth.mobileconfig"

// mobileconfigType is the MIME type Apple devices open as a configuration profile.
const mobileconfigType = "application/x-apple-aspen-config"

// maxProfileLabelTries bounds the labels tried for the profile's app password when the
// day's first one is taken ("Apple profile 2026-01-02", "... (2)", ...).
const maxProfileLabelTries = 20

// plistDict is a property-list dictionary whose keys keep the order they were added in.
type plistDict struct {
	keys []string
	vals []any // string, int, bool, []byte, plistDict, []plistDict
}

func (d *plistDict) set(key string, v any) {
	d.keys = append(d.keys, key)
	d.vals = append(d.vals, v)
}

// writePlist writes v as an XML property list document.
func writePlist(b *bytes.Buffer, v any) error {
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n")
	if err := writePlistValue(b, v, 0); err != nil {
		return err
	}
	b.WriteString("</plist>\n")
	return nil
}

// plistText writes s as XML character data between tags.
func plistText(b *bytes.Buffer, tag, s string) {
	b.WriteString("<" + tag + ">")
	xml.EscapeText(b, []byte(s)) // writes to a bytes.Buffer never fail
	b.WriteString("</" + tag + ">\n")
}

func writePlistValue(b *bytes.Buffer, v any, depth int) error {
	if depth > 8 {
		return errors.New("dashboard: property list nested too deeply")
	}
	indent := strings.Repeat("\t", depth)
	b.WriteString(indent)
	switch v := v.(type) {
	case string:
		plistText(b, "string", v)
	case int:
		b.WriteString("<integer>" + strconv.Itoa(v) + "</integer>\n")
	case bool:
		if v {
			b.WriteString("<true/>\n")
		} else {
			b.WriteString("<false/>\n")
		}
	case []byte:
		b.WriteString("<data>" + base64.StdEncoding.EncodeToString(v) + "</data>\n")
	case plistDict:
		b.WriteString("<dict>\n")
		for i, k := range v.keys {
			b.WriteString(indent + "\t")
			plistText(b, "key", k)
			if err := writePlistValue(b, v.vals[i], depth+1); err != nil {
				return err
			}
		}
		b.WriteString(indent + "</dict>\n")
	case []plistDict:
		b.WriteString("<array>\n")
		for _, e := range v {
			if err := writePlistValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString(indent + "</array>\n")
	default:
		return fmt.Errorf("dashboard: property list value of type %T", v)
	}
	return nil
}

// profileNamespace is the namespace of the profile's name-based UUIDs: the RFC 9562
// version 5 UUID of the URL "https://hearth-home.github.io/mobileconfig" in the URL namespace.
var profileNamespace = nameUUID([16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}, "https://hearth-home.github.io/mobileconfig")

// nameUUID returns the version 5 (SHA-1, name-based) UUID of name in namespace ns.
func nameUUID(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u
}

// uuidString formats u as upper-case 8-4-4-4-12 hex, the form Apple's tools write.
func uuidString(u [16]byte) string {
	const hex = "0123456789ABCDEF"
	var out []byte
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0x0f])
	}
	return string(out)
}

// reverseDNS returns domain's labels in reverse order, joined by dots:
// "home.arpa" gives "arpa.home".
func reverseDNS(domain string) string {
	labels := strings.Split(strings.Trim(domain, "."), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

// profileParams is what an Apple configuration profile is made from.
type profileParams struct {
	User     string
	Names    signpost.Names
	CA       []byte // the home CA certificate, DER (nil: no CA payload)
	Password string // an app password for every account ("": the device asks)
}

// appleProfile returns the configuration profile for p as an XML property list. Its
// identifiers and UUIDs depend only on the domain and the user, so a newer profile
// replaces an older one when installed.
func appleProfile(p profileParams) ([]byte, error) {
	n := p.Names
	base := reverseDNS(n.Domain) + ".hearth." + p.User
	seed := n.Domain + "\x00" + p.User
	uuid := func(part string) string { return uuidString(nameUUID(profileNamespace, seed+"\x00"+part)) }
	payload := func(kind, typ, display string) plistDict {
		var d plistDict
		d.set("PayloadType", typ)
		d.set("PayloadVersion", 1)
		d.set("PayloadIdentifier", base+"."+kind)
		d.set("PayloadUUID", uuid(kind))
		d.set("PayloadDisplayName", display)
		return d
	}
	var content []plistDict

	if len(p.CA) > 0 {
		d := payload("ca", "com.apple.security.root", "Hearth certificate authority")
		d.set("PayloadCertificateFileName", "hearth-ca.cer")
		d.set("PayloadContent", p.CA)
		content = append(content, d)
	}

	imaps, submit := n.Port("mail", "imaps"), n.Port("mail", "submission")
	if imaps > 0 && submit > 0 {
		host := n.FQDN("mail")
		d := payload("mail", "com.apple.mail.managed", "Hearth mail")
		d.set("EmailAccountDescription", "Hearth mail ("+p.User+")")
		d.set("EmailAccountName", p.User)
		d.set("EmailAccountType", "EmailTypeIMAP")
		d.set("EmailAddress", p.User+"@"+n.Domain)
		d.set("IncomingMailServerHostName", host)
		d.set("IncomingMailServerPortNumber", imaps)
		d.set("IncomingMailServerUseSSL", true)
		d.set("IncomingMailServerAuthentication", "EmailAuthPassword")
		d.set("IncomingMailServerUsername", p.User)
		// Apple's UseSSL on a port other than 465 means STARTTLS, which submission speaks.
		d.set("OutgoingMailServerHostName", host)
		d.set("OutgoingMailServerPortNumber", submit)
		d.set("OutgoingMailServerUseSSL", true)
		d.set("OutgoingMailServerAuthentication", "EmailAuthPassword")
		d.set("OutgoingMailServerUsername", p.User)
		if p.Password != "" {
			d.set("IncomingPassword", p.Password)
			d.set("OutgoingPassword", p.Password)
		} else {
			d.set("OutgoingPasswordSameAsIncomingPassword", true)
		}
		content = append(content, d)
	}

	dav := func(app, kind, prefix, typ, display string) {
		port := n.Port(app, "https")
		if port <= 0 {
			return
		}
		host := n.FQDN(app)
		d := payload(kind, typ, display)
		d.set(prefix+"AccountDescription", display+" ("+p.User+")")
		d.set(prefix+"HostName", host)
		d.set(prefix+"Port", port)
		d.set(prefix+"UseSSL", true)
		d.set(prefix+"Username", p.User)
		// The principal is /USER/ (storedav; contacts' and calendar's CurrentUserPrincipal).
		d.set(prefix+"PrincipalURL", "https://"+host+":"+strconv.Itoa(port)+"/"+p.User+"/")
		if p.Password != "" {
			d.set(prefix+"Password", p.Password)
		}
		content = append(content, d)
	}
	dav("contacts", "carddav", "CardDAV", "com.apple.carddav.account", "Hearth contacts")
	dav("calendar", "caldav", "CalDAV", "com.apple.caldav.account", "Hearth calendar")

	var top plistDict
	top.set("PayloadType", "Configuration")
	top.set("PayloadVersion", 1)
	top.set("PayloadIdentifier", base)
	top.set("PayloadUUID", uuid("profile"))
	top.set("PayloadDisplayName", "Hearth ("+p.User+")")
	top.set("PayloadOrganization", "Hearth ("+n.Domain+")")
	top.set("PayloadDescription", "Mail, contacts and calendar of "+p.User+" on Hearth at "+n.Domain+".")
	top.set("PayloadRemovalDisallowed", false)
	top.set("PayloadContent", content)
	var b bytes.Buffer
	if err := writePlist(&b, top); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// mobileconfig serves the user's Apple configuration profile: on GET without passwords
// (the device asks for one when installing it), on POST (a CSRF-checked form) with a new
// app password made for it.
func (h *Handler) mobileconfig(w http.ResponseWriter, r request) {
	p := profileParams{User: r.sess.user, Names: h.opts.Names}
	if h.opts.CA != nil {
		p.CA = h.opts.CA.Certificate().Raw
	}
	if r.Method == http.MethodPost {
		label, secret, err := h.addProfileAppPassword(r)
		if err != nil {
			h.accountError(w, r, "add app password", err)
			return
		}
		h.logger.Info("dashboard: app password added", "user", r.sess.user, "label", label)
		p.Password = secret
	}
	b, err := appleProfile(p)
	if err != nil {
		h.internal(w, r.Request, r.sess, "make profile", err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", mobileconfigType)
	hd.Set("Content-Disposition", `attachment; filename="hearth-`+r.sess.user+`.mobileconfig"`)
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// addProfileAppPassword makes an app password labelled "Apple profile YYYY-MM-DD" (with
// " (2)", " (3)", ... when that label is taken) through the account page's code path.
func (h *Handler) addProfileAppPassword(r request) (label, secret string, err error) {
	day := "Apple profile " + h.now().Format("2006-01-02")
	for i := 1; i <= maxProfileLabelTries; i++ {
		label = day
		if i > 1 {
			label += " (" + strconv.Itoa(i) + ")"
		}
		secret, err = h.opts.Accounts.AddAppPassword(r.Context(), r.sess.user, label)
		if !errors.Is(err, signpost.ErrExists) {
			return label, secret, err
		}
	}
	return "", "", err
}
