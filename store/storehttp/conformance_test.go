package storehttp

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/memstore"
	"github.com/hearth-home/hearth/store/storetest"
)

// TestConformance runs the store conformance suite against a Client speaking to a
// Handler over memstore repositories through a real HTTP server. The handler trusts the
// authors clients send, since the suite checks that commits keep theirs.
func TestConformance(t *testing.T) {
	storetest.Test(t, func(t *testing.T, rules store.MergeRules) store.Store {
		repos := memstore.NewRepos(&memstore.Options{MergeRules: rules})
		t.Cleanup(func() { repos.Close() })
		if _, err := repos.Open(context.Background(), "storetest/repo", true); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(NewHandler(repos, Options{Auth: users, TrustAuthors: true, RevertRules: storetest.RevertRules()}))
		t.Cleanup(srv.Close)
		c := NewClient(srv.URL, "storetest/repo", ClientOptions{User: "storetest", Password: "storetest-pw"})
		t.Cleanup(func() { c.Close() })
		return c
	})
}

// TestConformanceGit runs the suite through the handler over the git store (*store.Repos).
func TestConformanceGit(t *testing.T) {
	storetest.Test(t, func(t *testing.T, rules store.MergeRules) store.Store {
		repos, err := store.OpenRepos(t.TempDir(), &store.Options{MergeRules: rules})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { repos.Close() })
		if _, err := repos.Open(context.Background(), "storetest/repo", true); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(NewHandler(repos, Options{Auth: users, TrustAuthors: true, RevertRules: storetest.RevertRules()}))
		t.Cleanup(srv.Close)
		c := NewClient(srv.URL, "storetest/repo", ClientOptions{User: "storetest", Password: "storetest-pw"})
		t.Cleanup(func() { c.Close() })
		return c
	})
}
