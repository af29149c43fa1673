package storehttp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/hearth-home/hearth/store"
)

// This file speaks git's smart HTTP protocol (protocol v0/v1, stateless RPC) for
// repositories whose store is a git repository (*store.Repo):
//
//	GET  info/refs?service=git-upload-pack|git-receive-pack  the ref advertisement
//	POST git-upload-pack                                     fetch and clone
//	POST git-receive-pack                                    push
//
// Only branches (refs/heads/*) are advertised and accepted. HEAD is refs/heads/main.
// Dumb HTTP, shallow clones, thin packs and atomic pushes are not offered.

// gitRepo is what the git protocol needs of a store; *store.Repo implements it.
type gitRepo interface {
	// ObjectStorer returns the repository's objects, read-only.
	ObjectStorer() storer.EncodedObjectStorer
	// Branches lists the branches and their heads.
	Branches(ctx context.Context) ([]store.Branch, error)
	// ReceivePack stores the objects of a (possibly thin) pack; refs do not change.
	ReceivePack(ctx context.Context, pack io.Reader) error
	// UpdateRefs moves branches, each update a compare-and-swap.
	UpdateRefs(ctx context.Context, updates []store.RefUpdate) []error
}

const (
	serviceUploadPack  = "git-upload-pack"
	serviceReceivePack = "git-receive-pack"

	// maxUploadRequest bounds a fetch request (wants and haves), compressed or not.
	maxUploadRequest = 16 << 20
	// maxReceiveRequest bounds a push request: the commands plus the pack.
	maxReceiveRequest = store.MaxPackSize + 16<<20
	// packWindow is the delta window of the packs upload-pack sends.
	packWindow = 10
	// gitAgent is the agent capability the server advertises.
	gitAgent = "hearth"

	// Largest data in one side-band packet: a pkt-line payload minus the channel byte.
	maxBand64k = pktline.MaxPayloadSize - 1
	maxBand    = sideband.MaxPackedSize - 4 - 1
)

// errGitTooLarge reports a git request body over its limit.
var errGitTooLarge = fmt.Errorf("storehttp: git request too large: %w", store.ErrTooLarge)

// gitCtx is one git request on one repository.
type gitCtx struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	name string
	repo gitRepo
}

// serveGit answers git smart HTTP requests for an authenticated, authorised user on the
// repository name (rest is the path after "NAME.git/"). Stores that are not git
// repositories answer 501.
func (h *Handler) serveGit(w http.ResponseWriter, r *http.Request, user string, name string, s store.Store, rest string) {
	repo, ok := s.(gitRepo)
	if !ok {
		writeError(w, http.StatusNotImplemented, "git protocol not available for this store")
		return
	}
	g := &gitCtx{h: h, w: w, r: r, name: name, repo: repo}
	switch rest {
	case "info/refs":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		switch service := r.URL.Query().Get("service"); service {
		case serviceUploadPack, serviceReceivePack:
			g.advertise(service)
		case "":
			writeError(w, http.StatusForbidden, "the dumb HTTP git protocol is not supported; use a git client that speaks smart HTTP")
		default:
			writeError(w, http.StatusForbidden, fmt.Sprintf("unsupported git service %q", service))
		}
	case serviceUploadPack, serviceReceivePack:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		if rest == serviceUploadPack {
			g.uploadPack()
		} else {
			g.receivePack()
		}
	default:
		writeError(w, http.StatusNotFound, "no such git endpoint (only smart HTTP is served)")
	}
}

// noCache sets the headers that keep proxies from caching a git answer.
func noCache(h http.Header) {
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Fri, 01 Jan 1980 00:00:00 GMT")
}

