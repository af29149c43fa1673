package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
)

func cmdBenchDAV(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "bench dav", "[-duration D] [-peers DIR] [-n ITEMS] [-bin DIR]")
	o := davBenchOptions{Conns: 10, Vdirsyncer: true}
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each request type is measured on each server")
	fs.StringVar(&o.PeersDir, "peers", "/work/shared/peers", "directory with run-peer (Radicale, Xandikos); empty: Hearth only")
	fs.IntVar(&o.N, "n", 500, "contacts and events to load")
	fs.StringVar(&o.BinDir, "bin", "", "directory with the contacts and calendar appliances (default: go build them)")
	fs.BoolVar(&o.Vdirsyncer, "vdirsyncer", true, "time a vdirsyncer upload of the items to each server")
	fs.IntVar(&o.SyncItems, "sync-items", 10_000, "events in the calendar where Hearth's sync-collection after one change is timed (0: skip)")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	if o.Duration <= 0 || o.N < 1 || o.N > 100_000 || o.SyncItems < 0 || o.SyncItems > 100_000 {
		fmt.Fprintln(s.err, "hearth bench dav: -duration must be positive, -n between 1 and 100000 and -sync-items at most 100000")
		return 2
	}
	if err := benchDAV(ctx, s.out, o); err != nil {
		fmt.Fprintln(s.err, "hearth bench dav:", err)
		return 1
	}
	return 0
}

// davBenchOptions says what "bench dav" measures.
type davBenchOptions struct {
	Duration   time.Duration
	Conns      int
	N          int
	PeersDir   string // "" : Hearth only
	BinDir     string // "" : build the appliances
	Vdirsyncer bool
	SyncItems  int // events for the incremental sync-collection timing (0: none)
}

// davServer is one server under test: where its address book and calendar are.
type davServer struct {
	name       string
	base       string // http://127.0.0.1:PORT
	user, pass string // "" : no authentication
	contacts   string // collection paths
	calendar   string
	mkcol      bool   // collections must be made first
	pids       []int  // processes to measure (Hearth) and stop
	stop       func() // stops it
}

func (d *davServer) auth() string {
	if d.user == "" {
		return ""
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(d.user+":"+d.pass))
}

// davRequest is one request type of the benchmark.
type davRequest struct {
	name, method, depth string
	contacts            bool // to the address book (else the calendar)
	body                string
}

// The request types measured, with the bodies of the wrk scripts in the peers directory.
var davRequests = []davRequest{
	{"PROPFIND Depth 0 of a collection", "PROPFIND", "0", false,
		`<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:resourcetype/><cs:getctag/><d:sync-token/><d:displayname/></d:prop></d:propfind>`},
	{"PROPFIND Depth 1 getetag, all items", "PROPFIND", "1", false,
		`<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:getetag/></d:prop></d:propfind>`},
	{"calendar-query, one week", "REPORT", "1", false,
		`<?xml version="1.0" encoding="utf-8"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
 <d:prop><d:getetag/><c:calendar-data/></d:prop>
 <c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">
  <c:time-range start="20250301T000000Z" end="20250308T000000Z"/>
 </c:comp-filter></c:comp-filter></c:filter>
</c:calendar-query>`},
	{"sync-collection, empty token", "REPORT", "0", false,
		`<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`},
	{"addressbook-query text-match", "REPORT", "1", true,
		`<?xml version="1.0" encoding="utf-8"?>
<card:addressbook-query xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
 <d:prop><d:getetag/><card:address-data/></d:prop>
 <card:filter><card:prop-filter name="FN"><card:text-match collation="i;unicode-casemap" match-type="contains">Ann</card:text-match></card:prop-filter></card:filter>
</card:addressbook-query>`},
}

// davResult is what one server did.
type davResult struct {
	rates  []float64 // per request type; -1: failed
	errs   []string
	upload map[string]time.Duration // "contacts", "events"
	rss    map[string]int64         // appliance → idle RSS in KiB
	sync1  time.Duration            // median sync-collection after one change (Hearth)
	rssBig map[string]int64         // idle RSS after the sync-items calendar was filled
	notes  []string                 // how a measurement differed
	note   string
}

