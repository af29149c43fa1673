package dashboard

import (
	"slices"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/signpost"
)

// namesWithout returns n without port of appliance app, as in a names.json written before
// that port existed.
func namesWithout(n signpost.Names, app, port string) signpost.Names {
	out := signpost.Names{Domain: n.Domain}
	for _, a := range n.Appliances {
		if a.Name == app {
			a.Ports = slices.DeleteFunc(slices.Clone(a.Ports), func(p signpost.Port) bool { return p.Name == port })
		}
		out.Appliances = append(out.Appliances, a)
	}
	return out
}

// TestSetupSubmissions checks that the setup page recommends submissions (implicit TLS,
// port 9465) when the names have it, and STARTTLS submission when they do not.
func TestSetupSubmissions(t *testing.T) {
	e := newEnv(t, Options{})
	old := namesWithout(e.names, "mail", "submissions")
	for _, tc := range []struct {
		name        string
		names       *signpost.Names // nil: the env's (default) names
		want, avoid []string
	}{
		{
			name: "default names",
			want: []string{
				"<td>mail submissions</td><td>mail.home.arpa</td><td>9465</td><td>TLS</td>",
				"<td>mail submission</td><td>mail.home.arpa</td><td>9587</td><td>STARTTLS</td>",
				"_submissions._tcp.home.arpa SRV</td><td>mail.home.arpa:9465",
				"_submission._tcp.home.arpa SRV</td><td>mail.home.arpa:9587",
				"outgoing SMTP mail.home.arpa port 9465, SSL/TLS",
				"SMTP mail.home.arpa port 9587)",
			},
		},
		{
			name:  "names from before submissions",
			names: &old,
			want: []string{
				"_submission._tcp.home.arpa SRV</td><td>mail.home.arpa:9587",
				"outgoing SMTP mail.home.arpa port 9587, STARTTLS",
				"SMTP mail.home.arpa port 9587)",
			},
			avoid: []string{"submissions", "9465"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.names != nil {
				o := e.h.opts
				o.Names = *tc.names
				h, err := New(o)
				if err != nil {
					t.Fatal(err)
				}
				e.cur.Store(h)
			}
			c := e.client(t)
			c.login("alice", alicePW)
			_, body := c.get("/setup")
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("setup page lacks %q", w)
				}
			}
			for _, a := range tc.avoid {
				if strings.Contains(body, a) {
					t.Errorf("setup page mentions %q", a)
				}
			}
		})
	}
}

// TestMobileconfigSubmissions checks the profile's outgoing server: submission with
// STARTTLS (Apple's UseSSL means STARTTLS on a port other than 465, so the profile does not
// point it at the implicit-TLS port 9465), with or without submissions in the names.
func TestMobileconfigSubmissions(t *testing.T) {
	def := signpost.DefaultNames("")
	for _, tc := range []struct {
		name  string
		names signpost.Names
		port  int
	}{
		{"default names", def, 9587},
		{"names from before submissions", namesWithout(def, "mail", "submissions"), 9587},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := appleProfile(profileParams{User: "alice", Names: tc.names})
			if err != nil {
				t.Fatal(err)
			}
			mail := payloads(t, parsePlist(t, b))["com.apple.mail.managed"]
			if mail == nil {
				t.Fatal("no mail payload")
			}
			wantFields(t, "mail", mail, map[string]any{
				"OutgoingMailServerHostName":   "mail.home.arpa",
				"OutgoingMailServerPortNumber": tc.port,
				"OutgoingMailServerUseSSL":     true,
				"IncomingMailServerPortNumber": 9993,
			})
		})
	}
}
