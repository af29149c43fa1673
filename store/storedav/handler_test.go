package storedav

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearth-home/hearth/signpost"
)

func TestAuthMatrix(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	e.mkcol("alice", "/alice/things/book/")
	ctx := context.Background()
	app, err := e.acct.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.acct.SetDisabled(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		user   string
		pass   string
		bearer string
		path   string
		want   int
	}{
		{"no credentials", "", "", "", "/alice/things/book/", 401},
		{"wrong password", "alice", "nope", "", "/alice/things/book/", 401},
		{"unknown user", "mallory", pw, "", "/alice/things/book/", 401},
		{"disabled user", "carol", pw, "", "/carol/things/", 401},
		{"password", "alice", pw, "", "/alice/things/book/", 207},
		{"app password as basic", "alice", app, "", "/alice/things/book/", 207},
		{"app password as bearer", "", "", app, "/alice/things/book/", 207},
		{"bad bearer", "", "", "hth_alice_xyz", "/alice/things/book/", 401},
		{"other user's collection", "bob", pw, "", "/alice/things/book/", 403},
		{"other user's home set", "bob", pw, "", "/alice/things/", 403},
		{"other user's principal", "bob", pw, "", "/alice/", 403},
		{"root", "bob", pw, "", "/", 207},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("PROPFIND", e.srv.URL+c.path, nil)
			req.Header.Set("Depth", "0")
			if c.user != "" {
				req.SetBasicAuth(c.user, c.pass)
			}
			if c.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+c.bearer)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("status %d, want %d", res.StatusCode, c.want)
			}
			if c.want == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), `Basic realm="test"`) {
				t.Fatalf("WWW-Authenticate %q", res.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestThrottled(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{FreeFailures: 2, BaseDelay: time.Hour, MaxDelay: time.Hour, LockoutAfter: 100})
	for range 3 {
		req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/alice/", nil)
		req.SetBasicAuth("alice", "wrong")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	r := e.do("alice", "PROPFIND", "/alice/", "")
	e.want(r, http.StatusTooManyRequests)
	if r.hdr.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	req, _ := http.NewRequest("GET", e.srv.URL+"/.well-known/carddav", nil)
	req.SetBasicAuth("alice", pw)
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != "/alice/" {
		t.Fatalf("well-known: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	body := `<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:current-user-principal/><c:addressbook-home-set/></d:prop></d:propfind>`
	e.want(e.do("alice", "PROPFIND", "/", body, "Depth", "0"), 207, "<d:href>/alice/</d:href>")
	e.want(e.do("alice", "PROPFIND", "/alice/", body, "Depth", "0"), 207, "<k:addressbook-home-set><d:href>/alice/things/</d:href>")
	e.want(e.do("alice", "OPTIONS", "/alice/things/", ""), 200)
}

func TestMkcolPropfindProppatch(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	ext := `<?xml version="1.0"?><d:mkcol xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:set><d:prop>
<d:resourcetype><d:collection/><c:addressbook/></d:resourcetype><d:displayname>Family &amp; friends</d:displayname>
<c:addressbook-description>People</c:addressbook-description></d:prop></d:set></d:mkcol>`
	e.want(e.do("alice", "MKCOL", "/alice/things/family/", ext), 201)
	e.want(e.do("alice", "MKCOL", "/alice/things/family/", ext), 405)
	bad := strings.Replace(ext, "<c:addressbook/>", "", 1)
	e.want(e.do("alice", "MKCOL", "/alice/things/other/", bad), 403, "valid-resourcetype")
	e.want(e.do("bob", "MKCOL", "/alice/things/x/", ""), 403)
	e.want(e.do("alice", "MKCOL", "/alice/things/", ""), 403)

	r := e.do("alice", "PROPFIND", "/alice/things/family/", "", "Depth", "0")
	e.want(r, 207, "<d:displayname>Family &amp; friends</d:displayname>", "<k:addressbook-description>People</k:addressbook-description>",
		"<k:addressbook/>", "<cs:getctag>", "<d:sync-token>http://hearth.home.arpa/sync/")

	patch := `<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:ic="http://apple.com/ns/ical/" xmlns:x="urn:x"><d:set><d:prop>
<d:displayname>Kin</d:displayname><ic:calendar-color>#ff0000</ic:calendar-color><x:order>3</x:order></d:prop></d:set>
<d:remove><d:prop><c:addressbook-description xmlns:c="urn:ietf:params:xml:ns:carddav"/></d:prop></d:remove></d:propertyupdate>`
	e.want(e.do("alice", "PROPPATCH", "/alice/things/family/", patch), 207, "HTTP/1.1 200 OK")
	r = e.do("alice", "PROPFIND", "/alice/things/family/", "", "Depth", "0")
	e.want(r, 207, "<d:displayname>Kin</d:displayname>", "<ic:calendar-color>#ff0000</ic:calendar-color>", `<x:order xmlns:x="urn:x">3</x:order>`)
	if strings.Contains(r.body, "People") {
		t.Fatal("description not removed")
	}
	protected := `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>No</d:displayname><d:getetag>x</d:getetag></d:prop></d:set></d:propertyupdate>`
	e.want(e.do("alice", "PROPPATCH", "/alice/things/family/", protected), 207, "403 Forbidden", "424 Failed Dependency")
	e.want(e.do("alice", "PROPFIND", "/alice/things/family/", "", "Depth", "0"), 207, "<d:displayname>Kin</d:displayname>")
	e.want(e.do("alice", "PROPPATCH", "/alice/things/family/", "<nope"), 400)

	// The home set lists it; Depth 1 on the collection lists objects.
	e.want(e.do("alice", "PUT", "/alice/things/family/a.t", thing("a", "")), 201)
	e.want(e.do("alice", "PROPFIND", "/alice/things/", "", "Depth", "1"), 207, "<d:href>/alice/things/family/</d:href>")
	e.want(e.do("alice", "PROPFIND", "/alice/things/family/", "", "Depth", "1"), 207, "<d:href>/alice/things/family/a.t</d:href>", `<d:getetag>"`)

	// DELETE of the collection.
	e.want(e.do("alice", "DELETE", "/alice/things/family/", ""), 204)
	e.want(e.do("alice", "PROPFIND", "/alice/things/family/", "", "Depth", "0"), 404)
	e.want(e.do("alice", "GET", "/alice/things/family/a.t", ""), 404)
}

func TestObjects(t *testing.T) {
	e := newEnv(t, Limits{MaxResourceSize: 1000}, signpost.LimitOptions{})
	e.mkcol("alice", "/alice/things/b/")
	const p = "/alice/things/b/x.t"
	body := thing("x", "exact  bytes\r\n kept")
	r := e.do("alice", "PUT", p, body)
	e.want(r, 201)
	tag := r.hdr.Get("ETag")
	if !strings.HasPrefix(tag, `"`) {
		t.Fatalf("ETag %q", tag)
	}
	g := e.do("alice", "GET", p, "")
	e.want(g, 200)
	if g.body != body || g.hdr.Get("ETag") != tag {
		t.Fatalf("GET %q %q", g.body, g.hdr.Get("ETag"))
	}
	e.want(e.do("alice", "GET", p, "", "If-None-Match", tag), 304)

	cases := []struct {
		name string
		path string
		body string
		hdr  []string
		want int
		has  string
	}{
		{"create only, exists", p, thing("x", "1"), []string{"If-None-Match", "*"}, 412, ""},
		{"if-match wrong", p, thing("x", "2"), []string{"If-Match", `"0000000000000000000000000000000000000001"`}, 412, ""},
		{"if-match weak", p, thing("x", "2"), []string{"If-Match", `W/` + tag}, 412, ""},
		{"if-match on missing", "/alice/things/b/none.t", thing("n", ""), []string{"If-Match", tag}, 412, ""},
		{"malformed", "/alice/things/b/bad.t", "garbage", nil, 403, "<k:valid-address-data>"},
		{"uid conflict", "/alice/things/b/y.t", thing("x", "dup"), nil, 409, "<k:no-uid-conflict><d:href>/alice/things/b/x.t</d:href>"},
		{"too large", "/alice/things/b/big.t", thing("big", strings.Repeat("z", 2000)), nil, 413, "max-resource-size"},
		{"no collection", "/alice/things/nobook/a.t", thing("q", ""), nil, 404, ""},
		{"bad name", "/alice/things/b/.hidden", thing("h", ""), nil, 400, ""},
		{"put on collection", "/alice/things/b/", thing("h", ""), nil, 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.want(e.do("alice", "PUT", c.path, c.body, c.hdr...), c.want, c.has)
		})
	}
	e.t = t
	e.want(e.do("alice", "GET", "/alice/things/b/bad.t", ""), 404)
	e.want(e.do("alice", "GET", "/alice/things/b/y.t", ""), 404)

	r = e.do("alice", "PUT", p, thing("x", "v2"), "If-Match", tag)
	e.want(r, 204)
	tag2 := r.hdr.Get("ETag")
	if tag2 == tag || tag2 == "" {
		t.Fatalf("ETag after overwrite %q", tag2)
	}
	e.want(e.do("alice", "DELETE", p, "", "If-Match", tag), 412)
	// Changing the UID of x frees "x" for another resource.
	e.want(e.do("alice", "PUT", p, thing("x2", "")), 204)
	e.want(e.do("alice", "PUT", "/alice/things/b/y.t", thing("x", "")), 201)
	e.want(e.do("alice", "DELETE", p, "", "If-Match", e.do("alice", "GET", p, "").hdr.Get("ETag")), 204)
	e.want(e.do("alice", "DELETE", p, ""), 404)
	// The UID of a deleted object may be used again.
	e.want(e.do("alice", "PUT", "/alice/things/b/z.t", thing("x2", "")), 201)
}

func TestPathValidation(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	e.mkcol("alice", "/alice/things/b/")
	for _, p := range []string{
		"/alice/things/b/../../bob/things/b/x.t",
		"/alice/things/b/%2e%2e/x.t",
		"/alice/things/b%2Fx.t",
		"/alice/things/b/a%2fb.t",
		"/alice/things/b/a%5cb.t",
		"/alice/things/b/a%00b",
		"/alice/things//x.t",
		"/alice/things/b/x.t/",
		"/alice/things/b/c/d",
		"/Alice/things/b/x.t",
		"/alice/other/b/x.t",
		"/alice/things/b/" + strings.Repeat("a", 300),
	} {
		t.Run(p, func(t *testing.T) {
			e.t = t
			r := e.do("alice", "PUT", p, thing("p", ""))
			if r.code != 400 {
				t.Fatalf("status %d for %s: %s", r.code, p, r.body)
			}
		})
	}
}

func TestSyncCollection(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	e.mkcol("alice", "/alice/things/b/")
	e.mkcol("alice", "/alice/things/other/")
	for _, n := range []string{"1", "2", "3"} {
		e.want(e.do("alice", "PUT", "/alice/things/b/"+n+".t", thing(n, "")), 201)
	}
	ctag := func() string {
		r := e.do("alice", "PROPFIND", "/alice/things/b/", `<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/></d:prop></d:propfind>`, "Depth", "0")
		e.want(r, 207)
		return r.body
	}
	c0 := ctag()
	r := e.do("alice", "REPORT", "/alice/things/b/", syncBody(""))
	e.want(r, 207, "/alice/things/b/1.t", "/alice/things/b/2.t", "/alice/things/b/3.t")
	tok := tokenRE.FindStringSubmatch(r.body)[1]

	// No change: nothing comes back.
	r = e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok))
	e.want(r, 207)
	if strings.Contains(r.body, "<d:response>") || tokenRE.FindStringSubmatch(r.body)[1] != tok {
		t.Fatalf("no-op sync: %s", r.body)
	}
	e.want(e.do("alice", "PUT", "/alice/things/b/2.t", thing("2", "changed")), 204)
	e.want(e.do("alice", "DELETE", "/alice/things/b/3.t", ""), 204)
	e.want(e.do("alice", "PUT", "/alice/things/other/9.t", thing("9", "")), 201)
	if ctag() == c0 {
		t.Fatal("getctag did not change on write")
	}
	r = e.do("alice", "REPORT", "/alice/things/b/", syncBody(tok))
	e.want(r, 207, "<d:href>/alice/things/b/2.t</d:href><d:propstat>", "<d:href>/alice/things/b/3.t</d:href><d:status>HTTP/1.1 404 Not Found</d:status>")
	if strings.Contains(r.body, "1.t") || strings.Contains(r.body, "9.t") || strings.Count(r.body, "<d:response>") != 2 {
		t.Fatalf("diff has too much: %s", r.body)
	}
	for _, bad := range []string{"http://hearth.home.arpa/sync/0123456789012345678901234567890123456789", "nonsense", "http://hearth.home.arpa/sync/../"} {
		e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(bad)), 403, "<d:valid-sync-token>")
	}
	// A token from another user's repository is unknown here.
	e.mkcol("bob", "/bob/things/c/")
	e.want(e.do("bob", "PUT", "/bob/things/c/1.t", thing("1", "")), 201)
	rb := e.do("bob", "REPORT", "/bob/things/c/", syncBody(""))
	e.want(e.do("alice", "REPORT", "/alice/things/b/", syncBody(tokenRE.FindStringSubmatch(rb.body)[1])), 403, "valid-sync-token")
	// Other REPORTs without a Next handler.
	e.want(e.do("alice", "REPORT", "/alice/things/b/", `<c:addressbook-multiget xmlns:c="urn:ietf:params:xml:ns:carddav"/>`), 403, "supported-report")
}

