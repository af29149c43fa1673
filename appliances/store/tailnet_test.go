package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/signpost/tailnet/tailnettest"
	"github.com/hearth-home/hearth/store"
)

// TestApplianceOnTailnet runs the store appliance as its own node on an offline tailnet.
// A laptop node whose login is mapped to alice (passwordless) lists alice's repositories
// without a password; bob's password works over the tailnet too (WireGuard encrypts it,
// so the plain-HTTP refusal does not apply); a wrong password does not.
func TestApplianceOnTailnet(t *testing.T) {
	bin := buildAppliance(t, "tailnet")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	tn := tailnettest.New(t)
	laptop := tn.Join(t, ctx, "laptop")
	v4, _ := laptop.Addrs()
	self, err := laptop.WhoIs(ctx, v4.String())
	if err != nil {
		t.Fatal(err)
	}

	data := dataWithUser(t)
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{})
	if err == nil {
		err = accounts.Add(ctx, "bob", "bob-password")
	}
	if err == nil {
		err = accounts.MapTailnetLogin(ctx, self.LoginName, "alice", true)
	}
	if err == nil {
		_, err = repos.Open(ctx, "alice/notes", true)
	}
	repos.Close()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "authkey")
	if err := os.WriteFile(keyFile, []byte(tailnettest.AuthKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, bin, []string{"-data", data, "-listen", "127.0.0.1:0", "-https", "",
		"-tailnet", "-ts-control-url", tn.ControlURL, "-ts-authkey-file", keyFile},
		tailnettest.Env())

	hc := laptop.HTTPClient()
	defer hc.CloseIdleConnections()
	get := func(user, password string) (int, []string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://store/api/repos", nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var got struct{ Repos []string }
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &got); err != nil {
				return 0, nil, fmt.Errorf("%q: %w", b, err)
			}
		}
		return resp.StatusCode, got.Repos, nil
	}
	// The appliance may still be joining, and the first dial can race the relay
	// handshake: retry, bounded.
	var code int
	var got []string
	for attempt := range 60 {
		if code, got, err = get("", ""); err == nil {
			break
		}
		t.Logf("attempt %d: %v", attempt, err)
		select {
		case <-ctx.Done():
			t.Fatalf("reaching the appliance over the tailnet: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if code != http.StatusOK || len(got) != 1 || got[0] != "alice/notes" {
		t.Fatalf("mapped device without a password: %d %v, want alice's repositories", code, got)
	}
	for _, tc := range []struct {
		user, password string
		want           int
	}{
		{"bob", "bob-password", http.StatusOK},
		{"bob", "wrong-password", http.StatusUnauthorized},
		{"alice", "any password", http.StatusOK}, // the mapped account opted in
	} {
		code, _, err := get(tc.user, tc.password)
		if err != nil || code != tc.want {
			t.Errorf("%s with %q over the tailnet: %d %v, want %d", tc.user, tc.password, code, err, tc.want)
		}
	}
}
