package contacts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-home/hearth/internal/testtool"
	"github.com/hearth-home/hearth/store/storedav"
)

// TestCurlErrorPaths sends the error cases with curl, as a user would.
func TestCurlErrorPaths(t *testing.T) {
	curl := testtool.Path(t, "/usr/bin/curl", "curl")
	srv, h, _ := gitServer(t)
	ctx := storedav.WithUser(context.Background(), "alice")
	if err := h.Collections().Create(ctx, "alice", "book", storedav.Meta{}); err != nil {
		t.Fatal(err)
	}
	good := genCard(1, "One")
	if _, err := h.Collections().Put(ctx, "alice", "book", "one.vcf", []byte(good), storedav.Conditions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := file("bad.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\n")
	dup := file("dup.vcf", genCard(1, "Dup"))
	big := file("big.vcf", strings.Replace(genCard(2, "Big"), "END:VCARD", "NOTE:"+strings.Repeat("x", 2<<20)+"\r\nEND:VCARD", 1))
	ok := file("ok.vcf", genCard(3, "Three"))
	sync := file("sync.xml", `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>http://hearth.home.arpa/sync/ffffffffffffffffffffffffffffffffffffffff</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`)
	book := srv.URL + "/alice/contacts/book/"
	auth := []string{"-u", "alice:" + pw}
	cases := []struct {
		name string
		args []string
		code string
		has  string
	}{
		{"no credentials", []string{"-X", "PROPFIND", book}, "401", ""},
		{"malformed vCard", append(auth, "-X", "PUT", "--data-binary", "@"+bad, book+"bad.vcf"), "403", "valid-address-data"},
		{"UID conflict", append(auth, "-X", "PUT", "--data-binary", "@"+dup, book+"dup.vcf"), "409", "no-uid-conflict"},
		{"If-Match mismatch", append(auth, "-X", "PUT", "-H", `If-Match: "0123456789abcdef0123456789abcdef01234567"`, "--data-binary", "@"+ok, book+"one.vcf"), "412", ""},
		{"If-None-Match on existing", append(auth, "-X", "PUT", "-H", "If-None-Match: *", "--data-binary", "@"+dup, book+"one.vcf"), "412", ""},
		{"oversize body", append(auth, "-X", "PUT", "--data-binary", "@"+big, book+"big.vcf"), "413", "max-resource-size"},
		{"unknown sync token", append(auth, "-X", "REPORT", "--data-binary", "@"+sync, book), "403", "valid-sync-token"},
		{"dot-dot", append(auth, "--path-as-is", srv.URL+"/alice/contacts/book/../../../bob/contacts/x/one.vcf"), "400", ""},
		{"encoded dot-dot", append(auth, "--path-as-is", book+"%2e%2e/one.vcf"), "400", ""},
		{"encoded slash", append(auth, "--path-as-is", srv.URL+"/alice/contacts/book%2Fone.vcf"), "400", ""},
		{"create", append(auth, "-X", "PUT", "-H", "If-None-Match: *", "--data-binary", "@"+ok, book+"three.vcf"), "201", ""},
		{"overwrite", append(auth, "-X", "PUT", "--data-binary", "@"+ok, book+"three.vcf"), "204", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"-s", "-o", "-", "-w", "\n%{http_code}"}, c.args...)
			out, err := exec.Command(curl, args...).Output()
			if err != nil {
				t.Fatalf("curl: %v", err)
			}
			s := string(out)
			i := strings.LastIndex(s, "\n")
			body, code := s[:i], s[i+1:]
			if code != c.code || !strings.Contains(body, c.has) {
				t.Fatalf("got %s %q, want %s with %q", code, body, c.code, c.has)
			}
		})
	}
	// Nothing of the refused PUTs was stored.
	for _, n := range []string{"bad.vcf", "dup.vcf", "big.vcf"} {
		if _, _, err := h.Collections().Object(ctx, "alice", "book", n); err == nil {
			t.Errorf("%s stored", n)
		}
	}
}
