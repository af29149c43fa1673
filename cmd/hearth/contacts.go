package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearth-home/hearth/contacts"
	"github.com/hearth-home/hearth/signpost"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// contactsCommands are the "hearth contacts ..." commands (import, export, restore).
func contactsCommands() []command {
	return []command{
		{"contacts import", "[-data DIR] USER FILE.vcf [-collection NAME]", "import a .vcf file into a user's address book, one resource per UID", cmdContactsImport},
		{"contacts export", "[-data DIR] USER [-collection NAME] [-o FILE]", "write a user's address books (or one) as one .vcf file", cmdContactsExport},
		{"contacts restore", "[-data DIR] USER [COLLECTION] --since TIME", "bring back address books and contacts deleted since TIME (RFC 3339, or a duration ago such as 2h)", cmdContactsRestore},
	}
}

// parseInterleaved parses flags that may come before, between or after the arguments,
// and returns the arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// withContacts parses a contacts command's flags, wants between min and max arguments
// (the first a user name), opens the data directory and runs fn.
func withContacts(ctx context.Context, s stdio, name, synopsis string, minArgs, maxArgs int, args []string,
	addFlags func(*flag.FlagSet), fn func(c *storedav.Collections, args []string) error) int {
	fs := flagSet(s, name, synopsis)
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	if addFlags != nil {
		addFlags(fs)
	}
	pos, err := parseInterleaved(fs, args)
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
		logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if _, err := os.Stat(*data); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		repos, err := store.OpenRepos(filepath.Join(*data, "repos"), &store.Options{Logger: logger})
		if err != nil {
			return err
		}
		defer func() {
			if cerr := repos.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		a, err := signpost.OpenAccounts(ctx, repos, signpost.AccountsOptions{Logger: logger})
		if err != nil {
			return err
		}
		users, err := a.List(ctx)
		if err != nil {
			return err
		}
		known := false
		for _, u := range users {
			known = known || u.Name == pos[0]
		}
		if !known {
			return fmt.Errorf("no user %q", pos[0])
		}
		c := storedav.NewCollections(repos, contacts.NewKind(), storedav.Limits{}, logger)
		return fn(c, pos)
	}()
	if err != nil {
		fmt.Fprintf(s.err, "hearth %s: %v\n", name, err)
		return 1
	}
	return 0
}

func cmdContactsImport(ctx context.Context, s stdio, args []string) int {
	var coll *string
	return withContacts(ctx, s, "contacts import", "[-data DIR] USER FILE.vcf [-collection NAME]", 2, 2, args,
		func(fs *flag.FlagSet) {
			coll = fs.String("collection", "default", "address book to import into (made if missing)")
		},
		func(c *storedav.Collections, args []string) error {
			f, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			cards, err := contacts.Split(f)
			if err != nil {
				return err
			}
			res, err := contacts.Import(storedav.WithUser(ctx, args[0]), c, args[0], *coll, cards)
			if err != nil {
				return err
			}
			for _, sk := range res.Skipped {
				fmt.Fprintf(s.err, "skipped %s\n", sk)
			}
			fmt.Fprintf(s.out, "%d created, %d updated, %d unchanged, %d skipped in %s/%s\n",
				res.Created, res.Updated, res.Unchanged, len(res.Skipped), args[0], *coll)
			return nil
		})
}

func cmdContactsExport(ctx context.Context, s stdio, args []string) int {
	var coll, out *string
	return withContacts(ctx, s, "contacts export", "[-data DIR] USER [-collection NAME] [-o FILE]", 1, 1, args,
		func(fs *flag.FlagSet) {
			coll = fs.String("collection", "", "address book to export (default: all)")
			out = fs.String("o", "", "file to write (default: standard output)")
		},
		func(c *storedav.Collections, args []string) error {
			w := s.out
			var f *os.File
			if *out != "" {
				var err error
				if f, err = os.Create(*out); err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			n, err := contacts.Export(ctx, c, args[0], *coll, w)
			if err != nil {
				return err
			}
			if f != nil {
				if err := f.Sync(); err != nil {
					return err
				}
				fmt.Fprintf(s.err, "%d contacts written to %s\n", n, *out)
			}
			return nil
		})
}

// contactsSince reads an RFC 3339 time, a "2006-01-02 15:04" local time, or a duration ago.
func contactsSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time, YYYY-MM-DD [HH:MM], or a duration such as 2h", v)
}

func cmdContactsRestore(ctx context.Context, s stdio, args []string) int {
	var since *string
	return withContacts(ctx, s, "contacts restore", "[-data DIR] USER [COLLECTION] --since TIME", 1, 2, args,
		func(fs *flag.FlagSet) {
			since = fs.String("since", "", "restore what was deleted after this time (required)")
		},
		func(c *storedav.Collections, args []string) error {
			if *since == "" {
				return fmt.Errorf("--since TIME is required")
			}
			t, err := contactsSince(*since, time.Now())
			if err != nil {
				return err
			}
			coll := ""
			if len(args) > 1 {
				coll = args[1]
			}
			got, err := c.Restore(storedav.WithUser(ctx, args[0]), args[0], coll, t)
			if err != nil {
				return err
			}
			if len(got) == 0 {
				fmt.Fprintln(s.out, "nothing to restore")
				return nil
			}
			fmt.Fprintf(s.out, "restored %d: %s\n", len(got), strings.Join(got, " "))
			return nil
		})
}