// advertise answers GET info/refs?service=SERVICE: the refs and the capabilities.
func (g *gitCtx) advertise(service string) {
	branches, err := g.repo.Branches(g.r.Context())
	if err != nil {
		g.h.writeStoreError(g.w, g.r, fmt.Errorf("storehttp: git advertisement of %s: %w", g.name, err))
		return
	}
	ar := packp.NewAdvRefs()
	ar.Prefix = [][]byte{[]byte("# service=" + service), pktline.Flush}
	caps := ar.Capabilities
	var capErr error
	add := func(c capability.Capability, values ...string) {
		if err := caps.Add(c, values...); err != nil && capErr == nil {
			capErr = err
		}
	}
	if service == serviceUploadPack {
		add(capability.MultiACK)
		add(capability.MultiACKDetailed)
		add(capability.Sideband)
		add(capability.Sideband64k)
		add(capability.OFSDelta)
		add(capability.NoProgress)
	} else {
		add(capability.ReportStatus)
		add(capability.DeleteRefs)
		add(capability.Sideband64k)
		add(capability.OFSDelta)
		add(capability.Quiet)
	}
	for _, b := range branches {
		h, ok := parseGitHash(string(b.Head))
		if !ok || store.CheckBranch(b.Name) != nil {
			continue
		}
		ar.References[plumbing.NewBranchReferenceName(b.Name).String()] = h
		if service == serviceUploadPack && b.Name == store.DefaultBranch {
			head := h
			ar.Head = &head
			add(capability.SymRef, "HEAD:"+plumbing.NewBranchReferenceName(store.DefaultBranch).String())
		}
	}
	add(capability.ObjectFormat, "sha1")
	add(capability.Agent, gitAgent)
	var buf bytes.Buffer
	if capErr == nil {
		capErr = ar.Encode(&buf)
	}
	if capErr != nil {
		g.h.writeStoreError(g.w, g.r, fmt.Errorf("storehttp: git advertisement of %s: %w", g.name, capErr))
		return
	}
	hd := g.w.Header()
	hd.Set("Content-Type", "application/x-"+service+"-advertisement")
	noCache(hd)
	g.w.WriteHeader(http.StatusOK)
	_, _ = g.w.Write(buf.Bytes())
}