func TestSharing(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	ctx := context.Background()
	e.mkcol("alice", "/alice/things/family/")
	e.mkcol("alice", "/alice/things/work/")
	e.want(e.do("alice", "PUT", "/alice/things/family/a.t", thing("a", "")), 201)
	fam := signpost.Collection{Owner: "alice", Repo: "things", Path: "family"}
	if err := e.acct.Grant(ctx, fam, "bob", signpost.ReadOnly); err != nil {
		t.Fatal(err)
	}
	e.mkcol("bob", "/bob/things/mine/")
	r := e.do("bob", "PROPFIND", "/bob/things/", "", "Depth", "1")
	e.want(r, 207, "<d:href>/bob/things/mine/</d:href>", "<d:href>/alice/things/family/</d:href>")
	if strings.Contains(r.body, "/alice/things/work/") {
		t.Fatal("unshared collection listed")
	}
	e.want(e.do("bob", "GET", "/alice/things/family/a.t", ""), 200)
	e.want(e.do("bob", "PROPFIND", "/alice/things/family/", "", "Depth", "1"), 207, "/alice/things/family/a.t", "<d:privilege><d:read/></d:privilege></d:current-user-privilege-set>")
	e.want(e.do("bob", "REPORT", "/alice/things/family/", syncBody("")), 207, "a.t")
	e.want(e.do("bob", "PUT", "/alice/things/family/b.t", thing("b", "")), 403, "need-privileges")
	e.want(e.do("bob", "DELETE", "/alice/things/family/a.t", ""), 403)
	e.want(e.do("bob", "PROPPATCH", "/alice/things/family/", `<d:propertyupdate xmlns:d="DAV:"/>`), 403)
	e.want(e.do("bob", "GET", "/alice/things/work/x.t", ""), 403)

	if err := e.acct.Grant(ctx, fam, "bob", signpost.ReadWrite); err != nil {
		t.Fatal(err)
	}
	e.want(e.do("bob", "PUT", "/alice/things/family/b.t", thing("b", "")), 201)
	e.want(e.do("bob", "DELETE", "/alice/things/family/", ""), 403) // only the owner
	e.want(e.do("bob", "MKCOL", "/alice/things/new/", ""), 403)

	if err := e.acct.Revoke(ctx, fam, "bob"); err != nil {
		t.Fatal(err)
	}
	r = e.do("bob", "PROPFIND", "/bob/things/", "", "Depth", "1")
	if strings.Contains(r.body, "/alice/") {
		t.Fatalf("revoked share still listed: %s", r.body)
	}
	e.want(e.do("bob", "GET", "/alice/things/family/a.t", ""), 403)
}

