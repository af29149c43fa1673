// Package backup pushes a data directory's repositories to backup remotes, and syncs
// replicas both ways.
//
// # Backups
//
// A backup remote (Remote) is a directory or an http(s) git URL. Every repository of
// DATA/repos (or those Remote.Repos selects) is pushed, every branch of it, to
// URL/OWNER/NAME.git: for a directory that is a bare git repository created on first
// push; for HTTP it is the smart-HTTP address of a git server. Another Hearth's store
// appliance serves /OWNER/NAME.git but lets a user reach only their own repositories, so a
// backup there, with that user's credentials, covers that user's repositories only (use
// Repos: ["alice/*"]); a whole data directory, system/accounts included, needs a directory
// remote or a git server that accepts any path. A pass skips a repository whose branches
// are where the last successful push left them. A pass to a directory remote also copies
// the data directory's files that Options.Files names into URL/_files (FilesDir), at the
// same relative paths with the same modes, durably, and only those that changed; a file
// missing from the data directory is skipped (the backup keeps its copy). Runner.Run
// passes every Remote.Every and as soon as Remote.AfterCommits commits have been made
// since its last pass (counted with the store's Watch, so commits of other processes
// count too).
//
// # Restore
//
// Restore rebuilds a data directory from a backup: from a directory every repository
// below it; from HTTP the repositories that GET URL/api/repos lists for the credentials'
// user (a Hearth store appliance lists the caller's own), each with the branches GET
// /api/repos/OWNER/NAME/branches lists. The accounts come back with system/accounts when
// it was backed up. From a directory the files of URL/_files (FilesDir) come back too,
// with their modes, before any repository and before anything opens the data directory:
// with the home CA among them (cmd/hearth backs up DATA/ca's key and certificate and
// names.json) a restored Hearth keeps its CA, and devices that trusted it need nothing
// new. A file that already exists in the data directory with other content stops the
// restore (a *FileConflictError: move it away to restore the backup's); an identical one
// is fine. An HTTP remote never holds these files (a CA key must not go to another
// machine), nor does a directory backup made before they were copied: then only
// repositories come back, and the home CA and names.json are made afresh (clients must
// trust the new CA).
//
// # Replicas
//
// A Replica is another Hearth (its DATA/repos directory or its store appliance) with which
// the repositories Replica.Repos names are kept in sync both ways: a pass pulls the
// remote's main branch with merge (MergeRules resolve keys both sides changed) and pushes
// the result; a push that loses a race pulls and pushes again (up to 3 rounds). See
// MergeRules for what each layout's rule does. Mail needs one more step: when both sides
// delivered into one mailbox since they last synced, both gave their new messages the same
// UIDs; the sync then moves its own side's new messages to fresh UIDs (IMAP clients of
// that side see them expunged and delivered again) and merges. Two sides that each create
// a user's mailboxes before their first sync get two mailboxes of one name (mailbox ids
// are random): start a replica from one side's data (the first sync before any use of
// the other). Contacts and events edited on both sides keep the newer side's version
// whole (by head commit time, one-second precision); the other version stays in history.
// The accounts (system/accounts) can be replicated too; sharing grants and passwords then
// follow the same last-writer-wins rule per record.
//
// Configuration and state are JSON files in the data directory (ConfigFile, StateFile),
// replaced atomically and durably.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-home/hearth/store"
)

// Options tune a Runner. The zero value is usable.
type Options struct {
	// Logger receives pass results and errors. nil: slog.Default().
	Logger *slog.Logger
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// Author signs the merge commits of replica passes (empty: "hearth replica").
	Author store.Signature
	// Rescan is how often Run rereads the configuration and looks for new repositories
	// to watch (<= 0: one minute).
	Rescan time.Duration
	// Files are files of the data directory (paths relative to it, slash-separated) that a
	// pass copies to each directory remote, below FilesDir, with their modes; HTTP remotes
	// never get them. cmd/hearth names the home CA's files and names.json here.
	Files []string
}

// Runner runs backup and replica passes over one data directory.
type Runner struct {
	data  string
	repos *store.Repos
	log   *slog.Logger
	now   func() time.Time
	sig   store.Signature
	scan  time.Duration
	files []string

	passMu  sync.Mutex   // one pass at a time
	commits atomic.Int64 // commits seen by the watches since Run started
	kick    chan struct{}

	watchMu  sync.Mutex
	watching map[string]bool
}

