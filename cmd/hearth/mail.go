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

	"github.com/hearth-home/hearth/mail"
	"github.com/hearth-home/hearth/mail/migrate"
	"github.com/hearth-home/hearth/signpost"
)

// mailCommands are the "hearth mail ..." commands (import, export, restore) and
// "hearth bench imap".
func mailCommands() []command {
	return []command{
		{"mail import", "[-data DIR] [-mailbox NAME] USER PATH", "import an mbox file or a Maildir directory (flags, dates and subfolders kept) into a user's mail", cmdMailImport},
		{"mail export", "[-data DIR] USER OUTDIR", "write a user's mail as a Maildir: one subfolder per mailbox, flags in names, mtime = date", cmdMailExport},
		{"mail restore", "[-data DIR] USER MAILBOX --since TIME", "bring back the messages of a mailbox deleted or expunged since TIME", cmdMailRestore},
		{"bench imap", "[-clients 10,50] [-duration 10s] [-peers DIR]", "measure the mail appliance's IMAP beside Dovecot: ops/s per operation, memory", cmdBenchIMAP},
	}
}

// parseMailArgs parses flags that may come before, between or after the nargs
// arguments ("USER MAILBOX --since T"). It returns the arguments; ok false ends the
// command with code.
func parseMailArgs(fs *flag.FlagSet, args []string, nargs int) (pos []string, code int, ok bool) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0, false
	} else if err != nil {
		return nil, 2, false
	}
	if len(pos) != nargs {
		fmt.Fprintf(fs.Output(), "%s: want %d arguments, got %d\n", fs.Name(), nargs, len(pos))
		fs.Usage()
		return nil, 2, false
	}
	return pos, 0, true
}

