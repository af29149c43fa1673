package signpost

import (
	"context"
	"net"
)

// TrustedListener marks the connections of ln as arriving over an encrypted, authenticated
// transport other than TLS: a tailnet listener, where WireGuard encrypts every packet and
// the peer is a known node. Credentials may travel over them in plain protocol text, as
// over loopback (see RequireTLS and PlaintextAuthAllowedConn).
func TrustedListener(ln net.Listener) net.Listener { return trustedListener{ln} }

type trustedListener struct{ net.Listener }

func (l trustedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return trustedConn{c}, nil
}

type trustedConn struct{ net.Conn }

// IsTrustedConn reports whether c came from a TrustedListener.
func IsTrustedConn(c net.Conn) bool {
	_, ok := c.(trustedConn)
	return ok
}

// PlaintextAuthAllowedConn is PlaintextAuthAllowed for a connection: also true for a
// connection from a TrustedListener.
func PlaintextAuthAllowedConn(c net.Conn, isTLS bool) bool {
	return IsTrustedConn(c) || PlaintextAuthAllowed(c.RemoteAddr(), isTLS)
}

type trustedKey struct{}

// markTrusted is the http.Server ConnContext that ServeHTTP installs: it records in the
// request context whether the connection came from a TrustedListener.
func markTrusted(ctx context.Context, c net.Conn) context.Context {
	if IsTrustedConn(c) {
		return context.WithValue(ctx, trustedKey{}, true)
	}
	return ctx
}

// OverTrustedTransport reports whether a request's context (from ServeHTTP) belongs to a
// connection from a TrustedListener.
func OverTrustedTransport(ctx context.Context) bool {
	v, _ := ctx.Value(trustedKey{}).(bool)
	return v
}
