package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/memstore"
	"github.com/hearth-home/hearth/store/storehttp"
)

// The auth matrix: over a real socket, every kind of endpoint refuses anonymous and
// wrong-password requests, a disabled user and a removed app password, and no user
// reaches another user's repository; the owner's password and app password work.
func TestAuthMatrix(t *testing.T) {
	ctx := context.Background()
	repos := memstore.NewRepos(nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: quiet,
		Limits: signpost.LimitOptions{FreeFailures: 1000, LockoutAfter: 2000}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "dave"} {
		if err := accounts.Add(ctx, u, u+"-password"); err != nil {
			t.Fatal(err)
		}
	}
	app, err := accounts.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := accounts.AddAppPassword(ctx, "alice", "old")
	if err != nil {
		t.Fatal(err)
	}
	if err := accounts.RevokeAppPassword(ctx, "alice", "old"); err != nil {
		t.Fatal(err)
	}
	altered := app[:len(app)-1] + "A"
	if altered == app {
		altered = app[:len(app)-1] + "E"
	}
	srv := httptest.NewServer(storehttp.NewHandler(repos, storehttp.Options{Auth: accounts, Logger: quiet}))
	defer srv.Close()
	base := srv.URL
	if status, body, _ := request(t, "PUT", base+"/api/repos/alice/notes/keys/todo", "hello", basic("alice", "alice-password")); status != http.StatusCreated && status != http.StatusOK && status != http.StatusNoContent {
		t.Fatalf("alice's first write: %d %s", status, body)
	}
	if err := accounts.SetDisabled(ctx, "dave", true); err != nil {
		t.Fatal(err)
	}

	endpoints := []struct{ method, path, body string }{
		{"GET", "/api/repos", ""},
		{"POST", "/api/repos", `{"name":"alice/other"}`},
		{"GET", "/api/repos/alice/notes/keys/todo", ""},
		{"PUT", "/api/repos/alice/notes/keys/todo", "changed"},
		{"DELETE", "/api/repos/alice/notes/keys/todo", ""},
		{"GET", "/api/repos/alice/notes/list/", ""},
		{"GET", "/api/repos/alice/notes/log", ""},
		{"GET", "/api/repos/alice/notes/history/todo", ""},
		{"GET", "/api/repos/alice/notes/branches", ""},
		{"GET", "/api/repos/alice/notes/resolve?rev=main", ""},
		{"POST", "/api/repos/alice/notes/commits", `{"message":"x","ops":[{"key":"a","value":"eA=="}]}`},
		{"GET", "/alice/notes.git/info/refs?service=git-upload-pack", ""},
		{"GET", "/api/repos/system/accounts/list/", ""},
	}
	refused := []struct {
		name string
		auth func(*http.Request)
	}{
		{"anonymous", nil},
		{"wrong password", basic("alice", "alice-passwordx")},
		{"unknown user", basic("carol", "alice-password")},
		{"reserved user", basic("system", "alice-password")},
		{"disabled user", basic("dave", "dave-password")},
		{"revoked app password", basic("alice", revoked)},
		{"revoked token", bearer(revoked)},
		{"app password of another user", basic("bob", app)},
		{"altered token", bearer(altered)},
	}
	for _, e := range endpoints {
		for _, r := range refused {
			t.Run(e.method+" "+e.path+"/"+r.name, func(t *testing.T) {
				status, body, _ := request(t, e.method, base+e.path, e.body, r.auth)
				if status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401: %s", status, body)
				}
			})
		}
		if e.path == "/api/repos" {
			continue // bob's own listing
		}
		t.Run(e.method+" "+e.path+"/other user", func(t *testing.T) {
			status, body, _ := request(t, e.method, base+e.path, e.body, basic("bob", "bob-password"))
			if status != http.StatusNotFound && status != http.StatusForbidden {
				t.Fatalf("bob got %d, want 403 or 404: %s", status, body)
			}
		})
	}
	for _, r := range []struct {
		name string
		auth func(*http.Request)
	}{
		{"password", basic("alice", "alice-password")},
		{"app password", basic("alice", app)},
		{"token", bearer(app)},
	} {
		t.Run("owner/"+r.name, func(t *testing.T) {
			status, body, _ := request(t, "GET", base+"/api/repos/alice/notes/keys/todo", "", r.auth)
			if status != http.StatusOK || body != "hello" {
				t.Fatalf("status %d, body %q", status, body)
			}
		})
	}
}

// TestThrottledLoginOverHTTP: a run of wrong passwords from one client turns into 429 Too
// Many Requests with a Retry-After, and then even the right password is refused until
// the wait is over (no argon2id run is spent on a throttled attempt).
func TestThrottledLoginOverHTTP(t *testing.T) {
	ctx := context.Background()
	repos := memstore.NewRepos(nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := accounts.Add(ctx, "alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(storehttp.NewHandler(repos, storehttp.Options{Auth: accounts, Logger: quiet}))
	defer srv.Close()
	var throttled *http.Response
	for i := range 10 {
		req, _ := http.NewRequest("GET", srv.URL+"/api/repos", nil)
		req.SetBasicAuth("alice", "guess-"+strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			throttled = resp
			break
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %s", i, resp.Status)
		}
	}
	if throttled == nil {
		t.Fatal("10 wrong passwords in a row were never throttled")
	}
	if s, err := strconv.Atoi(throttled.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", throttled.Header.Get("Retry-After"))
	}
	if status, _, _ := request(t, "GET", srv.URL+"/api/repos", "", basic("alice", "alice-password")); status != http.StatusTooManyRequests {
		t.Fatalf("the right password while throttled: %d, want 429", status)
	}
}
