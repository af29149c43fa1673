package contacts

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"
)

func TestQueryAndMultiget(t *testing.T) {
	srv, _ := newServer(t)
	ctx := context.Background()
	hc := webdav.HTTPClientWithBasicAuth(srv.Client(), "alice", pw)
	dc, _ := webdav.NewClient(hc, srv.URL)
	if err := dc.Mkdir(ctx, "/alice/contacts/b/"); err != nil {
		t.Fatal(err)
	}
	c, _ := carddav.NewClient(hc, srv.URL)
	ann := card("ann", "Ann Arbor", "ann@example.org")
	ann.Add(vcard.FieldEmail, &vcard.Field{Value: "ann@work.example", Params: vcard.Params{"TYPE": {"WORK"}}})
	for _, p := range []vcard.Card{ann, card("ben", "Ben Bernanke", "ben@example.org"), card("cy", "Cy Twombly", "")} {
		if _, err := c.PutAddressObject(ctx, "/alice/contacts/b/"+p.Value(vcard.FieldUID)+".vcf", p); err != nil {
			t.Fatal(err)
		}
	}
	report := func(body string) (int, string) {
		req, _ := http.NewRequest("REPORT", srv.URL+"/alice/contacts/b/", strings.NewReader(body))
		req.SetBasicAuth("alice", pw)
		req.Header.Set("Depth", "1")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	q := func(filter string, extra string) string {
		return `<c:addressbook-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><c:address-data/></d:prop>` +
			`<c:filter` + filter + `</c:filter>` + extra + `</c:addressbook-query>`
	}
	cases := []struct {
		name   string
		body   string
		code   int
		want   []string // UIDs expected
		reject []string
		has    string
	}{
		{"contains, case-insensitive by default", q(`><c:prop-filter name="FN"><c:text-match>ann</c:text-match></c:prop-filter>`, ""), 207, []string{"ann"}, []string{"ben", "cy"}, ""},
		{"octet is case-sensitive", q(`><c:prop-filter name="FN"><c:text-match collation="i;octet">ann</c:text-match></c:prop-filter>`, ""), 207, nil, []string{"ann", "ben", "cy"}, ""},
		{"second instance of a property", q(`><c:prop-filter name="EMAIL"><c:text-match match-type="ends-with">@work.example</c:text-match></c:prop-filter>`, ""), 207, []string{"ann"}, []string{"ben"}, ""},
		{"negate", q(`><c:prop-filter name="FN"><c:text-match negate-condition="yes">an</c:text-match></c:prop-filter>`, ""), 207, []string{"cy"}, []string{"ann", "ben"}, ""},
		{"is-not-defined", q(`><c:prop-filter name="EMAIL"><c:is-not-defined/></c:prop-filter>`, ""), 207, []string{"cy"}, []string{"ann", "ben"}, ""},
		{"allof", q(` test="allof"><c:prop-filter name="FN"><c:text-match>b</c:text-match></c:prop-filter><c:prop-filter name="EMAIL"><c:text-match match-type="starts-with">ben</c:text-match></c:prop-filter>`, ""), 207, []string{"ben"}, []string{"ann", "cy"}, ""},
		{"anyof", q(`><c:prop-filter name="FN"><c:text-match match-type="equals">cy twombly</c:text-match></c:prop-filter><c:prop-filter name="UID"><c:text-match>ben</c:text-match></c:prop-filter>`, ""), 207, []string{"ben", "cy"}, []string{"ann"}, ""},
		{"param-filter", q(`><c:prop-filter name="EMAIL"><c:param-filter name="TYPE"><c:text-match>work</c:text-match></c:param-filter></c:prop-filter>`, ""), 207, []string{"ann"}, []string{"ben", "cy"}, ""},
		{"limit", q(`><c:prop-filter name="UID"/>`, `<c:limit><c:nresults>1</c:nresults></c:limit>`), 207, nil, nil, "507"},
		{"unsupported collation", q(`><c:prop-filter name="FN"><c:text-match collation="x;nope">a</c:text-match></c:prop-filter>`, ""), 403, nil, nil, "supported-collation"},
		{"bad match type", q(`><c:prop-filter name="FN"><c:text-match match-type="regex">a</c:text-match></c:prop-filter>`, ""), 400, nil, nil, ""},
		{"multiget", `<c:addressbook-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><c:address-data/></d:prop>` +
			`<d:href>/alice/contacts/b/ann.vcf</d:href><d:href>` + srv.URL + `/alice/contacts/b/cy.vcf</d:href><d:href>/alice/contacts/b/none.vcf</d:href></c:addressbook-multiget>`,
			207, []string{"ann", "cy"}, []string{"ben"}, "<d:href>/alice/contacts/b/none.vcf</d:href><d:status>HTTP/1.1 404 Not Found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := report(tc.body)
			if code != tc.code || !strings.Contains(body, tc.has) {
				t.Fatalf("%d %s", code, body)
			}
			for _, u := range tc.want {
				if !strings.Contains(body, "UID:"+u+"&#13;\n") {
					t.Errorf("missing %s:\n%s", u, body)
				}
			}
			for _, u := range tc.reject {
				if strings.Contains(body, "UID:"+u+"&#13;\n") {
					t.Errorf("unexpected %s:\n%s", u, body)
				}
			}
		})
	}
}
