package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Remote is another git repository to sync a branch with: a local path to a git directory
// (a Hearth repository or any bare git repository), or an http(s) URL of a git smart-HTTP
// server (another Hearth's store appliance, or any git server).
type Remote struct {
	URL string
	// User and Password, when set, authenticate to an HTTP remote (HTTP Basic).
	User, Password string
}

func (rm Remote) isLocal() (string, bool) {
	if strings.HasPrefix(rm.URL, "http://") || strings.HasPrefix(rm.URL, "https://") {
		return "", false
	}
	if p, ok := strings.CutPrefix(rm.URL, "file://"); ok {
		return filepath.FromSlash(p), true
	}
	return rm.URL, true
}

// redacted is the URL without credentials, for errors and logs.
func (rm Remote) redacted() string {
	u, err := url.Parse(rm.URL)
	if err != nil || u.User == nil {
		return rm.URL
	}
	u.User = nil
	return u.String()
}

// Fetch brings the objects of a remote branch into the repository and returns the commit
// the remote branch points at. No local branch changes. ErrNotFound if the remote has no
// such branch.
func (r *Repo) Fetch(ctx context.Context, rm Remote, branch string) (Hash, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	if err := CheckBranch(branch); err != nil {
		return "", err
	}
	var h Hash
	var err error
	if path, ok := rm.isLocal(); ok {
		h, err = r.fetchLocal(ctx, path, branch)
	} else {
		h, err = r.fetchHTTP(ctx, rm, branch)
	}
	if err != nil {
		return "", fmt.Errorf("store: fetch %s from %s: %w", branch, rm.redacted(), err)
	}
	return h, nil
}

// Pull fetches a remote branch and merges it into the local branch of the same name with
// the repository's merge rules (fast-forwarding when it can; a local branch that does not
// exist yet is created at the remote's head).
func (r *Repo) Pull(ctx context.Context, rm Remote, branch string, author Signature) (Commit, error) {
	h, err := r.Fetch(ctx, rm, branch)
	if err != nil {
		return Commit{}, err
	}
	if _, err := r.readRef(branch); isNotFound(err) {
		if _, err := r.CreateBranch(ctx, branch, string(h)); err != nil && !errors.Is(err, ErrConflict) {
			return Commit{}, err
		}
	}
	return r.Merge(ctx, MergeRequest{Into: branch, From: string(h), Author: author,
		Message: fmt.Sprintf("Merge %s from %s", branch, rm.redacted())})
}

// Push sends a local branch to a remote, which must fast-forward: a remote that moved on
// is refused with ErrConflict (pull first). Pushing an unchanged branch does nothing.
func (r *Repo) Push(ctx context.Context, rm Remote, branch string) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := CheckBranch(branch); err != nil {
		return err
	}
	head, err := r.readRef(branch)
	if err != nil {
		return err
	}
	if path, ok := rm.isLocal(); ok {
		err = r.pushLocal(ctx, path, branch, head)
	} else {
		err = r.pushHTTP(ctx, rm, branch, head)
	}
	if err != nil {
		return fmt.Errorf("store: push %s to %s: %w", branch, rm.redacted(), err)
	}
	return nil
}

// objectsMissing lists the objects reachable from want that are not reachable from any
// of haves, reading from s. Haves s does not hold are ignored.
func objectsMissing(s storer.EncodedObjectStorer, want plumbing.Hash, haves []plumbing.Hash) ([]plumbing.Hash, error) {
	var known []plumbing.Hash
	for _, h := range haves {
		if s.HasEncodedObject(h) == nil {
			known = append(known, h)
		}
	}
	return revlist.Objects(s, []plumbing.Hash{want}, known)
}

func encodePack(s storer.EncodedObjectStorer, hashes []plumbing.Hash) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := packfile.NewEncoder(&buf, s, false).Encode(hashes, 10); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (r *Repo) localHeads() []plumbing.Hash {
	bs, _ := r.listBranches()
	hs := make([]plumbing.Hash, len(bs))
	for i, b := range bs {
		hs[i] = plumbing.NewHash(string(b.Head))
	}
	return hs
}