// benchDAV runs the benchmark and prints the table.
func benchDAV(ctx context.Context, out io.Writer, o davBenchOptions) error {
	tmp, err := os.MkdirTemp("", "hearth-bench-dav-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	items := filepath.Join(tmp, "items")
	if err := genDAVItems(items, o.N); err != nil {
		return err
	}
	bin := o.BinDir
	if bin == "" {
		bin = filepath.Join(tmp, "bin")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", modulePath+"/appliances/contacts", modulePath+"/appliances/calendar")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build the appliances (run in Hearth's source, or pass -bin): %v\n%s", err, b)
		}
	}
	servers := []string{"Hearth"}
	if o.PeersDir != "" {
		servers = append(servers, "Xandikos", "Radicale")
	}
	results := map[string]*davResult{}
	for _, name := range servers {
		r := &davResult{upload: map[string]time.Duration{}, rss: map[string]int64{}}
		results[name] = r
		var srv *davServer
		switch name {
		case "Hearth":
			srv, err = startHearthDAV(ctx, filepath.Join(tmp, "hearth"), bin)
		default:
			srv, err = startPeerDAV(ctx, o.PeersDir, strings.ToLower(name), filepath.Join(tmp, strings.ToLower(name)))
		}
		if err != nil {
			r.note = err.Error()
			continue
		}
		err = benchOne(ctx, srv, r, o, items, filepath.Join(tmp, "vds-"+strings.ToLower(name)))
		if name == "Hearth" {
			idleRSS(srv, r.rss)
			if err == nil && o.SyncItems > 0 {
				r.sync1, err = syncAfterOneChange(srv, o.SyncItems)
				r.rssBig = map[string]int64{}
				idleRSS(srv, r.rssBig)
			}
		}
		srv.stop()
		if err != nil {
			r.note = err.Error()
		}
	}
	printDAV(out, o, servers, results)
	return nil
}

// benchOne loads the items into one server, then measures it.
func benchOne(ctx context.Context, srv *davServer, r *davResult, o davBenchOptions, items, vds string) error {
	if srv.mkcol {
		if err := davMkcol(srv); err != nil {
			return err
		}
	}
	if o.Vdirsyncer {
		if _, err := exec.LookPath("vdirsyncer"); err != nil {
			return errors.New("vdirsyncer is not installed (apt-get install vdirsyncer), or pass -vdirsyncer=false")
		}
		for _, pair := range []string{"contacts", "calendar"} {
			d, err := vdirsyncerUpload(ctx, srv, items, vds, pair)
			if err != nil {
				return err
			}
			r.upload[pair] = d
		}
	} else if err := davPutAll(srv, items); err != nil {
		return err
	}
	for _, q := range davRequests {
		var note string
		rate, err := davLoad(ctx, srv, q, o.Conns, o.Duration, &note)
		if err != nil {
			rate = -1
			r.errs = append(r.errs, q.name+": "+err.Error())
		}
		if note != "" {
			r.notes = append(r.notes, note)
		}
		r.rates = append(r.rates, rate)
	}
	return nil
}

// genDAVItems writes n vCards and n events like gen_dav.py: one a file, vdir layout,
// events every 7 hours from 2025-01-01 08:00Z.
func genDAVItems(dir string, n int) error {
	first := []string{"Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana"}
	last := []string{"Smith", "Jones", "Müller", "Ng", "Olsen"}
	for _, sub := range []string{"contacts", "calendar"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	start := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		f, l := first[i*7%len(first)], last[i*3%len(last)]
		uid := fmt.Sprintf("c%08d-4b1e-4c2a-9d7e-%012d", i, i)
		vcf := strings.Join([]string{"BEGIN:VCARD", "VERSION:3.0", "UID:" + uid, fmt.Sprintf("FN:%s %s %d", f, l, i),
			fmt.Sprintf("N:%s;%s;;;", l, f), fmt.Sprintf("EMAIL;TYPE=INTERNET:%s.%d@example.org", strings.ToLower(f), i),
			fmt.Sprintf("TEL;TYPE=CELL:+1555%07d", i), fmt.Sprintf("NOTE:generated contact %d", i), "END:VCARD", ""}, "\r\n")
		if err := os.WriteFile(filepath.Join(dir, "contacts", uid+".vcf"), []byte(vcf), 0o600); err != nil {
			return err
		}
		s := start.Add(time.Duration(7*i) * time.Hour)
		e := s.Add(time.Duration(30+15*(i%4)) * time.Minute)
		euid := fmt.Sprintf("e%08d-4b1e-4c2a-9d7e-%012d", i, i)
		ics := strings.Join([]string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//hearth//bench//EN", "BEGIN:VEVENT",
			"UID:" + euid, "DTSTAMP:20250101T000000Z", "DTSTART:" + s.Format("20060102T150405Z"), "DTEND:" + e.Format("20060102T150405Z"),
			fmt.Sprintf("SUMMARY:Generated event %d", i), fmt.Sprintf("LOCATION:Room %d", i%10), "END:VEVENT", "END:VCALENDAR", ""}, "\r\n")
		if err := os.WriteFile(filepath.Join(dir, "calendar", euid+".ics"), []byte(ics), 0o600); err != nil {
			return err
		}
	}
	return nil
}