// Open returns a Runner for the data directory dataDir (its repositories are in
// dataDir/repos). It opens the repositories with MergeRules.
func Open(dataDir string, opts Options) (*Runner, error) {
	if err := checkFiles(opts.Files); err != nil {
		return nil, err
	}
	r := &Runner{data: dataDir, log: opts.Logger, now: opts.Now, sig: opts.Author, scan: opts.Rescan,
		files: append([]string(nil), opts.Files...),
		kick:  make(chan struct{}, 1), watching: map[string]bool{}}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.sig.Name == "" {
		r.sig = store.Signature{Name: "hearth replica", Email: "replica@hearth.invalid"}
	}
	if r.scan <= 0 {
		r.scan = time.Minute
	}
	repos, err := store.OpenRepos(filepath.Join(dataDir, "repos"), &store.Options{Logger: r.log, MergeRules: MergeRules()})
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	r.repos = repos
	return r, nil
}

// Close closes the repositories the Runner opened.
func (r *Runner) Close() error { return r.repos.Close() }

// Repos returns the Runner's repositories (opened with MergeRules).
func (r *Runner) Repos() *store.Repos { return r.repos }

// Pass runs one pass now over every backup remote and replica of the configuration, and
// records the results in the StateFile. The error is about the pass as a whole (the
// configuration, the state file); each repository's outcome is in the returned State.
func (r *Runner) Pass(ctx context.Context) (State, error) {
	cfg, err := LoadConfig(r.data)
	if err != nil {
		return State{}, err
	}
	return r.pass(ctx, cfg, func(string) bool { return true }, func(string) bool { return true })
}

// pass runs the backups and replicas that wantBackup and wantReplica select.
func (r *Runner) pass(ctx context.Context, cfg Config, wantBackup, wantReplica func(url string) bool) (State, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	results := State{Backups: map[string]*RemoteState{}, Replicas: map[string]*RemoteState{}}
	old, err := LoadState(r.data)
	if err != nil {
		return State{}, err
	}
	for _, b := range cfg.Backups {
		if wantBackup(b.URL) {
			results.Backups[b.URL] = r.backupPass(ctx, b, old.Backups[b.URL])
		}
	}
	for _, rp := range cfg.Replicas {
		if wantReplica(rp.URL) {
			results.Replicas[rp.URL] = r.replicaPass(ctx, rp, old.Replicas[rp.URL])
		}
	}
	return r.saveState(results)
}

// saveState merges a pass's results into the StateFile (under a file lock, so a "hearth
// backup run" beside a running Hearth loses nothing) and returns the whole state.
func (r *Runner) saveState(results State) (State, error) {
	unlock, err := lockFile(filepath.Join(r.data, StateFile+".lock"))
	if err != nil {
		return State{}, fmt.Errorf("backup: lock state: %w", err)
	}
	defer unlock()
	st, err := LoadState(r.data)
	if err != nil {
		return State{}, err
	}
	merge := func(into, from map[string]*RemoteState) {
		for url, rs := range from {
			cur := into[url]
			if cur == nil {
				cur = &RemoteState{}
				into[url] = cur
			}
			if cur.Repos == nil {
				cur.Repos = map[string]RepoState{}
			}
			cur.LastPass = rs.LastPass
			if rs.Files != nil {
				f := *rs.Files
				if f.LastSuccess.IsZero() && cur.Files != nil { // failed this time: keep the last success
					f.LastSuccess, f.Files, f.Copied = cur.Files.LastSuccess, cur.Files.Files, cur.Files.Copied
				}
				cur.Files = &f
			}
			for name, s := range rs.Repos {
				prev := cur.Repos[name]
				if s.LastSuccess.IsZero() { // failed this time: keep the last success
					s.LastSuccess, s.Heads = prev.LastSuccess, prev.Heads
				}
				cur.Repos[name] = s
			}
		}
	}
	merge(st.Backups, results.Backups)
	merge(st.Replicas, results.Replicas)
	if err := writeJSON(filepath.Join(r.data, StateFile), st); err != nil {
		return State{}, err
	}
	return st, nil
}