// body returns the request body of a POST to service: the content type checked,
// gzip decoded and limited to max bytes (both before and after decoding). It writes the
// error answer and returns false when the body cannot be read.
func (g *gitCtx) body(service string, max int64) (io.Reader, bool) {
	want := "application/x-" + service + "-request"
	if ct := g.r.Header.Get("Content-Type"); ct != want {
		// A browser cannot send this type cross-site without a preflight, so requiring
		// it keeps web pages from driving git requests with a user's cached credentials.
		writeError(g.w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type must be %s", want))
		return nil, false
	}
	var body io.Reader = http.MaxBytesReader(g.w, g.r.Body, max)
	switch enc := strings.ToLower(strings.TrimSpace(g.r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			g.requestError(fmt.Errorf("storehttp: gzip request body: %w", err))
			return nil, false
		}
		body = &limitReader{r: zr, n: max}
	default:
		writeError(g.w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported content encoding %q", enc))
		return nil, false
	}
	return body, true
}

// limitReader reads at most n bytes from r and fails with errGitTooLarge after that.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Is there more? A body of exactly the limit is fine.
		var one [1]byte
		if k, err := l.r.Read(one[:]); k > 0 {
			return 0, errGitTooLarge
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}

// isTooLarge reports whether err is a request body over its limit.
func isTooLarge(err error) bool {
	var me *http.MaxBytesError
	return errors.As(err, &me) || errors.Is(err, store.ErrTooLarge)
}

// requestError answers a request that could not be read or parsed: 413 when it was over
// its limit, 400 otherwise.
func (g *gitCtx) requestError(err error) {
	if isTooLarge(err) {
		writeError(g.w, http.StatusRequestEntityTooLarge, "git request too large")
		return
	}
	if g.r.Context().Err() != nil {
		writeError(g.w, http.StatusServiceUnavailable, "request canceled")
		return
	}
	writeError(g.w, http.StatusBadRequest, "malformed git request: "+err.Error())
}

// fatal answers a well-formed git request the server refuses with an "ERR" pkt-line, which
// the git client shows as "remote error: MSG".
func (g *gitCtx) fatal(service, msg string) {
	var buf bytes.Buffer
	_ = pktline.NewEncoder(&buf).Encodef("ERR %s\n", oneLine(msg))
	hd := g.w.Header()
	hd.Set("Content-Type", "application/x-"+service+"-result")
	noCache(hd)
	g.w.WriteHeader(http.StatusOK)
	_, _ = g.w.Write(buf.Bytes())
}

// oneLine makes msg fit on one protocol line.
func oneLine(msg string) string {
	return strings.Join(strings.Fields(msg), " ")
}

// parseGitHash parses 40 hex digits.
func parseGitHash(s string) (plumbing.Hash, bool) {
	if len(s) != 40 {
		return plumbing.ZeroHash, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return plumbing.ZeroHash, false
		}
	}
	return plumbing.NewHash(s), true
}

// uploadPack answers POST git-upload-pack: one round of the negotiation, and the pack
// once the client says "done".
func (g *gitCtx) uploadPack() {
	body, ok := g.body(serviceUploadPack, maxUploadRequest)
	if !ok {
		return
	}
	req := packp.NewUploadRequest()
	if err := req.Decode(body); err != nil {
		g.requestError(fmt.Errorf("storehttp: upload-pack request: %w", err))
		return
	}
	if len(req.Shallows) > 0 || !req.Depth.IsZero() {
		g.fatal(serviceUploadPack, "upload-pack: shallow clones and fetches are not supported by this server")
		return
	}
	if err := req.Validate(); err != nil {
		g.fatal(serviceUploadPack, "upload-pack: "+err.Error())
		return
	}
	sto := g.repo.ObjectStorer()
	for _, want := range req.Wants {
		if sto.HasEncodedObject(want) != nil {
			g.fatal(serviceUploadPack, "upload-pack: not our ref "+want.String())
			return
		}
	}
	n := newNegotiation(g.r.Context(), sto, req)
	var out bytes.Buffer
	done, err := n.round(body, pktline.NewEncoder(&out))
	if err != nil {
		if g.r.Context().Err() != nil {
			return // the client went away
		}
		if n.internal {
			g.h.log.ErrorContext(g.r.Context(), "storehttp: upload-pack negotiation failed", "repo", g.name, "err", err)
			g.fatal(serviceUploadPack, "upload-pack: internal server error")
			return
		}
		g.requestError(fmt.Errorf("storehttp: upload-pack request: %w", err))
		return
	}
	var objs []plumbing.Hash
	if done {
		objs, err = revlist.Objects(sto, req.Wants, n.common)
		if err != nil {
			g.h.log.ErrorContext(g.r.Context(), "storehttp: upload-pack: listing objects failed", "repo", g.name, "err", err)
			g.fatal(serviceUploadPack, "upload-pack: cannot list the objects to send")
			return
		}
	}
	hd := g.w.Header()
	hd.Set("Content-Type", "application/x-git-upload-pack-result")
	noCache(hd)
	g.w.WriteHeader(http.StatusOK)
	if _, err := g.w.Write(out.Bytes()); err != nil || !done {
		return
	}
	if err := sendPack(g.w, sto, objs, req.Capabilities); err != nil {
		lvl := g.h.log.ErrorContext
		if g.r.Context().Err() != nil {
			lvl = g.h.log.DebugContext // the client went away
		}
		lvl(g.r.Context(), "storehttp: upload-pack: sending the pack failed", "repo", g.name, "err", err)
	}
}

// negotiation is the server side of one stateless round of the have/ACK exchange, as
// git's upload-pack does it: the client sends its wants, then haves (repeating in each
// round the ones acknowledged as common before), then a flush to ask for more
// acknowledgements or "done" to ask for the pack.
type negotiation struct {
	ctx      context.Context
	sto      storer.EncodedObjectStorer
	wants    []plumbing.Hash
	multiAck bool // multi_ack or multi_ack_detailed
	detailed bool // multi_ack_detailed

	common    []plumbing.Hash        // haves the server has: the pack excludes what they reach
	theyHave  map[plumbing.Hash]bool // commits the client has: common haves and their parents
	oldest    time.Time              // committer time of the oldest common commit
	last      plumbing.Hash          // the last common have
	gotCommon bool                   // this round named a common object
	gotOther  bool                   // this round named an object the server lacks
	internal  bool                   // the error round returned is the server's fault

	wantOK   map[plumbing.Hash]bool // wants known to reach a commit the client has
	notReady int                    // len(theyHave) when okToGiveUp last said no; -1 never
}

func newNegotiation(ctx context.Context, sto storer.EncodedObjectStorer, req *packp.UploadRequest) *negotiation {
	detailed := req.Capabilities.Supports(capability.MultiACKDetailed)
	return &negotiation{
		ctx:      ctx,
		sto:      sto,
		wants:    req.Wants,
		detailed: detailed,
		multiAck: detailed || req.Capabilities.Supports(capability.MultiACK),
		theyHave: map[plumbing.Hash]bool{},
		wantOK:   map[plumbing.Hash]bool{},
		notReady: -1,
	}
}

// round reads the haves after the wants and writes the acknowledgements. It returns true
// when the client said "done" (the pack follows the answer).
func (n *negotiation) round(r io.Reader, e *pktline.Encoder) (bool, error) {
	s := pktline.NewScanner(r)
	for {
		if !s.Scan() {
			if err := s.Err(); err != nil {
				return false, fmt.Errorf("reading haves: %w", err)
			}
			// The end of the request counts as a flush, as for git's upload-pack.
			return false, n.endRound(e)
		}
		line := bytes.TrimSuffix(s.Bytes(), []byte("\n"))
		switch {
		case len(line) == 0:
			return false, n.endRound(e)
		case bytes.Equal(line, []byte("done")):
			return true, n.done(e)
		case bytes.HasPrefix(line, []byte("have ")):
			h, ok := parseGitHash(string(line[len("have "):]))
			if !ok {
				return false, fmt.Errorf("bad have line %q", truncateLine(line))
			}
			if err := n.have(h, e); err != nil {
				return false, err
			}
		default:
			return false, fmt.Errorf("expected have, done or flush, got %q", truncateLine(line))
		}
	}
}

// truncateLine shortens a protocol line quoted in an error.
func truncateLine(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// have handles "have H".
func (n *negotiation) have(h plumbing.Hash, e *pktline.Encoder) error {
	if n.sto.HasEncodedObject(h) != nil {
		n.gotOther = true
		if !n.multiAck {
			return nil
		}
		ready, err := n.okToGiveUp()
		if err != nil || !ready {
			return err
		}
		if n.detailed {
			return e.Encodef("ACK %s ready\n", h)
		}
		return e.Encodef("ACK %s continue\n", h)
	}
	if err := n.addCommon(h); err != nil {
		return err
	}
	n.gotCommon = true
	n.last = h
	switch {
	case n.detailed:
		return e.Encodef("ACK %s common\n", h)
	case n.multiAck:
		return e.Encodef("ACK %s continue\n", h)
	case len(n.common) == 1:
		return e.Encodef("ACK %s\n", h)
	}
	return nil
}

// addCommon records an object both sides have. A commit and its parents become known to
// the client.
func (n *negotiation) addCommon(h plumbing.Hash) error {
	o, err := n.sto.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		n.internal = true
		return fmt.Errorf("have %s: %w", h, err)
	}
	if o.Type() != plumbing.CommitObject {
		n.common = append(n.common, h)
		return nil
	}
	if n.theyHave[h] {
		return nil // reachable from an earlier have already
	}
	c, err := object.DecodeCommit(n.sto, o)
	if err != nil {
		n.internal = true
		return fmt.Errorf("have %s: %w", h, err)
	}
	n.theyHave[h] = true
	for _, p := range c.ParentHashes {
		n.theyHave[p] = true
	}
	if when := c.Committer.When; n.oldest.IsZero() || when.Before(n.oldest) {
		n.oldest = when
	}
	n.common = append(n.common, h)
	return nil
}

// endRound answers the flush that ends a round without "done".
func (n *negotiation) endRound(e *pktline.Encoder) error {
	if n.detailed && n.gotCommon && !n.gotOther {
		ready, err := n.okToGiveUp()
		if err != nil {
			return err
		}
		if ready {
			if err := e.Encodef("ACK %s ready\n", n.last); err != nil {
				return err
			}
		}
	}
	if len(n.common) == 0 || n.multiAck {
		return e.Encodef("NAK\n")
	}
	return nil
}

// done answers "done"; the pack follows.
func (n *negotiation) done(e *pktline.Encoder) error {
	if len(n.common) == 0 {
		return e.Encodef("NAK\n")
	}
	if n.multiAck {
		return e.Encodef("ACK %s\n", n.last)
	}
	return nil
}

// okToGiveUp reports whether every want reaches a commit the client has, so that the
// server can send a good pack and the client may stop sending haves.
func (n *negotiation) okToGiveUp() (bool, error) {
	if len(n.theyHave) == 0 || n.notReady == len(n.theyHave) {
		return false, nil // no commit in common, or nothing learnt since the last no
	}
	for _, w := range n.wants {
		if n.wantOK[w] {
			continue
		}
		ok, err := n.reachesTheyHave(w)
		if err != nil {
			n.internal = true
			return false, err
		}
		if !ok {
			n.notReady = len(n.theyHave)
			return false, nil
		}
		n.wantOK[w] = true
	}
	return true, nil
}

// reachesTheyHave walks from want towards older commits looking for one the client has;
// commits older than the oldest common one are not followed. Wants that are not commits
// count as reachable, as in git.
func (n *negotiation) reachesTheyHave(want plumbing.Hash) (bool, error) {
	o, err := n.sto.EncodedObject(plumbing.AnyObject, want)
	if err != nil {
		return false, fmt.Errorf("want %s: %w", want, err)
	}
	if o.Type() != plumbing.CommitObject {
		return true, nil
	}
	visited := map[plumbing.Hash]bool{want: true}
	stack := []plumbing.Hash{want}
	for len(stack) > 0 {
		if err := n.ctx.Err(); err != nil {
			return false, err
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.theyHave[h] || n.wantOK[h] {
			return true, nil
		}
		c, err := object.GetCommit(n.sto, h)
		if err != nil {
			return false, fmt.Errorf("commit %s: %w", h, err)
		}
		if c.Committer.When.Before(n.oldest) {
			continue
		}
		for _, p := range c.ParentHashes {
			if !visited[p] {
				visited[p] = true
				stack = append(stack, p)
			}
		}
	}
	return false, nil
}

// sendPack writes the pack of objs, inside side-band channel 1 if the client asked for it.
func sendPack(w io.Writer, sto storer.EncodedObjectStorer, objs []plumbing.Hash, caps *capability.List) error {
	band, limit := sideband.Type(-1), 0
	switch {
	case caps.Supports(capability.Sideband64k):
		band, limit = sideband.Sideband64k, maxBand64k
	case caps.Supports(capability.Sideband):
		band, limit = sideband.Sideband, maxBand
	}
	useRefDeltas := !caps.Supports(capability.OFSDelta)
	if band < 0 {
		bw := bufio.NewWriterSize(w, 64<<10)
		if _, err := packfile.NewEncoder(bw, sto, useRefDeltas).Encode(objs, packWindow); err != nil {
			return fmt.Errorf("storehttp: encode pack: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("storehttp: send pack: %w", err)
		}
		return nil
	}
	mux := sideband.NewMuxer(band, w)
	progress := bandWriter{mux: mux, ch: sideband.ProgressMessage, max: limit}
	if !caps.Supports(capability.NoProgress) {
		if _, err := fmt.Fprintf(progress, "Enumerating objects: %d, done.\n", len(objs)); err != nil {
			return fmt.Errorf("storehttp: send progress: %w", err)
		}
	}
	bw := bufio.NewWriterSize(bandWriter{mux: mux, ch: sideband.PackData, max: limit}, limit)
	_, err := packfile.NewEncoder(bw, sto, useRefDeltas).Encode(objs, packWindow)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// Tell the client why its fetch fails; it may be gone already.
		msg := bandWriter{mux: mux, ch: sideband.ErrorMessage, max: limit}
		_, _ = io.WriteString(msg, "error: the server could not send the pack\n")
		return fmt.Errorf("storehttp: send pack: %w", err)
	}
	if err := pktline.NewEncoder(w).Flush(); err != nil {
		return fmt.Errorf("storehttp: send pack: %w", err)
	}
	return nil
}

// bandWriter writes to one side-band channel in pieces that fit a packet. (go-git's Muxer
// alone cuts side-band-64k data at 65519 bytes, over the largest pkt-line payload.)
type bandWriter struct {
	mux *sideband.Muxer
	ch  sideband.Channel
	max int
}

func (b bandWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), b.max)
		if _, err := b.mux.WriteChannel(b.ch, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// receivePack answers POST git-receive-pack: it stores the pack, updates the branches
// and reports each command's status.
func (g *gitCtx) receivePack() {
	body, ok := g.body(serviceReceivePack, maxReceiveRequest)
	if !ok {
		return
	}
	br := bufio.NewReader(body)
	// Before a large push the git client probes with a lone flush-pkt: nothing to do.
	if p, err := br.Peek(5); len(p) == 4 && string(p) == "0000" && errors.Is(err, io.EOF) {
		hd := g.w.Header()
		hd.Set("Content-Type", "application/x-git-receive-pack-result")
		noCache(hd)
		g.w.WriteHeader(http.StatusOK)
		return
	}
	req := packp.NewReferenceUpdateRequest()
	if err := req.Decode(br); err != nil {
		g.requestError(fmt.Errorf("storehttp: receive-pack request: %w", err))
		return
	}
	if req.Shallow != nil {
		g.fatal(serviceReceivePack, "receive-pack: pushes from shallow repositories are not supported by this server")
		return
	}
	ctx := g.r.Context()
	status := make([]string, len(req.Commands)) // "" while pending, then "ok" or the reason
	var (
		updates  []store.RefUpdate
		index    []int // updates[i] is req.Commands[index[i]]
		needPack bool
		seen     = map[plumbing.ReferenceName]bool{}
	)
	for i, c := range req.Commands {
		branch, isBranch := strings.CutPrefix(c.Name.String(), "refs/heads/")
		switch {
		case seen[c.Name]:
			status[i] = "duplicate ref update"
		case !isBranch:
			status[i] = "only branches (refs/heads/*) can be pushed to this server"
		case store.CheckBranch(branch) != nil:
			status[i] = "invalid branch name"
		default:
			updates = append(updates, store.RefUpdate{Branch: branch, Old: store.Hash(c.Old.String()), New: store.Hash(c.New.String())})
			index = append(index, i)
			needPack = needPack || c.New != plumbing.ZeroHash
		}
		seen[c.Name] = true
	}
	unpack := "ok"
	if needPack {
		if err := g.repo.ReceivePack(ctx, req.Packfile); err != nil {
			unpack = g.unpackReason(err)
			for _, i := range index {
				status[i] = "unpacker error"
			}
			updates = nil
		}
	}
	if len(updates) > 0 {
		updates, index = g.checkConnectivity(updates, index, status)
		errs := g.repo.UpdateRefs(ctx, updates)
		for k, err := range errs {
			status[index[k]] = g.refReason(err)
		}
	}
	g.report(req, unpack, status)
}

// unpackReason is the "unpack" status for a pack that could not be stored.
func (g *gitCtx) unpackReason(err error) string {
	switch {
	case isTooLarge(err):
		return "pack too large"
	case errors.Is(err, store.ErrInvalid):
		g.h.log.DebugContext(g.r.Context(), "storehttp: receive-pack: bad pack", "repo", g.name, "err", err)
		return "invalid pack: " + oneLine(err.Error())
	case g.r.Context().Err() != nil:
		return "request canceled"
	}
	g.h.log.ErrorContext(g.r.Context(), "storehttp: receive-pack: storing the pack failed", "repo", g.name, "err", err)
	return "the server could not store the pack"
}

// refReason is the status of one ref update: "ok" or why it was refused.
func (g *gitCtx) refReason(err error) string {
	var pe *store.PreconditionError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &pe):
		return "fetch first"
	case errors.Is(err, store.ErrConflict):
		return "non-fast-forward"
	case errors.Is(err, store.ErrNotFound):
		return "missing necessary objects"
	case errors.Is(err, store.ErrInvalid):
		return oneLine(strings.ReplaceAll(err.Error(), "store: ", ""))
	case errors.Is(err, store.ErrClosed):
		return "repository closed"
	}
	g.h.log.ErrorContext(g.r.Context(), "storehttp: receive-pack: ref update failed", "repo", g.name, "err", err)
	return "failed to update ref"
}

