package storehttp

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
)

// TestPeerUser: a peer the PeerUser hook knows (here: every client on this loopback test
// socket is "alice's tailnet device") gets in without credentials or with any password
// for that user, but not as another user; others still need their passwords.
func TestPeerUser(t *testing.T) {
	peer := func(ctx context.Context, remote string) (string, bool) {
		host, _, _ := net.SplitHostPort(remote)
		return "alice", host == "127.0.0.1"
	}
	e := newEnv(t, Options{PeerUser: peer})
	e.commit("alice/notes", "main", "a", "1")
	e.commit("bob/notes", "main", "b", "1")
	for _, tc := range []struct {
		name      string
		user, pw  string
		basic     bool
		want      int
		wantRepos []string
	}{
		{"no credentials: the mapped user", "", "", false, http.StatusOK, []string{"alice/notes"}},
		{"mapped user, any password", "alice", "not-her-password", true, http.StatusOK, []string{"alice/notes"}},
		{"another user with the right password", "bob", "bob-pw", true, http.StatusOK, []string{"bob/notes"}},
		{"another user with a wrong password", "bob", "wrong", true, http.StatusUnauthorized, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+"/api/repos", nil)
			if tc.basic {
				req.SetBasicAuth(tc.user, tc.pw)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusOK {
				return
			}
			var got struct{ Repos []string }
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if len(got.Repos) != len(tc.wantRepos) || got.Repos[0] != tc.wantRepos[0] {
				t.Fatalf("repos %v, want %v", got.Repos, tc.wantRepos)
			}
		})
	}
}
