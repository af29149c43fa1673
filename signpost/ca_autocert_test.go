package signpost

import (
	"crypto/tls"
	"errors"
	"slices"
	"testing"
)

func TestAutocertConfig(t *testing.T) {
	cfg := AutocertConfig("example.org", t.TempDir(), "", "extra.example.org")
	if cfg.GetCertificate == nil || !slices.Contains(cfg.NextProtos, "acme-tls/1") {
		t.Fatalf("not an ACME TLS config: %+v", cfg.NextProtos)
	}
	// Hosts outside the policy are refused before any network request.
	_, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.example.org"})
	if !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("GetCertificate(evil) = %v, want ErrNoCertificate", err)
	}
}
