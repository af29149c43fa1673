package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store/backup"
)

// backupOptions are the options of every backup Runner of cmd/hearth: directory remotes
// also get the home CA and names.json, so that a restore keeps the CA.
func backupOptions(logger *slog.Logger) backup.Options {
	return backup.Options{Logger: logger, Files: signpost.CAFiles()}
}

// backupCommands are the backup, restore and replica commands.
func backupCommands() []command {
	return []command{
		{"backup add", "[-data DIR] [-credentials FILE] [-every D] [-after N] [-repos P,...] REMOTE", "push every repository to REMOTE (a directory or an http(s) git URL) periodically and after N commits", cmdBackupAdd},
		{"backup status", "[-data DIR]", "show the last success and last error per remote and repository", cmdBackupStatus},
		{"backup run", "[-data DIR]", "run one pass over every backup remote and replica now", cmdBackupRun},
		{"restore", "[-data NEWDIR] [-credentials FILE] REMOTE", "rebuild a data directory (repositories, accounts, and from a directory backup the home CA) from a backup", cmdRestore},
		{"replica add", "[-data DIR] [-credentials FILE] [-every D] -repos P,... REMOTE", "sync repositories both ways with another Hearth (pull with merge, then push)", cmdReplicaAdd},
	}
}

// isCAFile reports whether rel (relative to the data directory) is one of the home CA's
// files.
func isCAFile(rel string) bool {
	return rel != signpost.NamesFile && slices.Contains(signpost.CAFiles(), rel)
}

// remoteArg makes a directory remote absolute (hearth up may run elsewhere).
func remoteArg(s string) (string, error) {
	if backup.IsHTTP(s) || strings.Contains(s, "://") {
		return s, nil // CheckURL judges it
	}
	return filepath.Abs(s)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func absOrEmpty(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}

func cmdBackupAdd(_ context.Context, s stdio, args []string) int {
	const syn = "[-data DIR] [-credentials FILE] [-every D] [-after N] [-repos P,...] REMOTE"
	fs := flagSet(s, "backup add", syn)
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	creds := fs.String("credentials", "", "file holding \"user:password\" for an HTTP remote")
	every := fs.Duration("every", backup.DefaultEvery, "how often to push")
	after := fs.Int("after", backup.DefaultAfterCommits, "push early after this many commits (-1: only periodically)")
	repos := fs.String("repos", "", "comma-separated repositories or patterns (alice/*); empty: all")
	if code, ok := parseFlags(fs, args, 1); !ok {
		return code
	}
	err := func() error {
		url, err := remoteArg(fs.Arg(0))
		if err != nil {
			return err
		}
		cf, err := absOrEmpty(*creds)
		if err != nil {
			return err
		}
		if *after == 0 {
			*after = -1 // 0 in the file means the default
		}
		r := backup.Remote{URL: url, CredentialsFile: cf, Every: backup.Duration(*every), AfterCommits: *after, Repos: splitList(*repos)}
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return err
		}
		if err := backup.AddBackup(*data, r); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "backup to %s every %v and after %d commits; \"hearth up\" runs it, \"hearth backup run\" does a pass now\n", url, *every, *after)
		if backup.IsHTTP(url) {
			fmt.Fprintln(s.out, "the home CA is not included (its key must not go to another machine): a restore from this remote makes a new CA that devices must trust again")
		} else {
			fmt.Fprintf(s.out, "the home CA and names.json are copied too (%s): a restore keeps the CA devices trust; keep the backup as private as the data\n", strings.Join(signpost.CAFiles(), ", "))
		}
		return nil
	}()
	if err != nil {
		fmt.Fprintln(s.err, "hearth backup add:", err)
		return 1
	}
	return 0
}

func cmdReplicaAdd(_ context.Context, s stdio, args []string) int {
	const syn = "[-data DIR] [-credentials FILE] [-every D] -repos P,... REMOTE"
	fs := flagSet(s, "replica add", syn)
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	creds := fs.String("credentials", "", "file holding \"user:password\" for an HTTP remote")
	every := fs.Duration("every", backup.DefaultReplicaEvery, "how often to sync (and after every commit)")
	repos := fs.String("repos", "", "comma-separated repositories or patterns to sync, such as alice/contacts,alice/calendar (required)")
	if code, ok := parseFlags(fs, args, 1); !ok {
		return code
	}
	err := func() error {
		url, err := remoteArg(fs.Arg(0))
		if err != nil {
			return err
		}
		cf, err := absOrEmpty(*creds)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return err
		}
		if err := backup.AddReplica(*data, backup.Replica{URL: url, CredentialsFile: cf, Every: backup.Duration(*every), Repos: splitList(*repos)}); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "replica %s: syncing %s every %v and after each commit\n", url, *repos, *every)
		return nil
	}()
	if err != nil {
		fmt.Fprintln(s.err, "hearth replica add:", err)
		return 1
	}
	return 0
}

func cmdBackupStatus(_ context.Context, s stdio, args []string) int {
	fs := flagSet(s, "backup status", "[-data DIR]")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	cfg, err := backup.LoadConfig(*data)
	if err != nil {
		fmt.Fprintln(s.err, "hearth backup status:", err)
		return 1
	}
	st, err := backup.LoadState(*data)
	if err != nil {
		fmt.Fprintln(s.err, "hearth backup status:", err)
		return 1
	}
	printState(s, cfg, st)
	return 0
}