// withMail opens the data directory's accounts and a mail backend, checks that user
// exists and runs fn.
func withMail(ctx context.Context, s stdio, data, user string, fn func(b *mail.Backend) error) error {
	if err := signpost.CheckName(user); err != nil {
		return err
	}
	repos, accounts, logger, err := openUserData(ctx, s, data, user)
	if err != nil {
		return err
	}
	defer repos.Close()
	b, err := mail.NewBackend(repos, mail.Options{Accounts: accounts, Logger: logger})
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

func cmdMailImport(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "mail import", "[-data DIR] [-mailbox NAME] USER PATH")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	mailbox := fs.String("mailbox", "INBOX", "mailbox an mbox file is imported into (a Maildir brings its own)")
	pos, code, ok := parseMailArgs(fs, args, 2)
	if !ok {
		return code
	}
	err := withMail(ctx, s, *data, pos[0], func(b *mail.Backend) error {
		n, boxes, err := importMail(ctx, b, pos[0], pos[1], *mailbox)
		if n > 0 || err == nil {
			fmt.Fprintf(s.out, "imported %d messages into %d mailboxes of %s\n", n, boxes, pos[0])
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail import: %v\n", err)
		return 1
	}
	return 0
}

// importMail imports the mbox file or Maildir at path into user's mail; an mbox goes into
// mailbox. Line endings become CRLF, as IMAP wants. It returns how many messages it
// imported and into how many mailboxes.
func importMail(ctx context.Context, b *mail.Backend, user, path, mailbox string) (int, int, error) {
	if err := b.EnsureUser(ctx, user); err != nil {
		return 0, 0, err
	}
	existing, err := b.Mailboxes(ctx, user)
	if err != nil {
		return 0, 0, err
	}
	have := map[string]bool{}
	for _, m := range existing {
		have[m.Name] = true
	}
	used := map[string]bool{}
	n := 0
	put := func(m *migrate.Message) error {
		name := m.Mailbox
		if strings.EqualFold(name, "INBOX") {
			name = "INBOX"
		}
		if !have[name] {
			if err := b.CreateMailbox(ctx, user, name, ""); err != nil && !errors.Is(err, mail.ErrExists) {
				return fmt.Errorf("create mailbox %q: %w", name, err)
			}
			have[name] = true
		}
		if len(m.Body) == 0 {
			return nil // nothing to keep
		}
		if _, err := b.Deliver(ctx, user, name, migrate.ToCRLF(m.Body), m.Flags, m.Date); err != nil {
			where := m.Path
			if where == "" {
				where = fmt.Sprintf("message %d", n+1)
			}
			return fmt.Errorf("%s: %w", where, err)
		}
		used[name] = true
		n++
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	limit := int(b.AppendLimit())
	if fi.IsDir() {
		err = migrate.ReadMaildir(path, limit, put)
		return n, len(used), err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := migrate.NewMboxReader(f, limit)
	for {
		m, err := r.Next()
		if err == io.EOF {
			return n, len(used), nil
		}
		if err != nil {
			return n, len(used), err
		}
		m.Mailbox = mailbox
		if err := put(m); err != nil {
			return n, len(used), err
		}
	}
}

func cmdMailExport(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "mail export", "[-data DIR] USER OUTDIR")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	pos, code, ok := parseMailArgs(fs, args, 2)
	if !ok {
		return code
	}
	err := withMail(ctx, s, *data, pos[0], func(b *mail.Backend) error {
		n, boxes, err := exportMail(ctx, b, pos[0], pos[1])
		if err == nil {
			fmt.Fprintf(s.out, "exported %d messages in %d mailboxes to %s\n", n, boxes, pos[1])
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail export: %v\n", err)
		return 1
	}
	return 0
}

// exportMail writes user's mailboxes into the Maildir outDir (which must be empty or
// missing), with LF line endings, flags in the file names and the internal date as mtime.
func exportMail(ctx context.Context, b *mail.Backend, user, outDir string) (int, int, error) {
	if ents, err := os.ReadDir(outDir); err == nil && len(ents) > 0 {
		return 0, 0, fmt.Errorf("%s is not empty", outDir)
	}
	boxes, err := b.Mailboxes(ctx, user)
	if err != nil {
		return 0, 0, err
	}
	w, err := migrate.NewMaildirWriter(outDir)
	if err != nil {
		return 0, 0, err
	}
	if _, err := w.MakeMailbox("INBOX"); err != nil {
		return 0, 0, err
	}
	n := 0
	for _, box := range boxes {
		if _, err := w.MakeMailbox(box.Name); err != nil {
			return n, 0, err
		}
		err := b.Messages(ctx, user, box.Name, func(m mail.Message) error {
			body, err := m.Body(ctx)
			if err != nil {
				return fmt.Errorf("%s UID %d: %w", box.Name, m.UID, err)
			}
			if _, err := w.Write(&migrate.Message{Mailbox: box.Name, Body: migrate.ToLF(body), Flags: m.Flags, Date: m.Date}); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			return n, 0, err
		}
	}
	return n, len(boxes), w.Sync()
}

func cmdMailRestore(ctx context.Context, s stdio, args []string) int {
	fs := flagSet(s, "mail restore", "[-data DIR] USER MAILBOX --since TIME")
	data := fs.String("data", defaultData, "data directory of \"hearth up\"")
	since := fs.String("since", "", "restore what was deleted after this time: RFC 3339, \"2006-01-02\", \"2006-01-02 15:04\" (local), or a duration ago (\"2h\")")
	pos, code, ok := parseMailArgs(fs, args, 2)
	if !ok {
		return code
	}
	t, err := parseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail restore: -since: %v\n", err)
		return 2
	}
	err = withMail(ctx, s, *data, pos[0], func(b *mail.Backend) error {
		n, err := b.Restore(ctx, pos[0], pos[1], t)
		if err == nil {
			fmt.Fprintf(s.out, "restored %d messages into %s of %s\n", n, pos[1], pos[0])
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(s.err, "hearth mail restore: %v\n", err)
		return 1
	}
	return 0
}
