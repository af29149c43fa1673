package mail

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestRawProtocol(t *testing.T) {
	f := newFixture(t, fixtureOpts{appendLimit: 4000})
	ctx := context.Background()
	for i, subj := range []string{"one", "two", "three"} {
		var flags []imap.Flag
		if i > 0 {
			flags = []imap.Flag{imap.FlagSeen}
		}
		if _, err := f.b.Deliver(ctx, "alice", "INBOX", []byte(testMessage(subj, "a@example.org", "alice@example.org", "x")), flags, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	rc := f.raw()
	steps := []struct {
		name     string
		cmd      string
		status   string   // prefix of the tagged response
		untagged []string // lines that must appear (substring match)
	}{
		{"login", `LOGIN alice "` + alicePass + `"`, "OK", nil},
		{"select recent", "SELECT INBOX", "OK [READ-WRITE]", []string{"* 3 EXISTS", "* 3 RECENT", "[UNSEEN 1]"}},
		{"search recent", "SEARCH RECENT", "OK", []string{"* SEARCH 1 2 3"}},
		{"search new", "SEARCH NEW", "OK", []string{"* SEARCH 1"}},
		{"search old", "SEARCH OLD", "OK", []string{"* SEARCH"}},
		{"fetch recent flag", "FETCH 1 FLAGS", "OK", []string{`\Recent`}},
		{"searchres save", "SEARCH RETURN (SAVE) SEEN", "OK", nil},
		{"fetch $", "FETCH $ (UID)", "OK", []string{"* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)"}},
		{"search $", "UID SEARCH UID $ SUBJECT three", "OK", []string{"* SEARCH 3"}},
		{"esearch", "SEARCH RETURN (MIN MAX COUNT) ALL", "OK", []string{"MIN 1 MAX 3 COUNT 3"}},
		{"status recent", "STATUS Sent (MESSAGES RECENT UIDNEXT SIZE)", "OK", []string{"MESSAGES 0", "UIDNEXT 1", "SIZE 0"}},
		{"literal plus append", "APPEND Drafts (\\Draft) {5+}\r\nhello", "OK [APPENDUID", nil},
		{"append too big, literal plus", "APPEND INBOX {5000+}\r\n" + strings.Repeat("x", 5000), "NO [TOOBIG]", nil},
		{"still alive", "NOOP", "OK", nil},
		{"bad sequence", "FETCH 99 FLAGS", "BAD", nil},
		{"bad command", "FROB", "BAD", nil},
		{"list-extended", `LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)`, "OK", []string{`\Drafts`, `\Subscribed`}},
		{"lsub", `LSUB "" "*"`, "OK", []string{`* LSUB (`, `"/" INBOX`}},
		{"search charset", "SEARCH CHARSET UTF-8 SUBJECT two", "OK", []string{"* SEARCH 2"}},
		{"unselect", "UNSELECT", "OK", nil},
		{"examine no recent", "EXAMINE INBOX", "OK [READ-ONLY]", []string{"* 0 RECENT"}},
	}
	for _, st := range steps {
		untagged, status := rc.cmd("%s", st.cmd)
		if !strings.HasPrefix(status, st.status) {
			t.Errorf("%s: status %q, want %q (untagged %q)", st.name, status, st.status, untagged)
			continue
		}
		all := strings.Join(untagged, "\n")
		for _, want := range st.untagged {
			if !strings.Contains(all, want) {
				t.Errorf("%s: untagged %q lacks %q", st.name, untagged, want)
			}
		}
	}
	// A second session does not see the messages as recent.
	rc2 := f.raw()
	rc2.cmd(`LOGIN alice "%s"`, alicePass)
	untagged, _ := rc2.cmd("SELECT INBOX")
	if !strings.Contains(strings.Join(untagged, "\n"), "* 0 RECENT") {
		t.Errorf("second session: %q", untagged)
	}
}
