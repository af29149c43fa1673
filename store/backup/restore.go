package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storehttp"
)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// CredentialsFile names a file of "user:password" for an HTTP remote.
	CredentialsFile string
	// Logger receives progress. nil: slog.Default().
	Logger *slog.Logger
	// HTTPClient is used for an HTTP remote's listing (nil: a default client).
	HTTPClient *http.Client
}

// maxRestoreRepos bounds the repositories one restore brings back.
const maxRestoreRepos = 100000

// RestoreResult is what RestoreAll brought back.
type RestoreResult struct {
	// Repos are the repositories restored.
	Repos []string
	// Files are the files of the backup's FilesDir now in the data directory (copied, or
	// already there with the same content), slash-separated paths relative to it.
	Files []string
	// HasFiles reports whether the backup had a FilesDir at all; a directory backup made
	// before files were copied, and every HTTP remote, has none.
	HasFiles bool
}

// Restore is RestoreAll returning the names of the repositories restored.
func Restore(ctx context.Context, dataDir, remote string, opts RestoreOptions) ([]string, error) {
	res, err := RestoreAll(ctx, dataDir, remote, opts)
	return res.Repos, err
}

// RestoreAll rebuilds the data directory dataDir from a backup remote (see the package
// doc for what a directory and an HTTP remote cover). dataDir/repos must not hold any
// repository yet, so that a restore never mixes with live data. From a directory remote
// the files of its FilesDir are copied back first, before any repository: a file that
// exists in dataDir with other content stops the restore with a *FileConflictError
// (nothing is restored then); one with the same content is fine.
func RestoreAll(ctx context.Context, dataDir, remote string, opts RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := CheckURL(remote); err != nil {
		return res, err
	}
	root := filepath.Join(dataDir, "repos")
	repos, err := store.OpenRepos(root, &store.Options{Logger: log})
	if err != nil {
		return res, fmt.Errorf("backup: restore: %w", err)
	}
	defer repos.Close()
	if have, err := repos.List(ctx); err != nil {
		return res, fmt.Errorf("backup: restore: %w", err)
	} else if len(have) > 0 {
		return res, fmt.Errorf("backup: restore into %s: it already holds %d repositories (restore into a new directory): %w", dataDir, len(have), store.ErrConflict)
	}
	user, password, err := readCredentials(opts.CredentialsFile)
	if err != nil {
		return res, err
	}
	if !IsHTTP(remote) {
		if _, err := os.Stat(remote); err != nil {
			return res, fmt.Errorf("backup: restore: %w", err)
		}
		res.Files, res.HasFiles, err = restoreFiles(dataDir, remote)
		if err != nil {
			return res, err
		}
		if res.HasFiles {
			log.Info("restored files", "files", len(res.Files))
		}
	}
	type source struct {
		name     string
		branches []string
	}
	var sources []source
	if IsHTTP(remote) {
		names, err := listHTTP(ctx, opts.HTTPClient, remote, user, password)
		if err != nil {
			return res, err
		}
		for _, n := range names {
			c := storehttp.NewClient(remote, n, storehttp.ClientOptions{HTTPClient: opts.HTTPClient, User: user, Password: password})
			bs, err := c.Branches(ctx)
			c.Close()
			if err != nil {
				return res, fmt.Errorf("backup: restore %s: branches: %w", n, err)
			}
			src := source{name: n}
			for _, b := range bs {
				src.branches = append(src.branches, b.Name)
			}
			sources = append(sources, src)
		}
	} else {
		names, err := listDir(remote)
		if err != nil {
			return res, fmt.Errorf("backup: restore: %w", err)
		}
		for _, n := range names {
			other, err := store.Open(repoURL(remote, n), &store.Options{Logger: log})
			if err != nil {
				return res, fmt.Errorf("backup: restore %s: %w", n, err)
			}
			bs, err := other.Branches(ctx)
			other.Close()
			if err != nil {
				return res, fmt.Errorf("backup: restore %s: %w", n, err)
			}
			src := source{name: n}
			for _, b := range bs {
				src.branches = append(src.branches, b.Name)
			}
			sources = append(sources, src)
		}
	}
	for _, src := range sources {
		repo, err := repos.Repo(ctx, src.name, true)
		if err != nil {
			return res, fmt.Errorf("backup: restore %s: %w", src.name, err)
		}
		rm := store.Remote{URL: repoURL(remote, src.name), User: user, Password: password}
		for _, b := range src.branches {
			h, err := repo.Fetch(ctx, rm, b)
			if err != nil {
				return res, fmt.Errorf("backup: restore %s: %w", src.name, err)
			}
			if b == store.DefaultBranch {
				// Init made an empty root commit, which may move anywhere.
				err = repo.FastForward(ctx, b, h)
			} else {
				_, err = repo.CreateBranch(ctx, b, string(h))
			}
			if err != nil {
				return res, fmt.Errorf("backup: restore %s branch %s: %w", src.name, b, err)
			}
		}
		log.Info("restored", "repo", src.name, "branches", len(src.branches))
		res.Repos = append(res.Repos, src.name)
	}
	return res, nil
}

// listHTTP asks a Hearth store appliance for the repositories of the user (GET /api/repos).
func listHTTP(ctx context.Context, hc *http.Client, remote, user, password string) ([]string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(remote, "/")+"/api/repos", nil)
	if err != nil {
		return nil, fmt.Errorf("backup: restore: %w", err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("backup: restore: list %s: %w", redact(remote), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("backup: restore: list %s: %s", redact(remote), resp.Status)
	}
	var ans struct {
		Repos []string `json:"repos"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("backup: restore: list %s: %w", redact(remote), err)
	}
	if len(ans.Repos) > maxRestoreRepos {
		return nil, fmt.Errorf("backup: restore: %d repositories: %w", len(ans.Repos), store.ErrTooLarge)
	}
	for _, n := range ans.Repos {
		if err := store.CheckRepoName(n); err != nil {
			return nil, fmt.Errorf("backup: restore: listed %q: %w", n, err)
		}
	}
	return ans.Repos, nil
}