// checkConnectivity refuses the updates whose new commit does not have all its objects
// in the repository (a pack that lacks some), writing their status, and returns the rest.
func (g *gitCtx) checkConnectivity(updates []store.RefUpdate, index []int, status []string) ([]store.RefUpdate, []int) {
	ctx := g.r.Context()
	branches, err := g.repo.Branches(ctx)
	if err != nil {
		for _, i := range index {
			status[i] = g.refReason(err)
		}
		return nil, nil
	}
	var complete []plumbing.Hash
	for _, b := range branches {
		if h, ok := parseGitHash(string(b.Head)); ok {
			complete = append(complete, h)
		}
	}
	cc := newConnectivity(ctx, g.repo.ObjectStorer(), complete)
	var keepU []store.RefUpdate
	var keepI []int
	for k, u := range updates {
		if u.New != store.Missing {
			if err := cc.check(plumbing.NewHash(string(u.New))); err != nil {
				if ctx.Err() != nil {
					status[index[k]] = "request canceled"
				} else {
					g.h.log.DebugContext(ctx, "storehttp: receive-pack: incomplete push", "repo", g.name, "branch", u.Branch, "err", err)
					status[index[k]] = "missing necessary objects"
				}
				continue
			}
		}
		keepU = append(keepU, u)
		keepI = append(keepI, index[k])
	}
	return keepU, keepI
}