func (r *Repo) fetchLocal(ctx context.Context, path, branch string) (Hash, error) {
	other, err := Open(path, &Options{Logger: r.log})
	if err != nil {
		return "", err
	}
	defer other.Close()
	h, err := other.readRef(branch)
	if err != nil {
		return "", err
	}
	want := plumbing.NewHash(string(h))
	if r.db.has(want) {
		return h, nil
	}
	hashes, err := objectsMissing(other.ObjectStorer(), want, r.localHeads())
	if err != nil {
		return "", err
	}
	pack, err := encodePack(other.ObjectStorer(), hashes)
	if err != nil {
		return "", err
	}
	return h, r.ReceivePack(ctx, bytes.NewReader(pack))
}

func (r *Repo) pushLocal(ctx context.Context, path, branch string, head Hash) error {
	other, err := Open(path, &Options{Logger: r.log})
	if err != nil {
		return err
	}
	defer other.Close()
	old, err := other.readRef(branch)
	if isNotFound(err) {
		old, err = Missing, nil
	}
	if err != nil || old == head {
		return err
	}
	want := plumbing.NewHash(string(head))
	hashes, err := objectsMissing(r.ObjectStorer(), want, other.localHeads())
	if err != nil {
		return err
	}
	pack, err := encodePack(r.ObjectStorer(), hashes)
	if err != nil {
		return err
	}
	if err := other.ReceivePack(ctx, bytes.NewReader(pack)); err != nil {
		return err
	}
	return other.UpdateRefs(ctx, []RefUpdate{{Branch: branch, Old: old, New: head}})[0]
}

func (rm Remote) endpoint() (*transport.Endpoint, transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(rm.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var auth transport.AuthMethod
	switch {
	case rm.User != "" || rm.Password != "":
		auth = &githttp.BasicAuth{Username: rm.User, Password: rm.Password}
	case ep.User != "":
		auth = &githttp.BasicAuth{Username: ep.User, Password: ep.Password}
	}
	return ep, auth, nil
}

func (r *Repo) fetchHTTP(ctx context.Context, rm Remote, branch string) (Hash, error) {
	ep, auth, err := rm.endpoint()
	if err != nil {
		return "", err
	}
	cl, err := client.NewClient(ep)
	if err != nil {
		return "", err
	}
	sess, err := cl.NewUploadPackSession(ep, auth)
	if err != nil {
		return "", err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return "", err
	}
	want, ok := ar.References["refs/heads/"+branch]
	if !ok {
		return "", fmt.Errorf("remote branch %q: %w", branch, ErrNotFound)
	}
	if r.db.has(want) {
		return toHash(want), nil
	}
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	if ar.Capabilities.Supports(capability.NoProgress) {
		req.Capabilities.Set(capability.NoProgress)
	}
	req.Wants = []plumbing.Hash{want}
	req.Haves = r.localHeads()
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return "", err
	}
	defer resp.Close()
	var rd io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		rd = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		rd = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if err := r.ReceivePack(ctx, rd); err != nil {
		return "", err
	}
	if !r.db.has(want) {
		return "", fmt.Errorf("remote sent no commit %s", want)
	}
	return toHash(want), nil
}

func (r *Repo) pushHTTP(ctx context.Context, rm Remote, branch string, head Hash) error {
	ep, auth, err := rm.endpoint()
	if err != nil {
		return err
	}
	cl, err := client.NewClient(ep)
	if err != nil {
		return err
	}
	sess, err := cl.NewReceivePackSession(ep, auth)
	if err != nil {
		return err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	name := plumbing.ReferenceName("refs/heads/" + branch)
	old, exists := ar.References[name.String()]
	if exists && toHash(old) == head {
		return nil
	}
	if exists && !r.db.has(old) {
		return fmt.Errorf("%w: the remote has commits this repository lacks (pull first)", ErrConflict)
	}
	want := plumbing.NewHash(string(head))
	var haves []plumbing.Hash
	for _, h := range ar.References {
		haves = append(haves, h)
	}
	hashes, err := objectsMissing(r.ObjectStorer(), want, haves)
	if err != nil {
		return err
	}
	pack, err := encodePack(r.ObjectStorer(), hashes)
	if err != nil {
		return err
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	req.Commands = []*packp.Command{{Name: name, Old: old, New: want}}
	req.Packfile = io.NopCloser(bytes.NewReader(pack))
	rs, err := sess.ReceivePack(ctx, req)
	if err != nil {
		return err
	}
	if rs != nil {
		if err := rs.Error(); err != nil {
			if strings.Contains(err.Error(), "fetch first") || strings.Contains(err.Error(), "non-fast-forward") {
				return fmt.Errorf("%w: %v", ErrConflict, err)
			}
			return err
		}
	}
	return nil
}
