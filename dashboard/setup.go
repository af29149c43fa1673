package dashboard

import (
	"net/http"
	"strconv"
)

// endpoint is one service a client connects to.
type endpoint struct {
	Service string // "IMAP (TLS)"
	Host    string
	Port    int
	TLS     string // "TLS", "STARTTLS"
}

// srvName is one autodiscovery record.
type srvName struct {
	Name   string
	Target string
}

// setupData is the setup template's content.
type setupData struct {
	User       string
	Domain     string
	Endpoints  []endpoint
	SRV        []srvName
	HasCA      bool
	Mail       string // mail.DOMAIN
	MailIMAPS  int
	MailSubmit int // submission with STARTTLS
	// MailSubmitTLS is submissions (implicit TLS, RFC 8314), which Thunderbird and Apple
	// Mail try first; 0 when the names lack it (a names.json from before it existed).
	MailSubmitTLS int
	Contacts      string // https://contacts.DOMAIN:PORT/
	Calendar      string
	Dashboard     string
	Profile       string // the Apple configuration profile's path
}

func (h *Handler) setup(w http.ResponseWriter, r request) {
	n := h.opts.Names
	d := setupData{User: r.sess.user, Domain: n.Domain, HasCA: h.opts.CA != nil, Profile: MobileconfigPath}
	for _, a := range n.Appliances {
		for _, p := range a.Ports {
			if p.Loopback || p.Proto != "tcp" {
				continue
			}
			tls := "none"
			switch {
			case p.TLS:
				tls = "TLS"
			case p.Name == "imap" || p.Name == "submission":
				tls = "STARTTLS"
			}
			d.Endpoints = append(d.Endpoints, endpoint{Service: a.Name + " " + p.Name, Host: n.FQDN(a.Name), Port: p.Port, TLS: tls})
		}
	}
	add := func(srv, app, port string) {
		if p := n.Port(app, port); p > 0 {
			d.SRV = append(d.SRV, srvName{Name: "_" + srv + "._tcp." + n.Domain, Target: n.FQDN(app) + ":" + strconv.Itoa(p)})
		}
	}
	add("imaps", "mail", "imaps")
	add("imap", "mail", "imap")
	add("submissions", "mail", "submissions")
	add("submission", "mail", "submission")
	add("carddavs", "contacts", "https")
	add("caldavs", "calendar", "https")
	d.Mail, d.MailIMAPS, d.MailSubmit = n.FQDN("mail"), n.Port("mail", "imaps"), n.Port("mail", "submission")
	d.MailSubmitTLS = n.Port("mail", "submissions")
	url := func(app string) string {
		return "https://" + n.FQDN(app) + ":" + strconv.Itoa(n.Port(app, "https")) + "/"
	}
	d.Contacts, d.Calendar, d.Dashboard = url("contacts"), url("calendar"), url("dashboard")
	h.render(w, r.Request, r.sess, http.StatusOK, "setup", "Set up your devices", d)
}

// caPEM serves the home CA's certificate (public: devices fetch it before they trust
// anything).
func (h *Handler) caPEM(w http.ResponseWriter, r *http.Request) {
	if h.opts.CA == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="hearth-ca.crt"`)
	w.Write(h.opts.CA.CertificatePEM())
}
