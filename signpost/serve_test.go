package signpost

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
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
