package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hearth-home/hearth/contacts"
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

func cmdContactsImport(ctx context.Context, s stdio, args []string) int {
	var coll *string
	return withCollections(ctx, s, contacts.NewKind(), "contacts import", "[-data DIR] USER FILE.vcf [-collection NAME]", 2, 2, args,
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
	return withCollections(ctx, s, contacts.NewKind(), "contacts export", "[-data DIR] USER [-collection NAME] [-o FILE]", 1, 1, args,
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

func cmdContactsRestore(ctx context.Context, s stdio, args []string) int {
	var since *string
	return withCollections(ctx, s, contacts.NewKind(), "contacts restore", "[-data DIR] USER [COLLECTION] --since TIME", 1, 2, args,
		func(fs *flag.FlagSet) {
			since = fs.String("since", "", "restore what was deleted after this time (required)")
		},
		func(c *storedav.Collections, args []string) error {
			if *since == "" {
				return fmt.Errorf("--since TIME is required")
			}
			t, err := parseSince(*since, time.Now())
			if err != nil {
				return fmt.Errorf("--since: %w", err)
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
