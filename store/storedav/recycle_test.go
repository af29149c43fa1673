package storedav

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

func TestRecyclingRepos(t *testing.T) {
	ctx := context.Background()
	rr, err := NewRecyclingRepos(filepath.Join(t.TempDir(), "repos"), &store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	var old store.Store
	rr.Use(func() {
		s, err := rr.Open(ctx, "alice/things", true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, store.Change{Message: "one", Ops: []store.Op{{Key: "k", Value: []byte("v1")}}}); err != nil {
			t.Fatal(err)
		}
		old = s
		// Not while in use.
		if did, err := rr.Recycle(); did || err != nil {
			t.Fatalf("Recycle during a use: %v, %v", did, err)
		}
	})
	// A request in flight holds the repositories too.
	started, release := make(chan bool), make(chan bool)
	srv := httptest.NewServer(rr.Hold(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- true
		<-release
	})))
	defer srv.Close()
	go http.Get(srv.URL)
	<-started
	if did, _ := rr.Recycle(); did {
		t.Fatal("Recycle during a request")
	}
	release <- true
	// Idle: recycled; the old repository is closed, the data is there through a new one.
	recycled := false
	for range 500 { // until the request has returned
		if recycled, err = rr.Recycle(); recycled || err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !recycled || err != nil {
		t.Fatalf("Recycle when idle: %v, %v", recycled, err)
	}
	if _, _, err := old.Get(ctx, "", "k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("old repository after recycling: %v, want ErrClosed", err)
	}
	rr.Use(func() {
		s, err := rr.Open(ctx, "alice/things", false)
		if err != nil {
			t.Fatal(err)
		}
		if v, _, err := s.Get(ctx, "", "k"); err != nil || string(v) != "v1" {
			t.Fatalf("after recycling: %q, %v", v, err)
		}
		if _, err := s.Commit(ctx, store.Change{Message: "two", Ops: []store.Op{{Key: "k", Value: []byte("v2")}}}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDropCaches(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	e.mkcol("alice", "/alice/things/b/")
	for _, n := range []string{"1", "2"} {
		e.want(e.do("alice", "PUT", "/alice/things/b/"+n+".t", thing(n, "")), 201)
	}
	c := e.h.Collections()
	objs, head, err := c.Objects(ctx, "alice", "b")
	if err != nil || len(objs) != 2 {
		t.Fatalf("objects: %v, %v", objs, err)
	}
	before, err := c.Data(ctx, "alice", head, "b", objs[0])
	if err != nil {
		t.Fatal(err)
	}
	c.cacheMu.Lock()
	blobs := len(c.blobs)
	c.cacheMu.Unlock()
	if blobs == 0 {
		t.Fatal("nothing cached")
	}
	e.h.DropCaches()
	c.cacheMu.Lock()
	blobs = len(c.blobs)
	c.cacheMu.Unlock()
	if blobs != 0 {
		t.Fatalf("%d blobs cached after DropCaches", blobs)
	}
	after, err := c.Data(ctx, "alice", head, "b", objs[0])
	if err != nil || string(after) != string(before) {
		t.Fatalf("after DropCaches: %q, %v; want %q", after, err, before)
	}
}
