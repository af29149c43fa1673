package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/hearth-home/hearth/store"
)

// replicaPass syncs every repository a replica names, both ways.
func (r *Runner) replicaPass(ctx context.Context, rp Replica, _ *RemoteState) *RemoteState {
	out := &RemoteState{LastPass: r.now(), Repos: map[string]RepoState{}}
	names, err := r.replicaRepos(ctx, rp)
	if err != nil {
		r.log.Error("replica: list repositories", "remote", redact(rp.URL), "err", err)
		return out
	}
	for _, name := range names {
		head, err := r.SyncRepo(ctx, rp.URL, rp.CredentialsFile, name)
		s := RepoState{}
		if err != nil {
			s.LastError, s.LastErrorAt = err.Error(), r.now()
			r.log.Warn("replica: sync failed", "remote", redact(rp.URL), "repo", name, "err", err)
		} else {
			s.LastSuccess, s.Heads = r.now(), map[string]store.Hash{store.DefaultBranch: head}
		}
		out.Repos[name] = s
	}
	return out
}

// replicaRepos lists the repositories a replica covers: the names it lists literally, and
// those its patterns match here or (for a directory remote) there.
func (r *Runner) replicaRepos(ctx context.Context, rp Replica) ([]string, error) {
	set := map[string]bool{}
	var patterns []string
	for _, p := range rp.Repos {
		if strings.ContainsAny(p, "*?[\\") {
			patterns = append(patterns, p)
		} else if store.CheckRepoName(p) == nil {
			set[p] = true
		}
	}
	if len(patterns) > 0 {
		local, err := r.repos.List(ctx)
		if err != nil {
			return nil, err
		}
		var remote []string
		if !IsHTTP(rp.URL) {
			if remote, err = listDir(rp.URL); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		for _, n := range slices.Concat(local, remote) {
			for _, p := range patterns {
				if ok, _ := path.Match(p, n); ok {
					set[n] = true
				}
			}
		}
	}
	var names []string
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// listDir lists the repositories below a directory remote.
func listDir(dir string) ([]string, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	rs, err := store.OpenRepos(dir, nil)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	return rs.List(context.Background())
}

// maxSyncRounds bounds how often SyncRepo pulls again after losing a push race.
const maxSyncRounds = 3

// SyncRepo syncs repository name with the same repository below a replica URL: it pulls
// the remote's main branch with merge (creating the local repository if needed), then
// pushes the result (creating the remote one if needed). It returns the head both now
// have. A merge conflict is a *store.MergeConflictError and leaves both sides unchanged.
func (r *Runner) SyncRepo(ctx context.Context, url, credentialsFile, name string) (store.Hash, error) {
	rm, err := remoteFor(url, credentialsFile, name)
	if err != nil {
		return "", err
	}
	repo, err := r.repos.Repo(ctx, name, true)
	if err != nil {
		return "", err
	}
	for round := 0; ; round++ {
		h, err := repo.Fetch(ctx, rm, store.DefaultBranch)
		switch {
		case err == nil:
			if isEmptyRoot(ctx, repo, h) {
				break // a repository just created over there: nothing to merge
			}
			merge := func() error {
				_, err := repo.Merge(ctx, store.MergeRequest{Into: store.DefaultBranch, From: string(h), Author: r.sig,
					Message: "Merge " + store.DefaultBranch + " from replica " + redact(url)})
				return err
			}
			err := merge()
			var mc *store.MergeConflictError
			if errors.As(err, &mc) && isMailRepo(name) {
				// Both sides delivered into one mailbox: move ours off their UIDs, merge again.
				n, rerr := renumberMail(ctx, repo, h, r.sig)
				if rerr != nil && !errors.Is(rerr, store.ErrConflict) {
					return "", fmt.Errorf("replica: renumber %s: %w", name, rerr)
				}
				if n > 0 {
					r.log.Info("replica: local messages moved to new UIDs", "repo", name, "messages", n)
					err = merge()
				} else if rerr != nil && round+1 < maxSyncRounds {
					continue // a local commit came in between: start over
				}
			}
			if err != nil {
				return "", fmt.Errorf("replica: merge %s from %s: %w", name, redact(url), err)
			}
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, transport.ErrRepositoryNotFound):
			// Nothing there yet: the push below creates it.
			if err := ensureRemoteRepo(ctx, rm, r.log); err != nil {
				return "", fmt.Errorf("replica: %s: %w", redact(rm.URL), err)
			}
		default:
			return "", err
		}
		err = pushBranch(ctx, repo, rm, store.DefaultBranch)
		if err == nil {
			return repo.Resolve(ctx, store.DefaultBranch)
		}
		if !errors.Is(err, store.ErrConflict) || round+1 >= maxSyncRounds {
			return "", err
		}
	}
}

// isEmptyRoot reports whether commit h is what store.Init makes: no parents, no keys.
func isEmptyRoot(ctx context.Context, s store.Store, h store.Hash) bool {
	log, err := s.Log(ctx, string(h), 2)
	if err != nil || len(log) != 1 {
		return false
	}
	keys, err := s.List(ctx, string(h), "")
	return err == nil && len(keys) == 0
}

// pushBranch pushes a branch. An HTTP remote whose branch holds only the empty root
// commit of a repository its server just created (a Hearth store appliance creates one on
// the first push) refuses the push from a repository that lacks that commit; pushBranch
// then fetches it, which lets the push replace it.
func pushBranch(ctx context.Context, repo *store.Repo, rm store.Remote, branch string) error {
	err := repo.Push(ctx, rm, branch)
	if err == nil || !IsHTTP(rm.URL) || !errors.Is(err, store.ErrConflict) {
		return err
	}
	h, ferr := repo.Fetch(ctx, rm, branch)
	if ferr != nil || !isEmptyRoot(ctx, repo, h) {
		return err
	}
	return repo.Push(ctx, rm, branch)
}