// remoteFor returns the store.Remote of repository name below url.
func remoteFor(url, credentialsFile, name string) (store.Remote, error) {
	user, password, err := readCredentials(credentialsFile)
	if err != nil {
		return store.Remote{}, err
	}
	return store.Remote{URL: repoURL(url, name), User: user, Password: password}, nil
}

// ensureRemoteRepo creates the bare repository a directory remote needs before a push.
func ensureRemoteRepo(ctx context.Context, rm store.Remote, log *slog.Logger) error {
	if IsHTTP(rm.URL) {
		return nil // the server creates repositories on push (a Hearth store appliance does)
	}
	repo, err := store.Open(rm.URL, &store.Options{Logger: log})
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, store.ErrNotFound) {
		if err := os.MkdirAll(filepath.Dir(rm.URL), 0o700); err != nil {
			return err
		}
		repo, err = store.Init(rm.URL, &store.Options{Logger: log})
		if err != nil { // made by someone else meanwhile?
			var oerr error
			if repo, oerr = store.Open(rm.URL, &store.Options{Logger: log}); oerr == nil {
				err = nil
			}
		}
	}
	if err != nil {
		return err
	}
	return repo.Close()
}

// backupPass pushes every selected repository to one backup remote.
func (r *Runner) backupPass(ctx context.Context, b Remote, prev *RemoteState) *RemoteState {
	out := &RemoteState{LastPass: r.now(), Repos: map[string]RepoState{}}
	if len(r.files) > 0 && !IsHTTP(b.URL) {
		out.Files = r.backupFiles(b.URL)
	}
	names, err := r.repos.List(ctx)
	if err != nil {
		r.log.Error("backup: list repositories", "err", err)
		return out
	}
	for _, name := range names {
		if !matches(b.Repos, name) {
			continue
		}
		var last RepoState
		if prev != nil {
			last = prev.Repos[name]
		}
		heads, err := r.pushRepo(ctx, b.URL, b.CredentialsFile, name, last)
		s := RepoState{}
		if err != nil {
			s.LastError, s.LastErrorAt = err.Error(), r.now()
			r.log.Warn("backup: push failed", "remote", redact(b.URL), "repo", name, "err", err)
		} else {
			s.LastSuccess, s.Heads = r.now(), heads
		}
		out.Repos[name] = s
	}
	return out
}

// pushRepo pushes the branches of one repository that moved since last.
func (r *Runner) pushRepo(ctx context.Context, url, creds, name string, last RepoState) (map[string]store.Hash, error) {
	repo, err := r.repos.Repo(ctx, name, false)
	if err != nil {
		return nil, err
	}
	branches, err := repo.Branches(ctx)
	if err != nil {
		return nil, err
	}
	heads := map[string]store.Hash{}
	var todo []string
	// A branch pushed before is skipped only where that is cheap to trust: the directory
	// remote still holds the repository (a replaced backup disk gets everything again). An
	// HTTP remote is always asked; an unchanged branch costs one ref advertisement.
	_, statErr := os.Stat(repoURL(url, name))
	trust := !IsHTTP(url) && statErr == nil && last.LastError == ""
	for _, br := range branches {
		heads[br.Name] = br.Head
		if !trust || last.Heads[br.Name] != br.Head {
			todo = append(todo, br.Name)
		}
	}
	if len(todo) == 0 {
		return heads, nil
	}
	rm, err := remoteFor(url, creds, name)
	if err != nil {
		return nil, err
	}
	if err := ensureRemoteRepo(ctx, rm, r.log); err != nil {
		return nil, fmt.Errorf("backup: %s: %w", redact(rm.URL), err)
	}
	var errs []error
	for _, br := range todo {
		if err := pushBranch(ctx, repo, rm, br); err != nil {
			errs = append(errs, err)
			delete(heads, br)
		}
	}
	return heads, errors.Join(errs...)
}

