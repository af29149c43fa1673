package delivery

import (
	"errors"
	"fmt"
	"net"
)

// ErrNoTLSConfig is returned by ServeSubmissionTLS when Options.TLSConfig is nil.
var ErrNoTLSConfig = errors.New("delivery: implicit TLS needs Options.TLSConfig")

// ServeSubmissionTLS accepts mail clients on ln over implicit TLS (port 465 style,
// "submissions", RFC 8314 section 3.3): every connection starts with a TLS handshake
// using Options.TLSConfig, STARTTLS is not offered and AUTH is allowed at once. Otherwise it
// is ServeSubmission: AUTH required before MAIL, the same limits, local delivery, relaying
// through the Smarthost and a copy in the sender's Sent. It serves until Shutdown and always
// returns a non-nil error (ErrServerClosed after Shutdown); without a TLSConfig it closes
// ln and returns ErrNoTLSConfig.
func (s *Server) ServeSubmissionTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		ln.Close()
		return fmt.Errorf("delivery: serve submissions: %w", ErrNoTLSConfig)
	}
	return s.serveOn(ln, kindSubmission, true)
}