const davBenchUser, davBenchPass = "bench", "bench-password"

// startHearthDAV starts the contacts and calendar appliances on a fresh data directory
// with user bench, each on a plain HTTP loopback socket handed over as jitsu does.
func startHearthDAV(ctx context.Context, data, bin string) (*davServer, error) {
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), nil)
	if err != nil {
		return nil, err
	}
	a, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		err = a.Add(ctx, davBenchUser, davBenchPass)
	}
	if cerr := repos.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	srv := &davServer{name: "Hearth", user: davBenchUser, pass: davBenchPass, mkcol: true}
	var stops []func()
	srv.stop = func() {
		for _, f := range stops {
			f()
		}
	}
	for _, app := range []string{"contacts", "calendar"} {
		addr, pid, stop, err := startAppliance(ctx, filepath.Join(bin, app), data)
		if err != nil {
			srv.stop()
			return nil, fmt.Errorf("start %s: %w", app, err)
		}
		stops = append(stops, stop)
		srv.pids = append(srv.pids, pid)
		if app == "contacts" {
			srv.contacts = "http://" + addr + "/" + davBenchUser + "/contacts/bench/"
		} else {
			srv.calendar = "http://" + addr + "/" + davBenchUser + "/calendar/bench/"
		}
	}
	return srv, nil
}

// startAppliance runs an appliance binary with a loopback socket named "http" as fd 3
// and waits for it to log that it listens.
func startAppliance(ctx context.Context, bin, data string) (addr string, pid int, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return "", 0, nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, "-data", data)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTEN_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=http")
	cmd.ExtraFiles = []*os.File{f}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), " listening") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	select {
	case ok := <-ready:
		if !ok {
			stop()
			return "", 0, nil, errors.New("exited at start")
		}
	case <-time.After(30 * time.Second):
		stop()
		return "", 0, nil, errors.New("did not start in 30 s")
	case <-ctx.Done():
		stop()
		return "", 0, nil, ctx.Err()
	}
	return ln.Addr().String(), cmd.Process.Pid, stop, nil
}

