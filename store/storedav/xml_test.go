package storedav

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestParseXMLLimits(t *testing.T) {
	cases := []struct {
		name string
		in   string
		bad  bool
	}{
		{"empty", "", false},
		{"propfind", `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`, false},
		{"unclosed", `<d:propfind xmlns:d="DAV:">`, true},
		{"two roots", `<a/><b/>`, true},
		{"too deep", strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100), true},
		{"too many", "<r>" + strings.Repeat("<a/>", maxXMLNodes+1) + "</r>", true},
		{"garbage", "\x00\x01", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseXML(strings.NewReader(c.in))
			if (err != nil) != c.bad {
				t.Fatalf("err %v, want bad=%v", err, c.bad)
			}
		})
	}
}

// FuzzRequestBody feeds PROPFIND, PROPPATCH, MKCOL and REPORT bodies to the parser and
// the code that reads them.
func FuzzRequestBody(f *testing.F) {
	f.Add([]byte(`<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>x</d:displayname></d:prop></d:set></d:propertyupdate>`))
	f.Add([]byte(`<d:sync-collection xmlns:d="DAV:"><d:sync-token>x</d:sync-token><d:prop><d:getetag/></d:prop></d:sync-collection>`))
	f.Add([]byte(`<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><c:supported-calendar-component-set><c:comp name="VTODO"/></c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>`))
	k := testKind()
	k.Components = true
	q := &request{h: &Handler{kind: k}}
	f.Fuzz(func(t *testing.T, b []byte) {
		root, err := ParseXML(bytes.NewReader(b))
		if err != nil || root == nil {
			return
		}
		var m Meta
		q.setProps(&m, propsOf(root, "set"), propsOf(root, "remove"), true)
		root.Child(NSDAV, "prop").Child(NSDAV, "x")
	})
}

func TestEscRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "a&b<c>d", "line\r\nnext\n", "tab\tq\"'", "ctl\x01x", "ünï©ødé", "bad\xffutf8"} {
		var v struct {
			X string `xml:"x"`
		}
		if err := xml.Unmarshal([]byte("<r><x>"+esc(s)+"</x></r>"), &v); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want := strings.ToValidUTF8(strings.ReplaceAll(s, "\x01", "\uFFFD"), "\uFFFD")
		if v.X != want {
			t.Fatalf("%q → %q → %q", s, esc(s), v.X)
		}
	}
}
