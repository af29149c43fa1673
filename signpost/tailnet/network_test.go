package tailnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tailscale.com/tstest"

	"github.com/hearth-home/hearth/signpost/tailnet"
	"github.com/hearth-home/hearth/signpost/tailnet/tailnettest"
)

type whoAnswer struct {
	LoginName string
	NodeName  string
}

// TestTwoNodesWhoIs joins two nodes to an offline tailnet. "mail" serves HTTP on its
// tailnet listener and answers with the WhoIs identity of the caller; "laptop"
// calls it over the tailnet by MagicDNS hostname and must be told its own login.
func TestTwoNodesWhoIs(t *testing.T) {
	tstest.ResourceCheck(t) // no goroutines left behind once everything is closed
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()

	tn := tailnettest.New(t)
	server := tn.Join(t, ctx, "mail")
	client := tn.Join(t, ctx, "laptop")

	if got, want := server.DNSName(), "mail."+tailnettest.Domain; got != want {
		t.Errorf("server DNSName = %q, want %q", got, want)
	}
	sv4, _ := server.Addrs()
	cv4, _ := client.Addrs()
	if !sv4.IsValid() || !cv4.IsValid() || sv4 == cv4 {
		t.Fatalf("tailnet IPv4 addresses: server %v, client %v", sv4, cv4)
	}

	ln, err := server.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	hsrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := server.WhoIs(r.Context(), r.RemoteAddr)
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			json.NewEncoder(w).Encode(whoAnswer{LoginName: p.LoginName, NodeName: p.NodeName})
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- hsrv.Serve(ln) }()
	t.Cleanup(func() {
		hsrv.Close()
		<-served
	})

	// What the client is, asked of its own node.
	self, err := client.WhoIs(ctx, cv4.String())
	if err != nil {
		t.Fatalf("client WhoIs self: %v", err)
	}
	if self.LoginName == "" || self.NodeName != "laptop."+tailnettest.Domain {
		t.Fatalf("client self = %+v", self)
	}

	// The first dial can race the DERP handshake: retry a bounded number of times.
	hc := client.HTTPClient()
	defer hc.CloseIdleConnections()
	var got whoAnswer
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("calling mail over the tailnet: %v (last error: %v)", ctx.Err(), lastErr)
			case <-time.After(250 * time.Millisecond):
			}
		}
		got, lastErr = getWho(ctx, hc, "http://mail/")
		if lastErr == nil {
			break
		}
		t.Logf("attempt %d: %v", attempt, lastErr)
	}
	if lastErr != nil {
		t.Fatalf("calling mail over the tailnet: %v", lastErr)
	}
	if got.LoginName != self.LoginName || got.NodeName != "laptop."+tailnettest.Domain {
		t.Errorf("mail saw caller %+v, want login %q on laptop.hearth-test.ts.net", got, self.LoginName)
	}
	serverSelf, err := server.WhoIs(ctx, netip.AddrPortFrom(sv4, 80).String())
	if err != nil {
		t.Fatal(err)
	}
	if serverSelf.LoginName == got.LoginName {
		t.Errorf("server and client share login %q; the test control server should give each node its own user", got.LoginName)
	}

	// A raw Dial by tailnet address reaches the same listener.
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, err := client.Dial(dctx, "tcp", netip.AddrPortFrom(sv4, 80).String())
	if err != nil {
		t.Fatalf("Dial by address: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: mail\r\n\r\n")
	raw, err := io.ReadAll(c)
	c.Close()
	if err != nil || !strings.Contains(string(raw), self.LoginName) {
		t.Errorf("raw dial answer %q, err %v; want it to contain %q", raw, err, self.LoginName)
	}

	t.Run("unknown peer", func(t *testing.T) {
		_, err := server.WhoIs(ctx, "100.100.99.99:1234")
		if !errors.Is(err, tailnet.ErrPeerNotFound) {
			t.Errorf("WhoIs of an address no node has: err = %v, want ErrPeerNotFound", err)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		_, err := server.WhoIs(ctx, "mail:80")
		if err == nil || errors.Is(err, tailnet.ErrPeerNotFound) {
			t.Errorf("WhoIs(\"mail:80\"): err = %v, want a bad-address error", err)
		}
	})
	t.Run("close twice", func(t *testing.T) {
		extra := tn.Join(t, ctx, "spare")
		if err := extra.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := extra.Close(); err == nil {
			t.Error("second Close: no error")
		}
	})
}

// TestJoinWrongAuthKey checks that a node the control server refuses does not hang
// Join past its context.
func TestJoinWrongAuthKey(t *testing.T) {
	tn := tailnettest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	n, err := tailnet.Join(ctx, tailnet.Options{
		Hostname:   "intruder",
		Dir:        t.TempDir(),
		AuthKey:    "tskey-auth-wrong",
		ControlURL: tn.ControlURL,
		Ephemeral:  true,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err == nil {
		n.Close()
		t.Fatal("Join with a wrong auth key succeeded")
	}
	t.Logf("Join with a wrong auth key: %v", err)
	if !strings.Contains(err.Error(), "intruder") {
		t.Errorf("error %q does not name the node", err)
	}
}

func getWho(ctx context.Context, hc *http.Client, url string) (whoAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return whoAnswer{}, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return whoAnswer{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4096))
	if err != nil {
		return whoAnswer{}, err
	}
	if res.StatusCode != http.StatusOK {
		return whoAnswer{}, fmt.Errorf("status %s: %s", res.Status, body)
	}
	var a whoAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return whoAnswer{}, fmt.Errorf("answer %q: %w", body, err)
	}
	return a, nil
}

// TestJoinHonoursContext points a node at a control server that never answers:
// Join must give up when its context ends and leave nothing running.
func TestJoinHonoursContext(t *testing.T) {
	tstest.ResourceCheck(t)
	tailnettest.Offline(t)
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(func() {
		stuck.CloseClientConnections()
		stuck.Close()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	n, err := tailnet.Join(ctx, tailnet.Options{
		Hostname:   "waiting",
		Dir:        t.TempDir(),
		AuthKey:    tailnettest.AuthKey,
		ControlURL: stuck.URL,
		Ephemeral:  true,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err == nil {
		n.Close()
		t.Fatal("Join against a control server that never answers succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Join: %v, want it to wrap context.DeadlineExceeded", err)
	}
}
