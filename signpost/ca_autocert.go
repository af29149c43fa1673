package signpost

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/acme/autocert"
)

// AutocertConfig returns a TLS server configuration that gets publicly trusted certificates
// from Let's Encrypt (ACME, TLS-ALPN-01 challenge on port 443) for a public domain, caching
// them in cacheDir. It issues only for domain itself and the FQDNs of the built-in
// appliances below it (DefaultNames(domain)) plus any extra hosts, so a stranger's SNI
// cannot make it spend the domain's rate limit. email ("" for none) is the ACME account's
// contact. Constructing it makes no network request.
func AutocertConfig(domain, cacheDir, email string, hosts ...string) *tls.Config {
	allowed := append([]string{domain}, DefaultNames(domain).DNSNames()...)
	allowed = append(allowed, hosts...)
	m := &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Cache:  autocert.DirCache(cacheDir),
		Email:  email,
		HostPolicy: func(_ context.Context, host string) error {
			if slices.Contains(allowed, strings.ToLower(host)) {
				return nil
			}
			return fmt.Errorf("signpost: autocert: host %q not configured: %w", clip(host), ErrNoCertificate)
		},
	}
	cfg := m.TLSConfig()
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}
