package signpost

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultNames(t *testing.T) {
	n := DefaultNames("")
	if err := n.Validate(); err != nil {
		t.Fatalf("default names invalid: %v", err)
	}
	if n.Domain != "home.arpa" {
		t.Errorf("domain %q, want home.arpa", n.Domain)
	}
	for _, tc := range []struct {
		name, app, port string
		want            int
	}{
		{"store https", "store", "https", 8443},
		{"store http", "store", "http", 8088},
		{"imaps", "mail", "imaps", 9993},
		{"imap", "mail", "imap", 9143},
		{"submissions", "mail", "submissions", 9465},
		{"submission", "mail", "submission", 9587},
		{"smtp", "mail", "smtp", 9025},
		{"lmtp", "mail", "lmtp", 9024},
		{"contacts", "contacts", "https", 8444},
		{"calendar", "calendar", "https", 8445},
		{"dashboard", "dashboard", "https", 8446},
		{"missing port", "store", "imap", 0},
		{"missing appliance", "nope", "https", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := n.Port(tc.app, tc.port); got != tc.want {
				t.Errorf("Port(%q, %q) = %d, want %d", tc.app, tc.port, got, tc.want)
			}
		})
	}
	if a, ok := n.Appliance("mail"); !ok || a.Name != "mail" || len(a.Ports) != 6 {
		t.Errorf("Appliance(mail) = %+v, %v", a, ok)
	}
	if _, ok := n.Appliance("nope"); ok {
		t.Error("Appliance(nope) found")
	}
	want := []string{"store.home.arpa", "mail.home.arpa", "contacts.home.arpa", "calendar.home.arpa", "dashboard.home.arpa"}
	if got := n.DNSNames(); !reflect.DeepEqual(got, want) {
		t.Errorf("DNSNames = %v, want %v", got, want)
	}
}

