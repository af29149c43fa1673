package signpost

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// PlaintextAuthAllowed reports whether a client at remote may send a password or token
// over a connection that is not encrypted (isTLS false): only over loopback or a Unix
// socket, where nobody can listen in. Over TLS it is always allowed. IMAP and SMTP use it
// to refuse LOGIN and AUTH before STARTTLS.
func PlaintextAuthAllowed(remote net.Addr, isTLS bool) bool {
	if isTLS {
		return true
	}
	switch a := remote.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return false
	default:
		return IsLoopbackAddr(a.String())
	}
}

// IsLoopbackAddr reports whether addr, "host:port" or a bare host, names a loopback
// address (an IP address, or "localhost"): where plain HTTP and unauthenticated endpoints
// may listen.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RequireTLS wraps h so that a request carrying credentials (an Authorization header) that
// arrived without TLS from an address other than loopback, nor over a TrustedListener
// (served by ServeHTTP), is refused with 403 Forbidden
// and a JSON error telling the client to use https:// instead; nothing reaches h. Requests
// without credentials pass, so public pages and 401 challenges still work. httpsPort is
// the port to point the client to (0: the default, 443).
func RequireTLS(h http.Handler, httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil || r.Header.Get("Authorization") == "" || IsLoopbackAddr(r.RemoteAddr) || OverTrustedTransport(r.Context()) {
			h.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			host = "this-server"
		}
		if httpsPort != 0 && httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		} else if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		msg := "credentials are not accepted over plain http from another machine, where anyone on the way could read them; use https://" + host + r.URL.RequestURI()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
	})
}