// startPeerDAV starts Radicale or Xandikos with run-peer.
func startPeerDAV(ctx context.Context, peers, name, dir string) (*davServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	out, err := exec.CommandContext(ctx, filepath.Join(peers, "run-peer"), name, dir, strconv.Itoa(port)).Output()
	if err != nil {
		return nil, fmt.Errorf("run-peer %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return nil, fmt.Errorf("run-peer %s printed %q", name, out)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv := &davServer{name: name, base: base, stop: func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Signal(os.Interrupt)
			time.Sleep(300 * time.Millisecond)
			p.Kill()
		}
	}}
	switch name {
	case "xandikos":
		srv.contacts, srv.calendar = base+"/user/contacts/addressbook/", base+"/user/calendars/calendar/"
	default:
		srv.user, srv.pass, srv.mkcol = "test", "test", true
		srv.contacts, srv.calendar = base+"/test/contacts/", base+"/test/calendar/"
	}
	// wait until it answers
	for i := 0; ; i++ {
		req, _ := http.NewRequest("PROPFIND", srv.calendar[:strings.Index(srv.calendar[8:], "/")+9], nil)
		if a := srv.auth(); a != "" {
			req.Header.Set("Authorization", a)
		}
		req.Header.Set("Depth", "0")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 150 {
			srv.stop()
			return nil, fmt.Errorf("%s did not answer: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return srv, nil
}

// davMkcol makes the address book and the calendar.
func davMkcol(srv *davServer) error {
	mkcol := `<?xml version="1.0" encoding="utf-8"?><d:mkcol xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav"><d:set><d:prop><d:resourcetype><d:collection/><card:addressbook/></d:resourcetype><d:displayname>bench</d:displayname></d:prop></d:set></d:mkcol>`
	mkcal := `<?xml version="1.0" encoding="utf-8"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>bench</d:displayname></d:prop></d:set></c:mkcalendar>`
	for _, m := range []struct{ method, url, body string }{{"MKCOL", srv.contacts, mkcol}, {"MKCALENDAR", srv.calendar, mkcal}} {
		code, body, err := davDo(srv, m.method, m.url, "", m.body)
		if err != nil {
			return err
		}
		if code != http.StatusCreated {
			return fmt.Errorf("%s %s: %d %s", m.method, m.url, code, body)
		}
	}
	return nil
}

func davDo(srv *davServer, method, url, depth, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if a := srv.auth(); a != "" {
		req.Header.Set("Authorization", a)
	}
	if depth != "" {
		req.Header.Set("Depth", depth)
	}
	switch {
	case strings.HasSuffix(url, ".ics"):
		req.Header.Set("Content-Type", "text/calendar; charset=utf-8")
	case strings.HasSuffix(url, ".vcf"):
		req.Header.Set("Content-Type", "text/vcard; charset=utf-8")
	default:
		req.Header.Set("Content-Type", "application/xml; charset=utf-8")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

// davPutAll uploads the items with plain PUTs (when vdirsyncer is not used).
func davPutAll(srv *davServer, items string) error {
	for _, d := range []struct{ sub, coll string }{{"contacts", srv.contacts}, {"calendar", srv.calendar}} {
		ents, err := os.ReadDir(filepath.Join(items, d.sub))
		if err != nil {
			return err
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(items, d.sub, e.Name()))
			if err != nil {
				return err
			}
			code, body, err := davDo(srv, "PUT", d.coll+e.Name(), "", string(b))
			if err != nil {
				return err
			}
			if code != http.StatusCreated && code != http.StatusNoContent {
				return fmt.Errorf("PUT %s: %d %s", e.Name(), code, body)
			}
		}
	}
	return nil
}

// vdirsyncerUpload copies the items into a fresh vdir and times "vdirsyncer sync PAIR"
// uploading them to the server.
func vdirsyncerUpload(ctx context.Context, srv *davServer, items, dir, pair string) (time.Duration, error) {
	local := filepath.Join(dir, "local", pair)
	if err := os.MkdirAll(local, 0o700); err != nil {
		return 0, err
	}
	ext, kind, url := ".ics", "caldav", srv.calendar
	if pair == "contacts" {
		ext, kind, url = ".vcf", "carddav", srv.contacts
	}
	ents, err := os.ReadDir(filepath.Join(items, pair))
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(items, pair, e.Name()))
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(local, e.Name()), b, 0o600); err != nil {
			return 0, err
		}
	}
	auth := ""
	if srv.user != "" {
		auth = fmt.Sprintf("username = %q\npassword = %q\n", srv.user, srv.pass)
	}
	conf := fmt.Sprintf(`[general]
status_path = %q

[pair %s]
a = "%s_local"
b = "%s_remote"
collections = null
conflict_resolution = "a wins"

[storage %s_local]
type = "filesystem"
path = %q
fileext = %q

[storage %s_remote]
type = %q
url = %q
%s`, filepath.Join(dir, "status", pair)+"/", pair, pair, pair, pair, local+"/", ext, pair, kind, url, auth)
	cfg := filepath.Join(dir, pair+".conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return 0, err
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "vdirsyncer", append([]string{"-c", cfg}, args...)...)
		cmd.Stdin = strings.NewReader(strings.Repeat("y\n", 10))
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("vdirsyncer %s: %v\n%s", strings.Join(args, " "), err, lastLines(b, 10))
		}
		return nil
	}
	if err := run("discover", pair); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := run("sync", pair); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func lastLines(b []byte, n int) string {
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// davLoad sends q over conns keep-alive connections for d and returns successful
// requests per second; any failed answer is an error.
func davLoad(ctx context.Context, srv *davServer, q davRequest, conns int, d time.Duration, note *string) (float64, error) {
	url := srv.calendar
	if q.contacts {
		url = srv.contacts
	}
	// check once that it works; a server that fails on the Unicode collation is
	// measured with the ASCII one (and the table says so)
	code, body, err := davDo(srv, q.method, url, q.depth, q.body)
	if err == nil && code != http.StatusMultiStatus && strings.Contains(q.body, "i;unicode-casemap") {
		ascii := strings.ReplaceAll(q.body, "i;unicode-casemap", "i;ascii-casemap")
		if c2, _, err2 := davDo(srv, q.method, url, q.depth, ascii); err2 == nil && c2 == http.StatusMultiStatus {
			q.body, code, *note = ascii, c2, fmt.Sprintf("%s: measured with collation i;ascii-casemap (i;unicode-casemap answered %d)", q.name, code)
		}
	}
	if err != nil {
		return 0, err
	}
	if code != http.StatusMultiStatus {
		return 0, fmt.Errorf("answered %d: %.200s", code, body)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	body0 := []byte(q.body)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				req, _ := http.NewRequestWithContext(lctx, q.method, url, bytes.NewReader(body0))
				req.Header.Set("Depth", q.depth)
				req.Header.Set("Content-Type", "application/xml; charset=utf-8")
				if a := srv.auth(); a != "" {
					req.Header.Set("Authorization", a)
				}
				resp, err := client.Do(req)
				if err != nil {
					if lctx.Err() == nil {
						bad.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusMultiStatus {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(ok.Load()) / time.Since(start).Seconds()
	if bad.Load() > 0 {
		return rate, fmt.Errorf("%d failed requests", bad.Load())
	}
	return rate, nil
}

// idleRSS waits until the appliances are idle and records their resident memory.
func idleRSS(srv *davServer, into map[string]int64) {
	http.DefaultClient.CloseIdleConnections() // an open connection keeps the appliances from idling
	time.Sleep(3 * time.Second)               // signpost returns freed memory after a quiet second
	for i, pid := range srv.pids {
		into[[]string{"contacts", "calendar"}[i]] = rssKiB(pid)
	}
}

// rssKiB is a process's resident memory in KiB (0 if unknown).
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func printDAV(out io.Writer, o davBenchOptions, servers []string, res map[string]*davResult) {
	fmt.Fprintf(out, "DAV benchmark: %d contacts and %d events, %d connections, %v per request type\n\n", o.N, o.N, o.Conns, o.Duration)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "request\tHearth req/s\tXandikos\tRadicale\tratio to Xandikos\t\n")
	cell := func(name string, i int) (string, float64) {
		r := res[name]
		if r == nil || i >= len(r.rates) {
			return "-", 0
		}
		if r.rates[i] < 0 {
			return "error", 0
		}
		return fmt.Sprintf("%.0f", r.rates[i]), r.rates[i]
	}
	for i, q := range davRequests {
		h, hv := cell("Hearth", i)
		x, xv := cell("Xandikos", i)
		rd, _ := cell("Radicale", i)
		ratio := "-"
		if xv > 0 && hv > 0 {
			ratio = fmt.Sprintf("%.1f×", hv/xv)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", q.name, h, x, rd, ratio)
	}
	if o.Vdirsyncer {
		for _, pair := range []string{"contacts", "calendar"} {
			var cells []string
			var vals []time.Duration
			for _, name := range []string{"Hearth", "Xandikos", "Radicale"} {
				r := res[name]
				if r == nil || r.upload[pair] == 0 {
					cells, vals = append(cells, "-"), append(vals, 0)
					continue
				}
				cells, vals = append(cells, fmt.Sprintf("%.2f s", r.upload[pair].Seconds())), append(vals, r.upload[pair])
			}
			ratio := "-"
			if vals[0] > 0 && vals[1] > 0 {
				ratio = fmt.Sprintf("%.2f of its time", vals[0].Seconds()/vals[1].Seconds())
			}
			what := "events"
			if pair == "contacts" {
				what = "contacts"
			}
			fmt.Fprintf(tw, "vdirsyncer upload of %d %s\t%s\t%s\t%s\t%s\t\n", o.N, what, cells[0], cells[1], cells[2], ratio)
		}
	}
	tw.Flush()
	if h := res["Hearth"]; h != nil && h.sync1 > 0 {
		fmt.Fprintf(out, "Hearth sync-collection after 1 change in a %d-event calendar: %.2f ms (median of 20)\n", o.SyncItems, float64(h.sync1.Microseconds())/1000)
	}
	if h := res["Hearth"]; h != nil {
		for _, app := range []string{"contacts", "calendar"} {
			if kib := h.rss[app]; kib > 0 {
				fmt.Fprintf(out, "idle RSS of the %s appliance after the load: %.1f MiB\n", app, float64(kib)/1024)
			}
			if kib := h.rssBig[app]; kib > 0 && app == "calendar" {
				fmt.Fprintf(out, "idle RSS of the calendar appliance after filling the %d-event calendar: %.1f MiB\n", o.SyncItems, float64(kib)/1024)
			}
		}
	}
	for _, name := range servers {
		r := res[name]
		if r.note != "" {
			fmt.Fprintf(out, "%s: %s\n", name, r.note)
		}
		for _, e := range r.errs {
			fmt.Fprintf(out, "%s: %s\n", name, e)
		}
		for _, n := range r.notes {
			fmt.Fprintf(out, "%s: %s\n", name, n)
		}
	}
}

// syncAfterOneChange fills a calendar with n events (16 writers), then 20 times changes
// one event and times a sync-collection from the previous token, which must report
// exactly that event. It returns the median time.
func syncAfterOneChange(srv *davServer, n int) (time.Duration, error) {
	coll := strings.TrimSuffix(srv.calendar, "bench/") + "big/"
	code, body, err := davDo(srv, "MKCALENDAR", coll, "", `<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"/>`)
	if err != nil || code != http.StatusCreated {
		return 0, fmt.Errorf("MKCALENDAR %s: %d %s %v", coll, code, body, err)
	}
	event := func(i, version int) string {
		s := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		return fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hearth//bench//EN\r\nBEGIN:VEVENT\r\nUID:big-%d\r\nDTSTAMP:20250101T000000Z\r\n"+
			"DTSTART:%s\r\nDURATION:PT1H\r\nSUMMARY:Event %d version %d\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", i, s.Format("20060102T150405Z"), i, version)
	}
	var wg sync.WaitGroup
	var failed atomic.Value
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				code, body, err := davDo(srv, "PUT", fmt.Sprintf("%sbig-%d.ics", coll, i), "", event(i, 0))
				if err == nil && code != http.StatusCreated {
					err = fmt.Errorf("PUT: %d %.200s", code, body)
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, fmt.Errorf("filling %d events: %w", n, err)
	}
	tokenRE := regexp.MustCompile(`<[a-zA-Z]*:?sync-token>([^<]+)</`)
	sync := func(token string) (string, string, error) {
		q := `<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
		code, body, err := davDo(srv, "REPORT", coll, "0", q)
		if err != nil {
			return "", "", err
		}
		m := tokenRE.FindStringSubmatch(body)
		if code != http.StatusMultiStatus || m == nil {
			return "", "", fmt.Errorf("sync-collection: %d %.300s", code, body)
		}
		return m[1], body, nil
	}
	// the first token from PROPFIND: an initial sync-collection would list every event
	code, body, err = davDo(srv, "PROPFIND", coll, "0", `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/></d:prop></d:propfind>`)
	m := tokenRE.FindStringSubmatch(body)
	if err != nil || code != http.StatusMultiStatus || m == nil {
		return 0, fmt.Errorf("PROPFIND sync-token: %d %.300s %v", code, body, err)
	}
	token := m[1]
	var times []time.Duration
	for round := range 20 {
		i := round * (n / 20)
		if code, body, err := davDo(srv, "PUT", fmt.Sprintf("%sbig-%d.ics", coll, i), "", event(i, round+1)); err != nil || code != http.StatusNoContent {
			return 0, fmt.Errorf("PUT a change: %d %.200s %v", code, body, err)
		}
		t0 := time.Now()
		next, body, err := sync(token)
		took := time.Since(t0)
		if err != nil {
			return 0, err
		}
		if got := strings.Count(body, "<d:response>") + strings.Count(body, "<D:response>"); got != 1 || !strings.Contains(body, fmt.Sprintf("big-%d.ics", i)) {
			return 0, fmt.Errorf("sync after one change listed %d responses:\n%.500s", got, body)
		}
		times = append(times, took)
		token = next
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}
