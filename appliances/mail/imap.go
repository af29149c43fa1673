package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/hearth-home/hearth/mail"
)

// newIMAPServer makes the IMAP server over the backend, with STARTTLS and IMAPS from
// tlsConfig.
func newIMAPServer(b *mail.Backend, tlsConfig *tls.Config, logger *slog.Logger) *mail.Server {
	return mail.NewServer(b, mail.ServerOptions{TLSConfig: tlsConfig, Logger: logger})
}
