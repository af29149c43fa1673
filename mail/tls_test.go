package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/memstore"
)

// tlsFixture serves IMAPS and IMAP+STARTTLS with a certificate from a home CA, on
// listeners whose connections look remote (so passwords need TLS).
func tlsFixture(t *testing.T) (imapsAddr, starttlsAddr string, client *tls.Config, srv *Server) {
	t.Helper()
	return tlsFixtureOpts(t, ServerOptions{})
}

// tlsFixtureOpts is tlsFixture with server options (the TLS config is set here).
func tlsFixtureOpts(t *testing.T, opts ServerOptions) (imapsAddr, starttlsAddr string, client *tls.Config, srv *Server) {
	t.Helper()
	ca, _, err := signpost.OpenHomeCA(t.TempDir(), signpost.CAOptions{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBackend(memstore.NewRepos(nil), Options{Accounts: testAccounts(t), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	opts.TLSConfig = ca.ServerConfig([]string{"mail.home.arpa"}, nil)
	srv = NewServer(b, opts)
	var lns []net.Listener
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	done := make(chan error, 2)
	go func() { done <- srv.ServeTLS(remoteListener{lns[0]}) }()
	go func() { done <- srv.Serve(remoteListener{lns[1]}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		for i := 0; i < 2; i++ {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
		b.Close()
	})
	return lns[0].Addr().String(), lns[1].Addr().String(), &tls.Config{RootCAs: ca.CertPool(), ServerName: "mail.home.arpa"}, srv
}

func TestTLS(t *testing.T) {
	imaps, starttls, cfg, srv := tlsFixture(t)
	t.Run("imaps", func(t *testing.T) {
		c, err := imapclient.DialTLS(imaps, &imapclient.Options{TLSConfig: cfg})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capability().Wait()
		if err != nil || caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) {
			t.Errorf("IMAPS caps %v, %v", caps, err)
		}
		if err := c.Login("alice", alicePass).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if n := srv.OpenConns(); n < 1 {
			t.Errorf("OpenConns = %d", n)
		}
	})
	t.Run("starttls", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(starttls, &imapclient.Options{TLSConfig: cfg})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("bob", bobPass).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("plain before starttls", func(t *testing.T) {
		c, err := imapclient.DialInsecure(starttls, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capability().Wait()
		if err != nil || !caps.Has(imap.CapStartTLS) || !caps.Has(imap.CapLoginDisabled) {
			t.Errorf("caps %v, %v", caps, err)
		}
		if err := c.Login("alice", alicePass).Wait(); imapCode(err) != imap.ResponseCodePrivacyRequired {
			t.Errorf("plain login: %v", err)
		}
	})
}

func TestShutdownAndOpenConns(t *testing.T) {
	b, err := NewBackend(memstore.NewRepos(nil), Options{Accounts: testAccounts(t), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := NewServer(b, ServerOptions{MaxConns: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var clients []*imapclient.Client
	for i := 0; i < 2; i++ {
		c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if n := srv.OpenConns(); n != 2 {
		t.Errorf("OpenConns = %d, want 2", n)
	}
	// A third connection is over MaxConns: BYE.
	c3, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err == nil {
		if err := c3.Noop().Wait(); err == nil {
			t.Error("third connection served")
		}
		c3.Close()
	}
	clients[0].Logout().Wait()
	for deadline := time.Now().Add(5 * time.Second); srv.OpenConns() != 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.OpenConns(); n != 1 {
		t.Errorf("after logout OpenConns = %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if n := srv.OpenConns(); n != 0 {
		t.Errorf("after shutdown OpenConns = %d", n)
	}
	select {
	case <-clients[1].Closed():
	case <-time.After(5 * time.Second):
		t.Error("client still connected after Shutdown")
	}
}

func TestThrottledLogin(t *testing.T) {
	a := signpost.NewAccounts(memstore.New(nil), signpost.AccountsOptions{Logger: quietLog,
		Limits: signpost.LimitOptions{FreeFailures: 1, LockoutAfter: 2}})
	ctx := context.Background()
	if err := a.Add(ctx, "alice", alicePass); err != nil {
		t.Fatal(err)
	}
	b, err := NewBackend(memstore.NewRepos(nil), Options{Accounts: a, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := NewServer(b, ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(ctx)
	var last error
	for i := 0; i < 4; i++ {
		c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		last = c.Login("alice", "wrong-password").Wait()
		c.Close()
	}
	if imapCode(last) != imap.ResponseCodeUnavailable {
		t.Errorf("after repeated failures: %v", last)
	}
	var ie *imap.Error
	if !errors.As(last, &ie) {
		t.Errorf("not an IMAP error: %v", last)
	}
}