// connectivity checks that every object a pushed commit reaches is present. Everything
// reachable from the branch heads is complete already (every update is checked), so the
// walk stops there.
type connectivity struct {
	ctx      context.Context
	sto      storer.EncodedObjectStorer
	boundary []plumbing.Hash
	marked   bool
	ok       map[plumbing.Hash]bool // objects known present with everything they reach
}

func newConnectivity(ctx context.Context, sto storer.EncodedObjectStorer, boundary []plumbing.Hash) *connectivity {
	return &connectivity{ctx: ctx, sto: sto, boundary: boundary, ok: map[plumbing.Hash]bool{}}
}

// check returns an error unless commit tip and everything it reaches are present.
func (c *connectivity) check(tip plumbing.Hash) error {
	if !c.marked {
		c.marked = true
		// The heads' trees are complete: marking them spares walking unchanged subtrees.
		for _, h := range c.boundary {
			commit, err := object.GetCommit(c.sto, h)
			if err != nil || c.tree(commit.TreeHash, false) != nil {
				continue // a damaged head only costs this shortcut
			}
			c.ok[h] = true
		}
	}
	stack := []plumbing.Hash{tip}
	for len(stack) > 0 {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.ok[h] {
			continue
		}
		commit, err := object.GetCommit(c.sto, h)
		if err != nil {
			return fmt.Errorf("storehttp: commit %s: %w", h, err)
		}
		if err := c.tree(commit.TreeHash, true); err != nil {
			return fmt.Errorf("storehttp: commit %s: %w", h, err)
		}
		c.ok[h] = true
		stack = append(stack, commit.ParentHashes...)
	}
	return nil
}

