package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hearth-home/hearth/calendar"
	"github.com/hearth-home/hearth/store"
	"github.com/hearth-home/hearth/store/storedav"
)

// defaultCalendar is the collection import and export use unless -collection says otherwise.
const defaultCalendar = "calendar"

// calendarCommands are the "hearth calendar ..." commands (import, export, restore) and
// "hearth bench dav".
func calendarCommands() []command {
	return []command{
		{"calendar import", "[-data DIR] [-collection NAME] USER FILE.ics", "import events and todos, one resource per UID (creates the calendar)", cmdCalendarImport},
		{"calendar export", "[-data DIR] [-collection NAME] USER [FILE.ics]", "write a calendar as one .ics file (standard output by default)", cmdCalendarExport},
		{"calendar restore", "[-data DIR] USER [COLLECTION] --since TIME", "bring back calendars or events deleted since TIME (RFC 3339, or a duration ago such as 2h)", cmdCalendarRestore},
		{"bench dav", "[-duration D] [-peers DIR] [-n ITEMS]", "measure the contacts and calendar appliances beside Radicale and Xandikos", cmdBenchDAV},
	}
}

func cmdCalendarImport(ctx context.Context, s stdio, args []string) int {
	var coll *string
	return withCollections(ctx, s, calendar.Kind(), "calendar import", "[-data DIR] [-collection NAME] USER FILE.ics", 2, 2, args,
		func(fs *flag.FlagSet) { coll = fs.String("collection", defaultCalendar, "the calendar to import into") },
		func(c *storedav.Collections, args []string) error {
			user, file := args[0], args[1]
			data, err := readLimited(file, calendar.MaxImportSize)
			if err != nil {
				return err
			}
			res, err := calendar.Split(data)
			if err != nil {
				return err
			}
			ctx := storedav.WithUser(ctx, user)
			if _, err := c.Get(ctx, user, *coll); errors.Is(err, store.ErrNotFound) {
				if err := c.Create(ctx, user, *coll, storedav.Meta{DisplayName: *coll}); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			created, replaced, skipped := 0, 0, 0
			for _, r := range res {
				pr, err := c.Put(ctx, user, *coll, r.Name, r.Data, storedav.Conditions{})
				var pe *storedav.PreconditionError
				if errors.As(err, &pe) {
					fmt.Fprintf(s.err, "skipped %s (UID %q): %s\n", r.Name, r.UID, pe.Reason)
					skipped++
					continue
				}
				if err != nil {
					return err
				}
				if pr.Created {
					created++
				} else {
					replaced++
				}
			}
			fmt.Fprintf(s.out, "imported %d objects into %s/%s/%s (%d new, %d replaced, %d skipped)\n",
				created+replaced, user, calendar.Repo, *coll, created, replaced, skipped)
			return nil
		})
}

// readLimited reads a file ("-": standard input is not offered) of at most limit bytes.
func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

func cmdCalendarExport(ctx context.Context, s stdio, args []string) int {
	var coll *string
	return withCollections(ctx, s, calendar.Kind(), "calendar export", "[-data DIR] [-collection NAME] USER [FILE.ics]", 1, 2, args,
		func(fs *flag.FlagSet) { coll = fs.String("collection", defaultCalendar, "the calendar to export") },
		func(c *storedav.Collections, args []string) error {
			user := args[0]
			infos, head, err := c.Objects(ctx, user, *coll)
			if err != nil {
				return err
			}
			objs := make([][]byte, 0, len(infos))
			for _, o := range infos {
				b, _, err := c.ObjectAt(ctx, user, head, *coll, o.Name)
				if err != nil {
					return err
				}
				objs = append(objs, b)
			}
			out, err := calendar.Join(objs)
			if err != nil {
				return err
			}
			if len(args) == 2 {
				if err := os.WriteFile(args[1], out, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(s.err, "exported %d objects to %s\n", len(objs), args[1])
				return nil
			}
			_, err = s.out.Write(out)
			return err
		})
}

func cmdCalendarRestore(ctx context.Context, s stdio, args []string) int {
	var since *string
	return withCollections(ctx, s, calendar.Kind(), "calendar restore", "[-data DIR] USER [COLLECTION] --since TIME", 1, 2, args,
		func(fs *flag.FlagSet) {
			since = fs.String("since", "", "restore what was deleted after this time (required)")
		},
		func(c *storedav.Collections, args []string) error {
			if *since == "" {
				return errors.New("--since TIME is required")
			}
			t, err := parseSince(*since, time.Now())
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			coll := ""
			if len(args) == 2 {
				coll = args[1]
			}
			restored, err := c.Restore(storedav.WithUser(ctx, args[0]), args[0], coll, t)
			if err != nil {
				return err
			}
			if len(restored) == 0 {
				fmt.Fprintln(s.out, "nothing was deleted since then")
				return nil
			}
			fmt.Fprintf(s.out, "restored %d:\n  %s\n", len(restored), strings.Join(restored, "\n  "))
			return nil
		})
}
