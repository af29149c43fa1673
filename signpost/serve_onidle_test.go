package signpost

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeOnIdle: ServeOptions.OnIdle runs once the last connection has been closed
// for ReleaseMemory, and not while a request is running.
func TestServeOnIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idle := make(chan struct{}, 10)
	busy := make(chan bool, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busy <- true
		time.Sleep(300 * time.Millisecond) // longer than ReleaseMemory
		<-busy
		io.WriteString(w, "ok")
	})
	done := make(chan error, 1)
	go func() {
		done <- ServeHTTP(ctx, []net.Listener{ln}, h, ServeOptions{ReleaseMemory: 50 * time.Millisecond, OnIdle: func() {
			select {
			case busy <- true:
				<-busy
			default:
				t.Error("OnIdle ran during a request")
			}
			idle <- struct{}{}
		}})
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("OnIdle did not run after the connection closed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
