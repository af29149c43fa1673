package bootguard

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// HandlerRebooter returns an Options.Reboot that calls gokrazy's /reboot handler in-process
// (it stops the services, unmounts /perm and reboots a second later).
func HandlerRebooter(h http.Handler) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return callHandler(ctx, h, "/reboot?wait_per_signal=10s")
	}
}

// GokrazyRebooter returns an Options.Reboot for gokrazy's init: once gokrazy has registered
// its /reboot handler on mux (gokrazy.SuperviseServices registers it on
// http.DefaultServeMux), it calls that handler, which stops the services first; before
// that — a rollback decided by Check, when nothing runs yet — it calls kernelReboot
// (KernelReboot on Linux).
func GokrazyRebooter(mux *http.ServeMux, kernelReboot func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/reboot", nil)
		if err != nil {
			return err
		}
		if _, pattern := mux.Handler(req); pattern != "" {
			return HandlerRebooter(mux)(ctx)
		}
		return kernelReboot(ctx)
	}
}

func callHandler(ctx context.Context, h http.Handler, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost"+target, nil)
	if err != nil {
		return err
	}
	req.RemoteAddr = "127.0.0.1:0"
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	h.ServeHTTP(rec, req)
	if rec.code/100 != 2 {
		return fmt.Errorf("POST %s: %d %s", target, rec.code, strings.TrimSpace(rec.body.String()))
	}
	return nil
}

// recorder is the smallest http.ResponseWriter: it keeps the status and up to 4 KiB of body.
type recorder struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if room := 4096 - r.body.Len(); room > 0 {
		r.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// Flush lets handlers that flush (gokrazy's /reboot does) work.
func (r *recorder) Flush() {}

// HTTPProbe returns a probe for Watch that passes when a GET of url answers with a status
// below 500 (the service is up, even if it wants a login).
func HTTPProbe(client *http.Client, url string) func(ctx context.Context) error {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// TCPProbe returns a probe for Watch that passes when addr accepts a connection and, if
// greeting is not empty, the first line the server sends starts with it (e.g. "* OK" for IMAP).
func TCPProbe(addr, greeting string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if greeting == "" {
			return nil
		}
		if dl, ok := ctx.Deadline(); ok {
			c.SetReadDeadline(dl)
		}
		buf := make([]byte, len(greeting))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("read greeting from %s: %w", addr, err)
		}
		if string(buf) != greeting {
			return fmt.Errorf("%s greets with %q, want %q", addr, buf, greeting)
		}
		return nil
	}
}

// DefaultStatePath is where a Hearth board image keeps the guard's state: on the
// persistent partition, beside (not inside) the appliance's data directory.
const DefaultStatePath = "/perm/bootguard/state.json"

// ParseProbe turns a health check written in an image's configuration into a probe for
// Watch: "http://127.0.0.1:8088/" or "https://..." (an HTTP answer below 500), or
// "tcp://127.0.0.1:9143" with an optional "?greeting=* OK" (a connection, and the first
// bytes the server sends).
func ParseProbe(spec string, client *http.Client) (func(ctx context.Context) error, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("bootguard: health check %q: %w", spec, err)
	}
	switch {
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		return HTTPProbe(client, spec), nil
	case u.Scheme == "tcp" && u.Host != "" && (u.Path == "" || u.Path == "/"):
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return nil, fmt.Errorf("bootguard: health check %q: %w", spec, err)
		}
		return TCPProbe(u.Host, u.Query().Get("greeting")), nil
	}
	return nil, fmt.Errorf("bootguard: health check %q: want http://, https:// or tcp://HOST:PORT", spec)
}