// printState prints a table of every remote's repositories.
func printState(s stdio, cfg backup.Config, st backup.State) {
	if len(cfg.Backups)+len(cfg.Replicas) == 0 {
		fmt.Fprintln(s.out, "no backup remotes or replicas (add one with \"hearth backup add\")")
		return
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tREMOTE\tREPOSITORY\tLAST SUCCESS\tLAST ERROR")
	row := func(kind, url string, rs *backup.RemoteState) {
		if rs != nil && rs.Files != nil {
			f := rs.Files
			ok := "never"
			if !f.LastSuccess.IsZero() {
				ok = fmt.Sprintf("%s (%d files, %d copied)", f.LastSuccess.Local().Format(time.DateTime), f.Files, f.Copied)
			}
			e := ""
			if f.LastError != "" {
				e = f.LastErrorAt.Local().Format(time.DateTime) + " " + oneLine(f.LastError, 120)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", kind, url, "(CA and names files)", ok, e)
		}
		if rs == nil || len(rs.Repos) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\tnever\t\n", kind, url)
			return
		}
		for _, name := range rs.SortedRepos() {
			r := rs.Repos[name]
			ok := "never"
			if !r.LastSuccess.IsZero() {
				ok = r.LastSuccess.Local().Format(time.DateTime)
			}
			e := ""
			if r.LastError != "" {
				e = r.LastErrorAt.Local().Format(time.DateTime) + " " + oneLine(r.LastError, 120)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", kind, url, name, ok, e)
		}
	}
	for _, b := range cfg.Backups {
		row("backup", b.URL, st.Backups[b.URL])
	}
	for _, r := range cfg.Replicas {
		row("replica", r.URL, st.Replicas[r.URL])
	}
	tw.Flush()
}

func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func cmdBackupRun(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "backup run", "[-data DIR]")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if code, ok := parseFlags(fs, args, 0); !ok {
		return code
	}
	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := backup.LoadConfig(*data)
	if err == nil && len(cfg.Backups)+len(cfg.Replicas) == 0 {
		err = errors.New("no backup remotes or replicas (add one with \"hearth backup add\")")
	}
	if err != nil {
		fmt.Fprintln(s.err, "hearth backup run:", err)
		return 1
	}
	r, err := backup.Open(*data, backupOptions(logger))
	if err != nil {
		fmt.Fprintln(s.err, "hearth backup run:", err)
		return 1
	}
	st, err := r.Pass(ctx)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(s.err, "hearth backup run:", err)
		return 1
	}
	printState(s, cfg, st)
	for _, rs := range st.Backups {
		if f := rs.Files; f != nil && f.LastError != "" && f.LastErrorAt.After(f.LastSuccess) {
			return 1
		}
		for _, r := range rs.Repos {
			if r.LastError != "" && r.LastErrorAt.After(r.LastSuccess) {
				return 1
			}
		}
	}
	for _, rs := range st.Replicas {
		for _, r := range rs.Repos {
			if r.LastError != "" && r.LastErrorAt.After(r.LastSuccess) {
				return 1
			}
		}
	}
	return 0
}

func cmdRestore(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "restore", "[-data NEWDIR] [-credentials FILE] REMOTE")
	data := fs.String("data", defaultData, "the new data directory (must hold no repositories)")
	creds := fs.String("credentials", "", "file holding \"user:password\" for an HTTP remote")
	if code, ok := parseFlags(fs, args, 1); !ok {
		return code
	}
	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := func() error {
		url, err := remoteArg(fs.Arg(0))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return err
		}
		res, err := backup.RestoreAll(ctx, *data, url, backup.RestoreOptions{CredentialsFile: *creds, Logger: logger})
		for _, f := range res.Files {
			fmt.Fprintln(s.out, "restored file", f)
		}
		for _, n := range res.Repos {
			fmt.Fprintln(s.out, "restored", n)
		}
		if ce := (*backup.FileConflictError)(nil); errors.As(err, &ce) && isCAFile(ce.Rel) {
			return fmt.Errorf("%s exists and differs from the backup's; move it away to restore the backup's CA (or restore into a new directory)", ce.Path)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(s.out, "%d repositories restored into %s; start it with \"hearth up -data %s\"\n", len(res.Repos), *data, *data)
		caRestored := res.HasFiles
		for _, f := range signpost.CAFiles() {
			caRestored = caRestored && (!isCAFile(f) || slices.Contains(res.Files, f))
		}
		if caRestored {
			fmt.Fprintln(s.out, "the home CA was restored: devices that trusted it need nothing new")
		} else if backup.IsHTTP(url) {
			fmt.Fprintln(s.out, "an HTTP backup holds no CA: a new CA is made, clients must trust it again")
		} else if !res.HasFiles {
			fmt.Fprintln(s.out, "this backup holds no CA (made before CAs were backed up): a new CA is made, clients must trust it again")
		} else {
			fmt.Fprintln(s.out, "this backup holds no CA (the data directory had none when it was made): a new CA is made, clients must trust it")
		}
		return nil
	}()
	if err != nil {
		fmt.Fprintln(s.err, "hearth restore:", err)
		return 1
	}
	return 0
}

// startBackups runs the backup and replica loop of the data directory until ctx ends, for
// "hearth up"; the returned function stops it and waits.
func startBackups(ctx context.Context, dataDir string, logger *slog.Logger) (stop func()) {
	r, err := backup.Open(dataDir, backupOptions(logger))
	if err != nil {
		logger.Warn("backups not running", "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
		if err := r.Close(); err != nil {
			logger.Warn("backups: close", "err", err)
		}
	}
}