// tree walks tree h. With verify it checks that each object exists, otherwise it only
// marks the (trusted) objects as complete.
func (c *connectivity) tree(h plumbing.Hash, verify bool) error {
	if c.ok[h] {
		return nil
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	t, err := object.GetTree(c.sto, h)
	if err != nil {
		return fmt.Errorf("tree %s: %w", h, err)
	}
	for _, e := range t.Entries {
		switch {
		case e.Mode == filemode.Dir:
			if err := c.tree(e.Hash, verify); err != nil {
				return err
			}
		case e.Mode == filemode.Submodule || c.ok[e.Hash]:
		default:
			if verify {
				if err := c.sto.HasEncodedObject(e.Hash); err != nil {
					return fmt.Errorf("blob %s: %w", e.Hash, err)
				}
			}
			c.ok[e.Hash] = true
		}
	}
	c.ok[h] = true
	return nil
}

// report writes the answer to a push: report-status (inside side-band channel 1 when
// the client asked for side-band-64k) if the client asked for it.
func (g *gitCtx) report(req *packp.ReferenceUpdateRequest, unpack string, status []string) {
	hd := g.w.Header()
	hd.Set("Content-Type", "application/x-git-receive-pack-result")
	noCache(hd)
	if !req.Capabilities.Supports(capability.ReportStatus) {
		g.w.WriteHeader(http.StatusOK)
		return
	}
	rs := packp.NewReportStatus()
	rs.UnpackStatus = unpack
	for i, c := range req.Commands {
		if status[i] == "" {
			status[i] = "not updated" // every path sets a status; this is a safety net
		}
		rs.CommandStatuses = append(rs.CommandStatuses, &packp.CommandStatus{ReferenceName: c.Name, Status: status[i]})
	}
	var buf bytes.Buffer
	if err := rs.Encode(&buf); err != nil {
		g.h.log.ErrorContext(g.r.Context(), "storehttp: receive-pack: encoding the report failed", "repo", g.name, "err", err)
		writeError(g.w, http.StatusInternalServerError, "internal server error")
		return
	}
	g.w.WriteHeader(http.StatusOK)
	if !req.Capabilities.Supports(capability.Sideband64k) {
		_, _ = g.w.Write(buf.Bytes())
		return
	}
	var out bytes.Buffer
	mux := sideband.NewMuxer(sideband.Sideband64k, &out)
	_, err := bandWriter{mux: mux, ch: sideband.PackData, max: maxBand64k}.Write(buf.Bytes())
	if err == nil {
		err = pktline.NewEncoder(&out).Flush()
	}
	if err != nil {
		g.h.log.ErrorContext(g.r.Context(), "storehttp: receive-pack: encoding the report failed", "repo", g.name, "err", err)
		return
	}
	_, _ = g.w.Write(out.Bytes())
}