// TestOldNamesFileWithoutSubmissions reads a names.json written before the submissions
// port existed: it stays valid and simply has no such port.
func TestOldNamesFileWithoutSubmissions(t *testing.T) {
	dir := t.TempDir()
	old := `{"domain":"home.arpa","appliances":[{"name":"mail","ports":[` +
		`{"name":"imaps","proto":"tcp","port":9993,"tls":true},{"name":"imap","proto":"tcp","port":9143},` +
		`{"name":"submission","proto":"tcp","port":9587},{"name":"smtp","proto":"tcp","port":9025},` +
		`{"name":"lmtp","proto":"tcp","port":9024,"loopback":true}]}]}`
	if err := os.WriteFile(filepath.Join(dir, NamesFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := ReadNames(dir)
	if err != nil {
		t.Fatalf("ReadNames(old file) = %v", err)
	}
	if p := n.Port("mail", "submissions"); p != 0 {
		t.Errorf("old file: submissions port %d, want 0 (absent)", p)
	}
	if p := n.Port("mail", "submission"); p != 9587 {
		t.Errorf("old file: submission port %d, want 9587", p)
	}
	if def := DefaultNames(""); def.Port("mail", "submissions") != 9465 {
		t.Errorf("defaults: submissions port %d, want 9465", def.Port("mail", "submissions"))
	}
}

func TestFQDN(t *testing.T) {
	for _, tc := range []struct {
		name, domain, app, want string
	}{
		{"default", "home.arpa", "store", "store.home.arpa"},
		{"custom", "example.org", "mail", "mail.example.org"},
		{"single label domain", "lan", "calendar", "calendar.lan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DefaultNames(tc.domain).FQDN(tc.app); got != tc.want {
				t.Errorf("FQDN = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNamesValidate(t *testing.T) {
	edit := func(f func(n *Names)) Names {
		n := DefaultNames("")
		f(&n)
		return n
	}
	for _, tc := range []struct {
		name  string
		names Names
		ok    bool
	}{
		{"default", DefaultNames(""), true},
		{"domain with digits and hyphen", DefaultNames("my-home2.example"), true},
		{"empty domain", edit(func(n *Names) { n.Domain = "" }), false},
		{"upper case domain", edit(func(n *Names) { n.Domain = "Home.arpa" }), false},
		{"trailing dot", edit(func(n *Names) { n.Domain = "home.arpa." }), false},
		{"empty label", edit(func(n *Names) { n.Domain = "home..arpa" }), false},
		{"leading hyphen", edit(func(n *Names) { n.Domain = "-home.arpa" }), false},
		{"underscore", edit(func(n *Names) { n.Domain = "my_home.arpa" }), false},
		{"numeric tld", edit(func(n *Names) { n.Domain = "10.0.0.1" }), false},
		{"label too long", edit(func(n *Names) { n.Domain = strings.Repeat("a", 64) + ".arpa" }), false},
		{"domain too long", edit(func(n *Names) { n.Domain = strings.Repeat(strings.Repeat("a", 60)+".", 4) + "arpa" }), false},
		{"no appliances", edit(func(n *Names) { n.Appliances = nil }), true},
		{"appliance name with dot", edit(func(n *Names) { n.Appliances[0].Name = "a.b" }), false},
		{"appliance name empty", edit(func(n *Names) { n.Appliances[0].Name = "" }), false},
		{"duplicate appliance", edit(func(n *Names) { n.Appliances[1].Name = "store" }), false},
		{"duplicate port across appliances", edit(func(n *Names) { n.Appliances[2].Ports[0].Port = 8443 }), false},
		{"same number udp and tcp", edit(func(n *Names) {
			n.Appliances = append(n.Appliances, Appliance{Name: "dns", Ports: []Port{{Name: "domain", Proto: "udp", Port: 8443}}})
		}), true},
		{"duplicate service", edit(func(n *Names) { n.Appliances[0].Ports[1].Name = "https" }), false},
		{"port zero", edit(func(n *Names) { n.Appliances[0].Ports[0].Port = 0 }), false},
		{"port too big", edit(func(n *Names) { n.Appliances[0].Ports[0].Port = 65536 }), false},
		{"bad proto", edit(func(n *Names) { n.Appliances[0].Ports[0].Proto = "sctp" }), false},
		{"service too long", edit(func(n *Names) { n.Appliances[0].Ports[0].Name = "abcdefghijklmnop" }), false},
		{"service numeric", edit(func(n *Names) { n.Appliances[0].Ports[0].Name = "443" }), false},
		{"service double hyphen", edit(func(n *Names) { n.Appliances[0].Ports[0].Name = "a--b" }), false},
		{"too many ports", edit(func(n *Names) {
			for i := range MaxPorts {
				n.Appliances[2].Ports = append(n.Appliances[2].Ports, Port{Name: "p" + string(rune('a'+i)), Proto: "tcp", Port: 20000 + i})
			}
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.names.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidNames) {
				t.Fatalf("Validate = %v, want ErrInvalidNames", err)
			}
		})
	}
}

func TestNamesFile(t *testing.T) {
	dir := t.TempDir()
	n, err := ReadNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n, DefaultNames(DefaultDomain)) {
		t.Fatalf("ReadNames without a file = %+v, want the defaults", n)
	}
	n = DefaultNames("example.org")
	n.Appliances = append(n.Appliances, Appliance{Name: "dns", Ports: []Port{{Name: "domain", Proto: "udp", Port: 5353}}})
	if err := WriteNames(dir, n); err != nil {
		t.Fatal(err)
	}
	got, err := ReadNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, n) {
		t.Fatalf("round trip: got %+v, want %+v", got, n)
	}
	bad := n
	bad.Domain = "Bad Domain"
	if err := WriteNames(dir, bad); !errors.Is(err, ErrInvalidNames) {
		t.Fatalf("WriteNames(bad) = %v", err)
	}
	for _, tc := range []struct{ name, content string }{
		{"not json", "domain = home.arpa"},
		{"unknown field", `{"domain":"home.arpa","appliances":[],"extra":1}`},
		{"trailing data", `{"domain":"home.arpa","appliances":[]} {}`},
		{"wrong type", `{"domain":5}`},
		{"invalid domain", `{"domain":"a..b","appliances":[]}`},
		{"too large", `{"domain":"home.arpa","appliances":[]}` + strings.Repeat(" ", MaxNamesFileSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, NamesFile), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadNames(dir); !errors.Is(err, ErrInvalidNames) {
				t.Fatalf("ReadNames = %v, want ErrInvalidNames", err)
			}
		})
	}
}

func FuzzParseNames(f *testing.F) {
	b, _ := json.Marshal(DefaultNames(""))
	f.Add(b)
	f.Add([]byte(`{"domain":"lan","appliances":[{"name":"a","ports":[{"name":"x","proto":"udp","port":1}]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNames(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidNames) {
				t.Fatalf("error %v is not ErrInvalidNames", err)
			}
			return
		}
		// Whatever parses is valid, and survives a round trip unchanged.
		if err := n.Validate(); err != nil {
			t.Fatalf("parsed names invalid: %v", err)
		}
		again, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		n2, err := ParseNames(again)
		if err != nil || !reflect.DeepEqual(n, n2) {
			t.Fatalf("round trip: %v, %+v != %+v", err, n, n2)
		}
	})
}
