package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/hearth-home/hearth/mail"
)

// newIMAPServer makes the IMAP server over the backend with the limits of opts, with
// STARTTLS and IMAPS from tlsConfig.
func newIMAPServer(b *mail.Backend, opts mail.ServerOptions, tlsConfig *tls.Config, logger *slog.Logger) *mail.Server {
	opts.TLSConfig, opts.Logger = tlsConfig, logger
	return mail.NewServer(b, opts)
}
