package signpost

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestServeHTTP(t *testing.T) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	for _, tc := range []struct {
		name     string
		idleExit time.Duration
		cancel   bool // stop by cancelling ctx rather than by idling
	}{
		{"stops when ctx ends", 0, true},
		{"exits when idle", 200 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ServeHTTP(ctx, []net.Listener{ln}, hello, ServeOptions{IdleExit: tc.idleExit}) }()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello" {
				t.Fatalf("body %q", body)
			}
			if tc.cancel {
				cancel()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("ServeHTTP: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("ServeHTTP did not return")
			}
			if _, err := client.Get("http://" + ln.Addr().String() + "/"); err == nil {
				t.Error("still serving after ServeHTTP returned")
			}
		})
	}
}

// TestTrustedListenerCarriesCredentials: over a real socket, a request with credentials
// that RequireTLS would refuse from a non-loopback address passes when the connection
// came from a TrustedListener (a tailnet), and IsTrustedConn tells the two apart.
func TestTrustedListenerCarriesCredentials(t *testing.T) {
	seen := make(chan bool, 2)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- OverTrustedTransport(r.Context())
		io.WriteString(w, "in")
	})
	// The handler sees the client as a LAN address, as a tailnet or LAN peer would be.
	lanView := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.RemoteAddr = "192.168.1.20:5555"
			h.ServeHTTP(w, r)
		})
	}
	for _, tc := range []struct {
		name    string
		trusted bool
		want    int
	}{
		{"plain listener: refused", false, http.StatusForbidden},
		{"trusted listener: passes", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			if tc.trusted {
				ln = TrustedListener(ln)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ServeHTTP(ctx, []net.Listener{ln}, lanView(RequireTLS(inner, 8443)), ServeOptions{}) }()
			defer func() { cancel(); <-done }()
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			req.SetBasicAuth("alice", "pw")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.trusted && !<-seen {
				t.Error("the handler did not see the trusted transport")
			}
		})
	}
}

// TestWhenIdle: the hook runs once each time the last connection has been closed for d,
// not while one is open, and not when a new one comes within d.
func TestWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		hook := whenIdle(time.Second, func() { calls.Add(1) })
		hook(nil, http.StateNew)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if calls.Load() != 0 {
			t.Fatalf("ran %d times with a connection open", calls.Load())
		}
		hook(nil, http.StateClosed)
		time.Sleep(500 * time.Millisecond)
		hook(nil, http.StateNew) // back within a second
		hook(nil, http.StateClosed)
		time.Sleep(900 * time.Millisecond)
		synctest.Wait()
		if calls.Load() != 0 {
			t.Fatalf("ran %d times before a quiet second", calls.Load())
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("ran %d times after a quiet second, want 1", calls.Load())
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("ran %d times while staying idle, want 1", calls.Load())
		}
	})
}
