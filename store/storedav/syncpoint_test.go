package storedav

import (
	"context"
	"encoding/xml"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

type msResponse struct {
	Href   string `xml:"href"`
	Status string `xml:"status"`
	ETag   string `xml:"propstat>prop>getetag"`
	Error  *struct {
		Limit *struct{} `xml:"number-of-matches-within-limits"`
	} `xml:"error"`
}

type multistatus struct {
	Responses []msResponse `xml:"response"`
	Token     string       `xml:"sync-token"`
}

func parseMS(t *testing.T, body string) multistatus {
	t.Helper()
	var ms multistatus
	if err := xml.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatalf("multistatus: %v\n%s", err, body)
	}
	return ms
}

func syncLimitBody(token string, limit int) string {
	return `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token +
		`</d:sync-token><d:sync-level>1</d:sync-level><d:limit><d:nresults>` + fmt.Sprint(limit) +
		`</d:nresults></d:limit><d:prop><d:getetag/></d:prop></d:sync-collection>`
}

// syncClient mirrors a collection the way a DAV client does, from sync-collection answers.
type syncClient struct {
	e     *env
	path  string
	token string
	state map[string]string // href → etag
}

// round runs one sync-collection request and applies it; it reports whether the
// server said there was more (a 507 on the request URI).
func (c *syncClient) round(limit int) bool {
	c.e.t.Helper()
	body := syncBody(c.token)
	if limit >= 0 {
		body = syncLimitBody(c.token, limit)
	}
	r := c.e.do("alice", "REPORT", c.path, body)
	c.e.want(r, 207)
	ms := parseMS(c.e.t, r.body)
	more, n := false, 0
	for _, resp := range ms.Responses {
		switch {
		case resp.Href == c.path:
			if !strings.Contains(resp.Status, " 507 ") || resp.Error == nil || resp.Error.Limit == nil {
				c.e.t.Fatalf("request-URI response %+v", resp)
			}
			more = true
		case strings.Contains(resp.Status, " 404 "):
			delete(c.state, resp.Href)
			n++
		default:
			c.state[resp.Href] = resp.ETag
			n++
		}
	}
	if limit >= 0 && n > limit {
		c.e.t.Fatalf("%d changes with limit %d", n, limit)
	}
	if ms.Token == "" {
		c.e.t.Fatalf("no sync token: %s", r.body)
	}
	c.token = ms.Token
	return more
}

// serverState is the collection as a full PROPFIND Depth 1 shows it.
func (e *env) serverState(path string) map[string]string {
	e.t.Helper()
	r := e.do("alice", "PROPFIND", path, `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`, "Depth", "1")
	e.want(r, 207)
	out := map[string]string{}
	for _, resp := range parseMS(e.t, r.body).Responses {
		if resp.Href != path {
			out[resp.Href] = resp.ETag
		}
	}
	return out
}

func TestSyncCollectionLimit(t *testing.T) {
	cases := []struct {
		name  string
		limit int
	}{
		{"one at a time", 1},
		{"two", 2},
		{"three", 3},
		{"more than all", 100},
		{"no limit", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Limits{}, signpost.LimitOptions{})
			const path = "/alice/things/b/"
			e.mkcol("alice", path)
			for i := range 7 {
				e.want(e.do("alice", "PUT", fmt.Sprintf("%s%d.t", path, i), thing(fmt.Sprint(i), "")), 201)
			}
			c := &syncClient{e: e, path: path, state: map[string]string{}}
			// Sync, changing the collection between rounds; the mirror must end equal.
			rounds, mutation := 0, 0
			for {
				more := c.round(tc.limit)
				rounds++
				if rounds > 50 {
					t.Fatal("sync does not end")
				}
				switch mutation {
				case 0: // change one already sent, one not yet sent, delete one, add one
					e.want(e.do("alice", "PUT", path+"0.t", thing("0", "edited")), 204)
					e.want(e.do("alice", "PUT", path+"6.t", thing("6", "edited")), 204)
					e.want(e.do("alice", "DELETE", path+"3.t", ""), 204)
					e.want(e.do("alice", "PUT", path+"9.t", thing("9", "")), 201)
				case 1:
					e.want(e.do("alice", "PUT", path+"8.t", thing("8", "")), 201)
				}
				mutation++
				if !more && mutation > 2 {
					break
				}
			}
			if tc.limit == 1 && rounds < 8 {
				t.Errorf("only %d rounds with limit 1", rounds)
			}
			want := e.serverState(path)
			if !maps.Equal(c.state, want) {
				t.Errorf("mirror %v\nserver %v", c.state, want)
			}
			// Synced: the next round is empty.
			before := maps.Clone(c.state)
			if c.round(tc.limit) || !maps.Equal(before, c.state) {
				t.Error("sync after the end changed something")
			}
		})
	}
}

func TestSyncLimitBad(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	e.mkcol("alice", "/alice/things/b/")
	for _, body := range []string{syncLimitBody("", 0), syncLimitBody("", -1),
		`<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:limit><d:nresults>x</d:nresults></d:limit></d:sync-collection>`,
		`<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:limit/></d:sync-collection>`} {
		e.want(e.do("alice", "REPORT", "/alice/things/b/", body), 400)
	}
}

func TestSyncLimitedTokenParsing(t *testing.T) {
	h := store.Hash(strings.Repeat("ab", 20))
	g := store.Hash(strings.Repeat("cd", 20))
	good := []SyncPoint{{Since: h}, {Target: h, After: "x.ics"}, {Since: h, Target: g, After: "a b é.vcf"}}
	for _, p := range good {
		got, err := ParseSyncPoint(FormatSyncPoint(p))
		if err != nil || got != p {
			t.Errorf("round trip %+v: %+v, %v", p, got, err)
		}
	}
	for _, bad := range []string{"", "x", string(h) + "/", "-/" + string(h), "-/" + string(h) + "/", "-/" + string(h) + "/!!", string(h) + "/zz/YQ", "-/" + string(h) + "/Lg"} {
		if _, err := ParseSyncPoint(bad); err == nil {
			t.Errorf("ParseSyncPoint(%q) succeeded", bad)
		}
	}
}

func FuzzParseSyncPoint(f *testing.F) {
	f.Add(strings.Repeat("ab", 20))
	f.Add("-/" + strings.Repeat("ab", 20) + "/eC5pY3M")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSyncPoint(s)
		if err != nil {
			return
		}
		q, err := ParseSyncPoint(FormatSyncPoint(p))
		if err != nil || q != p {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", s, p, q, err)
		}
	})
}

func TestSyncTokenTooOld(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T, lim Limits) (*env, string) {
		e := newEnv(t, lim, signpost.LimitOptions{})
		e.h.coll.now = e.clock.now
		e.mkcol("alice", "/alice/things/b/")
		e.want(e.do("alice", "PUT", "/alice/things/b/1.t", thing("1", "")), 201)
		r := e.do("alice", "REPORT", "/alice/things/b/", syncBody(""))
		e.want(r, 207)
		return e, tokenRE.FindStringSubmatch(r.body)[1]
	}
	t.Run("not in the history any more", func(t *testing.T) {
		e, tok := setup(t, Limits{})
		s, err := e.repos.Open(ctx, "alice/things", false)
		if err != nil {
			t.Fatal(err)
		}
		head := store.Hash(strings.TrimPrefix(tok, DefaultSyncTokenBase))
		if _, err := s.CreateBranch(ctx, "side", string(head)); err != nil {
			t.Fatal(err)
		}
		side, err := s.Commit(ctx, store.Change{Branch: "side", Message: "elsewhere",
			Ops: []store.Op{{Key: "objects/b/2.t", Value: []byte(thing("2", ""))}}})
		if err != nil {
			t.Fatal(err)
		}
		// A token for a commit that exists but is not in main's history.
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(DefaultSyncTokenBase+string(side.ID))), 403, "<d:valid-sync-token>")
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(DefaultSyncTokenBase+"-/"+string(side.ID)+"/MS50")), 403, "<d:valid-sync-token>")
		// The token on main still works.
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok)), 207)
	})
	t.Run("too many commits back", func(t *testing.T) {
		e, tok := setup(t, Limits{MaxSyncTokenCommits: 3})
		for i := range 3 {
			e.want(e.do("alice", "PUT", "/alice/things/b/x.t", thing("x", fmt.Sprint(i))), map[bool]int{true: 201, false: 204}[i == 0])
		}
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok)), 207, "x.t")
		e.want(e.do("alice", "PUT", "/alice/things/b/x.t", thing("x", "again")), 204)
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok)), 403, "<d:valid-sync-token>")
	})
	t.Run("too old", func(t *testing.T) {
		e, tok := setup(t, Limits{MaxSyncTokenAge: 24 * time.Hour})
		e.clock.advance(23 * time.Hour)
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok)), 207)
		e.clock.advance(2 * time.Hour)
		// Still current while nothing changed.
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok)), 207)
		e.want(e.do("alice", "PUT", "/alice/things/b/2.t", thing("2", "")), 201)
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok)), 403, "<d:valid-sync-token>")
	})
}
