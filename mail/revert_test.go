package mail

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/backup"
	"github.com/hearth-home/hearth/store/storehttp"
)

// TestRESTRevertKeepsUIDNext reverts alice's mail repository through the store's REST
// API (as the store appliance serves it) to a commit from before two deliveries, while
// no mail backend runs. With the store appliance's revert rules, the mailbox's UIDNEXT
// stays where it was, so the next delivery gets a UID no client has seen; without them
// (the control) the UIDs 2 and 3 would be handed out a second time.
func TestRESTRevertKeepsUIDNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rules   store.MergeRules
		wantUID imap.UID
	}{
		{"with the store appliance's rules", backup.RevertRules(), 4},
		{"without rules (control)", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			repos := gitRepos(t, t.TempDir())
			b, err := NewBackend(repos, Options{Accounts: testAccounts(t), Logger: quietLog})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Deliver(ctx, "alice", "INBOX", []byte(testMessage("one", "a@example.org", "alice@example.org", "1")), nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			st, err := repos.Open(ctx, RepoName("alice"), false)
			if err != nil {
				t.Fatal(err)
			}
			before, err := st.Resolve(ctx, store.DefaultBranch)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"two", "three"} {
				if _, err := b.Deliver(ctx, "alice", "INBOX", []byte(testMessage(s, "a@example.org", "alice@example.org", s)), nil, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			b.Close() // the mail appliance is not running during the revert

			srv := httptest.NewServer(storehttp.NewHandler(repos, storehttp.Options{Auth: testAccounts(t), Logger: quietLog, RevertRules: tc.rules}))
			defer srv.Close()
			c := storehttp.NewClient(srv.URL, RepoName("alice"), storehttp.ClientOptions{User: "alice", Password: alicePass})
			defer c.Close()
			if _, err := c.Revert(ctx, store.RevertRequest{To: before, Message: "undo two deliveries"}); err != nil {
				t.Fatal(err)
			}

			f := newFixture(t, fixtureOpts{repos: repos})
			cl := f.login("alice", alicePass, nil)
			sel, err := cl.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if sel.NumMessages != 1 {
				t.Fatalf("after the revert INBOX has %d messages, want 1", sel.NumMessages)
			}
			uid, err := f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage("four", "a@example.org", "alice@example.org", "4")), nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if uid != tc.wantUID {
				t.Fatalf("the delivery after the revert got UID %d, want %d (UIDNEXT in SELECT: %d)", uid, tc.wantUID, sel.UIDNext)
			}
		})
	}
}
