package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// parseInterspersed parses flags that may come before, between or after the positional
// arguments (as in "hearth contacts import alice f.vcf -collection work"), which it
// returns; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseSince reads a point in time for the restore commands: RFC 3339, a date or a date
// and time in local time, or a duration before now ("2h").
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, errors.New("required")
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, 2006-01-02[ 15:04], or a duration like 2h)", v)
}

// withCollections parses a contacts or calendar command's flags, wants between minArgs
// and maxArgs positional arguments (the first a user's name), opens the data directory,
// checks the user exists, and runs fn with the collections of kind.
func withCollections(ctx context.Context, s stdio, kind *storedav.Kind, name, synopsis string, minArgs, maxArgs int, args []string,
	addFlags func(*flag.FlagSet), fn func(c *storedav.Collections, args []string) error) int {
	fs := flagSet(s, name, synopsis)
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if addFlags != nil {
		addFlags(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		fmt.Fprintf(s.err, "hearth %s: want %d to %d arguments, got %d\n", name, minArgs, maxArgs, len(pos))
		fs.Usage()
		return 2
	}
	if err := signpost.CheckName(pos[0]); err != nil {
		fmt.Fprintf(s.err, "hearth %s: %v\n", name, err)
		return 2
	}
	err = func() (err error) {
		repos, _, logger, err := openUserData(ctx, s, *data, pos[0])
		if err != nil {
			return err
		}
		defer func() {
			if cerr := repos.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		return fn(storedav.NewCollections(repos, kind, storedav.Limits{}, logger), pos)
	}()
	if err != nil {
		fmt.Fprintf(s.err, "hearth %s: %v\n", name, err)
		return 1
	}
	return 0
}

// openUserData opens an existing data directory's repositories and accounts for a command
// about user, who must exist; the caller closes the repositories.
func openUserData(ctx context.Context, s stdio, data, user string) (*store.Repos, *signpost.Accounts, *slog.Logger, error) {
	if _, err := os.Stat(data); err != nil {
		return nil, nil, nil, fmt.Errorf("data directory: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	repos, err := store.OpenRepos(filepath.Join(data, "repos"), &store.Options{Logger: logger})
	if err != nil {
		return nil, nil, nil, err
	}
	accounts, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: logger})
	if err == nil {
		var users []signpost.User
		if users, err = accounts.List(ctx); err == nil && !slices.ContainsFunc(users, func(u signpost.User) bool { return u.Name == user }) {
			err = fmt.Errorf("no user %q (add one with \"hearth user add\")", user)
		}
	}
	if err != nil {
		return nil, nil, nil, errors.Join(err, repos.Close())
	}
	return repos, accounts, logger, nil
}
