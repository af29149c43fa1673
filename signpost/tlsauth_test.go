package signpost

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPlaintextAuthAllowed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addr  net.Addr
		isTLS bool
		want  bool
	}{
		{"loopback v4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, false, true},
		{"loopback v4 other", &net.TCPAddr{IP: net.IPv4(127, 1, 2, 3), Port: 5}, false, true},
		{"loopback v6", &net.TCPAddr{IP: net.IPv6loopback, Port: 5}, false, true},
		{"v4-mapped loopback", &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 5}, false, true},
		{"lan plain", &net.TCPAddr{IP: net.IPv4(192, 168, 1, 2), Port: 5}, false, false},
		{"lan tls", &net.TCPAddr{IP: net.IPv4(192, 168, 1, 2), Port: 5}, true, true},
		{"public v6 plain", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5}, false, false},
		{"unix socket", &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, false, true},
		{"nil plain", nil, false, false},
		{"udp loopback", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, false, true},
		{"udp lan", &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlaintextAuthAllowed(tc.addr, tc.isTLS); got != tc.want {
				t.Errorf("PlaintextAuthAllowed(%v, %v) = %v, want %v", tc.addr, tc.isTLS, got, tc.want)
			}
		})
	}
}

// okHandler answers 200 "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

func TestRequireTLSMatrix(t *testing.T) {
	h := RequireTLS(okHandler, 8443)
	for _, tc := range []struct {
		name   string
		remote string
		auth   bool
		tls    bool
		want   int
	}{
		{"loopback plain with credentials", "127.0.0.1:4000", true, false, 200},
		{"loopback v6 plain with credentials", "[::1]:4000", true, false, 200},
		{"lan plain without credentials", "192.168.1.7:4000", false, false, 200},
		{"lan plain with credentials", "192.168.1.7:4000", true, false, 403},
		{"public v6 plain with credentials", "[2001:db8::7]:4000", true, false, 403},
		{"unparsable remote with credentials", "somewhere", true, false, 403},
		{"lan tls with credentials", "192.168.1.7:4000", true, true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://store.home.arpa:8088/api/repos?x=1", nil)
			r.RemoteAddr = tc.remote
			if tc.auth {
				r.SetBasicAuth("alice", "secret-password")
			}
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if tc.want != 403 {
				return
			}
			var body struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if want := "use https://store.home.arpa:8443/api/repos?x=1"; !strings.Contains(body.Error, want) {
				t.Errorf("error %q does not say %q", body.Error, want)
			}
		})
	}
}

func TestRequireTLSLoopbackSocket(t *testing.T) {
	srv := httptest.NewServer(RequireTLS(okHandler, 0)) // listens on 127.0.0.1
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", "secret-password")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("loopback request with credentials: %d %q", resp.StatusCode, b)
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8443", true},
		{"127.1.2.3:80", true},
		{"[::1]:8443", true},
		{"localhost:9000", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"0.0.0.0:8443", false},
		{"192.168.1.10:8443", false},
		{"[::]:80", false},
		{"example.org:80", false},
		{":8443", false},
		{"", false},
	} {
		if got := IsLoopbackAddr(tc.addr); got != tc.want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