func TestRestore(t *testing.T) {
	e := newEnv(t, Limits{}, signpost.LimitOptions{})
	ctx := context.Background()
	c := e.h.Collections()
	if err := c.Create(ctx, "alice", "b", Meta{DisplayName: "B"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1", "2"} {
		if _, err := c.Put(ctx, "alice", "b", n+".t", []byte(thing(n, "")), Conditions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.advance(time.Minute)
	since := e.clock.now()
	e.clock.advance(time.Minute)
	if err := c.DeleteObject(ctx, "alice", "b", "1.t", ""); err != nil {
		t.Fatal(err)
	}
	got, err := c.Restore(ctx, "alice", "b", since)
	if err != nil || len(got) != 1 || got[0] != "b/1.t" {
		t.Fatalf("restore: %v %v", got, err)
	}
	if _, _, err := c.Object(ctx, "alice", "b", "1.t"); err != nil {
		t.Fatal(err)
	}
	// The UID index came back too: the UID is taken again.
	if _, err := c.Put(ctx, "alice", "b", "other.t", []byte(thing("1", "")), Conditions{}); StatusOf(err) != 409 {
		t.Fatalf("UID after restore: %v", err)
	}
	if err := c.Delete(ctx, "alice", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "alice", "b"); StatusOf(err) != 404 {
		t.Fatal(err)
	}
	got, err = c.Restore(ctx, "alice", "", since)
	if err != nil || len(got) != 3 {
		t.Fatalf("restore collection: %v %v", got, err)
	}
	objs, _, err := c.Objects(ctx, "alice", "b")
	if err != nil || len(objs) != 2 {
		t.Fatalf("objects after restore: %v %v", objs, err)
	}
}

func TestPutMany(t *testing.T) {
	e := newEnv(t, Limits{MaxResources: 4}, signpost.LimitOptions{})
	ctx := context.Background()
	c := e.h.Collections()
	if err := c.Create(ctx, "alice", "b", Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "alice", "b", "old-name.t", []byte(thing("a", "v1")), Conditions{}); err != nil {
		t.Fatal(err)
	}
	res, err := c.PutMany(ctx, "alice", "b", []Item{
		{"a.t", []byte(thing("a", "v2"))}, // UID a lives in old-name.t: replaces it
		{"b.t", []byte(thing("b", "v1"))},
		{"bad.t", []byte("garbage")},
		{"c.t", []byte(thing("c", "first"))},
		{"c2.t", []byte(thing("c", "second"))}, // same UID again: the last wins
		{"d.t", []byte(thing("d", ""))},
		{"e.t", []byte(thing("e", ""))}, // over MaxResources (4: old-name, b, c, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Name != "old-name.t" || res[0].Created || res[0].Err != nil {
		t.Fatalf("replace by UID: %+v", res[0])
	}
	if !res[1].Created || StatusOf(res[2].Err) != 403 || res[3].Err == nil || res[4].Name != "c.t" {
		t.Fatalf("results %+v", res)
	}
	if StatusOf(res[6].Err) != 507 {
		t.Fatalf("limit: %+v", res[6])
	}
	b, _, err := c.Object(ctx, "alice", "b", "c.t")
	if err != nil || !strings.Contains(string(b), "second") {
		t.Fatalf("c.t = %q %v", b, err)
	}
	objs, _, _ := c.Objects(ctx, "alice", "b")
	if len(objs) != 4 {
		t.Fatalf("%d objects: %+v", len(objs), objs)
	}
	// Again: nothing changes.
	again, err := c.PutMany(ctx, "alice", "b", []Item{{"a.t", []byte(thing("a", "v2"))}, {"b.t", []byte(thing("b", "v1"))}})
	if err != nil || !again[0].Unchanged || !again[1].Unchanged {
		t.Fatalf("again: %+v %v", again, err)
	}
	// The UID index holds: a Put of UID b elsewhere conflicts.
	if _, err := c.Put(ctx, "alice", "b", "d.t", []byte(thing("b", "")), Conditions{}); StatusOf(err) != 409 {
		t.Fatalf("UID index after PutMany: %v", err)
	}
	// And the single-object limit through HTTP.
	e.want(e.do("alice", "PUT", "/alice/things/b/f.t", thing("f", "")), 507)
}