// Run passes over the backup remotes and replicas until ctx ends: each backup remote every
// Remote.Every and after Remote.AfterCommits commits, each replica every Replica.Every and
// after any commit. It rereads the configuration every Options.Rescan, so remotes added
// with "hearth backup add" while it runs are picked up. It returns ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := LoadState(r.data)
	if err != nil {
		r.log.Warn("backup: state", "err", err)
		st, _ = LoadState(os.DevNull)
	}
	lastPass := map[string]time.Time{}
	for url, rs := range st.Backups {
		lastPass["b "+url] = rs.LastPass
	}
	for url, rs := range st.Replicas {
		lastPass["r "+url] = rs.LastPass
	}
	commitsAt := map[string]int64{}
	nextScan := time.Time{}
	var cfg Config
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-r.kick:
		}
		now := r.now()
		if !now.Before(nextScan) {
			c, err := LoadConfig(r.data)
			if err != nil {
				r.log.Warn("backup: configuration", "err", err)
			} else {
				cfg = c
			}
			if len(cfg.Backups)+len(cfg.Replicas) > 0 { // nothing to count commits for otherwise
				r.watchAll(ctx)
			}
			nextScan = now.Add(r.scan)
		}
		commits := r.commits.Load()
		next := nextScan
		dueB, dueR := map[string]bool{}, map[string]bool{}
		for _, b := range cfg.Backups {
			every := orDefault(time.Duration(b.Every), DefaultEvery)
			after := b.AfterCommits
			if after == 0 {
				after = DefaultAfterCommits
			}
			k := "b " + b.URL
			if _, seen := commitsAt[k]; !seen {
				commitsAt[k] = commits
			}
			if !now.Before(lastPass[k].Add(every)) || after > 0 && commits-commitsAt[k] >= int64(after) {
				dueB[b.URL] = true
				lastPass[k], commitsAt[k] = now, commits
			}
			next = earliest(next, lastPass[k].Add(every))
		}
		for _, rp := range cfg.Replicas {
			every := orDefault(time.Duration(rp.Every), DefaultReplicaEvery)
			k := "r " + rp.URL
			if at, seen := commitsAt[k]; !seen || commits != at || !now.Before(lastPass[k].Add(every)) {
				dueR[rp.URL] = true
				lastPass[k], commitsAt[k] = now, commits
			}
			next = earliest(next, lastPass[k].Add(every))
		}
		if len(dueB)+len(dueR) > 0 {
			if _, err := r.pass(ctx, cfg, func(u string) bool { return dueB[u] }, func(u string) bool { return dueR[u] }); err != nil {
				r.log.Warn("backup: pass", "err", err)
			}
			// The replica passes' own merge commits must not trigger another round.
			for _, rp := range cfg.Replicas {
				if dueR[rp.URL] {
					commitsAt["r "+rp.URL] = r.commits.Load()
				}
			}
		}
		timer.Reset(max(next.Sub(r.now()), 10*time.Millisecond))
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// watchAll starts a watch of the main branch of every repository not watched yet; each
// commit adds to r.commits and wakes Run.
func (r *Runner) watchAll(ctx context.Context) {
	names, err := r.repos.List(ctx)
	if err != nil {
		r.log.Warn("backup: list repositories", "err", err)
		return
	}
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	for _, name := range names {
		if r.watching[name] {
			continue
		}
		repo, err := r.repos.Repo(ctx, name, false)
		if err != nil {
			continue
		}
		head, err := repo.Resolve(ctx, store.DefaultBranch)
		if err != nil {
			continue
		}
		ch, err := repo.Watch(ctx, store.DefaultBranch, "")
		if err != nil {
			continue
		}
		r.watching[name] = true
		go func() {
			defer func() {
				r.watchMu.Lock()
				delete(r.watching, name)
				r.watchMu.Unlock()
			}()
			last := head
			for ev := range ch {
				r.commits.Add(countCommits(ctx, repo, ev.Commit.ID, last))
				last = ev.Commit.ID
				select {
				case r.kick <- struct{}{}:
				default:
				}
			}
		}()
	}
}

// maxCount bounds how far back countCommits looks.
const maxCount = 1000

// countCommits counts the commits from head back to (not including) last, at most maxCount.
func countCommits(ctx context.Context, s store.Historian, head, last store.Hash) int64 {
	log, err := s.Log(ctx, string(head), maxCount)
	if err != nil {
		return 1
	}
	for i, c := range log {
		if c.ID == last {
			return int64(max(i, 1))
		}
	}
	return int64(len(log))
}

// SortedRepos returns the repository names of a RemoteState, sorted.
func (rs *RemoteState) SortedRepos() []string {
	var names []string
	for n := range rs.Repos {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
